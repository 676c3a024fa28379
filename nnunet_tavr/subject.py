"""Load the masks of one case: TotalSegmentator layouts, explicit files, multilabel files.

Every reader of TotalSegmentator output goes through :func:`load_subject`; what a caller needs is
given as ``structures``: its own name -> the TotalSegmentator mask name (:mod:`nnunet_tavr.totalseg`).

Recognised sources, in order of precedence
------------------------------------------
1. explicit files per structure (e.g. the user's own predictions);
2. TotalSegmentator multilabel files (``--ml``) of a named task (``total``, ``total_v1``,
   ``heartchambers_highres``, ``aortic_sinuses``, ...); a file whose label ids do not fit the named
   task is refused (e.g. a v1 ``total`` file given as v2);
3. a folder: a TotalSegmentator dataset subject (``SUBJECT/ct.nii.gz`` and
   ``SUBJECT/segmentations/<mask>.nii.gz``) or an output folder (``SEG/<mask>.nii.gz``).

All masks (and the CT, when present) must share one voxel grid; values > 0 are foreground. A
structure that is not found is *not* an error here: the subject records where it was looked for
(:attr:`Subject.looked_for`), and the rules that need it exclude the case with that explanation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_tavr import totalseg
from nnunet_tavr.errors import GridMismatch, InputError, MissingFile, TaskMismatch
from nnunet_tavr.io import Geometry, as_label_map, read_array, read_geometry, read_mask


@dataclass
class Subject:
    """The masks of one case on one voxel grid.

    ``masks`` are keyed by the caller's structure names; ``mask_paths`` says which file each came
    from; ``looked_for`` says, for each structure that was not found, where it was looked for and
    how to produce it.
    """

    case: str
    masks: dict[str, np.ndarray]
    geometry: Geometry
    mask_paths: dict[str, Path]
    ct_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    looked_for: dict[str, str] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(self.geometry.spacing)

    def read_ct(self) -> np.ndarray | None:
        """The CT in HU (``None`` when the case has none)."""
        return None if self.ct_path is None else read_array(self.ct_path, self.case)[0]


def _check_grid(geometry: Geometry, reference: Geometry, path, reference_path, case) -> None:
    if len(geometry.shape) != 3:
        raise InputError(f"case {case}: {path} is not a 3-D image (shape {geometry.shape})")
    problem = reference.mismatch(geometry)
    if problem:
        raise GridMismatch(f"case {case}: {path} is not on the grid of {reference_path}: {problem}")


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
        raise MissingFile(f"case {case}: no mask files given")
    return masks, geometry


def read_multilabel(
    path: str | os.PathLike,
    task: str,
    case: str,
    reference: tuple[Geometry, str | os.PathLike] | None = None,
) -> tuple[np.ndarray, Geometry]:
    """Read a TotalSegmentator multilabel file of ``task`` and check that its labels fit the task.

    Raises
    ------
    TaskMismatch
        The file holds label ids the task does not have, or structures in an order no scan shows
        (a v1 ``total`` file given as v2, or the reverse); the message names the task it fits.
    """
    try:
        totalseg.task(task)
    except ValueError as exc:
        raise InputError(f"case {case}: {path}: {exc}") from None
    array, geometry = read_array(path, case)
    if reference is not None:
        _check_grid(geometry, reference[0], path, reference[1], case)
    elif array.ndim != 3:
        raise InputError(f"case {case}: {path} is not a 3-D image (shape {array.shape})")
    array = as_label_map(array, f"case {case}: {path}", TaskMismatch)
    values, z_mm = _label_positions(array, geometry)
    problem = totalseg.check_task_fit(values, z_mm, task)
    if problem:
        other = totalseg.suggest_task(values, z_mm, task)
        hint = f"; it fits task {other}: pass {other}={path}" if other else ""
        raise TaskMismatch(f"case {case}: {path} is not a '{task}' multilabel file: {problem}{hint}")
    return array, geometry


def _label_positions(array: np.ndarray, geometry: Geometry) -> tuple[list[int], dict[int, float]]:
    """Label ids present and the superior-inferior position (mm, larger = superior) of each centroid.

    One bincount per slice along the first array axis; the position is only computed when that
    axis is the scanner's z axis (an axial acquisition), else the dictionary is empty.
    """
    flat = np.bincount(array.ravel())
    values = [int(v) for v in np.flatnonzero(flat) if v > 0]
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    if abs(direction[2, 2]) < 0.5 or not values:
        return values, {}
    top = int(flat.size)
    per_slice = np.stack([np.bincount(plane.ravel(), minlength=top) for plane in array])
    z_index = (per_slice * np.arange(array.shape[0])[:, None]).sum(0) / np.maximum(per_slice.sum(0), 1)
    z_mm = np.sign(direction[2, 2]) * z_index * geometry.spacing[0]
    return values, {v: float(z_mm[v]) for v in values}


def _where_looked(folder: Path | None, ts_name: str, multilabel) -> str:
    places = []
    if folder is not None:
        places.append(f"{folder}/{ts_name}{{{','.join(totalseg.IMAGE_ENDINGS)}}}")
    for task, path in multilabel or []:
        places.append(f"{path} (task {task})")
    where = "; ".join(places) or "no files given"
    message = f"looked for {where}; {totalseg.how_to_get(ts_name)}"
    if folder is not None and ts_name in totalseg.HEART_CHAMBERS and totalseg.find_image(folder, "heart"):
        message += f"; {totalseg.find_image(folder, 'heart')} is TotalSegmentator v2's whole heart, not a chamber"
    return message


def load_subject(
    subject_dir: str | os.PathLike | None = None,
    *,
    structures: dict[str, str],
    case: str | None = None,
    mask_paths: dict[str, str | os.PathLike] | None = None,
    multilabel: list[tuple[str, str | os.PathLike]] | None = None,
    ct_path: str | os.PathLike | None = None,
    warn=None,
) -> Subject:
    """Load the masks of one case.

    Parameters
    ----------
    subject_dir : path, optional
        A TotalSegmentator dataset subject (``ct.nii.gz`` + ``segmentations/``) or output folder.
    structures : dict
        The caller's structure name -> TotalSegmentator mask name, e.g.
        ``{"left_ventricle": "heart_ventricle_left"}``.
    case : str, optional
        Case identifier for messages; default: the folder's name, or the first explicit file's stem.
    mask_paths : dict, optional
        Structure name -> file; overrides what ``subject_dir`` holds.
    multilabel : list of (task, path), optional
        TotalSegmentator multilabel files; explicit ``mask_paths`` take precedence, then earlier
        multilabel files, then the folder.
    ct_path : path, optional
        The CT; default ``subject_dir/ct.<ending>`` when it exists. Its grid is the reference.
    warn : callable, optional
        Receives warnings (non-binary or empty masks, structures a multilabel file lacks).

    Raises
    ------
    InputError
        Unreadable files, masks on different grids, a multilabel file of another task, or nothing
        to read at all.
    """
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if warn is not None:
            warn(message)

    mask_paths = {k: Path(v) for k, v in (mask_paths or {}).items()}
    unknown = set(mask_paths) - set(structures)
    if unknown:
        raise ValueError(f"unknown structure(s) {sorted(unknown)}; known: {sorted(structures)}")
    folder = None
    if subject_dir is not None:
        subject_dir = Path(subject_dir)
        if not subject_dir.is_dir():
            raise MissingFile(f"case {case or subject_dir.name}: subject folder not found: {subject_dir}")
        segmentations = subject_dir / totalseg.SEGMENTATIONS_DIR
        folder = segmentations if segmentations.is_dir() else subject_dir
        if ct_path is None:
            ct_path = totalseg.find_image(subject_dir, totalseg.CT_STEM)
    if case is None:
        if subject_dir is not None:
            case = subject_dir.name
        elif mask_paths:
            case = totalseg.image_stem(next(iter(mask_paths.values())))
        else:
            case = "case"

    reference = None
    if ct_path is not None:
        ct_path = Path(ct_path)
        reference = (read_geometry(ct_path, case), ct_path)

    masks: dict[str, np.ndarray] = {}
    paths: dict[str, Path] = {}
    files = dict(mask_paths)
    from_multilabel = {
        name for task, _ in multilabel or [] for name, ts_name in structures.items()
        if ts_name in totalseg.TASKS.get(task, totalseg.Task(task, {})).labels.values()
    }
    for name, ts_name in structures.items():
        if name not in files and name not in from_multilabel and folder is not None:
            found = totalseg.find_image(folder, ts_name)
            if found is not None:
                files[name] = found
    if files:
        loaded, geometry = load_masks(files, case, reference, note)
        masks.update(loaded)
        paths.update(files)
        reference = reference or (geometry, next(iter(files.values())))
    for task, ml_path in multilabel or []:
        array, geometry = read_multilabel(ml_path, task, case, reference)
        reference = reference or (geometry, ml_path)
        ids = totalseg.task(task).ids
        for name, ts_name in structures.items():
            if name in masks or ts_name not in ids:
                continue
            mask = array == ids[ts_name]
            if not mask.any():
                note(f"case {case}: {ml_path} has no {ts_name} (label {ids[ts_name]})")
            masks[name], paths[name] = mask, Path(ml_path)

    if reference is None:
        raise MissingFile(f"case {case}: no masks found (looked in {folder or 'no folder'}; {len(multilabel or [])} multilabel file(s))")
    looked_for = {name: _where_looked(folder, ts_name, multilabel) for name, ts_name in structures.items() if name not in masks}
    return Subject(case=case, masks=masks, geometry=reference[0], mask_paths=paths, ct_path=ct_path, warnings=notes, looked_for=looked_for)
