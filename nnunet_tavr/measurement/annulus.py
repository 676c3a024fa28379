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

from nnunet_tavr.labels import LABELS
from nnunet_tavr.measurement.planes import PlaneGrid, calliper_diameters, sample, unit
from nnunet_tavr.measurement.record import Section

VENTRICLE_SIDE = (LABELS["left_ventricle"], LABELS["annulus"])
AORTIC_SIDE = (LABELS["valve"], LABELS["aortic_root"], LABELS["aorta"])

#: Fewer annulus voxels than this cannot define a plane and a contour.
MIN_VOXELS = 20
#: Annulus patches closer than this (mm) belong to the same annulus.
GAP_MM = 6.0


def _ball(radius_mm: float, spacing) -> np.ndarray:
    """Ellipsoidal structuring element of ``radius_mm`` on a grid of ``spacing`` (at least 3 voxels wide)."""
    r = np.maximum(np.floor(radius_mm / np.asarray(spacing, float)).astype(int), 1)
    zz, yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    return (zz * spacing[0]) ** 2 + (yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2 <= max(radius_mm, float(np.max(spacing))) ** 2 + 1e-9


def fit_plane(points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares plane through (n, 3) points: ``(centre, unit normal, singular values)``."""
    centre = points_mm.mean(0)
    _, sv, vt = np.linalg.svd(points_mm - centre, full_matrices=False)
    return centre, unit(vt[2]), sv


def polygon_area_perimeter(contour: np.ndarray) -> tuple[float, float]:
    """Area (shoelace) and perimeter of a closed polygon given as (n, 2) points."""
    x, y = contour[:, 0], contour[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    perimeter = np.linalg.norm(np.diff(np.vstack([contour, contour[:1]]), axis=0), axis=1).sum()
    return float(area), float(perimeter)


def measure_annulus(labels: np.ndarray, spacing, boxes=None) -> tuple[Section, dict | None]:
    """Measure the annulus of a TAVR label map.

    Parameters
    ----------
    labels : (z, y, x) integer array
        The 7-class TAVR label map.
    spacing : 3 floats
        Voxel size per array axis (mm).
    boxes : list of slices, optional
        ``scipy.ndimage.find_objects(labels)`` if already computed.

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
    margin = np.ceil(15.0 / spacing).astype(int)
    box = boxes[value - 1]
    lo = np.array([max(s.start - m, 0) for s, m in zip(box, margin)])
    hi = np.array([min(s.stop + m, n) for s, m, n in zip(box, margin, labels.shape)])
    crop = labels[tuple(slice(a, b) for a, b in zip(lo, hi))]
    ann = crop == value
    # A predicted annulus is patchy and may have stray islands elsewhere: keep the largest cluster,
    # where patches up to GAP_MM apart count as one (connected after dilation).
    clusters, n_clusters = ndimage.label(ndimage.binary_dilation(ann, structure=_ball(GAP_MM / 2, spacing)))
    dropped = 0
    if n_clusters > 1:
        sizes = ndimage.sum_labels(ann, clusters, index=np.arange(1, n_clusters + 1))
        keep = ann & (clusters == int(np.argmax(sizes)) + 1)
        dropped = int(ann.sum() - keep.sum())
        ann = keep
    idx = np.argwhere(ann)
    if len(idx) < MIN_VOXELS:
        return Section.absent("annulus", f"only {len(idx)} annulus voxels (need {MIN_VOXELS}) to fit a plane"), None
    pts = (idx + lo) * spacing
    centre, normal, sv = fit_plane(pts)
    plane_how = "least-squares plane through the annulus voxel centres (SVD)"
    section = Section("annulus")
    if dropped:
        section.notes.append(f"{dropped} annulus voxels in {n_clusters - 1} stray cluster(s) more than {GAP_MM:g} mm away were ignored")

    # Orientation: the aortic side is on the positive side of the plane.
    aortic = np.argwhere(np.isin(crop, AORTIC_SIDE))
    ventricle = np.argwhere(crop == LABELS["left_ventricle"])
    if len(aortic):
        side = ((aortic + lo) * spacing).mean(0) - centre
    elif len(ventricle):
        side = centre - ((ventricle + lo) * spacing).mean(0)
    else:
        side = normal
        section.notes.append("neither aorta nor left ventricle near the annulus: plane orientation arbitrary")
    if np.dot(side, normal) < 0:
        normal = -normal
    if sv[2] > 0.5 * sv[1]:
        section.notes.append(f"annulus voxels are far from planar (singular values {np.round(sv, 1).tolist()})")

    # Fine grid in the plane, wide enough for the whole annulus.
    rel = pts - centre
    radial = np.sqrt(np.maximum((rel**2).sum(1) - (rel @ normal) ** 2, 0.0))
    half = radial.max() + 2 * spacing.max() + 2.0
    grid, offsets, crossing, footprint, shadow, bridged = _cast_rays(crop, lo, spacing, centre, normal, half, value)
    if footprint.sum() >= 0.5 * shadow.sum() and footprint.sum() >= 3:
        # Refit the plane to the interface points themselves: on thick slices the thin annulus
        # layer is holey in a grid-aligned pattern that tilts the voxel fit by up to ~10 degrees,
        # while the interface is sampled densely by the rays.
        k = np.argmax(crossing, axis=0)
        t = 0.5 * (offsets[k] + offsets[k + 1])
        ii, jj = np.nonzero(footprint)
        surface = grid.to_mm(np.stack([ii, jj], 1)) + t[ii, jj, None] * normal
        centre2, normal2, _ = fit_plane(surface)
        normal2 = normal2 if np.dot(normal2, normal) > 0 else -normal2
        if np.degrees(np.arccos(min(1.0, float(np.dot(normal2, normal))))) < 30.0:
            centre, normal = centre2, normal2
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
    plane_centre = grid.centre + interface * normal + centre_uv[0] * grid.e1 + centre_uv[1] * grid.e2

    plane = "in the best-fit annulus plane"
    section.add("area", area, "mm2", f"area enclosed by the annulus contour {plane}; contour = {method}, Gaussian-smoothed (sigma = 0.75 x largest voxel edge), 0.5 iso-line")
    section.add("perimeter", perimeter, "mm", f"length of the annulus contour {plane}")
    section.add("area_diameter", 2 * np.sqrt(area / np.pi), "mm", "2 sqrt(area / pi)")
    section.add("perimeter_diameter", perimeter / np.pi, "mm", "perimeter / pi")
    section.add("min_diameter", dmin, "mm", f"minimal calliper width of the annulus contour {plane}")
    section.add("max_diameter", dmax, "mm", f"maximal calliper length of the annulus contour {plane}")
    section.add("eccentricity_index", 1.0 - dmin / dmax, "1", "1 - min_diameter / max_diameter (0 = circular)")
    section.add("centre", plane_centre, "mm", "centroid of the contour on the ventricle/aorta interface, (z, y, x) in index * spacing")
    section.add("normal", normal, "1", f"unit normal of the {plane_how}, pointing into the aorta")
    section.add("plane_tilt", float(np.degrees(np.arccos(min(1.0, abs(normal[0]))))), "deg", "angle between the annulus normal and the array z axis")
    max_ends = where["max_ends"]
    min_dir = where["min_dir"]
    proj = contour_uv @ min_dir
    section.geometry = {
        "plane_origin_mm": grid.centre + interface * normal,
        "e1": grid.e1,
        "e2": grid.e2,
        "contour_uv_mm": contour_uv[:: max(1, len(contour_uv) // 240)],
        "centre_uv_mm": centre_uv,
        "max_diameter_uv_mm": max_ends,
        "min_diameter_uv_mm": np.stack([centre_uv + (proj.min() - centre_uv @ min_dir) * min_dir, centre_uv + (proj.max() - centre_uv @ min_dir) * min_dir]),
    }
    return section, {"centre": plane_centre, "normal": normal}


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
    samples = np.stack([sample(crop, spacing, grid.points(t), lo, order=0) for t in offsets])
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
