"""Per-case, per-class segmentation metrics: Dice, IoU, ASSD and HD95 in mm.

All functions are pure functions on numpy label maps of identical shape, in (z, y, x) order (any
number of axes works: a 2d slice stored as ``(1, y, x)`` is evaluated as a 2d image, see below).
``spacing`` is the voxel size **per array axis in mm**.

Conventions
-----------
Classes
    A class is a name and a tuple of label values; its mask is ``np.isin(label_map, values)``. A
    plain nnU-Net label is a 1-tuple; a region (nnU-Net's region-based training) is the union of
    its values, exactly as nnU-Net's own evaluation builds it.
Dice and IoU
    nnU-Net's convention: ``Dice = 2 TP / (2 TP + FP + FN)``, ``IoU = TP / (TP + FP + FN)``; when the
    class is absent from both reference and prediction (``TP + FP + FN == 0``) both are ``NaN``
    and are left out of every mean (as nnU-Net's ``summary.json`` does).
Surface distances
    The surface of a mask is its set of voxels with at least one face-neighbour (6-connectivity in
    3d, 4 in 2d) outside the mask; the image border counts as outside. Distances are Euclidean
    between voxel centres in mm (anisotropic spacing respected), computed exactly as nearest
    neighbours between the two surfaces' voxel centres (``scipy.spatial.cKDTree``), which gives
    the same numbers as a Euclidean distance transform of the other surface (checked against
    MONAI and a full-volume ``scipy.ndimage.distance_transform_edt`` in the tests and benchmark).

    - ``ASSD`` = mean of the distances of every prediction-surface voxel to the reference surface
      and of every reference-surface voxel to the prediction surface (pooled, as MONAI's
      ``compute_average_surface_distance(symmetric=True)``).
    - ``HD95`` = max of the two directed 95th percentiles (as MONAI's
      ``compute_hausdorff_distance(percentile=95)``).
    - Both masks empty: ``NaN`` (nothing to measure; the class is also ``NaN`` for Dice).
    - Exactly one mask empty: the distance is undefined. With ``one_empty="diagonal"`` (default)
      both ASSD and HD95 are set to the length of the image diagonal in mm, the largest distance
      possible inside the image, so that a missed or hallucinated structure is penalised rather
      than silently dropped from a mean; with ``one_empty="nan"`` they are ``NaN``. Either way the
      per-case record keeps ``n_ref`` and ``n_pred`` so such cases can be found.

Axes of length 1 are dropped before surface distances are computed, so an nnU-Net 2d image stored
as ``(1, y, x)`` gets a 2d contour rather than being all surface.

Speed: the label map is scanned once for the flat indices of every label; everything after works
on those index lists (sorted-array membership for overlaps and surfaces, KD-trees for distances),
so the cost follows the number of foreground voxels, not the image size, and a stray false-positive
island at the far end of the scan does not inflate it (as it would a bounding-box crop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: Metric names in the order every table prints them.
METRICS: tuple[str, ...] = ("Dice", "IoU", "ASSD", "HD95")
#: For each metric, whether larger is better (Dice, IoU) or smaller is (distances in mm).
HIGHER_IS_BETTER: dict[str, bool] = {"Dice": True, "IoU": True, "ASSD": False, "HD95": False}

ONE_EMPTY_CHOICES = ("diagonal", "nan")


@dataclass(frozen=True)
class SegClass:
    """One evaluated class: its name and the label values whose union is its mask."""

    name: str
    values: tuple[int, ...]


def classes_from_labels(labels: Mapping[str, int | Sequence[int]]) -> list[SegClass]:
    """Foreground classes of an nnU-Net ``dataset.json`` ``labels`` block, in the file's order.

    Background (value 0, or the name ``background``) and ``ignore`` are skipped. A value that is a
    list (region-based training) becomes a region class whose mask is the union of its values.
    """
    classes = []
    for name, value in labels.items():
        values = tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)
        if name in ("background", "ignore") or values == (0,):
            continue
        classes.append(SegClass(str(name), values))
    return classes


def label_indices(label_map: np.ndarray) -> dict[int, np.ndarray]:
    """Sorted flat (C-order) indices of the voxels of every non-zero label value, in one pass.

    Every later step works on these lists, so its cost grows with the number of foreground voxels
    and not with the image size or with how far apart a class's islands lie.
    """
    flat = np.asarray(label_map).ravel()
    if flat.dtype.kind not in "iub":
        flat = flat.astype(np.int64)
    nonzero = np.flatnonzero(flat)
    values = flat[nonzero]
    order = np.argsort(values, kind="stable")  # stable: each label's indices stay sorted
    values, nonzero = values[order], nonzero[order]
    labels, starts = np.unique(values, return_index=True)
    bounds = list(starts) + [values.size]
    return {int(v): nonzero[bounds[i] : bounds[i + 1]] for i, v in enumerate(labels)}


def _class_indices(groups: Mapping[int, np.ndarray], values: Sequence[int]) -> np.ndarray:
    parts = [groups[v] for v in values if v in groups]
    if not parts:
        return np.empty(0, np.int64)
    return parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))


def _contains(sorted_indices: np.ndarray, query: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(sorted_indices, query), sorted_indices.size - 1)
    return sorted_indices[pos] == query


def surface_points(indices: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Voxel coordinates (k, ndim) of the surface of a mask given by its sorted flat indices.

    A voxel is on the surface when one of its face-neighbours (6 in 3d, 4 in 2d) is outside the
    mask or outside the image.
    """
    shape = tuple(int(n) for n in shape)
    coords = np.stack(np.unravel_index(indices, shape), axis=1)
    strides = np.cumprod((1,) + shape[::-1])[:-1][::-1]
    on_surface = np.zeros(indices.size, bool)
    for axis, stride in enumerate(strides):
        for step in (-1, 1):
            neighbour = coords[:, axis] + step
            inside = (neighbour >= 0) & (neighbour < shape[axis])
            present = np.zeros(indices.size, bool)
            present[inside] = _contains(indices, indices[inside] + step * stride)
            on_surface |= ~present
    return coords[on_surface]


def _distances(ref_indices, pred_indices, shape, spacing) -> tuple[float, float]:
    """ASSD and HD95 in mm of two non-empty masks given by sorted flat indices."""
    from scipy.spatial import cKDTree

    spacing = np.asarray(spacing, float)
    ref_points = surface_points(ref_indices, shape) * spacing
    pred_points = surface_points(pred_indices, shape) * spacing
    # Exact nearest-neighbour distances between surface voxel centres in mm (the same numbers a
    # Euclidean distance transform of the other surface gives, without touching the background).
    d_pred_to_ref = cKDTree(ref_points).query(pred_points)[0]
    d_ref_to_pred = cKDTree(pred_points).query(ref_points)[0]
    assd = (d_pred_to_ref.sum() + d_ref_to_pred.sum()) / (d_pred_to_ref.size + d_ref_to_pred.size)
    hd95 = max(np.percentile(d_pred_to_ref, 95), np.percentile(d_ref_to_pred, 95))
    return float(assd), float(hd95)


def _drop_singleton_axes(*arrays, spacing):
    """Drop the axes of length 1 of the image (a 2d image stored as (1, y, x) is a 2d problem)."""
    shape = arrays[0].shape
    keep = [a for a in range(len(shape)) if shape[a] > 1] or [len(shape) - 1]
    drop = tuple(a for a in range(len(shape)) if a not in keep)
    return [np.asarray(x).squeeze(drop) for x in arrays], [float(spacing[a]) for a in keep]


def surface_distances(
    reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]
) -> tuple[float, float]:
    """ASSD and HD95 in mm between two non-empty boolean masks (see the module's conventions).

    Parameters
    ----------
    reference, prediction : ndarray of bool
        Masks of identical shape; image axes of length 1 are dropped.
    spacing : sequence of float
        Voxel size in mm per array axis.

    Returns
    -------
    (float, float)
        ASSD and HD95 in mm.
    """
    reference = np.asarray(reference, bool)
    prediction = np.asarray(prediction, bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    if len(spacing) != reference.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not have one entry per axis of {reference.shape}")
    (reference, prediction), spacing = _drop_singleton_axes(reference, prediction, spacing=spacing)
    if not reference.any() or not prediction.any():
        raise ValueError("surface distances need two non-empty masks")
    return _distances(np.flatnonzero(reference), np.flatnonzero(prediction), reference.shape, spacing)


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image (between the centres of opposite corner voxels)."""
    return float(np.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, spacing))))


def case_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    classes: Sequence[SegClass],
    spacing: Sequence[float],
    distances: bool = True,
    one_empty: str = "diagonal",
    ignore_value: int | None = None,
) -> list[dict]:
    """Dice, IoU, ASSD and HD95 of every class of one case.

    Parameters
    ----------
    reference, prediction : ndarray of int
        Label maps of identical shape, (z, y, x) order (any number of axes).
    classes : sequence of SegClass
        Classes to evaluate (see :func:`classes_from_labels`).
    spacing : sequence of float
        Voxel size in mm per array axis.
    distances : bool
        Compute ASSD and HD95 (the expensive part); if False they are ``NaN``.
    one_empty : {"diagonal", "nan"}
        Surface distance when exactly one of the two masks is empty (see the module docstring).
    ignore_value : int, optional
        nnU-Net's ``ignore`` label: reference voxels with this value are left out entirely
        (predictions there count neither way), as in nnU-Net's evaluation.

    Returns
    -------
    list of dict
        One record per class: ``class``, ``Dice``, ``IoU``, ``ASSD`` (mm), ``HD95`` (mm),
        ``n_ref`` and ``n_pred`` (voxels), ``TP``, ``FP``, ``FN`` (voxels).
    """
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    if len(spacing) != reference.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not have one entry per axis of {reference.shape}")
    if one_empty not in ONE_EMPTY_CHOICES:
        raise ValueError(f"one_empty must be one of {ONE_EMPTY_CHOICES}, not {one_empty!r}")
    diagonal = image_diagonal_mm(reference.shape, spacing)
    (reference, prediction), spacing = _drop_singleton_axes(reference, prediction, spacing=spacing)
    ref_groups, pred_groups = label_indices(reference), label_indices(prediction)
    ignored = ref_groups.get(ignore_value) if ignore_value is not None else None
    records = []
    for seg_class in classes:
        ref = _class_indices(ref_groups, seg_class.values)
        pred = _class_indices(pred_groups, seg_class.values)
        if ignored is not None and pred.size:
            pred = pred[~_contains(ignored, pred)]
        n_ref, n_pred = int(ref.size), int(pred.size)
        record = {"class": seg_class.name, "TP": 0, "FP": 0, "FN": 0, "n_ref": n_ref, "n_pred": n_pred}
        if n_ref == 0 and n_pred == 0:
            record.update(Dice=np.nan, IoU=np.nan, ASSD=np.nan, HD95=np.nan)
            records.append(record)
            continue
        tp = int(np.intersect1d(ref, pred, assume_unique=True).size)
        fp, fn = n_pred - tp, n_ref - tp
        record.update(TP=tp, FP=fp, FN=fn)
        record["Dice"] = 2 * tp / (2 * tp + fp + fn)
        record["IoU"] = tp / (tp + fp + fn)
        if not distances:
            assd = hd95 = np.nan
        elif n_ref == 0 or n_pred == 0:
            assd = hd95 = diagonal if one_empty == "diagonal" else np.nan
        else:
            assd, hd95 = _distances(ref, pred, reference.shape, spacing)
        record.update(ASSD=assd, HD95=hd95)
        records.append(record)
    return records
