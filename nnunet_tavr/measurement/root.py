"""Aortic root and ascending aorta: diameters in planes perpendicular to the centreline.

Starting at the annulus centre along the annulus normal, the lumen (labels valve, aortic_root and
aorta) is followed plane by plane (``step_mm`` apart): each plane is perpendicular to the current
centreline direction, the connected cross-section nearest the centre is found
(:func:`~nnunet_tavr.measurement.sections.cross_section`), its centroid becomes the next centreline
point and the direction follows the centroids of the last ``DIRECTION_WINDOW_MM``.  This is the
cross-sectional tracking that the paper's root rule (section 2.1) uses with planes parallel to the
annulus, but perpendicular to the vessel, so a curved ascending aorta is measured correctly.

From the diameter profile (area-derived diameter against arc length from the annulus):

- sinus of Valsalva = the first prominent maximum;
- sinotubular junction (STJ) = the first prominent minimum after it (the paper's rule: "first
  local minimum after the first local maximum");
- root height = distance of the STJ centre from the annulus plane (along the annulus normal);
- ascending aorta diameter at ``height_mm`` (default 40 mm) of arc length above the annulus.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from nnunet_tavr.geometry import PlaneGrid, arc_length, box_around, box_start, points_mm, signed_distance, smooth_polyline, unit
from nnunet_tavr.labels import LABELS
from nnunet_tavr.measurement.record import Section
from nnunet_tavr.measurement.sections import cross_section

LUMEN = (LABELS["valve"], LABELS["aortic_root"], LABELS["aorta"])

#: The direction of the next plane is the chord of the centreline over this length (mm).
DIRECTION_WINDOW_MM = 10.0
#: Gaussian smoothing of the tracked centroids into the centreline (mm).
SMOOTH_MM = 4.0
#: Peaks and troughs of the diameter profile smaller than this (mm) are noise.
PROMINENCE_MM = 0.5
#: A cross-section this much larger than the largest so far means the plane left the vessel.
MAX_AREA_JUMP = 2.0


def track(mask: np.ndarray, spacing, start_mm, direction, length_mm: float, origin_index=(0, 0, 0), step_mm: float = 1.0, pixel_mm: float = 0.4) -> tuple[dict, str]:
    """Follow a tubular mask from ``start_mm`` along ``direction`` with perpendicular cross-sections.

    Two passes: the first walks plane by plane, moving each plane's centre to the centroid of its
    cross-section and turning (damped) towards the line fitted through the last
    ``DIRECTION_WINDOW_MM`` of centroids; the second smooths those centroids (Gaussian,
    ``SMOOTH_MM``, or two of the thickest voxel edges) into the centreline and measures the cross-sections perpendicular to its
    tangent.  Without the second pass centroid jitter tilts the planes by several degrees, and a
    tilted plane through a tube reads a larger diameter.

    Parameters
    ----------
    mask : (z, y, x) float32 array
        Binary lumen mask (1 inside), possibly a crop whose first voxel has index ``origin_index``.
    spacing : 3 floats
        Voxel size per axis (mm).
    start_mm, direction : 3-vectors
        First centreline point and initial direction ((z, y, x) mm, index * spacing frame).
    length_mm : float
        Arc length to follow.

    Returns
    -------
    profile : dict of arrays
        ``arc_mm`` (n,), ``points_mm`` (n, 3), ``directions`` (n, 3), ``diameter_mm`` (area-derived),
        ``min_diameter_mm``, ``max_diameter_mm``, ``area_mm2``.
    stop : str
        Why tracking ended before ``length_mm`` ("" if it did not).
    """
    spacing = np.asarray(spacing, float)
    start = np.asarray(start_mm, float)
    point, d = start, unit(direction)
    centroids: list[np.ndarray] = []
    areas: list[float] = []
    arc, half, stop = 0.0, 25.0, ""
    window = max(3, int(round(DIRECTION_WINDOW_MM / step_mm)))
    while arc < length_mm:
        # Pass 1 needs only centroids: a coarse raster (2 x pixel) is enough and twice as fast.
        section, half = _section(mask, spacing, point + step_mm * d, d, half, 2 * pixel_mm, origin_index)
        if section is None:
            stop = f"lumen ends {arc + step_mm:.0f} mm along the centreline"
            break
        if arc > 10.0 and section.area > MAX_AREA_JUMP * areas[-1]:
            stop = f"cross-section doubles {arc + step_mm:.0f} mm along the centreline (plane leaves the vessel)"
            break
        if arc > 10.0 and section.area < 0.25 * areas[-1]:
            stop = f"lumen ends {arc + step_mm:.0f} mm along the centreline (cross-section shrinks to a quarter)"
            break
        if section.touches_border:
            stop = f"cross-section wider than {2 * half:.0f} mm at {arc + step_mm:.0f} mm"
            break
        arc += float(np.linalg.norm(section.centroid - point))
        point = section.centroid
        centroids.append(point)
        areas.append(section.area)
        half = max(25.0, 0.75 * section.max_diameter + 10.0)
        if len(centroids) > window:
            recent = np.array(centroids[-window:])
            axis = np.linalg.svd(recent - recent.mean(0), full_matrices=False)[2][0]
            d = unit(0.75 * d + 0.25 * (axis if np.dot(axis, d) > 0 else -axis))

    rows = []
    if centroids:
        path = np.vstack([start[None], np.array(centroids)])
        # Thick slices make the centroids jitter with the slice period: smooth over two slices.
        sigma = max(SMOOTH_MM, 2.0 * float(spacing.max())) / step_mm
        smooth = smooth_polyline(path, sigma)
        smooth[0] = start
        tangents = np.gradient(smooth, axis=0)
        tangents[0] = unit(direction)
        arcs = arc_length(smooth)
        for k in range(1, len(smooth)):
            t = unit(tangents[k])
            section, _ = _section(mask, spacing, smooth[k], t, max(25.0, 0.75 * np.sqrt(areas[k - 1]) + 10.0), pixel_mm, origin_index)
            if section is None or section.touches_border:
                stop = stop or f"no clean cross-section {arcs[k]:.0f} mm along the smoothed centreline"
                break
            rows.append((arcs[k], smooth[k], t, section.diameter, section.min_diameter, section.area, section.max_diameter))
    profile = {
        "arc_mm": np.array([r[0] for r in rows]),
        "points_mm": np.array([r[1] for r in rows]).reshape(-1, 3),
        "directions": np.array([r[2] for r in rows]).reshape(-1, 3),
        "diameter_mm": np.array([r[3] for r in rows]),
        "min_diameter_mm": np.array([r[4] for r in rows]),
        "area_mm2": np.array([r[5] for r in rows]),
        "max_diameter_mm": np.array([r[6] for r in rows]),
    }
    return profile, stop


def _section(mask, spacing, centre, normal, half, pixel_mm, origin_index):
    """Cross-section at ``centre`` perpendicular to ``normal``; widens the plane (up to 3 times)
    while the section touches its border.  Returns ``(section or None, half_width_used)``."""
    section = None
    for _ in range(3):
        grid = PlaneGrid.around(centre, normal, half, pixel_mm)
        section = cross_section(mask, spacing, grid, origin_index, seed_radius_mm=0.5 * half)
        if section is None or not section.touches_border or half > 60:
            break
        half *= 1.5
    return section, half


def find_sinus_and_stj(arc: np.ndarray, diameter: np.ndarray, prominence: float = PROMINENCE_MM) -> tuple[int | None, int | None, str]:
    """Indices of the sinus (first prominent maximum) and the STJ (first prominent minimum after it).

    Returns ``(sinus, stj, reason)``; an index is ``None`` when not found, ``reason`` says why.
    """
    if len(diameter) < 5:
        return None, None, f"root profile has only {len(diameter)} planes"
    peaks, _ = signal.find_peaks(diameter, prominence=prominence)
    if len(peaks) == 0:
        return None, None, "no diameter maximum (sinus) above the annulus"
    sinus = int(peaks[0])
    troughs, _ = signal.find_peaks(-diameter, prominence=prominence)
    troughs = troughs[troughs > sinus]
    if len(troughs) == 0:
        return sinus, None, f"no diameter minimum (STJ) after the sinus within the {arc[-1]:.0f} mm followed"
    stj = int(troughs[0])
    # The sinus value is the largest diameter between the annulus and the STJ.
    sinus = int(np.argmax(diameter[: stj + 1]))
    return sinus, stj, ""


def valley_bottom(arc: np.ndarray, diameter: np.ndarray, trough: int, fraction: float = 0.3) -> float:
    """Arc length of the bottom of the diameter valley around index ``trough``.

    A waist such as the STJ is flat at its bottom and usually steeper on the sinus side than on the
    ascending side, so the lowest sample wanders towards the flat side with sub-0.1 mm noise.  We
    fit ``d = c + a1 (s - s0)^2`` for ``s < s0`` and ``c + a2 (s - s0)^2`` beyond (an asymmetric
    parabola, least squares over a 0.05 mm grid of ``s0``) to the samples in the lowest
    ``fraction`` of the valley's depth on either side, and return ``s0``.
    """
    d_min = diameter[trough]
    left_top = diameter[: trough + 1].max()
    right_top = diameter[trough:].max()
    lo = trough
    while lo > 0 and diameter[lo - 1] - d_min <= fraction * (left_top - d_min):
        lo -= 1
    hi = trough
    while hi < len(diameter) - 1 and diameter[hi + 1] - d_min <= fraction * (right_top - d_min):
        hi += 1
    s, d = arc[lo : hi + 1], diameter[lo : hi + 1]
    if hi - lo < 4:
        return float(arc[trough])
    best, best_s0 = np.inf, float(arc[trough])
    for s0 in np.arange(s[1], s[-2] + 1e-9, 0.05):
        x2 = (s - s0) ** 2
        design = np.stack([np.ones_like(s), np.where(s < s0, x2, 0.0), np.where(s >= s0, x2, 0.0)], 1)
        coef, *_ = np.linalg.lstsq(design, d, rcond=None)
        if coef[1] < 0 or coef[2] < 0:
            continue
        err = float(np.sum((design @ coef - d) ** 2))
        if err < best:
            best, best_s0 = err, float(s0)
    return best_s0


def _root_label_top(crop: np.ndarray, lo, spacing, centre, normal) -> float | None:
    """Largest height (mm along ``normal`` from ``centre``) of an aortic-root voxel of ``crop``
    (first voxel at index ``lo``), or None."""
    idx = np.argwhere(crop == LABELS["aortic_root"])
    if len(idx) == 0:
        return None
    return float(np.max(signed_distance(points_mm(idx, spacing, lo), centre, normal)))


def measure_root(labels: np.ndarray, spacing, plane: dict, height_mm: float = 40.0, step_mm: float = 1.0) -> tuple[Section, Section]:
    """Measure the aortic root and the ascending aorta above an annulus plane.

    Parameters
    ----------
    labels : (z, y, x) integer array
        The 7-class TAVR label map.
    spacing : 3 floats
        Voxel size per axis (mm).
    plane : dict
        ``centre`` (mm) and ``normal`` (unit, pointing into the aorta) of the annulus plane, from
        :func:`~nnunet_tavr.measurement.annulus.measure_annulus`.
    height_mm : float
        Arc length above the annulus at which the ascending aorta is measured.

    Returns
    -------
    root, ascending : Section
        ``root``: ``sinus_diameter``, ``sinus_distance``, ``stj_diameter``, ``stj_distance``,
        ``root_height``; ``ascending``: ``diameter`` at ``height_mm``.  Geometry holds the profile.
    """
    spacing = np.asarray(spacing, float)
    centre, normal = np.asarray(plane["centre"], float), unit(plane["normal"])
    # Crop: everything the tracking can reach, and a margin.
    box = box_around(centre, height_mm + 40.0, spacing, labels.shape)
    lumen = None if box is None else np.isin(labels[box], LUMEN)
    if lumen is None or not lumen.any():
        reason = "no valve, aortic root or aorta voxels above the annulus"
        return Section.absent("aortic_root", reason), Section.absent("ascending_aorta", reason)
    crop, lo = labels[box], box_start(box)
    lumen = lumen.astype(np.float32)
    # 0.4 mm pixels: the area of a >= 20 mm lumen is then resolved to well under 1 %, whatever the voxel size.
    pixel = 0.4
    length = max(height_mm + 5.0, 50.0)
    profile, stop = track(lumen, spacing, centre, normal, length, lo, step_mm, pixel)
    arc, dia = profile["arc_mm"], profile["diameter_mm"]
    if len(arc) == 0:
        reason = f"no lumen cross-section above the annulus ({stop})"
        return Section.absent("aortic_root", reason), Section.absent("ascending_aorta", reason)
    geometry = {key: value for key, value in profile.items()}
    geometry["stop"] = stop or f"followed {length:.0f} mm"

    root = Section("aortic_root", geometry=geometry)
    how = "area-derived diameter 2 sqrt(A / pi) of the lumen (labels 1, 3, 4) cross-section perpendicular to the centreline"
    sinus, stj, reason = find_sinus_and_stj(arc, dia)
    if sinus is None:
        root.add_missing("sinus_diameter", reason)
    else:
        root.add("sinus_diameter", dia[sinus], "mm", f"largest {how} between annulus and STJ")
        root.add("sinus_max_calliper_diameter", profile["max_diameter_mm"][sinus], "mm", "maximal calliper length of the cross-section at the sinus")
        root.add("sinus_distance", arc[sinus], "mm", "arc length along the centreline from the annulus centre to the sinus plane")
    top = _root_label_top(crop, lo, spacing, centre, normal) if stj is None else None
    if stj is None and top is not None and sinus is not None and arc[sinus] < top <= arc[-1] + spacing.max() + step_mm:
        # No waist in the profile (e.g. the lumen ends at the STJ): the top of the aortic-root
        # label, which the derivation rule (or the network trained on it) put at the STJ.
        heights = (profile["points_mm"] - centre) @ normal
        s_stj = float(np.interp(top, heights, arc))
        root.notes.append(f"no STJ waist in the diameter profile ({reason}); STJ taken at the top of the aortic-root label")
        # One voxel below the top: the plane through the very top cuts the end of the label.
        root.add("stj_diameter", np.interp(s_stj - spacing.max(), arc, dia), "mm", f"{how} one voxel below the top of the aortic-root label (label 3)")
        root.add("stj_distance", s_stj, "mm", "arc length from the annulus centre to the top of the aortic-root label")
        root.add("root_height", top, "mm", "largest distance of an aortic-root (label 3) voxel from the annulus plane, along the annulus normal")
        root.add("stj_centre", [np.interp(s_stj, arc, profile["points_mm"][:, k]) for k in range(3)], "mm", "centreline point of the STJ, (z, y, x) in index * spacing")
    elif stj is None:
        for key in ("stj_diameter", "stj_distance", "root_height"):
            root.add_missing(key, reason)
    else:
        s_stj = valley_bottom(arc, dia, stj)
        p_stj = np.array([np.interp(s_stj, arc, profile["points_mm"][:, k]) for k in range(3)])
        root.add("stj_diameter", dia[stj], "mm", f"smallest {how} of the first prominent (>= {PROMINENCE_MM} mm) minimum after the sinus")
        root.add("stj_distance", s_stj, "mm", "arc length from the annulus centre to the bottom of the STJ waist (asymmetric parabola fitted to the lowest 30 % of the valley)")
        root.add("root_height", float(np.dot(p_stj - centre, normal)), "mm", "distance of the STJ centreline point from the annulus plane, along the annulus normal")
        root.add("stj_centre", p_stj, "mm", "centreline point of the STJ, (z, y, x) in index * spacing")
    root.geometry.update(sinus_index=-1 if sinus is None else sinus, stj_index=-1 if stj is None else stj)

    ascending = Section("ascending_aorta")
    if arc[-1] >= height_mm:
        k = int(np.argmin(np.abs(arc - height_mm)))
        ascending.add("diameter", np.interp(height_mm, arc, dia), "mm", f"{how}, {height_mm:g} mm of arc length above the annulus centre")
        ascending.add("height", height_mm, "mm", "arc length along the centreline from the annulus centre")
        ascending.add("min_calliper_diameter", profile["min_diameter_mm"][k], "mm", "minimal calliper width of that cross-section")
        ascending.add("max_calliper_diameter", profile["max_diameter_mm"][k], "mm", "maximal calliper length of that cross-section")
        ascending.add("point", profile["points_mm"][k], "mm", "centreline point, (z, y, x) in index * spacing")
    else:
        ascending = Section.absent("ascending_aorta", f"centreline followed only {arc[-1]:.0f} mm above the annulus, fewer than {height_mm:g} mm ({stop or 'end of lumen'})")
    return root, ascending
