"""Finish a converted dataset: test cases in ``imagesTs``, ``dataset.json``, splits, manifest, figures.

Runs after every case has its record (one run, or the last shard with ``--merge``) and is
idempotent: a rerun moves nothing and rewrites identical files.

Written into the dataset folder::

    dataset.json          nnU-Net's (channels, the scheme's labels, numTraining, file ending)
    splits_final.json     nnU-Net 5-fold CV over train+val (grouped by patient), then the paper's split
    tavr_splits.json      how the split was made (seed, proportions, sets, groups)
    manifest.csv          every nnU-Net case kept and every input case dropped, with the reason
    qc/...                the scheme's dataset-level figures
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

from nnunet_tavr.dataset_conversion import outputs
from nnunet_tavr.dataset_conversion.splits import write_splits
from nnunet_tavr.errors import InvalidCaseId, Refused
from nnunet_tavr.folders import NnunetFolders
from nnunet_tavr.io import write_text

#: Manifest columns before the voxel counts, and after the scheme's own columns.
LEADING_COLUMNS = ("case", "kept", "split", "reason", "detail")
TRAILING_COLUMNS = ("seconds", "source")


def _records(folder: Path, cases) -> list[dict]:
    from nnunet_tavr.dataset_conversion.convert import invalid_case_record

    records, missing = [], []
    for source in sorted(cases, key=lambda c: c.case_id):
        if isinstance(source.problem, InvalidCaseId):
            records.append(invalid_case_record(source, source.problem))
            continue
        record = outputs.read_record(folder, source.case_id)
        if record is None:
            missing.append(source.case_id)
        else:
            records.append(record)
    if missing:
        raise Refused(f"cannot finalize {folder}: no record for {len(missing)} case(s) ({', '.join(missing[:10])})")
    return records


def finalize(folder: Path, cases, options) -> dict:
    """Place kept cases in ``imagesTr``/``imagesTs`` by the split and write the dataset files.

    ``cases`` are the :class:`~nnunet_tavr.dataset_conversion.layouts.CaseSource` of the input.
    Returns the split record (see :func:`~nnunet_tavr.dataset_conversion.splits.write_splits`).
    """
    scheme, ending = options.scheme, options.scheme.file_ending
    records = _records(folder, cases)
    kept = {o["case"]: o.get("group") or o["case"] for r in records if r["kept"] for o in r["outputs"]}
    if len(kept) < 2:
        write_manifest(folder, records, {}, scheme)
        raise Refused(f"only {len(kept)} case(s) kept in {folder}: too few for a dataset (see manifest.csv)")
    groups = kept if any(case != group for case, group in kept.items()) else None
    previous_test = _previous_test_set(folder)
    splits = write_splits(folder, sorted(kept), options.seed, groups=groups)
    if previous_test is not None and previous_test != set(splits["test"]):
        # The split depends on the set of kept cases: a case that is now kept (fixed input, a new
        # subject) reshuffles it. Models trained on the old split have seen today's test cases.
        print(f"warning: the test set of {folder.name} changed ({len(previous_test ^ set(splits['test']))} case(s) moved) "
              "because the set of kept cases changed; retrain models made with the previous split", file=sys.stderr)
    test = set(splits["test"])
    split_of = {c: k for k in ("train", "val", "test") for c in splits[k]}
    _place(folder, sorted(kept), test, ending)
    write_dataset_json(folder, options, num_training=len(kept) - len(test), num_test=len(test))
    write_manifest(folder, records, split_of, scheme)
    scheme.dataset_files(folder, [r for r in records if r["kept"]], split_of)
    try:  # a figure must not fail the dataset
        scheme.dataset_figures(folder, [r for r in records if r["kept"]])
    except Exception as exc:
        print(f"warning: dataset figures not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    return splits


def _place(folder: Path, kept: list[str], test: set[str], ending: str) -> None:
    """Move every kept case to the side (Tr / Ts) the split gives it; delete what is not a kept case."""
    for sub in outputs.SUBFOLDERS:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for case in kept:
        for locate in (outputs.image_path, outputs.label_path):
            target, other = locate(folder, case, case in test, ending), locate(folder, case, case not in test, ending)
            if other.is_file():
                os.replace(other, target)  # atomic within one file system
            if not target.is_file():
                raise Refused(f"case {case}: {target} is missing; rerun the conversion to redo the case")
    expected = {p for case in kept for p in (outputs.image_path(folder, case, case in test, ending), outputs.label_path(folder, case, case in test, ending))}
    for sub in outputs.SUBFOLDERS:
        for path in (folder / sub).iterdir():
            if path not in expected:  # dropped cases, cases no longer in the input, temporary files
                path.unlink()


def _previous_test_set(folder: Path) -> set[str] | None:
    try:
        return set(json.loads((folder / "tavr_splits.json").read_text())["test"])
    except (OSError, ValueError, KeyError):
        return None


def write_dataset_json(folder: Path, options, num_training: int, num_test: int) -> None:
    """nnU-Net's ``generate_dataset_json`` into a scratch folder, then renamed into place (atomic)."""
    import tempfile

    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    scheme = options.scheme
    scratch = folder / "conversion"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        generate_dataset_json(
            tmp,
            channel_names=dict(scheme.channel_names),
            labels=scheme.labels(),
            num_training_cases=num_training,
            file_ending=scheme.file_ending,
            dataset_name=options.folder_name,
            description=scheme.description,
            reference=scheme.reference,
            license=scheme.license,
            converted_by="nnunet-tavr convert",
            numTest=num_test,
        )
        os.replace(Path(tmp) / "dataset.json", folder / "dataset.json")


def manifest_columns(scheme) -> list[str]:
    grouped = ["group"] if scheme.grouped else []
    return [*LEADING_COLUMNS, *grouped, *(f"voxels_{name}" for name in scheme.foreground), *scheme.manifest_columns, *TRAILING_COLUMNS]


def manifest_rows(records: list[dict], split_of: dict[str, str], scheme) -> list[dict]:
    """One row per kept nnU-Net case and per dropped input case."""
    rows = []
    for r in records:
        entries = r["outputs"] if r["kept"] else [{"case": r["case"], "group": r["case"], "voxels": {}, "columns": r.get("columns", {})}]
        for o in entries:
            row = {"case": o["case"], "kept": int(bool(r["kept"])), "split": split_of.get(o["case"], ""),
                   "reason": r.get("reason", ""), "detail": r.get("detail", ""), "group": o.get("group", "")}
            row.update({f"voxels_{name}": o["voxels"].get(name, "") for name in scheme.foreground})
            row.update({c: "" if o["columns"].get(c) is None else o["columns"][c] for c in scheme.manifest_columns})
            row.update(seconds=r.get("seconds", ""), source=r.get("source", ""))
            rows.append(row)
    return rows


def write_manifest(folder: Path, records: list[dict], split_of: dict[str, str], scheme) -> None:
    columns = manifest_columns(scheme)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(manifest_rows(records, split_of, scheme))
    write_text(buffer.getvalue(), folder / "manifest.csv")


def read_manifest(folder: str | os.PathLike):
    """The manifest as a pandas DataFrame."""
    import pandas as pd

    return pd.read_csv(Path(folder) / "manifest.csv", keep_default_na=False)


def install_dataset_splits(dataset, preprocessed=None, raw=None) -> tuple[Path, bool]:
    """Copy ``splits_final.json`` of ``$nnUNet_raw/DatasetXXX_Name`` into ``$nnUNet_preprocessed``.

    ``dataset`` is a :class:`~nnunet_tavr.dataset_conversion.convert.ConversionOptions`, an id or
    a ``DatasetXXX_Name``.
    """
    from nnunet_tavr.dataset_conversion.splits import install_splits

    folders = NnunetFolders.resolve(raw=raw, preprocessed=preprocessed)
    name = getattr(dataset, "folder_name", None) or folders.find_dataset(dataset)
    return install_splits(folders.raw_dataset(name), folders.preprocessed_dataset(name))
