"""Load the coarse masks of one subject: TotalSegmentator layouts, explicit files, multilabel files.

Recognised layouts
------------------
- TotalSegmentator dataset: ``SUBJECT/ct.nii.gz`` and ``SUBJECT/segmentations/<structure>.nii.gz``.
- TotalSegmentator output folder (``TotalSegmentator -i ct.nii.gz -o SEG``): ``SEG/<structure>.nii.gz``.
- Explicit files per structure (e.g. the user's own predictions), and TotalSegmentator multilabel
  files (``--ml``) of the tasks ``total`` (v2), ``total_v1`` and ``heartchambers_highres``.

TotalSegmentator v1 and v2 name the structures used here identically (``aorta``,
``heart_ventricle_left``, ``iliac_artery_left``, ``iliac_artery_right``); v2's default task no longer
has heart chambers (only ``heart``), so the left ventricle comes from its ``heartchambers_highres``
task. ``.nii.gz``, ``.nii``, ``.nrrd`` and ``.mha`` files are read.

All masks (and the CT, when present) must share one voxel grid; values > 0 are foreground.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_tavr.io import Geometry, InputError, read_array, read_mask

#: Our structure name -> TotalSegmentator file stem (the same in v1 and v2).
MASK_FILES = {
    "aorta": "aorta",
    "left_ventricle": "heart_ventricle_left",
    "iliac_artery_left": "iliac_artery_left",
    "iliac_artery_right": "iliac_artery_right",
}

EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")

#: Label values of our structures in TotalSegmentator multilabel files, per task.
MULTILABEL_TASKS = {
    "total": {"aorta": 52, "iliac_artery_left": 65, "iliac_artery_right": 66},
    "total_v1": {"aorta": 7, "left_ventricle": 46, "iliac_artery_left": 51, "iliac_artery_right": 52},
    "heartchambers_highres": {"aorta": 6, "left_ventricle": 3},
}

REQUIRED = ("aorta", "left_ventricle")

HOW_TO_GET_LV = (
    "TotalSegmentator v2's default task writes only 'heart'; get the left ventricle with its heart-chamber task: "
    "`TotalSegmentator -i ct.nii.gz -o SEG_DIR -ta heartchambers_highres` (free for non-commercial use, needs a "
    "licence key), then pass SEG_DIR/heart_ventricle_left.nii.gz with --left-ventricle"
)


class MissingMaskError(InputError):
    """A required mask file is not there (the message says where it was looked for)."""


@dataclass
class Subject:
    """Coarse masks of one case on one voxel grid."""

    case: str
    masks: dict[str, np.ndarray]
    geometry: Geometry
    mask_paths: dict[str, Path]
    ct_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.geometry.spacing)


def find_mask_file(folder: str | os.PathLike, stem: str) -> Path | None:
    """``folder/stem`` with the first recognised extension that exists, else ``None``."""
    for ext in EXTENSIONS:
        path = Path(folder) / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def read_geometry(path: str | os.PathLike, case: str | None = None) -> Geometry:
    """The voxel grid of an image file, reading only its header."""
    import SimpleITK as sitk

    path = Path(path)
    where = f"case {case}: " if case else ""
    if not path.is_file():
        raise InputError(f"{where}file not found: {path}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{where}cannot read {path}: {first}") from exc
    return Geometry.of(reader)


def _check_grid(geometry: Geometry, reference: Geometry, path, reference_path, case) -> None:
    if len(geometry.shape) != 3:
        raise InputError(f"case {case}: {path} is not a 3-D image (shape {geometry.shape})")
    problem = reference.mismatch(geometry)
    if problem:
        raise InputError(f"case {case}: {path} is not on the grid of {reference_path}: {problem}")


def load_masks(
    paths: dict[str, str | os.PathLike],
    case: str,
    reference: tuple[Geometry, str | os.PathLike] | None = None,
    warn=None,
) -> tuple[dict[str, np.ndarray], Geometry]:
    """Read binary masks by structure name and check they share one grid.

    Parameters
    ----------
    paths : dict
        Structure name -> mask file.
    case : str
        Case identifier for messages.
    reference : (Geometry, path), optional
        The grid every mask must be on (e.g. the CT's) and the file it came from; default: the
        first mask's.
    warn : callable, optional
        Receives warnings (non-binary or empty masks), each naming the file.

    Raises
    ------
    InputError
        Unreadable file, non-3-D image, or a grid (shape, spacing, origin, direction) that differs.
    """
    masks: dict[str, np.ndarray] = {}
    geometry = None if reference is None else reference[0]
    ref_path = None if reference is None else reference[1]
    for name, path in paths.items():
        mask, g = read_mask(path, case, warn=warn)
        if geometry is None:
            if len(g.shape) != 3:
                raise InputError(f"case {case}: {path} is not a 3-D image (shape {g.shape})")
            geometry, ref_path = g, path
        else:
            _check_grid(g, geometry, path, ref_path, case)
        if warn is not None and not mask.any():
            warn(f"case {case}: {path} is empty")
        masks[name] = mask
    if geometry is None:
        raise InputError(f"case {case}: no mask files given")
    return masks, geometry


def load_multilabel(
    path: str | os.PathLike,
    task: str,
    case: str,
    reference: tuple[Geometry, str | os.PathLike] | None = None,
) -> tuple[dict[str, np.ndarray], Geometry]:
    """Split a TotalSegmentator multilabel file (``--ml``) of ``task`` into our structures."""
    if task not in MULTILABEL_TASKS:
        raise InputError(f"case {case}: unknown TotalSegmentator task {task!r} for {path}; known: {sorted(MULTILABEL_TASKS)}")
    array, geometry = read_array(path, case)
    if reference is not None:
        _check_grid(geometry, reference[0], path, reference[1], case)
    elif array.ndim != 3:
        raise InputError(f"case {case}: {path} is not a 3-D image (shape {array.shape})")
    return {name: array == value for name, value in MULTILABEL_TASKS[task].items()}, geometry


def load_subject(
    subject_dir: str | os.PathLike | None = None,
    *,
    case: str | None = None,
    mask_paths: dict[str, str | os.PathLike] | None = None,
    multilabel: list[tuple[str, str | os.PathLike]] | None = None,
    ct_path: str | os.PathLike | None = None,
    required: tuple[str, ...] = REQUIRED,
    warn=None,
) -> Subject:
    """Load the coarse masks of one subject.

    Parameters
    ----------
    subject_dir : path, optional
        A TotalSegmentator dataset subject (``ct.nii.gz`` + ``segmentations/``) or output folder.
    case : str, optional
        Case identifier for messages; default: the folder's name, or the aorta file's stem.
    mask_paths : dict, optional
        Structure name (``aorta``, ``left_ventricle``, ``iliac_artery_left``, ``iliac_artery_right``)
        -> file; overrides what ``subject_dir`` holds.
    multilabel : list of (task, path), optional
        TotalSegmentator multilabel files; explicit ``mask_paths`` take precedence, then earlier
        multilabel files, then the folder.
    ct_path : path, optional
        The CT; default ``subject_dir/ct.nii.gz`` when it exists. Its grid is the reference.
    required : tuple of str
        Structures that must be found.
    warn : callable, optional
        Receives warnings (non-binary or empty masks).

    Raises
    ------
    MissingMaskError
        A required structure has no file (the message lists where it looked; for the left
        ventricle it says how to produce one).
    InputError
        Unreadable files or masks on different grids.
    """
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if warn is not None:
            warn(message)

    mask_paths = {k: Path(v) for k, v in (mask_paths or {}).items()}
    unknown = set(mask_paths) - set(MASK_FILES)
    if unknown:
        raise ValueError(f"unknown structure(s) {sorted(unknown)}; known: {sorted(MASK_FILES)}")
    folder = None
    if subject_dir is not None:
        subject_dir = Path(subject_dir)
        if not subject_dir.is_dir():
            raise InputError(f"case {case or subject_dir.name}: subject folder not found: {subject_dir}")
        folder = subject_dir / "segmentations" if (subject_dir / "segmentations").is_dir() else subject_dir
        if ct_path is None and find_mask_file(subject_dir, "ct") is not None:
            ct_path = find_mask_file(subject_dir, "ct")
    if case is None:
        if subject_dir is not None:
            case = subject_dir.name
        elif "aorta" in mask_paths:
            case = mask_paths["aorta"].name.split(".")[0]
        else:
            case = "case"

    reference = None
    if ct_path is not None:
        ct_path = Path(ct_path)
        reference = (read_geometry(ct_path, case), ct_path)

    masks: dict[str, np.ndarray] = {}
    paths: dict[str, Path] = {}
    files = dict(mask_paths)
    from_multilabel = {name for task, _ in multilabel or [] for name in MULTILABEL_TASKS.get(task, {})}
    for name, stem in MASK_FILES.items():
        if name not in files and name not in from_multilabel and folder is not None:
            found = find_mask_file(folder, stem)
            if found is not None:
                files[name] = found
    if files:
        loaded, geometry = load_masks(files, case, reference, note)
        masks.update(loaded)
        paths.update(files)
        reference = reference or (geometry, next(iter(files.values())))
    for task, ml_path in multilabel or []:
        loaded, geometry = load_multilabel(ml_path, task, case, reference)
        reference = reference or (geometry, ml_path)
        for name, mask in loaded.items():
            if name not in masks:
                if not mask.any():
                    note(f"case {case}: {ml_path} has no {name} (label {MULTILABEL_TASKS[task][name]})")
                masks[name], paths[name] = mask, Path(ml_path)

    for name in required:
        if name not in masks:
            where = f"{folder}/{MASK_FILES[name]}{{{','.join(EXTENSIONS)}}}" if folder is not None else "the given files"
            message = f"case {case}: no {name} mask (looked for {where})"
            if name == "left_ventricle":
                if folder is not None and find_mask_file(folder, "heart") is not None:
                    message += f"; {find_mask_file(folder, 'heart')} is TotalSegmentator v2's whole heart, not the ventricle"
                message += ". " + HOW_TO_GET_LV
            raise MissingMaskError(message)
    if reference is None:
        raise InputError(f"case {case}: no masks found")
    return Subject(case=case, masks=masks, geometry=reference[0], mask_paths=paths, ct_path=ct_path, warnings=notes)
