"""Convert TotalSegmentator (or your own CTs with TotalSegmentator masks) to an nnU-Net raw dataset.

Output, ``$nnUNet_raw/DatasetXXX_Name/``::

    dataset.json                      nnU-Net's (channel "CT", the TAVR label map, numTraining, .nii.gz)
    imagesTr/<case>_0000.nii.gz       training + validation CTs (the input CT file, byte for byte
    labelsTr/<case>.nii.gz            when it is .nii.gz) and their uint8 TAVR label maps
    imagesTs/ labelsTs/               test cases (never in any fold)
    splits_final.json                 6 folds: nnU-Net 5-fold CV over train+val, then the paper's split
    tavr_splits.json                  how the split was made (seed, proportions, sets)
    manifest.csv                      every case, kept or dropped, with the reason and voxel counts
    qc/area_curve.png                 dataset-level aortic cross-section area curve (paper Fig. 1)
    qc/<case>.png                     per-case QC figures (``qc=True``)
    conversion/config.json            the settings this folder was made with (reruns must match)
    conversion/cases/<case>.json      one record per finished case (written last: marks it done)

Fault behaviour: the input is only read; every file is written atomically; a case counts as done
only when its record exists, its input files are unchanged (size, mtime) and its outputs have the
recorded sizes, so a rerun after a crash redoes exactly the broken cases. ``shard=(i, n)`` converts
every n-th case (a cluster job array); a final run without ``shard`` (or with ``merge_only``)
places test cases, writes ``dataset.json``, the splits, the manifest and the figures.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_tavr.dataset_conversion.layouts import CaseSource, discover_cases, shard_of
from nnunet_tavr.dataset_conversion.splits import DEFAULT_SEED, PAPER_PROPORTIONS, write_splits
from nnunet_tavr.io import InputError, atomic_path, write_array, write_json, write_text
from nnunet_tavr.labels import FOREGROUND, LABELS

FILE_ENDING = ".nii.gz"
#: Bump when the per-case output format changes: records of another version are redone.
RECORD_VERSION = 1
MANIFEST_COLUMNS = (
    ["case", "kept", "split", "reason", "detail"]
    + [f"voxels_{name}" for name in FOREGROUND]
    + ["root_end_mm", "seconds", "source"]
)


class ConversionRefused(RuntimeError):
    """The output folder cannot be used as asked (another dataset, other settings, missing cases)."""


@dataclass(frozen=True)
class ConversionOptions:
    """Settings that determine the content of the dataset (recorded in ``conversion/config.json``)."""

    dataset_id: int
    dataset_name: str = "TAVR"
    require_iliacs: bool = False
    seed: int = DEFAULT_SEED
    derive_kwargs: dict = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"


# ----------------------------------------------------------------------------------------------
# paths


def nnunet_raw_root(raw: str | os.PathLike | None = None) -> Path:
    """``raw`` or ``$nnUNet_raw`` (read now, through nnU-Net's own path helper)."""
    if raw is not None:
        return Path(raw)
    from nnunetv2.paths import nnUNet_raw

    if not nnUNet_raw.is_set():
        raise ConversionRefused("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (or pass --raw)")
    return Path(nnUNet_raw.get())


def nnunet_preprocessed_root(preprocessed: str | os.PathLike | None = None) -> Path:
    """``preprocessed`` or ``$nnUNet_preprocessed`` (read now)."""
    if preprocessed is not None:
        return Path(preprocessed)
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed.is_set():
        raise ConversionRefused("nnUNet_preprocessed is not set: export nnUNet_preprocessed=/path (or pass --preprocessed)")
    return Path(nnUNet_preprocessed.get())


def _image_path(folder: Path, case: str, test: bool) -> Path:
    return folder / ("imagesTs" if test else "imagesTr") / f"{case}_0000{FILE_ENDING}"


def _label_path(folder: Path, case: str, test: bool) -> Path:
    return folder / ("labelsTs" if test else "labelsTr") / f"{case}{FILE_ENDING}"


def _record_path(folder: Path, case: str) -> Path:
    return folder / "conversion" / "cases" / f"{case}.json"


def _outputs(folder: Path, case: str) -> list[Path]:
    return [p(folder, case, test) for test in (False, True) for p in (_image_path, _label_path)]


# ----------------------------------------------------------------------------------------------
# the output folder and its settings


def _config(options: ConversionOptions, source_root: Path, layout: str) -> dict:
    return {
        "record_version": RECORD_VERSION,
        "source": str(Path(source_root).resolve()),
        "layout": layout,
        "dataset": options.folder_name,
        "require_iliacs": bool(options.require_iliacs),
        "seed": int(options.seed),
        "derivation": {k: options.derive_kwargs[k] for k in sorted(options.derive_kwargs)},
    }


def prepare_dataset_folder(raw_root: Path, options: ConversionOptions, config: dict, overwrite: bool = False) -> Path:
    """Create (or reuse) the dataset folder, enforcing the overwrite policy.

    Refused unless ``overwrite``: another ``DatasetXXX_*`` folder with the same id, a non-empty
    folder not made by this converter, or one made with different settings (source, seed, ...).
    With ``overwrite`` those folders are deleted first.
    """
    folder = raw_root / options.folder_name
    others = sorted(p for p in raw_root.glob(f"Dataset{options.dataset_id:03d}_*") if p.is_dir() and p.name != folder.name)
    state = folder / "conversion" / "config.json"
    if overwrite:
        for path in others + ([folder] if folder.exists() else []):
            shutil.rmtree(path)
    else:
        if others:
            raise ConversionRefused(
                f"dataset id {options.dataset_id} is already used by {', '.join(map(str, others))}; "
                "choose another -d or pass --overwrite to replace it"
            )
        # A folder holding only conversion/ is one a parallel shard is just creating.
        if folder.is_dir() and not state.is_file() and any(p.name != "conversion" for p in folder.iterdir()):
            raise ConversionRefused(f"{folder} exists and was not made by 'nnunet-tavr convert'; pass --overwrite to replace it")
    if not state.is_file():
        write_json(config, state)  # shards starting together write the same content
    previous = json.loads(state.read_text())
    if previous != config:
        changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
        raise ConversionRefused(
            f"{folder} was converted with different settings ({', '.join(f'{k}: {previous.get(k)!r} -> {config.get(k)!r}' for k in changed)}); "
            "pass --overwrite to rebuild it"
        )
    return folder


# ----------------------------------------------------------------------------------------------
# one case


def input_fingerprint(source: CaseSource) -> dict[str, list[int]]:
    """Relative path -> [size, mtime_ns] of every file of the case folder (what a rerun compares)."""
    if source.problem or not source.path.is_dir():
        return {}
    out = {}
    for path in sorted(source.path.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            st = path.stat()
            out[str(path.relative_to(source.path))] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def classify_input_error(message: str) -> str:
    """Short reason code of an :class:`InputError` message (for the manifest and the summary)."""
    text = message.lower()
    if "invalid case id" in text:
        return "invalid_case_id"
    if "not found" in text or "missing" in text or "no such file" in text:
        return "missing_file"
    if "cannot read" in text or "unreadable" in text or "corrupt" in text:
        return "unreadable"
    if any(f"{word} (" in text for word in ("shape", "spacing", "origin", "direction")) or "geometry" in text or "mismatch" in text:
        return "geometry_mismatch"
    return "input_error"


def _load(source: CaseSource):
    """The case's coarse masks and CT path, through the label-derivation loader (raises InputError)."""
    from nnunet_tavr.dataset_conversion.layouts import multilabel_files
    from nnunet_tavr.label_derivation.subject import load_subject

    subject = load_subject(source.path, case=source.case_id, multilabel=multilabel_files(source.path))
    if subject.ct_path is None:
        raise InputError(f"case {source.case_id}: CT missing in {source.path} (expected ct.nii.gz, .nii, .nrrd or .mha)")
    return subject


def _derive(subject, case: str, derive_kwargs: dict):
    """``(labels or None, result record dict, exclusion code or None, exclusion message or None)``."""
    from nnunet_tavr.label_derivation import derive_tavr_labels

    labels, result = derive_tavr_labels(subject.masks, subject.geometry.spacing, case=case, **derive_kwargs)
    return labels, result.to_dict(), result.excluded_code, result.excluded_reason


def _remove_stale(folder: Path, case: str) -> None:
    """Remove temporary files an interrupted run left for this case."""
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "qc"):
        d = folder / sub
        if d.is_dir():
            for tmp in list(d.glob(f".{case}.*")) + list(d.glob(f".{case}_0000.*")):
                tmp.unlink(missing_ok=True)


def _copy_image(ct_path: Path, target: Path, case: str) -> None:
    """The CT unchanged: a byte copy of a .nii.gz (gzip stream verified), else re-written as .nii.gz.

    SimpleITK reads a truncated .nii.gz without complaint (the missing voxels become 0), so the
    copy decompresses the stream as it goes and refuses one that ends early or fails its CRC.
    """
    ct_path = Path(ct_path)
    if "".join(ct_path.suffixes[-2:]) == FILE_ENDING:
        with atomic_path(target) as tmp:
            _copy_verified_gzip(ct_path, tmp, case)
    else:
        import SimpleITK as sitk

        image = sitk.ReadImage(str(ct_path))
        with atomic_path(target) as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)


def _copy_verified_gzip(source: Path, target: Path, case: str, chunk: int = 1 << 22) -> None:
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing: header, CRC32 and size checked
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            while True:
                block = src.read(chunk)
                if not block:
                    break
                dst.write(block)
                data = block
                while data:
                    inflater.decompress(data, 0)
                    data = inflater.unused_data
                    if data:  # a multi-member gzip file: the next member starts here
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise InputError(f"case {case}: cannot read {source}: corrupt gzip stream ({exc})") from exc
    if not inflater.eof:
        raise InputError(f"case {case}: cannot read {source}: truncated gzip stream (file ends early)")


def convert_case(source: CaseSource, folder: str | os.PathLike, options: ConversionOptions, qc: bool = False) -> dict:
    """Convert one case into ``folder``; never raises for a bad case.

    Writes ``imagesTr/<case>_0000.nii.gz`` and ``labelsTr/<case>.nii.gz`` for a kept case, then its
    record ``conversion/cases/<case>.json`` (last). Returns the record: ``case``, ``kept``,
    ``status`` (``kept`` / ``dropped`` / ``failed``: an unexpected error, retried by a rerun),
    ``reason`` (short code), ``detail``, ``voxels`` per label, ``root_end_mm``, ``seconds``,
    ``input`` (fingerprint), ``outputs`` (file sizes) and ``derivation`` (the result record).
    """
    folder = Path(folder)
    t0 = time.perf_counter()
    case = source.case_id
    _record_path(folder, case).unlink(missing_ok=True)  # not done until the new record is written
    _remove_stale(folder, case)
    for path in _outputs(folder, case):  # a redone case starts clean (also in imagesTs)
        path.unlink(missing_ok=True)
    record = {
        "record_version": RECORD_VERSION,
        "case": case,
        "source": str(source.path),
        "kept": False,
        "status": "dropped",
        "reason": "",
        "detail": "",
        "voxels": {},
        "root_end_mm": None,
        "input": input_fingerprint(source),
        "outputs": {},
        "derivation": None,
    }
    timing: dict[str, float] = {}  # seconds: reading masks, deriving, writing image + label
    try:
        if source.problem:
            raise InputError(source.problem)
        tick = time.perf_counter()
        subject = _load(source)
        ct_path, geometry = subject.ct_path, subject.geometry
        timing["read"] = time.perf_counter() - tick
        tick = time.perf_counter()
        labels, derivation, code, detail = _derive(subject, case, options.derive_kwargs)
        del subject  # the coarse masks: free them before writing
        timing["derive"] = time.perf_counter() - tick
        record["derivation"] = derivation
        root = (derivation or {}).get("root") or {}
        record["root_end_mm"] = root.get("end_distance_mm", (derivation or {}).get("root_end_mm"))
        if labels is not None and code is None:
            labels = np.asarray(labels)
            if labels.dtype != np.uint8:
                labels = labels.astype(np.uint8)
            if tuple(labels.shape) != tuple(geometry.shape):
                raise InputError(f"case {case}: derived labels have shape {labels.shape}, the CT {geometry.shape}")
            counts = np.bincount(labels.ravel(), minlength=len(LABELS))
            record["voxels"] = {name: int(counts[LABELS[name]]) for name in FOREGROUND}
            if options.require_iliacs and not (record["voxels"]["iliac_artery_left"] and record["voxels"]["iliac_artery_right"]):
                code, detail = "no_iliacs", "an iliac artery is empty and --require-iliacs is set"
        if code is not None:
            record.update(reason=code, detail=detail)
        else:
            tick = time.perf_counter()
            image, label = _image_path(folder, case, False), _label_path(folder, case, False)
            _copy_image(Path(ct_path), image, case)
            write_array(labels, geometry, label)
            timing["write"] = time.perf_counter() - tick
            record.update(kept=True, status="kept", outputs={"image": image.stat().st_size, "label": label.stat().st_size})
        if qc and derivation:
            record["qc"] = _write_case_qc(folder, case, ct_path, geometry, labels, derivation)
    except InputError as exc:
        missing_mask = type(exc).__name__ == "MissingMaskError"  # label_derivation.subject's
        record.update(reason="missing_mask" if missing_mask else classify_input_error(str(exc)), detail=str(exc))
    except Exception as exc:  # a bug or resource problem: excluded now, retried by the next run
        record.update(status="failed", reason="error", detail=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
    if not record["kept"]:
        for path in _outputs(folder, case):  # e.g. an image written before the label failed
            path.unlink(missing_ok=True)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["timing"] = {k: round(v, 3) for k, v in timing.items()}
    write_json(record, _record_path(folder, case))
    return record


def _write_case_qc(folder: Path, case: str, ct_path, geometry, labels, derivation: dict) -> str:
    """Per-case QC figure (label-derivation QC module); a QC failure is noted, never fatal."""
    try:
        from nnunet_tavr.io import read_array
        from nnunet_tavr.label_derivation.labelmap import DerivationResult
        from nnunet_tavr.label_derivation.qc import plot_case

        ct = None
        try:
            ct, _ = read_array(ct_path, case)
        except InputError:
            pass  # show the labels alone
        path = folder / "qc" / f"{case}.png"
        plot_case(path, geometry.spacing, labels, DerivationResult.from_dict(derivation), ct=ct)
        return str(path.relative_to(folder))
    except Exception as exc:
        return f"qc failed: {type(exc).__name__}: {exc}"


def finished_record(folder: Path, source: CaseSource, accept_failed: bool = False) -> dict | None:
    """The record of a case that needs no work, or ``None`` (missing, stale input, broken outputs)."""
    path = _record_path(folder, source.case_id)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("record_version") != RECORD_VERSION or record.get("input") != input_fingerprint(source):
        return None
    if record.get("status") == "failed" and not accept_failed:
        return None
    if record.get("kept"):
        sizes = record.get("outputs", {})
        for kind, locate in (("image", _image_path), ("label", _label_path)):
            found = [p for p in (locate(folder, source.case_id, False), locate(folder, source.case_id, True)) if p.is_file()]
            if len(found) != 1 or found[0].stat().st_size != sizes.get(kind):
                return None
    return record


# ----------------------------------------------------------------------------------------------
# all cases


@dataclass
class ConversionSummary:
    """What a run did. ``records`` holds one record per case of the run (all cases after a merge)."""

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
            lines.append(f"  split: {c['train']} train / {c['val']} val / {c['test']} test (seed {self.splits['seed']}); "
                         f"splits_final.json: folds 0-{len(self.splits['nnunet_folds']) - 2} CV, fold {len(self.splits['nnunet_folds']) - 1} = paper split")
        elif not self.finalized:
            lines.append("  shard done: run once more without --shard (or with --merge) to write dataset.json and the splits")
        failed = [r for r in self.records if r.get("status") == "failed"]
        for r in failed[:3]:
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
        TotalSegmentator dataset folder or a folder of case folders (see
        :mod:`nnunet_tavr.dataset_conversion.layouts`).
    options : ConversionOptions
        Dataset id and name, ``require_iliacs``, split seed, derivation parameters.
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

    t0 = time.perf_counter()
    if shard is not None and overwrite:
        raise ConversionRefused("--overwrite with --shard would let shards delete each other's work; remove the dataset folder once before starting the shards")
    source_root = Path(source_root)
    layout, cases = discover_cases(source_root)
    if not cases:
        raise ConversionRefused(f"no cases found in {source_root} (expected sXXXX/ct.nii.gz folders or CASE/ct.nii.gz + segmentations)")
    config = _config(options, source_root, layout)
    folder = prepare_dataset_folder(nnunet_raw_root(raw), options, config, overwrite)

    todo, done = [], []
    for source in shard_of(cases, shard):
        record = finished_record(folder, source, accept_failed=merge_only)
        (done if record is not None else todo).append(record or source)
    if merge_only and todo:
        names = ", ".join(s.case_id for s in todo[:10]) + (", ..." if len(todo) > 10 else "")
        raise ConversionRefused(f"--merge: {len(todo)} case(s) are not converted yet ({names}); run the missing shards (or run without --merge)")

    converted: list[dict] = []
    if todo:
        jobs = [(source, folder, options, qc) for source in todo]
        bar = tqdm(total=len(jobs), desc=f"convert {options.folder_name}", unit="case", disable=not progress, initial=0)
        bar.set_postfix_str(f"{len(done)} already done")
        if num_processes <= 1:
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
        summary.splits = finalize(folder, [s.case_id for s in cases], options)
        summary.finalized = True
    summary.seconds = time.perf_counter() - t0
    return summary


# ----------------------------------------------------------------------------------------------
# finalize: test cases, dataset.json, splits, manifest, figures


def finalize(folder: Path, case_ids: list[str], options: ConversionOptions) -> dict:
    """Place kept cases in ``imagesTr``/``imagesTs`` by the split and write the dataset files.

    Idempotent: a rerun moves nothing and rewrites identical files.
    """
    records = []
    missing = []
    for case in sorted(case_ids):
        try:
            records.append(json.loads(_record_path(folder, case).read_text()))
        except (OSError, ValueError):
            missing.append(case)
    if missing:
        raise ConversionRefused(f"cannot finalize {folder}: no record for {len(missing)} case(s) ({', '.join(missing[:10])})")
    kept = [r["case"] for r in records if r["kept"]]
    if len(kept) < 2:
        _write_manifest(folder, records, {})
        raise ConversionRefused(f"only {len(kept)} case(s) kept in {folder}: too few for a dataset (see manifest.csv)")
    previous_test = _previous_test_set(folder)
    splits = write_splits(folder, kept, options.seed)
    if previous_test is not None and previous_test != set(splits["test"]):
        # The split depends on the set of kept cases: a case that is now kept (fixed input, a new
        # subject) reshuffles it. Models trained on the old split have seen today's test cases.
        print(f"warning: the test set of {folder.name} changed ({len(previous_test ^ set(splits['test']))} case(s) moved) "
              "because the set of kept cases changed; retrain models made with the previous split", file=sys.stderr)
    test = set(splits["test"])
    split_of = {c: k for k in ("train", "val", "test") for c in splits[k]}

    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in kept:
        for locate in (_image_path, _label_path):
            target, other = locate(folder, case, case in test), locate(folder, case, case not in test)
            if other.is_file():
                os.replace(other, target)  # atomic within one file system
            if not target.is_file():
                raise ConversionRefused(f"case {case}: {target} is missing; rerun the conversion to redo the case")
    expected = {p for case in kept for p in (_image_path(folder, case, case in test), _label_path(folder, case, case in test))}
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for path in (folder / sub).iterdir():
            if path not in expected:  # dropped cases, cases no longer in the input, temp files
                path.unlink()

    _write_dataset_json(folder, options, num_training=len(kept) - len(test), num_test=len(test))
    _write_manifest(folder, records, split_of)
    _write_area_curve(folder, records)
    return splits


def _previous_test_set(folder: Path) -> set[str] | None:
    try:
        return set(json.loads((folder / "tavr_splits.json").read_text())["test"])
    except (OSError, ValueError, KeyError):
        return None


def _write_dataset_json(folder: Path, options: ConversionOptions, num_training: int, num_test: int) -> None:
    """nnU-Net's ``generate_dataset_json`` into a scratch folder, then renamed into place (atomic)."""
    import tempfile

    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    scratch = folder / "conversion"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        generate_dataset_json(
            tmp,
            channel_names={0: "CT"},
            labels=dict(LABELS),
            num_training_cases=num_training,
            file_ending=FILE_ENDING,
            dataset_name=options.folder_name,
            description="TAVR anatomy (aorta, left ventricle, aortic root, valve, annulus, iliac arteries) "
            "derived from TotalSegmentator masks by nnunet-tavr (rule-based valve/annulus/aortic-root pseudo-labels)",
            reference="Semantic Segmentation for Preoperative Planning in Transcatheter Aortic Valve Replacement",
            license="see the source dataset (TotalSegmentator: CC BY 4.0)",
            converted_by="nnunet-tavr convert",
            numTest=num_test,
        )
        os.replace(Path(tmp) / "dataset.json", folder / "dataset.json")


def _write_manifest(folder: Path, records: list[dict], split_of: dict[str, str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in records:
        voxels = r.get("voxels") or {}
        writer.writerow(
            [r["case"], int(bool(r["kept"])), split_of.get(r["case"], ""), r.get("reason", ""), r.get("detail", "")]
            + [voxels.get(name, "") for name in FOREGROUND]
            + ["" if r.get("root_end_mm") is None else r["root_end_mm"], r.get("seconds", ""), r.get("source", "")]
        )
    write_text(buffer.getvalue(), folder / "manifest.csv")


def _write_area_curve(folder: Path, records: list[dict]) -> None:
    """Dataset-level aortic cross-section area curve of the kept cases (paper Fig. 1)."""
    derivations = [r["derivation"] for r in records if r["kept"] and r.get("derivation")]
    if not derivations:
        return
    try:
        from nnunet_tavr.label_derivation.labelmap import DerivationResult
        from nnunet_tavr.label_derivation.qc import plot_dataset_curves

        results = [DerivationResult.from_dict(d) for d in derivations]
        plot_dataset_curves(folder / "qc" / "area_curve.png", results, title=f"{folder.name}: {len(results)} kept cases")
    except Exception as exc:  # a figure must not fail the dataset
        print(f"warning: dataset area curve not written: {type(exc).__name__}: {exc}", file=sys.stderr)


def read_manifest(folder: str | os.PathLike):
    """The manifest as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(Path(folder) / "manifest.csv", keep_default_na=False)


def install_dataset_splits(options_or_id, preprocessed: str | os.PathLike | None = None, raw: str | os.PathLike | None = None):
    """Copy ``splits_final.json`` of ``$nnUNet_raw/DatasetXXX_Name`` into ``$nnUNet_preprocessed/DatasetXXX_Name``."""
    from nnunet_tavr.dataset_conversion.splits import install_splits

    raw_root = nnunet_raw_root(raw)
    if isinstance(options_or_id, ConversionOptions):
        name = options_or_id.folder_name
    else:
        matches = sorted(p.name for p in raw_root.glob(f"Dataset{int(options_or_id):03d}_*") if p.is_dir())
        if len(matches) != 1:
            raise ConversionRefused(f"expected one Dataset{int(options_or_id):03d}_* in {raw_root}, found {matches or 'none'}")
        name = matches[0]
    return install_splits(raw_root / name, nnunet_preprocessed_root(preprocessed) / name)
