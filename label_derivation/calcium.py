"""Calcium pseudo-labels by rule: voxels brighter than the case's own contrast lumen, inside the
TAVR regions (valve, annulus, LVOT, aortic root, rest of the aorta, each iliac artery).

The rule (:func:`derive_calcium`), per case
-------------------------------------------
1. **Regions** (:mod:`.calcium_regions`): seven regions from the 7-class label map and the annulus
   plane, each widened by ``wall_mm`` (default 3 mm) to take in the vessel wall; a voxel of the
   widened band belongs to the nearest region.
2. **Lumen statistics**: per lumen group (the root: valve + annulus + LVOT + aortic root; the
   aorta; each iliac artery) the median ``mu`` and the robust standard deviation
   ``sigma = 1.4826 * MAD`` of the CT inside the group's regions, away from their borders (voxels
   whose six neighbours are in the same region), so that walls and calcium do not bias them.
3. **Threshold** (contrast-adaptive, per region)::

       T = mu + max(offset_hu, sd_factor * sigma)        default offset_hu = 100 HU, sd_factor = 4

   ``mu + 100 HU`` is the "luminal attenuation + 100 HU" threshold of Bettinger et al. (J Cardiovasc
   Comput Tomogr 2017), the best of six thresholds (650 and 850 HU, 1.25 and 1.5 x lumen, lumen +
   50 and + 100 HU) at predicting paravalvular regurgitation after TAVR; scan-specific thresholds
   from the lumen's mean and SD are the usual way to score calcium on contrast CT. The
   ``sd_factor * sigma`` term keeps noisy scans (sigma > 25 HU) from turning noise into calcium.
   A fixed threshold in HU (``threshold_hu``, e.g. 850 HU as in much TAVR work, or 130 HU on a
   non-contrast scan) replaces it on request.
4. **Candidates**: the voxels at or above their region's ``T`` within the widened regions,
   grouped into 26-connected components.
5. **Delineation at half maximum** (``half_maximum``, default on): a component's voxels are kept
   where ``I >= (P + B) / 2``, with ``P`` the component's peak and ``B`` the background the voxel
   would have without calcium (the value of the nearest voxel outside the component's one-voxel
   halo: lumen on the lumen side, wall or fat outside). This is the full-width-at-half-maximum
   border of a small bright object and removes the partial-volume halo ("blooming") that a plain
   threshold counts as calcium. Without it, calcium is every voxel at or above ``T``.
6. Components below ``min_volume_mm3`` (default 3 mm^3) are removed; each remaining component is
   assigned to the region that holds most of its voxels. A candidate that lies mostly beyond the
   wall band (more than ``EXTRAVASCULAR_RATIO`` = 2 times as many voxels outside as inside) is
   left out with a warning: a vertebra beside a generously segmented descending aorta, a rib or
   another contrast vessel, not calcium in the wall.

A case without a CT, with a CT that is not in Hounsfield units (no value below -200 HU anywhere:
air and fat are missing, as with raw scanner values or normalised intensities), or without
contrast in its lumen (median below ``min_contrast_hu``; use a fixed threshold for non-contrast
scans) is excluded with that reason; a region whose own lumen cannot be assessed is reported as
such and the others are still derived.

All functions are pure (arrays in, arrays and records out). Distances in mm, arrays (z, y, x),
points mm in the arrays' frame (``index * spacing``).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from nnunet_tavr.geometry import bounding_box, box_start, grow_box, margin_voxels
from nnunet_tavr.label_derivation.calcium_lumen import (
    GROUP_OF,
    LUMEN_GROUPS,
    Lumen,
    density_factor,
    hu_problem,
    lumen_statistics,
    thresholds,
)
from nnunet_tavr.label_derivation.calcium_record import EXCLUSION_CODES, CalciumParams, CalciumResult, Component
from nnunet_tavr.label_derivation.calcium_regions import (
    REGIONS,
    AnnulusFrame,
    annulus_frame,
    nearest_regions,
    region_map,
    regions_box,
)
from nnunet_tavr.labels import CALCIUM_LABEL, LABELS

#: A candidate with more voxels beyond the wall band than this times its voxels inside it is not
#: calcium of these vessels (bone, another vessel): calcium lies in the wall, within ``wall_mm``.
EXTRAVASCULAR_RATIO = 2.0


# ----------------------------------------------------------------------------------------------
# the rule


def anatomy_view(labels: np.ndarray, calcium_value: int = CALCIUM_LABEL) -> np.ndarray:
    """``labels`` with every calcium voxel given the label of the nearest non-calcium voxel
    (background included), so that the anatomy's measurements and regions see the structure the
    calcium lies on: a nodule on a wall is split between the lumen and the outside along its
    middle. Returns ``labels`` itself when it has no calcium. Works component by component (a
    distance transform around each), so scattered calcium on a large grid stays cheap."""
    import cc3d

    calc = labels == calcium_value
    crop = bounding_box(calc)
    if crop is None:
        return labels
    out = labels.copy()
    crop = grow_box(crop, 2, labels.shape)
    pieces, n = cc3d.connected_components(calc[crop], connectivity=26, return_N=True)
    stats = cc3d.statistics(pieces)
    for k in range(1, n + 1):
        box = grow_box(stats["bounding_boxes"][k], 2, pieces.shape)
        sub = calc[crop][box]
        piece = pieces[box] == k
        view = out[crop][box]
        if sub.all():  # nothing but calcium around: nothing to borrow from
            view[piece] = 0
            continue
        idx = ndimage.distance_transform_edt(sub, return_distances=False, return_indices=True)
        view[piece] = labels[crop][box][tuple(i[piece] for i in idx)]
    return out


def derive_calcium(
    ct: np.ndarray | None,
    labels: np.ndarray,
    spacing,
    params: CalciumParams | None = None,
    frame: AnnulusFrame | None = None,
    case: str | None = None,
    boxes=None,
) -> CalciumResult:
    """Derive the calcium of one case (see the module docstring). Nothing is modified.

    Parameters
    ----------
    ct : (z, y, x) array in HU, or None
        The case's CT on the label map's grid (``None``: the case is excluded, code ``no_ct``).
    labels : (z, y, x) integer array
        The TAVR label map (7 classes; calcium voxels of an 8-class map are first given to the
        structure they lie on, :func:`anatomy_view`).
    spacing : 3 floats
        mm per array axis.
    params : CalciumParams, optional
    frame : AnnulusFrame, optional
        The annulus frame (e.g. from the derivation's annulus plane); fitted to the annulus label
        when not given. Scans without annulus have no valve, annulus or LVOT region.
    boxes : list, optional
        ``scipy.ndimage.find_objects(labels)`` if already known.
    """
    t0 = time.perf_counter()
    params = params or CalciumParams()
    spacing = tuple(float(s) for s in spacing)
    result = CalciumResult(case=case, spacing=spacing, params=params.as_dict(), shape=tuple(labels.shape))
    try:
        return _derive(ct, labels, np.asarray(spacing), params, frame, boxes, result)
    finally:
        result.seconds = time.perf_counter() - t0


def _derive(ct, labels, spacing, params, frame, boxes, result) -> CalciumResult:
    if ct is None:
        return result.exclude("no_ct", "no CT given: calcium is found in the CT's intensities")
    if ct.shape != labels.shape:
        raise ValueError(f"CT shape {ct.shape} differs from the label map's {labels.shape}")
    problem = hu_problem(ct)
    if problem:
        return result.exclude("ct_not_hu", problem)
    if boxes is None:
        boxes = ndimage.find_objects(labels)
    if len(boxes) >= CALCIUM_LABEL and boxes[CALCIUM_LABEL - 1] is not None:
        labels = anatomy_view(labels)
        boxes = ndimage.find_objects(labels)
    if frame is None:
        ann = boxes[4] if len(boxes) >= 5 else None
        frame = annulus_frame(labels, spacing, annulus_box=ann) if ann is not None else None
    result.frame = frame
    box = regions_box(labels, spacing, frame, params.wall_mm, boxes, params.lvot_margin_mm + params.lvot_depth_mm)
    if box is None:
        return result.exclude("no_regions", "no aorta, valve, root, annulus or iliac label in the segmentation")
    regions = region_map(labels, spacing, frame, box, **params.region_kwargs())
    ct_box = ct[box]
    info, problems = thresholds(lumen_statistics(ct_box, regions, spacing), params)
    result.lumen = info
    assessed = [r for r in info if info[r]["assessed"]]
    if not assessed:
        code = "threshold_below_lumen" if params.threshold_hu is not None else "no_contrast"
        return result.exclude(code, next(iter(problems.values())).split(": ", 1)[1] if problems else "no region has a lumen")
    for region, why in problems.items():
        result.warnings.append(f"{region} not assessed: {why}")
    t_of = np.full(len(REGIONS) + 1, np.inf, np.float32)  # region id -> threshold (inf: not assessed)
    for region in assessed:
        t_of[REGIONS.index(region) + 1] = info[region]["threshold_hu"]
    # Ventricle voxels outside the LVOT are in no region but hold the root's contrast.
    root_t = t_of[REGIONS.index("lvot") + 1]
    ventricle = labels[box] == LABELS["left_ventricle"]
    mask, cmap, comps, skipped = _components(ct_box, regions, spacing, t_of, info, params, ventricle, root_t, box_start(box))
    if skipped:
        volume = sum(skipped) * float(np.prod(spacing))
        result.warnings.append(f"{len(skipped)} bright structure(s) ({volume:.0f} mm3) left out: more than "
                               f"{EXTRAVASCULAR_RATIO:g} x their wall part lies beyond {params.wall_mm:g} mm of the regions "
                               "(bone or another vessel next to the segmentation, not calcium)")
    result.box, result.mask, result.component_map, result.components = box, mask, cmap, comps
    return result


def _components(ct_box, regions, spacing, t_of, info, params, ventricle=None, ventricle_t=np.inf, origin=(0, 0, 0)):
    """The calcium of one box: mask, component map and the components (see :func:`derive_calcium`).

    ``t_of`` maps region ids to thresholds (``inf``: not assessed); voxels in no region use the
    lowest one (the wall band outside the lumen), except ``ventricle`` voxels, which use
    ``ventricle_t`` (the ventricle's blood is as bright as the root's). ``origin`` is the index of
    the box's first voxel in the whole array (for the components' centroids).
    """
    import cc3d

    voxel = float(np.prod(spacing))
    min_voxels = max(1, int(np.ceil(params.min_volume_mm3 / voxel - 1e-9)))
    lowest = float(np.min(t_of))
    candidates = ct_box >= lowest
    # Each candidate against its own region's threshold (sparse: candidates are few).
    idx = np.nonzero(candidates)
    reg = regions[idx]
    own = np.where(reg > 0, t_of[reg], lowest)  # inf (region not assessed): never a candidate
    if ventricle is not None:
        own[(reg == 0) & ventricle[idx]] = ventricle_t
    too_low = ct_box[idx] < own
    candidates[tuple(i[too_low] for i in idx)] = False
    mask = np.zeros(ct_box.shape, bool)
    cmap = np.zeros(ct_box.shape, np.uint16)  # component ids (uint32 past 65535 components)
    comps: list[Component] = []
    skipped: list[int] = []  # voxel counts of the extravascular structures left out
    if not candidates.any():
        return mask, cmap, comps, skipped
    cc, n = cc3d.connected_components(candidates, connectivity=26, return_N=True)
    stats = cc3d.statistics(cc)
    margin = margin_voxels(params.wall_mm, spacing) + 1
    for k in range(1, n + 1):
        if stats["voxel_counts"][k] < min_voxels:
            continue  # the rule only removes voxels: a smaller candidate never reaches the minimum
        sb = grow_box(stats["bounding_boxes"][k], margin, ct_box.shape)
        reg = regions[sb]
        if not reg.any():
            continue
        near, dist = nearest_regions(reg, spacing)
        ct_sb = ct_box[sb]
        whole = cc[sb] == k
        in_wall = whole & (dist <= params.wall_mm + 1e-6)
        keep = in_wall & (ct_sb >= t_of[near])
        if np.count_nonzero(keep) < min_voxels:
            continue
        outside = int(stats["voxel_counts"][k]) - int(np.count_nonzero(in_wall))
        if outside > EXTRAVASCULAR_RATIO * np.count_nonzero(in_wall):
            # Most of this bright structure lies beyond the vessel wall: bone (a vertebra next to
            # the descending aorta, a rib) or another vessel that a generous segmentation touches,
            # not calcium in the wall.
            skipped.append(outside + int(np.count_nonzero(in_wall)))
            continue
        if params.half_maximum:
            keep &= ct_sb >= 0.5 * (float(ct_sb[keep].max()) + _background(ct_sb, candidates[sb], spacing))
        pieces, m = cc3d.connected_components(keep, connectivity=26, return_N=True)
        for p in range(1, m + 1):
            piece = pieces == p
            count = int(np.count_nonzero(piece))
            if count < min_voxels:
                continue
            if len(comps) + 1 > np.iinfo(cmap.dtype).max:
                cmap = cmap.astype(np.uint32)
            comp = _describe(len(comps) + 1, piece, np.asarray(origin) + box_start(sb), near, ct_sb, spacing, info, voxel)
            comps.append(comp)
            mask[sb] |= piece
            cmap[sb][piece] = comp.id
    return mask, cmap, comps, skipped


def _background(ct_sb, candidates_sb, spacing) -> np.ndarray:
    """Per voxel, the CT value of the nearest voxel outside the candidates' one-voxel halo."""
    halo = ndimage.binary_dilation(candidates_sb, structure=np.ones((3, 3, 3), bool))
    if halo.all():
        return np.full(ct_sb.shape, float(np.median(ct_sb)), np.float32)
    idx = ndimage.distance_transform_edt(halo, sampling=spacing, return_distances=False, return_indices=True)
    return ct_sb[tuple(idx)].astype(np.float32)


def _describe(cid, piece, origin, near, ct_sb, spacing, info, voxel, dist=None) -> Component:
    """One component: its region (the one holding most of its voxels), size, centroid and density."""
    votes = np.bincount(near[piece], minlength=len(REGIONS) + 1)
    votes[0] = 0
    region = REGIONS[int(np.argmax(votes)) - 1] if votes.any() else None
    idx = np.argwhere(piece)
    count = len(idx)
    centroid = ((idx.mean(axis=0) + origin) * spacing).tolist()
    comp = Component(id=cid, region=region, voxels=count, volume_mm3=count * voxel, centroid_mm=[round(c, 3) for c in centroid])
    if dist is not None:
        comp.distance_mm = float(dist[piece].min())
    if ct_sb is not None:
        values = ct_sb[piece]
        comp.peak_hu, comp.mean_hu = float(values.max()), float(values.mean())
        entry = info.get(region) if region else None
        if entry is not None:
            comp.lumen_hu = float(entry["lumen_median_hu"])
            comp.density_factor = density_factor(comp.peak_hu, comp.lumen_hu)
            comp.score = comp.volume_mm3 * comp.density_factor
    return comp


def calcium_of_derivation(ct, labels: np.ndarray, spacing, root=None, params: CalciumParams | None = None,
                          case: str | None = None) -> CalciumResult:
    """:func:`derive_calcium` of a case just derived: ``labels`` its 7-class map, ``root`` its
    :class:`~nnunet_tavr.label_derivation.rules.RootDetails` (whose annulus plane, at the
    ventricle/aorta interface, is used; fitted to the annulus label when missing)."""
    frame = None
    if root is not None and getattr(root, "plane_point_mm", None) is not None:
        frame = annulus_frame(labels, spacing, centre=root.plane_point_mm, normal=root.plane_normal)
    return derive_calcium(ct, labels, spacing, params, frame=frame, case=case)


def paint_calcium(labels: np.ndarray, result: CalciumResult, counts: dict[str, int] | None = None) -> np.ndarray:
    """A copy of ``labels`` with the calcium of ``result`` painted as :data:`CALCIUM_LABEL` (over
    any anatomy label: calcium wins, as nnU-Net needs one class per voxel).

    ``counts`` (voxels per class name of ``labels``) is updated in place: the painted-over voxels
    leave their class, ``calcium`` gets them all.
    """
    out = labels.copy()
    painted = 0
    if result.mask is not None and result.mask.any():
        view = out[result.box]
        if counts is not None:
            before = np.bincount(view[result.mask], minlength=CALCIUM_LABEL)
            for name, value in LABELS.items():
                if value and name in counts:
                    counts[name] -= int(before[value])
        view[result.mask] = CALCIUM_LABEL
        painted = int(np.count_nonzero(result.mask))
    if counts is not None:
        counts["calcium"] = painted
    return out


def describe_mask(
    calcium: np.ndarray,
    labels: np.ndarray,
    spacing,
    ct: np.ndarray | None = None,
    params: CalciumParams | None = None,
    frame: AnnulusFrame | None = None,
    case: str | None = None,
) -> CalciumResult:
    """Components, regions and (with a CT) densities of a given calcium mask, e.g. the calcium
    label of a prediction. ``labels`` is the anatomy (:func:`anatomy_view` of the prediction).

    A component is assigned like the rule's (the region holding most of its voxels within
    ``wall_mm``); one farther from every region has region ``None`` and its distance.
    """
    t0 = time.perf_counter()
    params = params or CalciumParams()
    spacing_arr = np.asarray(spacing, float)
    result = CalciumResult(case=case, spacing=tuple(map(float, spacing)), params=params.as_dict(), shape=tuple(labels.shape), source="labels")
    boxes = ndimage.find_objects(labels)
    if frame is None and len(boxes) >= 5 and boxes[4] is not None:
        frame = annulus_frame(labels, spacing_arr, annulus_box=boxes[4])
    result.frame = frame
    found = bounding_box(calcium)
    if found is None:
        result.seconds = time.perf_counter() - t0
        return result
    margin = margin_voxels(params.wall_mm, spacing_arr) + 1
    box = grow_box(found, margin, labels.shape)
    info = {}
    if ct is not None and not hu_problem(ct):
        rbox = regions_box(labels, spacing_arr, frame, params.wall_mm, boxes, params.lvot_margin_mm + params.lvot_depth_mm)
        if rbox is not None:
            info, _ = thresholds(lumen_statistics(ct[rbox], region_map(labels, spacing_arr, frame, rbox, **params.region_kwargs()), spacing_arr), params)
            result.lumen = info
    elif ct is not None:
        result.warnings.append(f"densities not measured: {hu_problem(ct)}")
        ct = None
    import cc3d

    regions = region_map(labels, spacing_arr, frame, box, **params.region_kwargs())
    mask_box = calcium[box]
    pieces, m = cc3d.connected_components(mask_box, connectivity=26, return_N=True)
    stats = cc3d.statistics(pieces)
    ct_box = None if ct is None else ct[box]
    voxel = float(np.prod(spacing_arr))
    for p in range(1, m + 1):  # each component's region from the regions around it only
        sb = grow_box(stats["bounding_boxes"][p], margin, mask_box.shape)
        near, dist = nearest_regions(regions[sb], spacing_arr)
        near = np.where(dist <= params.wall_mm + 1e-6, near, 0).astype(np.uint8)
        piece = pieces[sb] == p
        result.components.append(_describe(p, piece, box_start(box) + box_start(sb), near,
                                           None if ct_box is None else ct_box[sb], spacing_arr, info, voxel, dist))
    result.box, result.mask, result.component_map = box, mask_box.copy(), pieces
    result.seconds = time.perf_counter() - t0
    return result

__all__ = [
    "CalciumParams", "CalciumResult", "Component", "EXCLUSION_CODES", "GROUP_OF", "LUMEN_GROUPS", "Lumen", "anatomy_view", "calcium_of_derivation",
    "density_factor", "derive_calcium", "describe_mask", "hu_problem", "lumen_statistics", "paint_calcium", "thresholds",
]
