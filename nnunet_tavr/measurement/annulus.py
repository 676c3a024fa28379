"""Aortic annulus: best-fit plane, contour in that plane, area, perimeter and diameters.

The annulus label (paper 2.1) is the thin layer of left-ventricle voxels touching the aorta, so it
extends about one voxel beyond the aortic opening.  The opening itself, the "virtual basal ring"
that valve sizing refers to, is the interface between the ventricle side (labels annulus and
left_ventricle) and the aortic side (valve, aortic_root, aorta).  We therefore

1. fit a plane to the annulus voxel centres (least squares, SVD), oriented ventricle -> aorta;
2. cast rays along the plane normal through every pixel of a fine grid in that plane (nearest-
   neighbour samples of the label map, crop-local, mm converted to indices per axis, so oblique
   and anisotropic grids are handled) and keep the pixels whose ray passes from a ventricle-side
   voxel directly into an aortic-side voxel (if they do not touch, as in some predictions,
   across a gap of at most one voxel): the projection of the interface onto the plane;
3. smooth that footprint by 0.75 of the largest voxel edge (removes the voxel staircase that would
   inflate the perimeter) and take its 0.5 iso-contour (``skimage.measure.find_contours``).

If no interface is found (e.g. a prediction without valve/root), the projection of the annulus
label itself is used and the method says so: it over-estimates diameters by about one voxel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_tavr.geometry import (
    DegeneratePlane,
    PlaneGrid,
    angle_deg,
    ball,
    box_start,
    fit_plane,
    grow_box_mm,
    points_mm,
)
from nnunet_tavr.labels import LABELS
from nnunet_tavr.measurement.record import Section
from nnunet_tavr.measurement.sections import calliper_diameters, polygon_area_perimeter

VENTRICLE_SIDE = (LABELS["left_ventricle"], LABELS["annulus"])
AORTIC_SIDE = (LABELS["valve"], LABELS["aortic_root"], LABELS["aorta"])

#: Fewer annulus voxels than this cannot define a plane and a contour.
MIN_VOXELS = 20
#: Annulus patches closer than this (mm) belong to the same annulus.
GAP_MM = 6.0


def measure_annulus(labels: np.ndarray, spacing, boxes=None, plane: dict | None = None,
                    ct: np.ndarray | None = None) -> tuple[Section, dict | None]:
    """Measure the annulus of a TAVR label map.

    With ``plane`` (``centre``, ``normal`` and ``method``: e.g. the plane through the three hinge
    points, :mod:`nnunet_tavr.measurement.hinge`) the contour and diameters are taken in that plane
    instead of the fitted one, and ``label_plane_angle`` gives its angle to the least-squares plane
    of the annulus label; ``plane_used`` says which plane was used either way.

    Parameters
    ----------
    labels : (z, y, x) integer array
        The 7-class TAVR label map.
    spacing : 3 floats
        Voxel size per array axis (mm).
    boxes : list of slices, optional
        ``scipy.ndimage.find_objects(labels)`` if already computed.
    plane : dict, optional
        ``centre``, ``normal`` (mm, (z, y, x)) and ``method`` of a given annulus plane.
    ct : (z, y, x) array in HU, optional
        The case's contrast CT. The contour is then restricted to the contrast lumen in the annulus
        plane (:func:`lumen_footprint`), as CT planning tools measure the annulus, so that a
        segmentation whose border lies a voxel outside the lumen does not widen it;
        ``label_area_diameter`` keeps the label-only value.

    Returns
    -------
    section : Section
        ``area`` (mm²), ``perimeter`` (mm), ``area_diameter``, ``perimeter_diameter``,
        ``min_diameter``, ``max_diameter`` (mm), ``eccentricity_index`` (1 - min / max), ``centre``
        (mm point), ``normal`` (unit vector, ventricle -> aorta); or missing with a reason.
    plane : dict or None
        ``centre`` and ``normal`` of the annulus plane (at the ventricle/aorta interface), for the
        root measurements.
    """
    from skimage import measure

    spacing = np.asarray(spacing, float)
    boxes = ndimage.find_objects(labels) if boxes is None else boxes
    value = LABELS["annulus"]
    if len(boxes) < value or boxes[value - 1] is None:
        return Section.absent("annulus", "no annulus voxels (label 5) in the segmentation"), None
    # Crop: the annulus box grown by 15 mm, enough for the rays and the aortic side.
    box = grow_box_mm(boxes[value - 1], 15.0, spacing, labels.shape)
    crop, lo = labels[box], box_start(box)
    ann = crop == value
    # A predicted annulus is patchy and may have stray islands elsewhere: keep the largest cluster,
    # where patches up to GAP_MM apart count as one (connected after dilation).
    clusters, n_clusters = ndimage.label(ndimage.binary_dilation(ann, structure=ball(GAP_MM / 2, spacing)))
    dropped = 0
    if n_clusters > 1:
        sizes = ndimage.sum_labels(ann, clusters, index=np.arange(1, n_clusters + 1))
        keep = ann & (clusters == int(np.argmax(sizes)) + 1)
        dropped = int(ann.sum() - keep.sum())
        ann = keep
    idx = np.argwhere(ann)
    if len(idx) < MIN_VOXELS:
        return Section.absent("annulus", f"only {len(idx)} annulus voxels (need {MIN_VOXELS}) to fit a plane"), None
    pts = points_mm(idx, spacing, lo)
    try:
        fit = fit_plane(pts)
    except DegeneratePlane as exc:
        return Section.absent("annulus", f"annulus voxels do not define a plane: {exc}"), None
    centre, normal, sv = fit.centre, fit.normal, fit.singular_values
    plane_how = "least-squares plane through the annulus voxel centres (SVD)"
    section = Section("annulus")
    label_fit = None
    if dropped:
        section.notes.append(f"{dropped} annulus voxels in {n_clusters - 1} stray cluster(s) more than {GAP_MM:g} mm away were ignored")

    # Orientation: the aortic side is on the positive side of the plane.
    aortic = np.argwhere(np.isin(crop, AORTIC_SIDE))
    ventricle = np.argwhere(crop == LABELS["left_ventricle"])
    if len(aortic):
        side = points_mm(aortic, spacing, lo).mean(0) - centre
    elif len(ventricle):
        side = centre - points_mm(ventricle, spacing, lo).mean(0)
    else:
        side = normal
        section.notes.append("neither aorta nor left ventricle near the annulus: plane orientation arbitrary")
    if np.dot(side, normal) < 0:
        normal = -normal
    if sv[2] > 0.5 * sv[1]:
        section.notes.append(f"annulus voxels are far from planar (singular values {np.round(sv, 1).tolist()})")
    if plane is not None:  # a given plane (hinge points): keep the label's fit for the angle only
        label_fit = normal
        given = np.asarray(plane["normal"], float)
        centre, normal = np.asarray(plane["centre"], float), given if np.dot(given, normal) >= 0 else -given
        plane_how = plane["method"]

    # Fine grid in the plane, wide enough for the whole annulus.
    rel = pts - centre
    radial = np.sqrt(np.maximum((rel**2).sum(1) - (rel @ normal) ** 2, 0.0))
    half = radial.max() + 2 * spacing.max() + 2.0
    grid, offsets, crossing, footprint, shadow, bridged = _cast_rays(crop, lo, spacing, centre, normal, half, value)
    if label_fit is None and footprint.sum() >= 0.5 * shadow.sum() and footprint.sum() >= 3:
        # Refit the plane to the interface points themselves: on thick slices the thin annulus
        # layer is holey in a grid-aligned pattern that tilts the voxel fit by up to ~10 degrees,
        # while the interface is sampled densely by the rays.
        k = np.argmax(crossing, axis=0)
        t = 0.5 * (offsets[k] + offsets[k + 1])
        ii, jj = np.nonzero(footprint)
        surface = grid.to_mm(np.stack([ii, jj], 1)) + t[ii, jj, None] * normal
        try:
            refit = fit_plane(surface)
        except DegeneratePlane:  # a footprint in one row of pixels: keep the voxel fit
            refit = None
        if refit is not None and angle_deg(refit.normal, normal, oriented=False) < 30.0:
            centre, normal = refit.centre, (refit.normal if np.dot(refit.normal, normal) > 0 else -refit.normal)
            grid, offsets, crossing, footprint, shadow, bridged = _cast_rays(crop, lo, spacing, centre, normal, half, value)
            plane_how = "least-squares plane through the ventricle/aorta interface under the annulus (SVD; initialised on the annulus voxels)"
    how = "interface between ventricle side (labels 2, 5) and aortic side (labels 1, 3, 4)"
    if bridged:
        how += ", bridged across gaps of up to one voxel"
        section.notes.append("ventricle and aorta do not touch at the annulus: interface bridged across a gap of up to one voxel (diameters may read up to ~1 mm large)")
    if footprint.sum() >= 0.25 * shadow.sum() and footprint.any():
        k = np.argmax(crossing, axis=0)  # first crossing along each ray
        interface = float(np.mean(0.5 * (offsets[k] + offsets[k + 1])[footprint]))
        method = f"projection onto the best-fit annulus plane of the {how}"
    else:
        footprint = shadow
        interface = 0.0
        method = "projection of the annulus label onto its best-fit plane (no ventricle/aorta interface found: about one voxel too large)"
        section.notes.append("no ventricle/aorta interface at the annulus; used the annulus label's own projection")
    pixel = grid.pixel

    footprint = ndimage.binary_fill_holes(ndimage.binary_closing(footprint, iterations=2))
    lab, n = ndimage.label(footprint)
    if n == 0:
        return Section.absent("annulus", "annulus plane has an empty footprint"), None
    footprint = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    label_area = None
    if ct is not None:
        ct_plane = grid.sample(np.asarray(ct[box], np.float32), spacing, interface, lo, order=1, cval=np.nan)
        lumen, why = lumen_footprint(footprint, ct_plane, pixel)
        if lumen is None:
            section.notes.append(f"annulus contour from the labels only: {why}")
        else:
            label_area = float(footprint.sum()) * pixel**2
            footprint = lumen
            method += f", restricted to the contrast lumen of the CT in that plane ({why})"
    # The projected voxel faces leave a staircase with steps up to the largest voxel edge; a
    # Gaussian of 0.75 of that edge removes it (it would add up to 10 % to the perimeter) while
    # moving a boundary of curvature radius R by only sigma^2 / 2R (< 0.3 mm for an annulus).
    sigma_px = 0.75 * float(spacing.max()) / pixel
    smooth = ndimage.gaussian_filter(footprint.astype(np.float32), sigma_px)
    contours = [c for c in measure.find_contours(smooth, 0.5) if np.allclose(c[0], c[-1])]
    if not contours:
        return Section.absent("annulus", "annulus footprint touches the plane grid border (no closed contour)"), None
    contour_uv = grid.to_uv(max(contours, key=len)[:-1])
    area, perimeter = polygon_area_perimeter(contour_uv)
    dmin, dmax, where = calliper_diameters(contour_uv)
    centre_uv = contour_uv.mean(0)
    plane_centre = grid.origin + interface * normal + centre_uv[0] * grid.e1 + centre_uv[1] * grid.e2

    plane = "in the best-fit annulus plane" if label_fit is None else "in the plane through the hinge points"
    section.add("area", area, "mm2", f"area enclosed by the annulus contour {plane}; contour = {method}, Gaussian-smoothed (sigma = 0.75 x largest voxel edge), 0.5 iso-line")
    section.add("perimeter", perimeter, "mm", f"length of the annulus contour {plane}")
    section.add("area_diameter", 2 * np.sqrt(area / np.pi), "mm", "2 sqrt(area / pi)")
    section.add("perimeter_diameter", perimeter / np.pi, "mm", "perimeter / pi")
    section.add("min_diameter", dmin, "mm", f"minimal calliper width of the annulus contour {plane}")
    section.add("max_diameter", dmax, "mm", f"maximal calliper length of the annulus contour {plane}")
    section.add("eccentricity_index", 1.0 - dmin / dmax, "1", "1 - min_diameter / max_diameter (0 = circular)")
    if label_area is not None:
        section.add("label_area_diameter", 2 * np.sqrt(label_area / np.pi), "mm",
                    "2 sqrt(area / pi) of the labels' footprint before the restriction to the contrast lumen (unsmoothed pixels)")
    section.add("centre", plane_centre, "mm", "centroid of the contour on the ventricle/aorta interface, (z, y, x) in index * spacing")
    section.add("normal", normal, "1", f"unit normal of the {plane_how}, pointing into the aorta")
    section.add("plane_tilt", angle_deg(normal, (1.0, 0.0, 0.0), oriented=False), "deg", "angle between the annulus normal and the array z axis")
    section.add("plane_used", "hinge_points" if label_fit is not None else "annulus_label", "", plane_how)
    if label_fit is not None:
        section.add("label_plane_angle", angle_deg(normal, label_fit, oriented=False), "deg",
                    "angle between the hinge-point plane and the least-squares plane of the annulus label voxels")
    max_ends = where["max_ends"]
    min_dir = where["min_dir"]
    proj = contour_uv @ min_dir
    section.geometry = {
        "plane_origin_mm": grid.origin + interface * normal,
        "e1": grid.e1,
        "e2": grid.e2,
        "contour_uv_mm": contour_uv[:: max(1, len(contour_uv) // 240)],
        "centre_uv_mm": centre_uv,
        "max_diameter_uv_mm": max_ends,
        "min_diameter_uv_mm": np.stack([centre_uv + (proj.min() - centre_uv @ min_dir) * min_dir, centre_uv + (proj.max() - centre_uv @ min_dir) * min_dir]),
    }
    return section, {"centre": plane_centre, "normal": normal}


#: Lumen and surrounding tissue closer than this (HU) in the annulus plane: no contrast to refine by.
MIN_LUMEN_CONTRAST_HU = 100.0


def lumen_footprint(footprint: np.ndarray, ct_plane: np.ndarray, pixel_mm: float) -> tuple[np.ndarray | None, str]:
    """The part of an annulus footprint that is contrast lumen in the CT of the annulus plane.

    Parameters
    ----------
    footprint : (nu, nv) bool array
        The labels' annulus footprint on a plane grid (one connected region).
    ct_plane : (nu, nv) float array
        The CT (HU) sampled on the same grid (NaN outside the image).
    pixel_mm : float
        The grid's pixel size (mm).

    Returns
    -------
    lumen : (nu, nv) bool array or None
        ``footprint`` where the CT is at least half-way between the lumen's median (the footprint
        2 mm inside its border) and the surrounding tissue's (a ring 2-6 mm outside it): the
        full-width-at-half-maximum border of the contrast lumen; the region holding the footprint's
        core, holes filled (leaflets, noise). It only removes pixels: a segmentation inside the
        lumen is kept as it is. None when the plane has no usable contrast (or the lumen would lose
        more than half the footprint), with the reason.
    why : str
        The lumen and tissue medians and the threshold, or why there is no lumen.
    """
    inner = ndimage.binary_erosion(footprint, iterations=max(1, int(round(2.0 / pixel_mm))))
    outer = ndimage.binary_dilation(footprint, iterations=max(1, int(round(6.0 / pixel_mm))))
    ring = outer & ~ndimage.binary_dilation(footprint, iterations=max(1, int(round(2.0 / pixel_mm))))
    inner_hu, ring_hu = ct_plane[inner & np.isfinite(ct_plane)], ct_plane[ring & np.isfinite(ct_plane)]
    if inner_hu.size < 10 or ring_hu.size < 10:
        return None, "too few CT samples inside or around the footprint"
    lumen_hu, tissue_hu = float(np.median(inner_hu)), float(np.median(ring_hu))
    if lumen_hu - tissue_hu < MIN_LUMEN_CONTRAST_HU:
        return None, f"lumen {lumen_hu:.0f} HU vs surrounding {tissue_hu:.0f} HU: no contrast lumen to refine by"
    threshold = 0.5 * (lumen_hu + tissue_hu)
    lumen = footprint & (np.nan_to_num(ct_plane, nan=-np.inf) >= threshold)
    parts, n = ndimage.label(lumen)
    if n == 0:
        return None, "no lumen pixels in the footprint"
    votes = np.bincount(parts[inner], minlength=n + 1)  # the part holding most of the core,
    votes[0] = 0
    if not votes.any():  # else the largest part
        votes = np.bincount(parts.ravel(), minlength=n + 1)
        votes[0] = 0
    lumen = ndimage.binary_fill_holes(parts == int(np.argmax(votes)))
    if lumen.sum() < 0.5 * footprint.sum():
        return None, f"the contrast lumen (>= {threshold:.0f} HU) covers less than half the labels' footprint"
    why = f"CT >= {threshold:.0f} HU, half-way between lumen {lumen_hu:.0f} HU and surrounding {tissue_hu:.0f} HU"
    return lumen, why


def _cast_rays(crop, lo, spacing, centre, normal, half_width, value):
    """Rays along ``normal`` through a fine grid in the plane (``centre``, ``normal``).

    Returns ``(grid, offsets, crossing, footprint, shadow, bridged)``: ``crossing[k]`` marks rays
    entering the aortic side between samples ``k`` and ``k + 1``, ``footprint`` the rays with a
    crossing, ``shadow`` the rays through any annulus voxel, ``bridged`` whether the crossing had
    to bridge a ventricle/aorta gap.
    """
    pixel = float(min(0.25, spacing.min() / 2))  # finer than half a voxel: below any voxel staircase
    grid = PlaneGrid.around(centre, normal, half_width, pixel)
    reach = 2.0 * spacing.max()  # the interface lies within a voxel of the fitted plane
    step = spacing.min() / 4
    offsets = np.arange(-reach, reach + 1e-9, step)
    samples = np.stack([grid.sample(crop, spacing, t, lo, order=0) for t in offsets])
    below = np.isin(samples, VENTRICLE_SIDE)
    above = np.isin(samples, AORTIC_SIDE)
    shadow = (samples == value).any(0)  # projection of the annulus label itself
    crossing = below[:-1] & above[1:]
    footprint = crossing.any(0)
    bridged = False
    if footprint.sum() < 0.5 * shadow.sum():
        # Predictions may leave background between ventricle and aorta: accept an entry into the
        # aortic side up to one voxel after leaving the ventricle side.  Only as a fallback: where
        # the two touch, the wider window would also catch the flaring sinus wall just above.
        m = int(np.ceil(spacing.max() / step)) + 1
        seen = np.cumsum(below, axis=0, dtype=np.int32)
        seen = seen - np.concatenate([np.zeros((m,) + seen.shape[1:], np.int32), seen[:-m]])
        wide = (seen[:-1] > 0) & above[1:] & ~above[:-1]
        if wide.any(0).sum() > footprint.sum():
            crossing, footprint, bridged = wide, wide.any(0), True
    return grid, offsets, crossing, footprint, shadow, bridged
