"""Per-case volumes (ml), LV mass (g) and Dice of cardiac segmentations, and where they are read from.

A **segmentation folder** is either

- a folder of label maps, one per case (``CASE.nii.gz`` or any image ending; nnU-Net's
  ``labelsTs`` or a ``nnUNetv2_predict`` output folder), whose classes come from a
  ``dataset.json`` (its ``labels`` block) or a ``{"name": value}`` JSON file; or
- a folder of TotalSegmentator cases (``CASE/segmentations/*.nii.gz``, multilabel files), turned
  into the ``heart`` scheme's label map with its mapping
  (:mod:`nnunet_tavr.dataset_conversion.schemes.heart`).

Volumes are voxel counts times the voxel volume (``prod(spacing)`` mm^3, 1 ml = 1000 mm^3);
LV mass is the volume of the myocardium class times the density (g/ml).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nnunet_tavr.errors import GridMismatch, InputError, MissingFile
from nnunet_tavr.totalseg import IMAGE_ENDINGS, image_stem, list_images


@dataclass(frozen=True)
class CaseLabels:
    """One case's label map (int (z, y, x)), its grid and the file(s) it came from."""

    case: str
    labels: np.ndarray
    geometry: object
    source: str


@dataclass
class SegmentationFolder:
    """The cases of one segmentation folder: case id -> a function reading its :class:`CaseLabels`."""

    folder: Path
    layout: str  #: "label maps" or "totalsegmentator"
    cases: dict[str, Callable[[], CaseLabels]]
    classes: dict[str, int] | None = None  #: fixed by the layout (TotalSegmentator cases), else None


def read_classes(path: str | os.PathLike) -> dict[str, int]:
    """Foreground classes (name -> value) of a ``dataset.json`` or a ``{name: value}`` JSON file."""
    from nnunet_tavr.io import read_json

    raw = read_json(path, "the labels file")
    labels = raw.get("labels", raw) if isinstance(raw, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{path}: expected nnU-Net's dataset.json or an object {{class name: value}}")
    classes = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise InputError(f"{path}: class {name!r} is a region {value}; give the plain label values of the classes")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{path}: class {name!r} has value {value!r}, not a label value")
        if value > 0 and name != "ignore":
            classes[str(name)] = value
    if not classes:
        raise InputError(f"{path}: no foreground class")
    return classes


def find_classes(*folders: Path | None) -> tuple[dict[str, int] | None, Path | None]:
    """The classes of the first ``dataset.json`` in the folders or their parents (nnU-Net keeps it
    beside ``labelsTs`` and copies it into prediction folders)."""
    for folder in folders:
        if folder is None:
            continue
        for candidate in (folder / "dataset.json", folder.parent / "dataset.json"):
            if candidate.is_file():
                return read_classes(candidate), candidate
    return None, None


def open_folder(folder: str | os.PathLike) -> SegmentationFolder:
    """The cases of a segmentation folder (see the module docstring).

    Raises
    ------
    MissingFile
        The folder does not exist or holds neither label maps nor TotalSegmentator cases.
    """
    from nnunet_tavr.io import read_array

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFile(f"segmentation folder not found: {folder}")
    files = list_images(folder)
    if files:
        cases = {}
        for path in files:
            case = image_stem(path)
            cases[case] = (lambda p=path, c=case: CaseLabels(c, *read_array(p, c), str(p)))
        return SegmentationFolder(folder, "label maps", cases)
    from nnunet_tavr.dataset_conversion.layouts import discover_cases
    from nnunet_tavr.dataset_conversion.schemes.heart import HeartScheme

    _, sources = discover_cases(folder)
    sources = [s for s in sources if s.problem is None]
    if not sources:
        raise MissingFile(f"{folder} holds no label maps ({', '.join(IMAGE_ENDINGS)}) and no TotalSegmentator case folders")
    scheme = HeartScheme()
    cases = {s.case_id: (lambda s=s: _totalseg_case(scheme, s)) for s in sources}
    return SegmentationFolder(folder, "totalsegmentator", cases, classes={k: v for k, v in scheme.labels().items() if v})


def _totalseg_case(scheme, source) -> CaseLabels:
    """A TotalSegmentator case as the heart scheme's label map (its exclusions become errors)."""
    from nnunet_tavr.dataset_conversion.schemes.heart import paint_labels
    from nnunet_tavr.errors import MissingMask
    from nnunet_tavr.subject import load_subject
    from nnunet_tavr.totalseg import multilabel_files

    sources = scheme.sources()
    subject = load_subject(source.path, structures={m: m for masks in sources.values() for m in masks},
                           case=source.case_id, multilabel=multilabel_files(source.path))
    if subject.looked_for:
        missing = sorted(subject.looked_for)
        raise MissingMask(f"case {source.case_id}: no {', '.join(missing)} ({subject.looked_for[missing[0]]})")
    classes = {name: np.logical_or.reduce([subject.masks[m] for m in masks]) for name, masks in sources.items()}
    labels, _ = paint_labels(classes, scheme.labels())
    return CaseLabels(source.case_id, labels, subject.geometry, str(source.path))


def volumes_ml(labels: np.ndarray, spacing, classes: dict[str, int]) -> dict[str, float]:
    """Volume (ml) of every class of a label map (one ``bincount``)."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=max(classes.values()) + 1)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {name: float(counts[value]) * voxel_ml for name, value in classes.items()}


def lv_mass_g(volumes: dict[str, float], density: float, myocardium: str) -> float | None:
    """LV mass (g) = myocardium volume (ml) x density (g/ml); ``None`` without a myocardium class."""
    return None if myocardium not in volumes else volumes[myocardium] * density


def check_labels(case: CaseLabels, classes: dict[str, int]) -> np.ndarray:
    """The label map as integers; an error naming the case and file for values that are no class."""
    labels = case.labels
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise InputError(f"case {case.case}: {case.source} has non-integer values: not a label map")
        labels = rounded.astype(np.int64)
    present = set(np.unique(labels).tolist()) - {0}
    unknown = sorted(present - set(classes.values()))
    if unknown:
        raise InputError(f"case {case.case}: {case.source} has label values {unknown[:10]} that are not classes "
                         f"({', '.join(f'{k}={v}' for k, v in classes.items())}); give --labels")
    return labels


def evaluate_case(case: str, segmentation: SegmentationFolder, reference: SegmentationFolder | None,
                  classes: dict[str, int], density: float, myocardium: str) -> dict:
    """Volumes (and, with a reference, Dice) of one case.

    Returns
    -------
    dict
        ``case``, ``volumes_ml`` and ``lv_mass_g`` of the segmentation; with a reference also
        ``reference_volumes_ml``, ``reference_lv_mass_g`` and ``dice`` (class -> Dice, NaN when
        the class is in neither).
    """
    from nnunet_tavr.evaluation.metrics import SegClass, case_metrics

    seg = segmentation.cases[case]()
    labels = check_labels(seg, classes)
    spacing = seg.geometry.spacing
    record = {"case": case}
    volumes = volumes_ml(labels, spacing, classes)
    record.update(volumes_ml=volumes, lv_mass_g=lv_mass_g(volumes, density, myocardium))
    if reference is None:
        return record
    ref = reference.cases[case]()
    problem = ref.geometry.mismatch(seg.geometry)
    if problem:
        raise GridMismatch(f"case {case}: {seg.source} is not on the grid of the reference {ref.source}: {problem}")
    ref_labels = check_labels(ref, classes)
    ref_volumes = volumes_ml(ref_labels, spacing, classes)
    metrics = case_metrics(ref_labels, labels, [SegClass(n, (v,)) for n, v in classes.items()], spacing, distances=False)
    record.update(reference_volumes_ml=ref_volumes, reference_lv_mass_g=lv_mass_g(ref_volumes, density, myocardium),
                  dice={m["class"]: float(m["Dice"]) for m in metrics})
    return record
