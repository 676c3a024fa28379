"""Convert a folder of cases into an nnU-Net raw dataset, through a dataset scheme.

:func:`convert_dataset` is the shared machinery of every scheme (:mod:`.scheme`): it discovers the
input cases (:mod:`.layouts`), prepares the dataset folder (:mod:`.outputs`), converts every case
that is not done yet (in parallel, or one shard of a cluster job array) with
:func:`convert_case`, and finally places the test cases and writes ``dataset.json``, the splits,
the manifest and the figures (:mod:`.finalize`).

Fault behaviour: the input is only read; every file is written atomically; a case counts as done
only when its record exists, its input files are unchanged (size, mtime) and its outputs have the
recorded sizes, so a rerun after a crash redoes exactly the broken cases. ``shard=(i, n)`` converts
every n-th case; a final run without ``shard`` (or with ``merge_only``) finalizes.
"""

from __future__ import annotations

import collections
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tavr.dataset_conversion import outputs
from nnunet_tavr.dataset_conversion.images import write_image
from nnunet_tavr.dataset_conversion.layouts import CaseSource, shard_of
from nnunet_tavr.dataset_conversion.scheme import Scheme
from nnunet_tavr.dataset_conversion.splits import DEFAULT_SEED
from nnunet_tavr.errors import InputError, InvalidCaseId, Refused, reason_code
from nnunet_tavr.folders import NnunetFolders, dataset_folder_name
from nnunet_tavr.io import write_array, write_json

#: Kept for callers of the first version; the error class is :class:`nnunet_tavr.errors.Refused`.
ConversionRefused = Refused


def _default_scheme() -> Scheme:
    from nnunet_tavr.dataset_conversion.schemes.tavr import TavrScheme

    return TavrScheme()


@dataclass(frozen=True)
class ConversionOptions:
    """Settings that decide the content of the dataset (recorded in ``conversion/config.json``).

    ``dataset_name`` defaults to the scheme's (``TAVR`` for the TAVR scheme).
    """

    dataset_id: int
    dataset_name: str | None = None
    scheme: Scheme = field(default_factory=_default_scheme)
    seed: int = DEFAULT_SEED

    @property
    def name(self) -> str:
        return self.dataset_name or self.scheme.dataset_name

    @property
    def folder_name(self) -> str:
        return dataset_folder_name(self.dataset_id, self.name)

    def config(self, source_root: Path, layout: str) -> dict:
        return {
            "record_version": outputs.RECORD_VERSION,
            "source": str(Path(source_root).resolve()),
            "layout": layout,
            "dataset": self.folder_name,
            "scheme": self.scheme.name,
            "options": self.scheme.options(),
            "seed": int(self.seed),
        }


# ----------------------------------------------------------------------------------------------
# one case


def _new_record(source: CaseSource) -> dict:
    return {
        "record_version": outputs.RECORD_VERSION,
        "case": source.case_id,
        "source": str(source.path),
        "kept": False,
        "status": "dropped",
        "reason": "",
        "detail": "",
        "input": outputs.input_fingerprint(source),
        "outputs": [],
        "columns": {},
        "details": None,
    }


def convert_case(source: CaseSource, folder: str | os.PathLike, options: ConversionOptions, qc: bool = False) -> dict:
    """Convert one input case into ``folder``; never raises for a bad case.

    Writes the images and label maps of the case's nnU-Net cases, then its record
    ``conversion/cases/<case>.json`` (last). Returns the record: ``case``, ``kept``, ``status``
    (``kept`` / ``dropped`` / ``failed``: an unexpected error, retried by a rerun), ``reason`` (the
    error's or the rule's code), ``detail``, ``outputs`` (one entry per nnU-Net case: its id, group,
    voxel counts, manifest columns and file sizes), ``details`` (the scheme's record), ``seconds``.
    """
    folder = Path(folder)
    scheme, ending = options.scheme, options.scheme.file_ending
    t0 = time.perf_counter()
    case = outputs.check_case_id(source.case_id)
    previous = outputs.read_record(folder, case) or {}
    outputs.record_path(folder, case).unlink(missing_ok=True)  # not done until the new record is written
    outputs.remove_temporaries(folder, case)
    stale = {case} | {o["case"] for o in previous.get("outputs", []) if isinstance(o, dict) and "case" in o}
    for name in stale:  # a redone case starts clean (also in imagesTs)
        for path in outputs.case_files(folder, name, ending):
            path.unlink(missing_ok=True)
    record = _new_record(source)
    timing: dict[str, float] = {}
    written: list = []
    try:
        if source.problem:
            raise source.problem
        tick = time.perf_counter()
        result = scheme.convert_case(source)
        timing["derive"] = time.perf_counter() - tick
        record.update(details=result.details, columns=dict(result.columns))
        if result.excluded is not None:
            record.update(reason=result.excluded[0], detail=result.excluded[1])
        else:
            tick = time.perf_counter()
            for out in result.outputs:
                image = outputs.image_path(folder, out.case, False, ending)
                label = outputs.label_path(folder, out.case, False, ending)
                written += [image, label]
                write_image(out, image)
                write_array(out.labels, out.geometry, label)
                record["outputs"].append({
                    "case": out.case, "group": out.group or source.case_id, "voxels": dict(out.counts),
                    "columns": dict(out.columns), "files": dict(out.files),
                    "sizes": {"image": image.stat().st_size, "label": label.stat().st_size},
                })
            timing["write"] = time.perf_counter() - tick
            record.update(kept=True, status="kept")
        if qc and result.write_qc is not None:
            record["qc"] = _write_case_qc(folder, case, result)
    except (InputError, InvalidCaseId) as exc:
        record.update(reason=reason_code(exc), detail=str(exc))
    except Exception as exc:  # a bug or resource problem: excluded now, retried by the next run
        record.update(status="failed", reason="error", detail=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
    if not record["kept"]:
        for path in written:  # e.g. an image written before its label failed
            path.unlink(missing_ok=True)
        record["outputs"] = []
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["timing"] = {k: round(v, 3) for k, v in timing.items()}
    write_json(record, outputs.record_path(folder, case))
    return record


def _write_case_qc(folder: Path, case: str, result) -> str:
    """Per-case QC figure; a QC failure is noted in the record, never fatal."""
    try:
        path = outputs.case_path(folder, "qc", f"{case}.png")
        result.write_qc(path)
        return str(path.relative_to(folder))
    except Exception as exc:
        return f"qc failed: {type(exc).__name__}: {exc}"


def invalid_case_record(source: CaseSource, exc: InvalidCaseId) -> dict:
    """The in-memory record of a case whose id cannot name a file: listed in the manifest, never
    written anywhere."""
    record = _new_record(source)
    record.update(reason=exc.code, detail=str(exc), input={})
    return record


# ----------------------------------------------------------------------------------------------
# all cases


@dataclass
class ConversionSummary:
    """What a run did. ``records`` holds one record per input case of the run (all after a merge)."""

    folder: Path
    records: list[dict]
    converted: int
    skipped: int
    seconds: float
    finalized: bool
    splits: dict | None = None
    converted_cases: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        return sorted(r["case"] for r in self.records if r["kept"])

    @property
    def dropped(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = collections.defaultdict(list)
        for r in self.records:
            if not r["kept"]:
                out[r["reason"]].append(r["case"])
        return dict(sorted(out.items()))

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "failed"]

    def text(self) -> str:
        lines = [
            f"{self.folder}",
            f"  cases: {len(self.records)} ({self.converted} converted now, {self.skipped} already done) in {self.seconds:.1f} s",
            f"  kept: {len(self.kept)}",
        ]
        for reason, cases in self.dropped.items():
            shown = ", ".join(cases[:6]) + (", ..." if len(cases) > 6 else "")
            lines.append(f"  dropped ({reason}): {len(cases)}  [{shown}]")
        if self.splits:
            c = self.splits["counts"]
            n = len(self.splits["nnunet_folds"])
            lines.append(f"  split: {c['train']} train / {c['val']} val / {c['test']} test (seed {self.splits['seed']}); "
                         f"splits_final.json: folds 0-{n - 2} CV, fold {n - 1} = paper split")
        elif not self.finalized:
            lines.append("  shard done: run once more without --shard (or with --merge) to write dataset.json and the splits")
        for r in self.failed[:3]:
            lines.append(f"  error in {r['case']}: {r['detail']} (retried by the next run)")
        return "\n".join(lines)


def _init_worker(threads: int) -> None:
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except Exception:
        pass


def _run_case(job):
    source, folder, options, qc = job
    return convert_case(source, folder, options, qc)


def convert_dataset(
    source_root: str | os.PathLike,
    options: ConversionOptions,
    raw: str | os.PathLike | None = None,
    num_processes: int = 1,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    qc: bool = False,
    merge_only: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Convert every case of ``source_root`` (or one shard) into ``$nnUNet_raw/DatasetXXX_Name``.

    Parameters
    ----------
    source_root : path
        TotalSegmentator dataset folder or a folder of case folders (see :mod:`.layouts`).
    options : ConversionOptions
        Dataset id and name, the scheme (with its options), the split seed.
    raw : path, optional
        nnU-Net raw root; default ``$nnUNet_raw``.
    num_processes : int
        Worker processes (cases run in parallel; one case per process at a time).
    shard : (i, n), optional
        Convert only every n-th case starting at i; the dataset is not finalized.
    overwrite : bool
        Replace an existing dataset with this id (refused with ``shard``: clear it first).
    qc : bool
        Also write per-case QC figures to ``qc/<case>.png``.
    merge_only : bool
        Convert nothing: finalize from the records the shards wrote (refused if cases are missing).
    progress : bool
        Show a tqdm progress bar.
    """
    from tqdm import tqdm

    from nnunet_tavr.dataset_conversion.finalize import finalize

    t0 = time.perf_counter()
    if shard is not None and overwrite:
        raise Refused("--overwrite with --shard would let shards delete each other's work; remove the dataset folder once before starting the shards")
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    source_root = Path(source_root)
    layout, cases = options.scheme.discover(source_root)
    if not cases:
        raise Refused(f"no cases found in {source_root} (expected sXXXX/ct.nii.gz folders or CASE/ct.nii.gz + segmentations)")
    raw_root = NnunetFolders.resolve(raw=raw).require("raw")
    folder = outputs.prepare_dataset_folder(raw_root, options.folder_name, options.dataset_id, options.config(source_root, layout), overwrite)

    todo, done = [], []
    for source in shard_of(cases, shard):
        if isinstance(source.problem, InvalidCaseId):
            done.append(invalid_case_record(source, source.problem))
            continue
        record = outputs.finished_record(folder, source, options.scheme.file_ending, accept_failed=merge_only)
        (done if record is not None else todo).append(record or source)
    if merge_only and todo:
        names = ", ".join(s.case_id for s in todo[:10]) + (", ..." if len(todo) > 10 else "")
        raise Refused(f"--merge: {len(todo)} case(s) are not converted yet ({names}); run the missing shards (or run without --merge)")

    converted: list[dict] = []
    if todo:
        jobs = [(source, folder, options, qc) for source in todo]
        bar = tqdm(total=len(jobs), desc=f"convert {options.folder_name}", unit="case", disable=not progress)
        bar.set_postfix_str(f"{len(done)} already done")
        if num_processes == 1:
            for job in jobs:
                converted.append(_run_case(job))
                bar.update()
        else:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 1) // num_processes)
            # spawn: ITK's thread pool does not survive fork() reliably.
            with mp.get_context("spawn").Pool(num_processes, initializer=_init_worker, initargs=(threads,)) as pool:
                for record in pool.imap_unordered(_run_case, jobs, chunksize=1):
                    converted.append(record)
                    bar.update()
        bar.close()

    records = sorted(done + converted, key=lambda r: r["case"])
    summary = ConversionSummary(folder, records, converted=len(converted), skipped=len(done), seconds=0.0, finalized=False,
                                converted_cases=sorted(r["case"] for r in converted))
    if shard is None:
        summary.splits = finalize(folder, cases, options)
        summary.finalized = True
    summary.seconds = time.perf_counter() - t0
    return summary
