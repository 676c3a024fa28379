"""Aortic-valve hinge points by rule, from TotalSegmentator's cusp masks (``aortic_sinuses``).

The hinge point (nadir) of a cusp is the deepest point of its sinus toward the ventricle along the
root axis, where the leaflet attaches to the aortic wall. The three hinge points span the
"virtual basal ring", the clinical annulus plane.

Rule (all parameters in mm, so the same values mean the same anatomy on any grid):

1. **Clean**: each cusp mask is reduced to its largest 26-connected component (isolated voxels
   are noise, not anatomy); a cusp with fewer than :attr:`HingeParams.min_voxels` voxels has no
   hinge point (``Excluded("cusp_too_small")``).
2. **Root axis** ``n`` (unit, ventricle -> aorta): the normal of the plane through the three cusp
   centroids, oriented away from the LVOT's centroid when an LVOT mask is given, else toward the
   side where the cusps hold more volume (a sinus is narrow at its nadir and full below the STJ).
3. **Axis point**: the root axis passes through the centroid of the cusps' top layer (within
   ``top_mm`` of their highest voxel centre), where the three sinuses fill the lumen below the STJ.
4. **Deepest layer** of each cusp: its voxel centres (``index * spacing``) whose height
   ``s = p . n`` lies within ``L = max(layer_mm, 0.75 * e)`` of the cusp's lowest centre, ``e =
   sum_i |n_i| * spacing_i`` the voxel's extent along ``n`` (so a coarse grid still gives a layer).
5. **Hinge point**: direction from the axis = the layer's radial offsets averaged with weights
   falling linearly from 1 at the lowest centre to 0 at ``L`` (the side of the nadir whose crown is
   flatter would otherwise pull it sideways). Distance from the axis = the ``rim_quantile`` of the
   layer's radial distances along that direction (the leaflet attaches at the wall, the outer rim of
   the layer). Height = the highest LVOT voxel centre within ``bracket_mm`` of that point (the
   outflow tract ends at the basal ring; a maximum over many voxels), or without an LVOT there the
   cusp's lowest centre minus ``e / 2`` (the voxel's lower face). A single extreme voxel would move
   the point by a whole voxel with one voxel of noise; the layer's weighted mean and quantile and
   the LVOT's many voxels do not.
6. **Refine**: the axis is replaced by the normal of the plane through the three hinge points and
   steps 3-5 are repeated (``iterations`` times in all), so the depth is measured along the basal
   ring's own normal.

Coordinates are in the arrays' physical frame (``index * spacing``, mm, (z, y, x)), as everywhere
in nnunet-tavr; :func:`nnunet_tavr.geometry.index_to_world` gives world coordinates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cc3d
import numpy as np

from nnunet_tavr.errors import Excluded
from nnunet_tavr.geometry import DegeneratePlane, as_spacing, plane_through, unit

#: The cusps in TotalSegmentator's order and their short names.
CUSPS = ("right_coronary_cusp", "left_coronary_cusp", "non_coronary_cusp")
SHORT = {"right_coronary_cusp": "RCC", "left_coronary_cusp": "LCC", "non_coronary_cusp": "NCC"}
#: Reason codes of cases without landmarks.
EXCLUSION_CODES = {
    "no_cusp_masks": "the case has no cusp masks (TotalSegmentator task aortic_sinuses)",
    "cusp_too_small": "a cusp mask has too few voxels for a hinge point",
    "degenerate_cusps": "the three cusps do not span a plane",
}


@dataclass(frozen=True)
class HingeParams:
    """Parameters of the hinge-point rule (see the module docstring)."""

    layer_mm: float = 2.0  #: thickness of the deepest layer (mm)
    rim_quantile: float = 0.8  #: radial quantile of the layer taken as the wall
    iterations: int = 3  #: axis refinements (1 = the cusp-centroid axis only)
    top_mm: float = 3.0  #: top layer of the cusps whose centroid is the root axis' point (mm)
    rim_half_voxel: bool = False  #: add half the voxel's in-plane extent to the rim radius
    bracket_mm: float = 5.0  #: LVOT voxels within this distance of a hinge point give its height (mm)
    min_voxels: int = 8  #: smallest cusp (voxels) that gets a hinge point

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class HingeResult:
    """Hinge points (mm, arrays' frame) by cusp name, the root axis used, and the plane through them."""

    points: dict[str, np.ndarray]
    axis: np.ndarray
    plane_centre: np.ndarray
    plane_normal: np.ndarray
    layer_voxels: dict[str, int]

    def to_dict(self) -> dict:
        return {"points_mm": {k: v.tolist() for k, v in self.points.items()}, "axis": self.axis.tolist(),
                "plane_centre_mm": self.plane_centre.tolist(), "plane_normal": self.plane_normal.tolist(),
                "layer_voxels": dict(self.layer_voxels)}


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a bool mask (empty stays empty)."""
    labels, n = cc3d.connected_components(np.asarray(mask, bool), connectivity=26, return_N=True)
    if n <= 1:
        return labels > 0
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def root_axis(centroids: list[np.ndarray], lvot_centroid=None, masses=None) -> np.ndarray:
    """Unit root axis from the three cusp centroids (mm), oriented ventricle -> aorta.

    ``lvot_centroid`` orients it (the LVOT lies below); without it ``masses`` (each cusp's points,
    ``(n_i, 3)``) do: the axis points to the side where the cusps' volume lies beyond the middle of
    their extent.
    """
    centre, normal = plane_through(*centroids)
    if lvot_centroid is not None:
        return normal if np.dot(centre - np.asarray(lvot_centroid, float), normal) >= 0 else -normal
    s = np.concatenate([p @ normal for p in masses])
    skew = s.mean() - 0.5 * (s.min() + s.max())
    return normal if skew >= 0 else -normal


def _axis_point(union: np.ndarray, axis: np.ndarray, top_mm: float) -> np.ndarray:
    """A point of the root axis: the centroid of the cusps' top layer (within ``top_mm`` of their
    highest voxel centre), where the three sinuses fill the whole lumen below the STJ."""
    s = union @ axis
    return union[s >= s.max() - top_mm].mean(axis=0)


def _hinge(points: np.ndarray, axis: np.ndarray, centre: np.ndarray, spacing: np.ndarray, prm: HingeParams,
           below: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """One cusp's hinge point (mm) from its voxel centres ``(n, 3)`` and the root axis through
    ``centre``; ``below`` (LVOT voxel centres, ``(m, 3)``) brackets the nadir's height from below."""
    s = points @ axis
    extent = float(np.abs(axis) @ spacing)  # a voxel's extent along the axis (mm)
    layer_mm = max(prm.layer_mm, 0.75 * extent)  # at least most of one voxel layer on coarse grids
    in_layer = s <= s.min() + layer_mm
    layer = points[in_layer]
    rel = layer - centre
    radial = rel - np.outer(rel @ axis, axis)
    # deeper voxels weigh more (linearly, 1 at the lowest centre, 0 at the layer's top): the
    # nadir's side with the flatter crown would otherwise pull the direction toward it
    weight = 1.0 - (s[in_layer] - s.min()) / layer_mm + 1e-6
    direction = unit((radial * weight[:, None]).sum(axis=0))
    half_axial = 0.5 * extent
    half_radial = 0.5 * float(np.abs(direction) @ spacing) if prm.rim_half_voxel else 0.0
    rho = np.quantile(radial @ direction, prm.rim_quantile) + half_radial
    lowest = s.min()
    estimate = centre + (lowest - centre @ axis) * axis + rho * direction
    if below is not None and len(below):
        near = below[np.linalg.norm(below - estimate, axis=1) <= prm.bracket_mm]
        top = (near @ axis).max() if len(near) else None
        # the nadir lies between the LVOT's highest and the cusp's lowest voxel centre
        lowest = top if top is not None and top < lowest else lowest - half_axial
    else:
        lowest = lowest - half_axial
    height = lowest - centre @ axis
    return centre + height * axis + rho * direction, len(layer)


def derive_hinge_points(cusps: dict[str, np.ndarray], spacing, lvot: np.ndarray | None = None,
                        params: HingeParams | None = None) -> HingeResult:
    """Hinge points of the three cusps.

    Parameters
    ----------
    cusps : dict
        :data:`CUSPS` name -> bool (z, y, x) mask (all on one grid).
    spacing : (float, float, float)
        mm per array axis (z, y, x).
    lvot : np.ndarray, optional
        bool (z, y, x) left ventricular outflow tract: orients the root axis.
    params : HingeParams

    Raises
    ------
    Excluded
        ``no_cusp_masks`` (a cusp is missing or empty), ``cusp_too_small`` or ``degenerate_cusps``.
    """
    prm = params or HingeParams()
    spacing = as_spacing(spacing)
    missing = [SHORT.get(n, n) for n in CUSPS if cusps.get(n) is None or not np.any(cusps[n])]
    if missing:
        raise Excluded("no_cusp_masks", f"no mask (or an empty one) for {', '.join(missing)}")
    points = {}
    for name in CUSPS:
        idx = np.argwhere(largest_component(cusps[name]))
        if len(idx) < prm.min_voxels:
            raise Excluded("cusp_too_small", f"{SHORT[name]}: {len(idx)} voxel(s), need {prm.min_voxels}")
        points[name] = idx * spacing
    centroids = [points[n].mean(axis=0) for n in CUSPS]
    below = np.argwhere(lvot) * spacing if lvot is not None and np.any(lvot) else None
    lvot_centroid = below.mean(axis=0) if below is not None else None
    try:
        axis = root_axis(centroids, lvot_centroid, [points[n] for n in CUSPS])
        union = np.concatenate([points[n] for n in CUSPS])
        for _ in range(max(1, prm.iterations)):
            centre = _axis_point(union, axis, prm.top_mm)
            found = {n: _hinge(points[n], axis, centre, spacing, prm, below) for n in CUSPS}
            hinges = {n: p for n, (p, _) in found.items()}
            plane_c, normal = plane_through(*(hinges[n] for n in CUSPS))
            axis = normal if np.dot(normal, axis) >= 0 else -normal
    except DegeneratePlane as exc:
        raise Excluded("degenerate_cusps", str(exc)) from None
    return HingeResult(points=hinges, axis=axis, plane_centre=plane_c, plane_normal=axis,
                       layer_voxels={n: int(k) for n, (_, k) in found.items()})
