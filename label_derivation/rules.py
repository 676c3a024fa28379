"""The three derivation rules of paper section 2.1: valve, annulus and aortic root.

All functions are pure functions on numpy arrays in (z, y, x) order with ``spacing`` given in mm per
array axis. Distances and thresholds are physical (mm, Euclidean, anisotropic grids included), so
the same parameters mean the same anatomy on any grid; the defaults equal the paper's voxel counts
on TotalSegmentator's 1.5 mm grid (3 voxels for the valve, 1 voxel for the annulus).

Coordinates reported by the aortic-root rule are in the *physical frame of the arrays*,
``index * spacing`` (mm, (z, y, x) order), as everywhere in nnunet-tavr.

Speed: the distance rules only run a Euclidean distance transform (``edt``) inside the bounding box
of the contact zone between the two masks, and the root sweep works on the list of aorta voxels
(one ``cc3d`` pass for the connectivity of all slabs at once) instead of intersecting the volume
with one plane after another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnunet_tavr.errors import Excluded
from nnunet_tavr.geometry import (
    EPS_MM,
    DegeneratePlane,
    bounding_box,
    fit_plane,
    grow_box,
    intersect_boxes,
    offset_box,
    paste,
    reach_voxels,
    relative_box,
)

#: Paper defaults (3 voxels and 1 voxel at 1.5 mm).
VALVE_MM = 4.5
ANNULUS_MM = 1.5
#: Moving-average window of the area curve, in sweep steps.
WINDOW = 5
#: How far the sweep runs beyond the annulus plane (mm); the aortic root ends well before.
MAX_DISTANCE_MM = 80.0
#: Minimum prominence of the area maximum / minimum, as a fraction of the largest smoothed area.
MIN_PROMINENCE = 0.01
#: Areas within this fraction of the lowest one count as the flat bottom of the minimum.
FLAT_TOLERANCE = 0.0075
#: Moving-average window (steps) of the curve the end is localised on: only voxel noise is removed.
LOCAL_WINDOW = 3

class RuleNotApplicable(Excluded):
    """A rule has no answer for this case (the case is excluded, not forced).

    Attributes
    ----------
    code : str
        Short machine-readable reason, e.g. ``"no_area_minimum"``.
    details : RootDetails or None
        What was computed before the rule gave up (the area curves), for QC figures.
    """

    def __init__(self, code: str, message: str, details: "RootDetails | None" = None):
        super().__init__(code, message)
        self.details = details


# ----------------------------------------------------------------------------------------------
# the distance rules


def _within_cropped(target: np.ndarray, source: np.ndarray, spacing, distance_mm: float):
    """``target`` voxels whose distance to the nearest ``source`` voxel is <= ``distance_mm``.

    Returns ``(box, sub)``: the result restricted to ``box`` (slices into the input arrays); it is
    ``False`` everywhere outside ``box``. ``(None, None)`` when the result is empty.
    """
    import edt

    shape = target.shape
    margin = reach_voxels(distance_mm, spacing)
    box_t, box_s = bounding_box(target), bounding_box(source)
    if box_t is None or box_s is None:
        return None, None
    # Every answer lies in the target's box within reach of the source's box ...
    core = intersect_boxes(box_t, grow_box(box_s, margin, shape))
    if core is None:
        return None, None
    tight = bounding_box(target[core])  # e.g. only the aortic root inside the ventricle's box
    if tight is None:
        return None, None
    core = offset_box(core, tight)
    # ... and every source voxel that can be within reach of it lies one margin further out.
    outer = grow_box(core, margin, shape)
    dist = edt.edt(~source[outer], anisotropy=tuple(float(s) for s in spacing), black_border=False, parallel=1)
    sub = target[core] & (dist[relative_box(core, outer)] <= distance_mm + EPS_MM)
    if not sub.any():
        return None, None
    return core, sub


def derive_valve(aorta: np.ndarray, left_ventricle: np.ndarray, spacing, valve_mm: float = VALVE_MM) -> np.ndarray:
    """Valve: aorta voxels within ``valve_mm`` of any left-ventricle voxel.

    Parameters
    ----------
    aorta, left_ventricle : (Z, Y, X) bool ndarray
        Coarse masks on the same grid.
    spacing : sequence of 3 floats
        Voxel size in mm per array axis.
    valve_mm : float
        Euclidean distance threshold in mm (inclusive). The paper's 3 voxels at 1.5 mm = 4.5 mm.

    Returns
    -------
    (Z, Y, X) bool ndarray
        The valve mask (empty when the masks are farther apart than ``valve_mm``).
    """
    aorta, left_ventricle = np.asarray(aorta, bool), np.asarray(left_ventricle, bool)
    _check_pair(aorta, left_ventricle, spacing)
    return paste(aorta.shape, *_within_cropped(aorta, left_ventricle, spacing, valve_mm))


def derive_annulus(aorta: np.ndarray, left_ventricle: np.ndarray, spacing, annulus_mm: float = ANNULUS_MM) -> np.ndarray:
    """Annulus: left-ventricle voxels within ``annulus_mm`` of any aorta voxel.

    Parameters
    ----------
    aorta, left_ventricle : (Z, Y, X) bool ndarray
        Coarse masks on the same grid.
    spacing : sequence of 3 floats
        Voxel size in mm per array axis.
    annulus_mm : float
        Euclidean distance threshold in mm (inclusive). The paper's 1 voxel at 1.5 mm = 1.5 mm.

    Returns
    -------
    (Z, Y, X) bool ndarray
        The annulus mask: a thin layer of the ventricle where it meets the aorta.
    """
    aorta, left_ventricle = np.asarray(aorta, bool), np.asarray(left_ventricle, bool)
    _check_pair(aorta, left_ventricle, spacing)
    return paste(aorta.shape, *_within_cropped(left_ventricle, aorta, spacing, annulus_mm))


def _check_pair(a, b, spacing):
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"masks must be 3-D arrays of one shape, got {a.shape} and {b.shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive mm values per array axis, got {tuple(spacing)}")


# ----------------------------------------------------------------------------------------------
# aortic root


@dataclass
class RootDetails:
    """What the aortic-root sweep found. Lengths in mm, areas in mm², points in the arrays' frame.

    ``distances_mm[k]`` is the distance of sweep plane ``k`` from the annulus plane; ``area_mm2`` the
    aorta cross-section there (ascending side only), ``area_smooth_mm2`` its moving average.
    """

    plane_point_mm: np.ndarray
    plane_normal: np.ndarray
    fit_rms_mm: float
    n_annulus_voxels: int
    step_mm: float
    slab_mm: float
    window: int
    distances_mm: np.ndarray
    area_mm2: np.ndarray
    area_smooth_mm2: np.ndarray
    peak_distance_mm: float | None = None
    end_distance_mm: float | None = None
    n_root_voxels: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly copy (arrays become lists, floats rounded to 0.001)."""

        def r(x):
            return None if x is None else np.round(np.asarray(x, float), 3).tolist()

        return {
            "end_distance_mm": r(self.end_distance_mm),
            "peak_distance_mm": r(self.peak_distance_mm),
            "plane_point_mm": r(self.plane_point_mm),
            "plane_normal": np.round(np.asarray(self.plane_normal, float), 6).tolist(),
            "fit_rms_mm": r(self.fit_rms_mm),
            "n_annulus_voxels": int(self.n_annulus_voxels),
            "n_root_voxels": int(self.n_root_voxels),
            "step_mm": r(self.step_mm),
            "slab_mm": r(self.slab_mm),
            "window": int(self.window),
            "distances_mm": r(self.distances_mm),
            "area_mm2": r(self.area_mm2),
            "area_smooth_mm2": r(self.area_smooth_mm2),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RootDetails":
        arrays = ("plane_point_mm", "plane_normal", "distances_mm", "area_mm2", "area_smooth_mm2")
        kw = {k: (np.asarray(v, float) if k in arrays else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**kw)


def fit_annulus_plane(points_mm: np.ndarray):
    """:func:`nnunet_tavr.geometry.fit_plane` of the annulus voxels, as a rule: a degenerate
    annulus excludes the case (code ``annulus_degenerate``) instead of raising."""
    try:
        return fit_plane(points_mm)
    except DegeneratePlane as exc:
        raise RuleNotApplicable("annulus_degenerate", f"annulus voxels: {exc}") from None


def derive_aortic_root(
    aorta: np.ndarray,
    annulus: np.ndarray,
    spacing,
    step_mm: float | None = None,
    window: int = WINDOW,
    max_distance_mm: float = MAX_DISTANCE_MM,
    min_prominence: float = MIN_PROMINENCE,
    flat_tolerance: float = FLAT_TOLERANCE,
    annulus_mm: float = ANNULUS_MM,
) -> tuple[np.ndarray, RootDetails]:
    """Aortic root: the aorta from the annulus plane to the first area minimum after the first maximum.

    A plane is fitted to the annulus voxels (least squares on their physical coordinates) and
    oriented from the ventricle into the aorta. The annulus voxels are ventricle voxels, whose
    centres lie about half a voxel inside the ventricle; the plane is moved along its normal onto
    the ventricle-aorta interface (midway between the annulus and the aorta voxels within
    ``annulus_mm`` of it), so distances are measured from where the aorta begins. Parallel planes
    are swept away from it every ``step_mm``; at each, the aorta cross-section area is measured as
    the aorta volume in a slab around the plane divided by the slab's thickness (the thickness is
    at least one voxel's extent along the normal, so no slab falls between voxel centres). The
    curve is smoothed by a centred moving average of ``window`` steps and the root ends at the
    first local minimum after the first local maximum of the smoothed curve.

    The moving average finds the minimum robustly but shifts it distally, because the narrowing
    from the sinuses to the sinotubular junction is steeper than the widening after it. The end is
    therefore localised on a lightly smoothed curve (3 steps, against voxel noise only): from the
    maximum to the smoothed minimum (plus half a window), the first sample within
    ``flat_tolerance`` of the lowest, i.e. the point where the narrowing stops (see
    :func:`find_root_end`). Flat bottoms resolve to their proximal start.

    Only the ascending aorta counts. The sweep planes also cut the descending aorta, so a voxel
    enters the area curve and the root only if it is reachable from the aorta at the annulus by a
    26-connected path inside the aorta along which the distance from the annulus plane never
    decreases (binned to ``step_mm``). The ascending aorta is reached plane by plane; the
    descending aorta is reachable only over the top of the arch and back *down*, which such a path
    cannot do, so it never enters the curve or the root even where it lies at the same distance.

    Parameters
    ----------
    aorta, annulus : (Z, Y, X) bool ndarray
        The coarse aorta mask and the annulus (see :func:`derive_annulus`).
    spacing : sequence of 3 floats
        Voxel size in mm per array axis.
    step_mm : float, optional
        Distance between sweep planes (mm). Default: the in-plane resolution, ``min(spacing[1:])``.
    window : int
        Moving-average window in steps (odd values keep the average centred).
    max_distance_mm : float
        How far from the annulus plane the sweep runs.
    min_prominence : float
        Extrema whose prominence is below this fraction of the largest smoothed area are ignored
        (noise); plateaus of the smoothed curve resolve to their middle (rounded down).
    flat_tolerance : float
        Areas within this fraction of the lowest count as the flat bottom of the minimum.
    annulus_mm : float
        The threshold the annulus was derived with; it defines the aorta's contact layer used to
        put the plane on the interface.

    Returns
    -------
    root : (Z, Y, X) bool ndarray
        Aorta voxels between the annulus plane and the end plane (ascending side only).
    details : RootDetails
        Plane, curves and the detected peak and end distances.

    Raises
    ------
    RuleNotApplicable
        No usable annulus plane, no aorta at the annulus, no maximum, or no minimum after it. The
        exception carries the curves computed so far in ``.details``.
    """
    aorta, annulus = np.asarray(aorta, bool), np.asarray(annulus, bool)
    _check_pair(aorta, annulus, spacing)
    box, sub, details = _root_cropped(
        aorta, np.argwhere(annulus), spacing, step_mm, window, max_distance_mm, min_prominence, flat_tolerance, annulus_mm
    )
    return paste(aorta.shape, box, sub), details


def smooth_area(area: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Centred moving average over ``window`` samples (the ends repeat the edge values)."""
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(np.asarray(area, float), size=int(window), mode="nearest")


def find_root_end(
    distances_mm: np.ndarray,
    area_mm2: np.ndarray,
    window: int = WINDOW,
    min_prominence: float = MIN_PROMINENCE,
    flat_tolerance: float = FLAT_TOLERANCE,
    local_window: int = LOCAL_WINDOW,
) -> tuple[int, float]:
    """The root's end on an area curve: the first local minimum after the first local maximum.

    Detection runs on the moving average of ``window`` steps (:func:`smooth_area`); extrema below
    ``min_prominence`` times the largest smoothed area are noise, and a flat extremum resolves to
    its middle (rounded down; ``scipy.signal.find_peaks``). That average moves an asymmetric
    minimum towards its shallower side, so the end is then localised on a curve smoothed over only
    ``local_window`` steps: from the maximum to the detected minimum plus half a window, the first
    sample within ``flat_tolerance`` of the lowest, refined by linear interpolation between it and
    the sample before (where the narrowing stops).

    Parameters
    ----------
    distances_mm : (K,) ndarray
        Equally spaced plane distances from the annulus (mm), increasing.
    area_mm2 : (K,) ndarray
        Raw cross-section areas (mm²).

    Returns
    -------
    peak_index : int
        Index of the first maximum of the smoothed curve.
    end_mm : float
        Distance of the root's end from the annulus plane (mm).

    Raises
    ------
    RuleNotApplicable
        ``no_area_maximum`` or ``no_area_minimum``.
    """
    from scipy.signal import find_peaks

    distances_mm = np.asarray(distances_mm, float)
    area = np.asarray(area_mm2, float)
    step = float(distances_mm[1] - distances_mm[0])
    smooth = smooth_area(area, window)
    prominence = max(min_prominence * float(smooth.max()), 1e-9)
    peaks, _ = find_peaks(smooth, prominence=prominence)
    if peaks.size == 0:
        raise RuleNotApplicable("no_area_maximum", f"the smoothed area curve has no local maximum within {distances_mm[-1]:g} mm of the annulus")
    peak = int(peaks[0])
    valleys, _ = find_peaks(-smooth, prominence=prominence)
    valleys = valleys[valleys > peak]
    if valleys.size == 0:
        exc = RuleNotApplicable(
            "no_area_minimum",
            f"the smoothed area curve has no local minimum after its maximum at {distances_mm[peak]:.1f} mm (within {distances_mm[-1]:g} mm of the annulus)",
        )
        exc.peak_index = peak
        raise exc
    stop = min(int(valleys[0]) + int(window) // 2 + 1, len(area))
    local = smooth_area(area, local_window)
    segment = local[peak:stop]
    level = segment.min() * (1.0 + flat_tolerance)
    end_index = peak + int(np.flatnonzero(segment <= level)[0])
    end = float(distances_mm[end_index])
    if end_index > peak and local[end_index - 1] > local[end_index]:
        # Sub-step: where the curve, linearly interpolated, reaches the bottom level.
        frac = (local[end_index - 1] - level) / (local[end_index - 1] - local[end_index])
        end = float(distances_mm[end_index - 1] + np.clip(frac, 0.0, 1.0) * step)
    return peak, end


def _interface_offset(aorta, annulus_idx, spacing, centre, normal, annulus_mm) -> float:
    """Half the mean distance along ``normal`` from the annulus plane to the aorta's contact layer."""
    lo = annulus_idx.min(axis=0)
    margin = reach_voxels(annulus_mm, spacing)
    lo = np.maximum(lo - margin, 0)
    hi = np.minimum(annulus_idx.max(axis=0) + 1 + margin, aorta.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    ann = np.zeros(tuple(hi - lo), bool)
    ann[tuple((annulus_idx - lo).T)] = True
    sub_box, sub = _within_cropped(aorta[box], ann, spacing, annulus_mm)
    if sub_box is None:
        return 0.0
    layer = np.argwhere(sub) + lo + [b.start for b in sub_box]
    return 0.5 * float(np.mean((layer * spacing - centre) @ normal))


def _root_cropped(aorta, annulus_idx, spacing, step_mm, window, max_distance_mm, min_prominence, flat_tolerance, annulus_mm):
    """Core of :func:`derive_aortic_root`; the root is returned as ``(box, sub)``."""
    import cc3d

    spacing = np.asarray(spacing, float)
    step = float(step_mm) if step_mm else float(min(spacing[1:]))
    if step <= 0 or window < 1 or max_distance_mm <= step:
        raise ValueError(f"need step_mm > 0, window >= 1 and max_distance_mm > step_mm (got {step}, {window}, {max_distance_mm})")

    plane = fit_annulus_plane(annulus_idx * spacing)
    centre, normal, rms = plane.centre, plane.normal, plane.rms
    # The annulus disk: its in-plane radius bounds where the aorta leaves the ventricle.
    rel = annulus_idx * spacing - centre
    r_ann = float(np.sqrt(np.max(np.sum(rel**2, axis=1) - (rel @ normal) ** 2)))
    r_ann = max(r_ann, 2 * float(spacing.max()))

    abox = bounding_box(aorta)
    if abox is None:
        raise RuleNotApplicable("empty_mask", "the aorta mask is empty")
    offset = np.array([b.start for b in abox])
    idx = np.nonzero(aorta[abox])
    pts = np.stack(idx, axis=1).astype(np.int64) + offset  # global voxel indices of the aorta
    pos = pts * spacing - centre
    s = pos @ normal
    radial2 = np.sum(pos**2, axis=1) - s**2

    # Orient the normal from the ventricle into the aorta: the aorta voxels over the annulus disk
    # lie on the aortic side (the ventricle lies on the other).
    near = (radial2 <= r_ann**2) & (np.abs(s) <= r_ann)
    if not near.any():
        raise RuleNotApplicable("aorta_not_at_annulus", "no aorta voxel lies over the annulus: the masks do not meet")
    if s[near].mean() < 0:
        normal, s = -normal, -s

    # Move the plane from the annulus voxel centres onto the ventricle-aorta interface: midway to
    # the aorta's own contact layer (aorta voxels within annulus_mm of the annulus).
    shift = _interface_offset(aorta, annulus_idx, spacing, centre, normal, annulus_mm)
    centre = centre + shift * normal
    s = s - shift

    # A voxel's extent along the normal; slabs thinner than it would alias (empty slabs).
    extent = float(np.sum(np.abs(normal) * spacing))
    slab = max(step, extent)
    n_steps = int(np.floor(max_distance_mm / step)) + 1
    distances = np.arange(n_steps) * step

    in_range = (s >= -step / 2) & (s < distances[-1] + slab / 2 + step)
    if not in_range.any():
        raise RuleNotApplicable("aorta_not_at_annulus", "no aorta voxel lies on the aortic side of the annulus plane")
    pts, s, radial2 = pts[in_range], s[in_range], radial2[in_range]
    bins = np.floor(s / step + 0.5).astype(np.int64)  # slab 0 is centred on the annulus plane

    # Connectivity of all slabs in one pass: label each voxel with its slab, let cc3d split every
    # slab into components, then walk the contact graph from lower to higher slabs only.
    lo, hi = pts.min(axis=0), pts.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    local = tuple((pts - lo).T)
    slabs = np.zeros(tuple(hi - lo), np.uint32)
    slabs[local] = bins + 1
    comps = cc3d.connected_components(slabs, connectivity=26)
    comp_of_voxel = comps[local].astype(np.int64)
    n_comps = int(comp_of_voxel.max()) + 1
    slab_of = np.zeros(n_comps, np.int64)
    slab_of[comp_of_voxel] = bins
    seeds = np.zeros(n_comps, bool)
    seeds[comp_of_voxel[(radial2 <= r_ann**2) & (s <= slab)]] = True
    kept = seeds.copy()
    successors: dict[int, list[int]] = {}
    for a, b in cc3d.region_graph(comps, connectivity=26):
        if slab_of[a] > slab_of[b]:
            a, b = b, a
        if slab_of[a] < slab_of[b]:
            successors.setdefault(int(a), []).append(int(b))
    for c in np.argsort(slab_of, kind="stable"):
        if kept[c]:
            for d in successors.get(int(c), ()):
                kept[d] = True
    del comps, slabs
    keep = kept[comp_of_voxel]
    s_kept = np.sort(s[keep])

    voxel_volume = float(np.prod(spacing))
    counts = np.searchsorted(s_kept, distances + slab / 2) - np.searchsorted(s_kept, distances - slab / 2)
    area = counts * voxel_volume / slab
    details = RootDetails(
        plane_point_mm=centre,
        plane_normal=normal,
        fit_rms_mm=rms,
        n_annulus_voxels=len(annulus_idx),
        step_mm=step,
        slab_mm=slab,
        window=int(window),
        distances_mm=distances,
        area_mm2=area,
        area_smooth_mm2=smooth_area(area, window),
    )
    try:
        peak, end = find_root_end(distances, area, window, min_prominence, flat_tolerance)
    except RuleNotApplicable as exc:
        exc.details = details
        if getattr(exc, "peak_index", None) is not None:
            details.peak_distance_mm = float(distances[exc.peak_index])
        raise
    details.peak_distance_mm = float(distances[peak])
    details.end_distance_mm = end

    in_root = keep & (s <= end + EPS_MM)
    sub = np.zeros(tuple(hi - lo), bool)
    sub[tuple(a[in_root] for a in local)] = True
    details.n_root_voxels = int(in_root.sum())
    return box, sub, details
