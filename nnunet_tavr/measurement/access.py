"""Vascular access: centreline, minimal lumen diameter and length of each iliac artery.

1. The largest connected component of the iliac label is skeletonised
   (``skimage.morphology.skeletonize``, Lee's 3d thinning) on its bounding box.
2. The centreline is the longest shortest path through the skeleton's 26-neighbour graph, edges
   weighted by their length in mm (``scipy.sparse.csgraph.dijkstra``, two sweeps), oriented from
   the proximal end (the one nearer the aorta, label 1) to the distal end, smoothed (Gaussian,
   ``SMOOTH_MM``) and resampled every ``STEP_MM`` of arc length.
3. At every centreline point the lumen is cut by the plane perpendicular to the centreline and the
   area-derived diameter ``2 sqrt(A / pi)`` of the connected cross-section is recorded
   (:func:`~nnunet_tavr.measurement.sections.cross_section`: trilinear, threshold 0.5, mm-exact on
   anisotropic grids).
4. The minimal lumen diameter (MLD) is the smallest diameter away from the two ends (within
   ``end_margin_mm`` of an end the plane cuts the bifurcation, where the two iliac labels touch,
   or the end of the field of view), its position refined by a parabola through its neighbours.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_tavr.geometry import (
    PlaneGrid,
    arc_length,
    box_around,
    box_start,
    grow_box,
    points_mm,
    resample_polyline,
    smooth_polyline,
    unit,
)
from nnunet_tavr.labels import LABELS
from nnunet_tavr.measurement.record import Section
from nnunet_tavr.measurement.sections import cross_section

SMOOTH_MM = 3.0
STEP_MM = 1.0
#: A vessel shorter than this (mm of centreline) cannot be measured.
MIN_LENGTH_MM = 20.0


def skeleton_path(mask: np.ndarray, spacing) -> np.ndarray:
    """Longest path (mm-weighted) through the 3d skeleton of ``mask``, as (n, 3) voxel indices."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, dijkstra
    from skimage.morphology import skeletonize

    skel = skeletonize(mask) > 0
    idx = np.argwhere(skel)
    if len(idx) < 2:
        return idx
    ids = np.full(mask.shape, -1, np.int64)
    ids[tuple(idx.T)] = np.arange(len(idx))
    rows, cols, weights = [], [], []
    spacing = np.asarray(spacing, float)
    shape = np.array(mask.shape)
    for off in np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) > (0, 0, 0)]):
        nb = idx + off
        ok = np.all((nb >= 0) & (nb < shape), axis=1)
        j = np.full(len(idx), -1)
        j[ok] = ids[tuple(nb[ok].T)]
        sel = j >= 0
        rows.append(np.flatnonzero(sel))
        cols.append(j[sel])
        weights.append(np.full(sel.sum(), np.linalg.norm(off * spacing)))
    rows, cols, weights = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    graph = coo_matrix((weights, (rows, cols)), shape=(len(idx), len(idx))).tocsr()
    n_comp, comp = connected_components(graph, directed=False)
    largest = np.argmax(np.bincount(comp))
    start = int(np.flatnonzero(comp == largest)[0])
    dist = dijkstra(graph, directed=False, indices=start)
    a = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    dist, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    b = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    return idx[path[::-1]]


def _distance_to_label(labels: np.ndarray, spacing, point_mm, value: int, radius_mm: float = 20.0) -> float:
    """Distance (mm) from a point to the nearest voxel of ``value`` within ``radius_mm`` (inf if none)."""
    box = box_around(point_mm, radius_mm, spacing, labels.shape)
    idx = None if box is None else np.argwhere(labels[box] == value)
    if idx is None or len(idx) == 0:
        return float("inf")
    return float(np.min(np.linalg.norm(points_mm(idx, spacing, box_start(box)) - point_mm, axis=1)))


def measure_iliac(labels: np.ndarray, spacing, name: str, boxes=None, end_margin_mm: float | None = None) -> Section:
    """Centreline, minimal lumen diameter and length of one iliac artery.

    Parameters
    ----------
    labels : (z, y, x) integer array
        The 7-class TAVR label map.
    spacing : 3 floats
        Voxel size per axis (mm).
    name : {"iliac_artery_left", "iliac_artery_right"}
    boxes : list of slices, optional
        ``scipy.ndimage.find_objects(labels)`` if already computed.
    end_margin_mm : float, optional
        Length at each end left out of the MLD search; default: the vessel's median diameter
        (at least 5 mm).

    Returns
    -------
    Section
        ``min_lumen_diameter``, ``min_lumen_position`` (arc length from the proximal end),
        ``min_lumen_point``, ``median_diameter``, ``diameter_stenosis``, ``centreline_length``,
        ``proximal_end``, ``distal_end``; geometry holds the diameter profile.  Missing with a
        reason when the label is absent or too short.
    """
    spacing = np.asarray(spacing, float)
    value = LABELS[name]
    boxes = ndimage.find_objects(labels) if boxes is None else boxes
    if len(boxes) < value or boxes[value - 1] is None:
        return Section.absent(name, f"no {name} voxels (label {value}) in the segmentation")
    # Two voxels of margin keep the vessel's surface off the crop border for the thinning.
    box = grow_box(boxes[value - 1], 2, labels.shape)
    mask, lo = labels[box] == value, box_start(box)
    section = Section(name)
    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n > 1:
        sizes = np.bincount(comp.ravel())[1:]
        mask = comp == (np.argmax(sizes) + 1)
        section.notes.append(f"{n} connected components; the largest ({sizes.max()} of {sizes.sum()} voxels) is measured")

    path = skeleton_path(mask, spacing)
    if len(path) < 3:
        return Section.absent(name, f"{name} is too small to have a centreline ({int(mask.sum())} voxels)")
    pts = points_mm(path, spacing, lo)
    # Proximal end: the one nearer the aorta (label 1); else nearer the other iliac artery.
    ends = pts[[0, -1]]
    d_aorta = [_distance_to_label(labels, spacing, e, LABELS["aorta"]) for e in ends]
    other = LABELS["iliac_artery_right" if name == "iliac_artery_left" else "iliac_artery_left"]
    if np.isfinite(d_aorta).any() and d_aorta[0] != d_aorta[1]:
        flip = d_aorta[1] < d_aorta[0]
        proximal_rule = "end nearer the aorta"
    else:
        d_other = [_distance_to_label(labels, spacing, e, other, radius_mm=60.0) for e in ends]
        flip = d_other[1] < d_other[0]
        proximal_rule = "end nearer the other iliac artery (no aorta near either end)"
        if not np.isfinite(d_other).any():
            proximal_rule = "arbitrary end (neither aorta nor the other iliac artery nearby)"
            section.notes.append("proximal end could not be identified: positions may be measured from the distal end")
    if flip:
        pts = pts[::-1]

    length = arc_length(pts)[-1]
    if length < MIN_LENGTH_MM:
        return Section.absent(name, f"{name} centreline is only {length:.1f} mm long (need {MIN_LENGTH_MM:g} mm)")
    sigma = SMOOTH_MM / max(float(length / (len(pts) - 1)), 1e-6)  # SMOOTH_MM in mean skeleton steps
    line, s = resample_polyline(smooth_polyline(pts, sigma), STEP_MM)
    tangents = np.gradient(line, axis=0)

    import edt

    radius = edt.edt(np.ascontiguousarray(mask), anisotropy=tuple(spacing), black_border=False)
    lumen = mask.astype(np.float32)
    pixel = float(min(0.25, spacing.min() / 3))
    diam = np.full(len(s), np.nan)
    for k, (p, t) in enumerate(zip(line, tangents)):
        vox = tuple(np.clip(np.round(p / spacing - lo).astype(int), 0, np.array(mask.shape) - 1))
        half = max(8.0, 2.5 * float(radius[vox]) + 4.0)
        grid = PlaneGrid.around(p, unit(t), half, pixel)
        cs = cross_section(lumen, spacing, grid, lo, seed_radius_mm=max(2.0, float(radius[vox])))
        if cs is not None and not cs.touches_border:
            diam[k] = cs.diameter
    valid = np.isfinite(diam)
    if valid.sum() < 5:
        return Section.absent(name, f"{name}: fewer than 5 usable cross-sections along its centreline")
    median = float(np.median(diam[valid]))
    margin = max(5.0, median) if end_margin_mm is None else float(end_margin_mm)
    inner = valid & (s >= margin) & (s <= s[-1] - margin)
    if not inner.any():
        return Section.absent(name, f"{name} centreline ({s[-1]:.0f} mm) is too short for {margin:.0f} mm end margins")
    k = int(np.flatnonzero(inner)[np.argmin(diam[inner])])
    pos = s[k]
    if 0 < k < len(s) - 1 and np.isfinite(diam[k - 1 : k + 2]).all():
        y0, y1, y2 = diam[k - 1 : k + 2]
        curv = y0 - 2 * y1 + y2
        if curv > 0:
            pos = s[k] + STEP_MM * 0.5 * (y0 - y2) / curv
    point = np.array([np.interp(pos, s, line[:, j]) for j in range(3)])

    how = "area-derived diameter 2 sqrt(A / pi) of the lumen cross-section perpendicular to the skeleton centreline"
    section.add("min_lumen_diameter", diam[k], "mm", f"smallest {how}, more than {margin:.0f} mm from either end")
    section.add("min_lumen_position", pos, "mm", f"arc length from the proximal end ({proximal_rule}) to the MLD plane")
    section.add("min_lumen_point", point, "mm", "centreline point of the MLD, (z, y, x) in index * spacing")
    section.add("median_diameter", median, "mm", f"median {how}")
    section.add("diameter_stenosis", 100.0 * (1.0 - diam[k] / median), "%", "100 (1 - MLD / median diameter)")
    section.add("centreline_length", s[-1], "mm", "arc length of the smoothed skeleton centreline between its end points (shorter than the vessel by about one radius at each end)")
    section.add("proximal_end", line[0], "mm", f"centreline start: {proximal_rule}")
    section.add("distal_end", line[-1], "mm", "centreline end")
    section.geometry = {"arc_mm": s, "diameter_mm": diam, "end_margin_mm": margin, "points_mm": line[:: max(1, int(5 / STEP_MM))]}
    return section
