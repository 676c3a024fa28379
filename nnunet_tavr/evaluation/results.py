"""Finding what to compare in nnU-Net's folders, and evaluating it case by case.

Layout read (nnU-Net v2's own):

- ``$nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>/fold_<k>/validation/<case><ending>``
  are the predictions of fold ``k``'s validation cases;
- ``$nnUNet_preprocessed/DatasetXXX_Name/gt_segmentations/<case><ending>`` are the references
  nnU-Net itself evaluates them against, ``splits_final.json`` says which cases each fold
  should have, and ``dataset.json`` gives the labels and file ending;
- test predictions (written by ``nnUNetv2_predict``, one folder per trainer) are compared with
  ``$nnUNet_raw/DatasetXXX_Name/labelsTs`` (or a folder given explicitly).

Nothing is silently dropped: a missing fold, a missing prediction or a fold absent from the
splits becomes a :class:`Gap`, which the report lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from nnunet_tavr.folders import NnunetFolders
from nnunet_tavr.errors import GridMismatch
from nnunet_tavr.io import InputError

#: File endings SimpleITK reads; others go through the nnU-Net reader named by the file ending.
SITK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".gipl", ".gipl.gz")
#: Version of the cached per-case records; bump when the metric definitions change.
CACHE_VERSION = 1


@dataclass(frozen=True)
class DatasetInfo:
    """An nnU-Net dataset as the comparison needs it: its name, labels, file ending and folders."""

    name: str
    labels: dict
    file_ending: str
    folders: NnunetFolders

    @property
    def ignore_value(self) -> int | None:
        """Value of nnU-Net's ``ignore`` label, if the dataset has one."""
        value = self.labels.get("ignore")
        return int(value) if value is not None else None

    @property
    def is_region_based(self) -> bool:
        return any(isinstance(v, (list, tuple)) for v in self.labels.values())


@dataclass(frozen=True)
class CaseJob:
    """One prediction to evaluate against one reference."""

    trainer: str
    split: str  # "val" (cross-validation) or "test"
    fold: str  # "0".."4", "all", or "test"
    case: str
    prediction: str
    reference: str


@dataclass(frozen=True)
class Gap:
    """Something that should have been evaluated and was not."""

    trainer: str
    split: str
    fold: str
    case: str | None  # None: the whole fold
    reason: str


@dataclass
class Inventory:
    """Jobs to run and gaps to report."""

    jobs: list[CaseJob] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    def extend(self, other: "Inventory") -> "Inventory":
        self.jobs += other.jobs
        self.gaps += other.gaps
        return self


def load_dataset(
    dataset: str | int,
    raw: str | os.PathLike | None = None,
    preprocessed: str | os.PathLike | None = None,
    results: str | os.PathLike | None = None,
) -> DatasetInfo:
    """Resolve a dataset and read its ``dataset.json`` (from preprocessed, else raw).

    Folders default to ``$nnUNet_raw``, ``$nnUNet_preprocessed`` and ``$nnUNet_results``.
    """
    folders = NnunetFolders.resolve(raw, preprocessed, results)
    name = folders.find_dataset(dataset)
    candidates = [root / name / "dataset.json" for root in (folders.preprocessed, folders.raw) if root]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise InputError(f"dataset {name}: no dataset.json in {', '.join(map(str, candidates)) or '(no folders set)'}")
    try:
        meta = json.loads(path.read_text())
        labels, file_ending = dict(meta["labels"]), str(meta["file_ending"])
    except (ValueError, KeyError) as exc:
        raise InputError(f"dataset {name}: cannot read labels and file_ending from {path}: {exc}") from exc
    return DatasetInfo(name, labels, file_ending, folders)


def _cases_in(folder: Path, file_ending: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name[: -len(file_ending)]: p for p in sorted(folder.iterdir()) if p.name.endswith(file_ending) and p.is_file()}


def load_splits(info: DatasetInfo) -> list[dict] | None:
    """``splits_final.json`` of the dataset, or ``None`` when there is none."""
    if info.folders.preprocessed is None:
        return None
    path = info.folders.preprocessed_dataset(info.name) / "splits_final.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"dataset {info.name}: cannot parse {path}: {exc}") from exc


def collect_validation(
    info: DatasetInfo, trainers: Sequence[str], plans: str, configuration: str, folds: Sequence[str | int]
) -> Inventory:
    """Validation predictions of every trainer and fold, matched to ``gt_segmentations``.

    The cases a fold should have come from ``splits_final.json``; without it, the cases present in
    the folder are taken as complete (and a gap says that missing cases could not be detected).
    """
    gt_folder = info.folders.preprocessed_dataset(info.name) / "gt_segmentations"
    references = _cases_in(gt_folder, info.file_ending)
    if not references:
        raise InputError(f"dataset {info.name}: no reference segmentations (*{info.file_ending}) in {gt_folder}")
    splits = load_splits(info)
    inventory = Inventory()
    for trainer in trainers:
        base = info.folders.trainer_folder(info.name, trainer, plans, configuration)
        if not base.is_dir():
            inventory.gaps += [Gap(trainer, "val", str(f), None, f"no results folder {base}") for f in folds]
            continue
        for fold in map(str, folds):
            folder = base / f"fold_{fold}" / "validation"
            predictions = _cases_in(folder, info.file_ending)
            if fold == "all":
                expected = None  # fold_all has no held-out cases by definition
            elif splits is None:
                expected = None
                inventory.gaps.append(Gap(trainer, "val", fold, None, "no splits_final.json: missing cases cannot be detected"))
            elif not fold.isdigit() or int(fold) >= len(splits):
                inventory.gaps.append(Gap(trainer, "val", fold, None, f"fold {fold} is not in splits_final.json ({len(splits)} folds)"))
                continue
            else:
                expected = list(splits[int(fold)]["val"])
            if not predictions:
                why = "no validation predictions" if (base / f"fold_{fold}").is_dir() else "fold not trained"
                inventory.gaps.append(Gap(trainer, "val", fold, None, f"{why} ({folder})"))
                continue
            for case in expected if expected is not None else list(predictions):
                if case not in predictions:
                    inventory.gaps.append(Gap(trainer, "val", fold, case, f"prediction missing in {folder}"))
                    continue
                if case not in references:
                    raise InputError(f"case {case}: reference {gt_folder / (case + info.file_ending)} not found")
                inventory.jobs.append(CaseJob(trainer, "val", fold, case, str(predictions[case]), str(references[case])))
    return inventory


def collect_test(
    info: DatasetInfo, trainers: Sequence[str], prediction_folders: Sequence[str | os.PathLike], labels_folder: str | os.PathLike | None
) -> Inventory:
    """Test-set predictions (one folder per trainer, same order) against the test labels."""
    if len(prediction_folders) != len(trainers):
        raise InputError(f"--test needs one prediction folder per trainer ({len(trainers)}), got {len(prediction_folders)}")
    if labels_folder is None:
        if info.folders.raw is None:
            raise InputError("no test labels: pass --test-labels or set $nnUNet_raw")
        labels_folder = info.folders.raw_dataset(info.name) / "labelsTs"
    labels_folder = Path(labels_folder)
    references = _cases_in(labels_folder, info.file_ending)
    if not references:
        raise InputError(f"dataset {info.name}: no test labels (*{info.file_ending}) in {labels_folder}")
    inventory = Inventory()
    for trainer, folder in zip(trainers, map(Path, prediction_folders)):
        predictions = _cases_in(folder, info.file_ending)
        if not predictions:
            inventory.gaps.append(Gap(trainer, "test", "test", None, f"no predictions (*{info.file_ending}) in {folder}"))
            continue
        for case, reference in references.items():
            if case not in predictions:
                inventory.gaps.append(Gap(trainer, "test", "test", case, f"prediction missing in {folder}"))
            else:
                inventory.jobs.append(CaseJob(trainer, "test", "test", case, str(predictions[case]), str(reference)))
    return inventory


def read_segmentation(path: str, case: str, file_ending: str):
    """A label map as a (z, y, x) integer array and its spacing per array axis (mm)."""
    from nnunet_tavr.io import read_array

    if file_ending.lower() in SITK_ENDINGS:
        array, geometry = read_array(path, case)
        return array, geometry.spacing, geometry
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_file_ending

    try:
        reader = determine_reader_writer_from_file_ending(file_ending, path, verbose=False)()
        seg, props = reader.read_seg(path)
    except Exception as exc:
        raise InputError(f"case {case}: cannot read {path}: {exc}") from exc
    # nnU-Net readers return (channels, z, y, x) and spacing per (z, y, x) axis.
    return seg[0], tuple(float(s) for s in props["spacing"]), None


def evaluate_job(
    job: CaseJob, classes, file_ending: str, one_empty: str = "diagonal", ignore_value: int | None = None
) -> list[dict]:
    """Per-class metric records of one job (see :func:`nnunet_tavr.evaluation.metrics.case_metrics`)."""
    from nnunet_tavr.evaluation.metrics import case_metrics

    reference, spacing, ref_geometry = read_segmentation(job.reference, job.case, file_ending)
    prediction, _, pred_geometry = read_segmentation(job.prediction, job.case, file_ending)
    if reference.shape != prediction.shape:
        raise GridMismatch(
            f"case {job.case}: prediction {job.prediction} has shape {prediction.shape}, "
            f"reference {job.reference} has {reference.shape}"
        )
    if ref_geometry is not None and pred_geometry is not None:
        problem = ref_geometry.mismatch(pred_geometry)
        if problem:
            raise GridMismatch(f"case {job.case}: prediction {job.prediction} does not lie on the grid of {job.reference}: {problem}")
    records = case_metrics(reference, prediction, classes, spacing, one_empty=one_empty, ignore_value=ignore_value)
    base = {"trainer": job.trainer, "split": job.split, "fold": job.fold, "case": job.case}
    return [{**base, **r} for r in records]


def _cache_key(job: CaseJob, classes, one_empty: str, ignore_value: int | None) -> str:
    stats = [(os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in (job.prediction, job.reference)]
    payload = json.dumps([CACHE_VERSION, asdict(job), stats, [(c.name, c.values) for c in classes], one_empty, ignore_value])
    return hashlib.sha1(payload.encode()).hexdigest()


def _run_one(args) -> tuple[CaseJob, list[dict] | str]:
    """``(job, records)``, or ``(job, reason)`` for a case whose files are bad input."""
    job = args[0]
    try:
        return job, _evaluate_cached(args)
    except InputError as exc:
        return job, f"{exc.code}: {exc}"


def _evaluate_cached(args) -> list[dict]:
    job, classes, file_ending, one_empty, ignore_value, cache_dir = args
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{_cache_key(job, classes, one_empty, ignore_value)}.json"
        if cache.is_file():
            try:
                return json.loads(cache.read_text())
            except ValueError:
                pass  # a damaged cache entry is recomputed
    records = evaluate_job(job, classes, file_ending, one_empty, ignore_value)
    if cache is not None:
        from nnunet_tavr.io import write_json

        write_json(records, cache)
    return records


def evaluate_jobs(
    jobs: Sequence[CaseJob],
    classes,
    file_ending: str,
    one_empty: str = "diagonal",
    num_processes: int = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    ignore_value: int | None = None,
) -> tuple[list[dict], list[Gap]]:
    """Evaluate every job, in parallel over cases, with a progress bar.

    With ``cache_dir``, each case's records are stored under a key made of the file paths, their
    modification times and sizes, the classes and the conventions, so a rerun only evaluates
    what changed (and an interrupted run resumes). A case whose files cannot be used (unreadable,
    another grid) does not stop the others: it comes back as a :class:`Gap` with the reason.
    """
    from tqdm import tqdm

    tasks = [(job, list(classes), file_ending, one_empty, ignore_value, str(cache_dir) if cache_dir else None) for job in jobs]
    records: list[dict] = []
    gaps: list[Gap] = []

    def collect(outcome) -> None:
        job, result = outcome
        if isinstance(result, str):
            gaps.append(Gap(job.trainer, job.split, job.fold, job.case, result))
        else:
            records.extend(result)
        bar.update()

    bar = tqdm(total=len(tasks), desc="evaluating cases", unit="case", disable=not progress)
    if num_processes <= 1 or len(tasks) <= 1:
        for task in tasks:
            collect(_run_one(task))
    else:
        import multiprocessing

        # spawn, as nnU-Net does: safe whatever threads the parent (torch, tqdm) has started.
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(tasks))) as pool:
            for outcome in pool.imap_unordered(_run_one, tasks):
                collect(outcome)
    bar.close()
    return records, gaps
