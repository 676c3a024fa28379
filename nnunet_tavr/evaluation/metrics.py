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
    between voxel centres in mm (anisotropic spacing respected), computed exactly with an
    Euclidean distance transform (``edt``) on the bounding box of the union of both masks (the
    nearest surface voxel of either mask always lies inside that box, so cropping is exact).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

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


def _bounding_boxes(label_map: np.ndarray, max_value: int) -> list[tuple[slice, ...] | None]:
    """Bounding box of every label value 1..max_value in one pass (``None`` when absent)."""
    from scipy.ndimage import find_objects

    if label_map.dtype.kind not in "iu":
        label_map = label_map.astype(np.int64)
    if label_map.dtype.kind == "i" and label_map.size and label_map.min() < 0:
        label_map = np.where(label_map < 0, 0, label_map)
    boxes = find_objects(label_map, max_label=max_value)
    return list(boxes) + [None] * (max_value - len(boxes))


def _union_box(boxes: Iterable[tuple[slice, ...] | None], ndim: int) -> tuple[slice, ...] | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(ndim))


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face-neighbour outside it (the image border counts as outside)."""
    from scipy.ndimage import binary_erosion, generate_binary_structure

    structure = generate_binary_structure(mask.ndim, 1)
    # border_value=0: a mask touching the border has its surface there, as if the image were padded.
    return mask & ~binary_erosion(mask, structure=structure, border_value=0)


def directed_surface_distances(
    surface_from: np.ndarray, surface_to: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance in mm from every voxel of ``surface_from`` to the nearest voxel of ``surface_to``.

    Both are boolean arrays of the same shape; ``surface_to`` must not be empty.
    """
    import edt

    # edt measures the distance of non-zero voxels to the nearest zero voxel; anisotropy is given
    # per array axis for C-ordered arrays.
    distance_to = edt.edt(
        np.ascontiguousarray(~surface_to), anisotropy=tuple(float(s) for s in spacing), black_border=False
    )
    return distance_to[surface_from].astype(np.float64)


def _drop_singleton_axes(*arrays, spacing):
    """Drop the axes of length 1 of the image (a 2d image stored as (1, y, x) is a 2d problem)."""
    shape = arrays[0].shape
    keep = [a for a in range(len(shape)) if shape[a] > 1] or [len(shape) - 1]
    drop = tuple(a for a in range(len(shape)) if a not in keep)
    return [np.asarray(x).squeeze(drop) for x in arrays], [float(spacing[a]) for a in keep]


def _distances_on_box(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """ASSD and HD95 of two non-empty masks already cropped to (at least) their union's box."""
    # Padding with one background voxel makes the crop's border behave like the rest of the image
    # (where a mask touches the real image border, that border counts as outside anyway).
    pad = [(1, 1)] * reference.ndim
    ref_surface = surface(np.pad(reference, pad))
    pred_surface = surface(np.pad(prediction, pad))
    d_pred_to_ref = directed_surface_distances(pred_surface, ref_surface, spacing)
    d_ref_to_pred = directed_surface_distances(ref_surface, pred_surface, spacing)
    assd = (d_pred_to_ref.sum() + d_ref_to_pred.sum()) / (d_pred_to_ref.size + d_ref_to_pred.size)
    hd95 = max(np.percentile(d_pred_to_ref, 95), np.percentile(d_ref_to_pred, 95))
    return float(assd), float(hd95)


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
    union = reference | prediction
    box = []
    for axis in range(union.ndim):
        hits = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(hits[0], hits[-1] + 1))
    box = tuple(box)
    return _distances_on_box(reference[box], prediction[box], spacing)


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
    max_value = max((max(c.values) for c in classes), default=0)
    # One pass over each volume finds the box of every label; all later work is on those boxes,
    # which is what keeps small structures (valve, annulus) cheap in a whole-body CT.
    ref_boxes = _bounding_boxes(reference, max_value)
    pred_boxes = _bounding_boxes(prediction, max_value)
    records = []
    for seg_class in classes:
        idx = [v - 1 for v in seg_class.values if v >= 1]
        box = _union_box([ref_boxes[i] for i in idx] + [pred_boxes[i] for i in idx], reference.ndim)
        record = {"class": seg_class.name, "TP": 0, "FP": 0, "FN": 0, "n_ref": 0, "n_pred": 0}
        if box is None:
            record.update(Dice=np.nan, IoU=np.nan, ASSD=np.nan, HD95=np.nan)
            records.append(record)
            continue
        values = list(seg_class.values)
        ref = np.isin(reference[box], values)
        pred = np.isin(prediction[box], values)
        tp = int(np.count_nonzero(ref & pred))
        n_ref, n_pred = int(np.count_nonzero(ref)), int(np.count_nonzero(pred))
        fp, fn = n_pred - tp, n_ref - tp
        record.update(TP=tp, FP=fp, FN=fn, n_ref=n_ref, n_pred=n_pred)
        record["Dice"] = 2 * tp / (2 * tp + fp + fn)
        record["IoU"] = tp / (tp + fp + fn)
        if not distances:
            assd = hd95 = np.nan
        elif n_ref == 0 or n_pred == 0:
            assd = hd95 = diagonal if one_empty == "diagonal" else np.nan
        else:
            assd, hd95 = _distances_on_box(ref, pred, spacing)
        record.update(ASSD=assd, HD95=hd95)
        records.append(record)
    return records
