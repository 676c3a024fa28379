"""Find the cases of an input folder.

Two layouts are recognised:

**TotalSegmentator dataset** (``meta.csv`` present, ``;``- or ``,``-separated with an ``image_id``
column)::

    ROOT/meta.csv
    ROOT/s0000/ct.nii.gz
    ROOT/s0000/segmentations/aorta.nii.gz ...

Every id listed in ``meta.csv`` is a case, even when its folder is missing (the case is then dropped
with that reason, so the manifest accounts for every listed CT); subject folders that ``meta.csv``
does not list are cases too.

**Generic** (your own CTs, no ``meta.csv``): each sub-folder holding a CT (``ct`` with any ending of
:data:`nnunet_tavr.totalseg.IMAGE_ENDINGS`) or TotalSegmentator output is a case named after the folder. Masks are a
``segmentations/`` folder of per-structure files (``TotalSegmentator -o``; add the left ventricle
with ``-ta heartchambers_highres -o`` into the same folder) and/or multilabel files (``--ml``) named
after their TotalSegmentator task, ``total.nii.gz`` (v2), ``total_v1.nii.gz`` or
``heartchambers_highres.nii.gz``::

    ROOT/patient_a/ct.nii.gz
    ROOT/patient_a/segmentations/aorta.nii.gz, heart_ventricle_left.nii.gz, iliac_artery_*.nii.gz
    ROOT/patient_b/ct.nii.gz
    ROOT/patient_b/total.nii.gz                   (TotalSegmentator --ml, v2 task "total")
    ROOT/patient_b/heartchambers_highres.nii.gz   (TotalSegmentator --ml -ta heartchambers_highres)

What is inside a case folder (v1/v2 mask names, multilabel files) is read by
:func:`nnunet_tavr.subject.load_subject` through the dataset scheme; this module only lists folders.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from nnunet_tavr import totalseg
from nnunet_tavr.errors import InputError, InvalidCaseId, MissingFile


@dataclass(frozen=True)
class CaseSource:
    """One input case.

    Attributes
    ----------
    case_id : str
        The nnU-Net case identifier (the TotalSegmentator subject id or the folder name).
    path : Path
        The case folder.
    problem : InputError or None
        Why the case cannot be converted before reading anything (e.g. listed in ``meta.csv`` but
        its folder is missing, or an id that cannot name a file); ``None`` when nothing is known to
        be wrong. Its ``code`` is the manifest's reason.
    """

    case_id: str
    path: Path
    problem: InputError | None = None


def read_meta_ids(meta_csv: str | os.PathLike) -> list[str]:
    """Subject ids of a TotalSegmentator ``meta.csv`` (column ``image_id``; ``;`` or ``,`` separated)."""
    meta_csv = Path(meta_csv)
    text = meta_csv.read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    delimiter = ";" if lines[0].count(";") >= lines[0].count(",") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    if "image_id" not in header:
        raise InputError(f"{meta_csv}: no 'image_id' column (found {header}); is this TotalSegmentator's meta.csv?")
    column = header.index("image_id")
    return [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]


def _looks_like_case(folder: Path) -> bool:
    return (totalseg.find_image(folder, totalseg.CT_STEM) is not None or (folder / totalseg.SEGMENTATIONS_DIR).is_dir()
            or bool(totalseg.multilabel_files(folder)))


def discover_cases(root: str | os.PathLike) -> tuple[str, list[CaseSource]]:
    """List the cases under ``root``, sorted by case id.

    Returns
    -------
    layout : str
        ``"totalsegmentator"`` (a ``meta.csv`` is present) or ``"generic"``.
    cases : list of CaseSource
        Duplicates and invalid identifiers are kept and carry a ``problem``.
    """
    from nnunet_tavr.dataset_conversion.outputs import check_case_id

    root = Path(root)
    if not root.is_dir():
        raise MissingFile(f"input folder not found: {root}")
    folders = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _looks_like_case(p)}
    meta = root / totalseg.META_CSV
    if meta.is_file():
        layout = "totalsegmentator"
        listed = read_meta_ids(meta)
        ids = list(dict.fromkeys(listed)) + sorted(set(folders) - set(listed))
    else:
        layout = "generic"
        ids = sorted(folders)
    cases = []
    for case_id in sorted(ids):
        path = root / case_id
        problem = None
        try:
            check_case_id(case_id)
        except InvalidCaseId as exc:
            problem = exc
            path = root  # never a path built from the id: it may point anywhere
        else:
            if case_id not in folders:
                problem = MissingFile(f"case {case_id}: listed in {meta} but {path} is missing or holds no CT / segmentations")
        cases.append(CaseSource(case_id, path, problem))
    return layout, cases


def shard_of(cases: list[CaseSource], shard: tuple[int, int] | None) -> list[CaseSource]:
    """The cases of shard ``i`` of ``n`` (0 <= i < n): every n-th case of the sorted list, from the i-th.

    Round-robin keeps shards balanced and depends only on the sorted case ids.
    """
    if shard is None:
        return list(cases)
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    ordered = sorted(cases, key=lambda c: c.case_id)
    return ordered[i::n]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based ``i``), e.g. ``$SLURM_ARRAY_TASK_ID/8``."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n
