"""The TAVR cases ``nnunet-tavr fluoro`` renders: where their CT and label map come from.

Three inputs are recognised:

**An nnU-Net raw dataset with TAVR labels** (``dataset.json`` + ``imagesTr``, e.g. the output of
``nnunet-tavr convert -d 301``): every case of ``imagesTr`` and ``imagesTs`` with its label map
from ``labelsTr`` / ``labelsTs``; label values by name from ``dataset.json``; the patient is the
manifest's ``group`` where ``manifest.csv`` has one, else the case id.

**A folder of case folders** (the TotalSegmentator dataset layout, phantoms, your CTs with
TotalSegmentator masks; see :mod:`nnunet_tavr.dataset_conversion.layouts`): the CT of each case
folder and its TAVR labels, either ``LABELS/<case>.nii.gz`` (``--labels``: e.g. the output folder
of ``nnunet-tavr derive --batch``) or derived on the fly from the case's masks by the per-case
derivation (:mod:`nnunet_tavr.label_derivation.case`). The patient is the case id.

**One case folder** (a CT with its masks): that case alone.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_tavr import totalseg
from nnunet_tavr.errors import Excluded, GridMismatch, InputError, MissingFile
from nnunet_tavr.labels import LABELS

#: Label names the renderer needs (the others it uses when present).
REQUIRED = ("annulus", "aortic_root")


@dataclass(frozen=True)
class FluoroCase:
    """One case to render. ``labels_path`` ``None``: derive the labels from ``folder``."""

    case: str
    patient: str
    ct_path: Path | None
    labels_path: Path | None = None
    folder: Path | None = None
    label_values: dict = field(default_factory=lambda: dict(LABELS))
    problem: InputError | None = None

    def inputs(self) -> list[Path]:
        """The files whose change makes a rendered case stale."""
        files = [p for p in (self.ct_path, self.labels_path) if p is not None]
        if self.labels_path is None and self.folder is not None and self.folder.is_dir():
            files += sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return sorted(set(files))


def _label_values(labels: dict, where) -> dict[str, int]:
    values = {str(k): int(v) for k, v in labels.items() if not isinstance(v, (list, tuple))}
    missing = [n for n in REQUIRED if n not in values]
    if missing:
        raise InputError(f"{where}: labels {', '.join(missing)} missing ({', '.join(values)}): not a TAVR label map "
                         "(convert with 'nnunet-tavr convert' or derive with 'nnunet-tavr derive')")
    return values


def _groups(folder: Path) -> dict[str, str]:
    path = folder / "manifest.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["case"]: row["group"] for row in csv.DictReader(f) if row.get("group")}


def nnunet_cases(folder: Path) -> list[FluoroCase]:
    """Cases of an nnU-Net raw dataset (training and test side)."""
    meta_path = folder / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
        ending = str(meta["file_ending"])
        values = _label_values(meta["labels"], meta_path)
    except (ValueError, KeyError) as exc:
        raise InputError(f"{meta_path}: cannot read labels and file_ending: {exc}") from None
    groups = _groups(folder)
    cases = []
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        for image in sorted((folder / images).glob(f"*_0000{ending}")):
            case = image.name[: -len(f"_0000{ending}")]
            label = folder / labels / f"{case}{ending}"
            problem = None if label.is_file() else MissingFile(f"case {case}: label map {label} not found")
            cases.append(FluoroCase(case, groups.get(case, case), image, label, None, values, problem))
    if not cases:
        raise InputError(f"{folder}: no images (*_0000{ending}) in imagesTr or imagesTs")
    return cases


def folder_cases(root: Path, labels_dir: Path | None = None) -> list[FluoroCase]:
    """Cases of a folder of case folders (or of one case folder)."""
    from nnunet_tavr.dataset_conversion.layouts import discover_cases

    if totalseg.find_image(root, totalseg.CT_STEM) is not None:
        sources = [(root.name, root, None)]
    else:
        _, found = discover_cases(root)
        sources = [(s.case_id, s.path, s.problem) for s in found]
    cases = []
    for case, path, problem in sources:
        ct = totalseg.find_image(path, totalseg.CT_STEM) if problem is None else None
        if problem is None and ct is None:
            problem = MissingFile(f"case {case}: no CT in {path} (ct{', ct'.join(totalseg.IMAGE_ENDINGS)})")
        labels = None
        if labels_dir is not None and problem is None:
            labels = totalseg.find_image(labels_dir, case)
            if labels is None:
                problem = MissingFile(f"case {case}: no label map {labels_dir / case}.nii.gz (--labels)")
        cases.append(FluoroCase(case, case, ct, labels, path, dict(LABELS), problem))
    if not cases:
        raise InputError(f"no case folders (CT + segmentations/) in {root}")
    return cases


def discover(root, labels_dir=None) -> tuple[str, list[FluoroCase]]:
    """``(layout, cases)`` of an input folder: ``"nnunet"`` or ``"cases"`` (module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise MissingFile(f"input folder not found: {root}")
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        if labels_dir is not None:
            raise InputError(f"{root} is an nnU-Net dataset with its own labels: --labels is for folders of cases")
        return "nnunet", nnunet_cases(root)
    return "cases", folder_cases(root, None if labels_dir is None else Path(labels_dir))


def load(case: FluoroCase, derivation=None):
    """``(ct, labelmap, geometry, label_values)`` of a case; derives the labels when it has none.

    Raises
    ------
    InputError
        Unreadable or missing files, CT and labels on different grids.
    Excluded
        The derivation's rules do not apply to the case (its reason code).
    """
    from nnunet_tavr.io import read_array

    if case.problem is not None:
        raise case.problem
    if case.labels_path is None:
        from nnunet_tavr.label_derivation.case import DerivationParams, derive_case, load_tavr_subject

        subject = load_tavr_subject(case.folder, case=case.case, multilabel=totalseg.multilabel_files(case.folder))
        derivation = derive_case(subject, derivation or DerivationParams(), cite_files=False)
        if not derivation.ok:
            raise Excluded(derivation.result.excluded_code, derivation.result.excluded_reason)
        ct, geometry = read_array(case.ct_path, case.case)
        if geometry.mismatch(subject.geometry):
            raise GridMismatch(f"case {case.case}: {case.ct_path} is not on the grid of its masks: {geometry.mismatch(subject.geometry)}")
        return ct, derivation.labels, geometry, dict(LABELS)
    ct, geometry = read_array(case.ct_path, case.case)
    labels, label_geometry = read_array(case.labels_path, case.case)
    problem = geometry.mismatch(label_geometry)
    if problem:
        raise GridMismatch(f"case {case.case}: {case.labels_path} is not on the grid of {case.ct_path}: {problem}")
    if len(geometry.shape) != 3:
        raise InputError(f"case {case.case}: {case.ct_path} is not a 3-D CT (shape {geometry.shape})")
    if not np.issubdtype(labels.dtype, np.integer):
        labels = np.rint(labels).astype(np.int16)
    return ct, labels, geometry, dict(case.label_values)
