"""The aortic valve's cusps (opt-in): three sinus lobes (RCC, LCC, NCC) with their hinge points
(nadirs) and commissures, and TotalSegmentator's ``aortic_sinuses`` masks.

Geometry (mm, in the frame of :class:`~nnunet_tavr.phantom.root.Annulus`): ``s`` is the height
above the annulus plane along its normal, ``rho`` the distance from the root axis and ``phi`` the
azimuth in the annulus plane, measured from the anatomical anterior direction projected on it,
turning toward the patient's left. The three commissures sit at azimuths near 60, 180 and 300
degrees (each jittered), a little below the STJ; cusp ``k`` spans the sector between its two
commissures, RCC anterior, LCC left-posterior, NCC right-posterior. Within its sector the cusp's
attachment line (the "crown") descends from each commissure (height ``H_j``) to the cusp's nadir
(``s = 0``, on the annulus ellipse): ``c(phi) = H_j * ease(t)``, ``t`` the angular fraction from the
nadir to that commissure. The leaflet floor rises from the wall toward the axis,
``floor(rho, phi) = c(phi) + depth * clip(1 - rho / R0(phi), 0, 1)`` with ``R0`` the annulus
ellipse's radius at ``phi``. A cusp's mask (its sinus of Valsalva) is the root lumen of its sector
above the floor and below the STJ. The sinus bulges outward between the commissures (the three
lobes), by ``bulge * sin(pi * t_sector)`` of the radius, fading to zero at the sinus' lower end and
at the STJ, so the annulus, the STJ and the commissures keep the root tube's radii.

Hence the hinge points are exactly ``centre + R0(phi_k) * dir(phi_k)``: they lie on the annulus
ellipse, the plane through them *is* the constructed annulus plane, and the annulus diameters in
that plane are the ellipse's. The left ventricular outflow tract (LVOT) mask is the left-ventricle
blood within :data:`LVOT_MM` below the annulus plane under the annulus ellipse (grown by 1 mm).

Everything random is drawn from ``np.random.default_rng([seed, BUILDER_ID])``.
"""

from __future__ import annotations

import math

import numpy as np

from nnunet_tavr.geometry import index_to_world, unit
from nnunet_tavr.phantom.canvas import Canvas, ease, profile
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import AORTA, Structure, totalseg_name

#: This builder's generator id (``default_rng([seed, BUILDER_ID])``); unique among builders.
BUILDER_ID = 3

#: The cusps in TotalSegmentator's order (``aortic_sinuses``), and their short names.
CUSP_NAMES = tuple(totalseg_name(n) for n in ("right_coronary_cusp", "left_coronary_cusp", "non_coronary_cusp"))
SHORT = dict(zip(CUSP_NAMES, ("RCC", "LCC", "NCC")))
LVOT = totalseg_name("left_ventricular_outflow_tract")
#: The masks written with ``aortic_sinuses=True`` (TotalSegmentator's ``aortic_sinuses`` task).
SINUS_MASK_NAMES = CUSP_NAMES + (LVOT,)
#: Commissures, named by the two cusps they separate (in the order of their azimuths).
COMMISSURE_NAMES = ("RCC-LCC", "LCC-NCC", "NCC-RCC")

#: Height (mm) of the LVOT mask below the annulus plane.
LVOT_MM = 12.0


def draw_cusps(seed: int) -> dict:
    """The per-subject cusp draw (degrees and mm) from the builder's own generator.

    ``commissure_deg``: azimuths of RCC-LCC, LCC-NCC, NCC-RCC; ``nadir_frac``: where each cusp's
    nadir sits in its sector (0.5 = the middle); ``below_stj_mm``: how far each commissure sits
    below the STJ; ``depth_mm``: leaflet floor rise from wall to axis; ``bulge``: lobe bulge per
    cusp (fraction of the radius).
    """
    rng = np.random.default_rng([int(seed), BUILDER_ID])
    return {
        "commissure_deg": (np.array([60.0, 180.0, 300.0]) + rng.uniform(-12.0, 12.0, 3)).tolist(),
        "nadir_frac": rng.uniform(0.42, 0.58, 3).tolist(),
        "below_stj_mm": rng.uniform(1.0, 3.0, 3).tolist(),
        "depth_mm": float(rng.uniform(6.0, 9.0)),
        "bulge": rng.uniform(0.08, 0.16, 3).tolist(),
    }


def _sectors(phi_deg: np.ndarray, comm: np.ndarray, nadir: np.ndarray):
    """Per voxel: cusp index (0 RCC, 1 LCC, 2 NCC), angular fraction from the nadir to the
    nearer commissure of the crown (0..1), the index of that commissure, and the fraction
    across the whole sector (0..1, for the lobe)."""
    # cusp k lies between commissure k-1 (start) and commissure k (end): RCC between NCC-RCC and RCC-LCC
    start, end = np.roll(comm, 1), comm
    width = (end - start) % 360.0
    rel = (phi_deg[..., None] - start) % 360.0  # (..., 3)
    inside = rel < width
    k = np.argmax(inside, axis=-1)
    rel_k = np.take_along_axis(rel, k[..., None], -1)[..., 0]
    w_k, n_k = width[k], nadir[k] * width[k]
    toward_end = rel_k >= n_k
    t = np.where(toward_end, (rel_k - n_k) / np.maximum(w_k - n_k, 1e-9), (n_k - rel_k) / np.maximum(n_k, 1e-9))
    comm_idx = np.where(toward_end, k, (k - 1) % 3)
    return k, np.clip(t, 0.0, 1.0), comm_idx, rel_k / w_k


def paint_cusps(frame: Frame, prm: Parameters, canvas: Canvas, root: Structure, aorta_part: np.ndarray,
                lv: np.ndarray, seed: int, origin_xyz) -> Structure:
    """Paint the sinus lobes, the cusp masks and the LVOT; return the hinge points and commissures.

    Parameters
    ----------
    root : Structure
        What :func:`~nnunet_tavr.phantom.root.paint_root` returned (its ``annulus``).
    aorta_part : np.ndarray
        uint8 (z, y, x): the aorta painted so far; lobes claim only voxels outside it.
    lv : np.ndarray
        bool (z, y, x): the left-ventricle blood (the LVOT is taken from it; lobes leave it alone).
    seed : int
        The subject's seed (the builder draws from its own generator).
    origin_xyz : (float, float, float)
        SimpleITK origin of the subject's image (identity direction), for world coordinates.

    Returns
    -------
    Structure
        ``masks``: ``aorta`` (the lobes only). ``truth``: ``hinge_points`` and ``commissures``
        (name -> ``index_zyx`` (voxels), ``world_xyz_mm`` (SimpleITK's physical frame) and ``mm``
        (the arrays' frame, (z, y, x))), ``cusp_parameters``. ``aux``: ``lobes`` (bool (z, y, x)),
        ``sinuses`` (mask name -> bool (z, y, x), :data:`SINUS_MASK_NAMES`).
    """
    draw = draw_cusps(seed)
    ann = root.aux["annulus"]
    n, c0 = ann.normal, ann.centre
    # azimuth basis: anterior (anatomical -y) projected on the plane, then toward the patient's left
    ant = frame.turn([0.0, -1.0, 0.0])
    e_ant = unit(ant - np.dot(ant, n) * n)
    e_left = np.cross(n, e_ant)
    if np.dot(e_left, frame.turn([0.0, 0.0, 1.0])) < 0:
        e_left = -e_left
    comm = np.asarray(draw["commissure_deg"]) % 360.0
    nadir_frac = np.asarray(draw["nadir_frac"])
    heights = prm.stj_distance - np.asarray(draw["below_stj_mm"])
    knots = [(0.0, 0.0), (prm.sinus_distance, prm.sinus_radius), (prm.stj_distance, prm.stj_radius)]

    def direction(phi_deg):
        p = np.deg2rad(phi_deg)
        return math.cos(p) * e_ant + math.sin(p) * e_left

    def ellipse_radius(d):
        cu, cv = float(np.dot(d, ann.major_axis)), float(np.dot(d, ann.minor_axis))
        return 1.0 / math.sqrt((cu / ann.major_radius) ** 2 + (cv / ann.minor_radius) ** 2)

    start = np.roll(comm, 1)
    nadir_deg = (start + nadir_frac * ((comm - start) % 360.0)) % 360.0
    hinges = {name: c0 + ellipse_radius(direction(a)) * direction(a) for name, a in zip(CUSP_NAMES, nadir_deg)}
    commissures = {name: c0 + h * n + float(profile(np.array([h]), knots)[0]) * direction(a)
                   for name, a, h in zip(COMMISSURE_NAMES, comm, heights)}

    lobes, sinuses = canvas.blank(), {name: canvas.blank() for name in SINUS_MASK_NAMES}
    rmax = (1.0 + max(draw["bulge"])) * max(prm.sinus_radius, ann.major_radius) + 2.0
    corners = np.array([c0 + a * rmax * ann.major_axis + b * rmax * ann.minor_axis + t * n
                        for a in (-1, 1) for b in (-1, 1) for t in (-LVOT_MM - 2.0, prm.stj_distance + 1.0)])
    box, coords = canvas.box(corners.min(0), corners.max(0))
    if box is not None:
        rel = canvas.offsets(coords, c0)
        s = sum(rel[k] * n[k] for k in range(3))
        a_ = sum(rel[k] * e_ant[k] for k in range(3))
        l_ = sum(rel[k] * e_left[k] for k in range(3))
        u = sum(rel[k] * ann.major_axis[k] for k in range(3))
        v = sum(rel[k] * ann.minor_axis[k] for k in range(3))
        rho = np.sqrt(a_ ** 2 + l_ ** 2)
        phi = np.degrees(np.arctan2(l_, a_)) % 360.0
        cusp, t, comm_idx, across = _sectors(phi, comm, nadir_frac)
        # lobes: outward bulge between the commissures, fading at the sinus' lower end and the STJ
        s_lo, s_hi = 0.5 * prm.sinus_distance, prm.stj_distance
        fade = np.sin(np.pi * np.clip((s - s_lo) / (s_hi - s_lo), 0.0, 1.0))
        radius = profile(s, knots)
        lobe_r = radius * (1.0 + np.asarray(draw["bulge"])[cusp] * np.sin(np.pi * across) * fade)
        in_range = (s > s_lo) & (s < s_hi)
        view_part = aorta_part[box]
        lobe = in_range & (rho <= lobe_r) & (view_part == 0) & ~lv[box]
        lobes[box] = lobe
        lumen = (view_part > 0) | lobe
        # the cusps: root lumen of each sector between the leaflet floor and the STJ
        r0 = 1.0 / np.sqrt((u / np.maximum(rho, 1e-9) / ann.major_radius) ** 2 + (v / np.maximum(rho, 1e-9) / ann.minor_radius) ** 2)
        crown = heights[comm_idx] * ease(t)
        floor = crown + draw["depth_mm"] * np.clip(1.0 - rho / r0, 0.0, 1.0)
        sinus = lumen & (s >= floor) & (s <= prm.stj_distance) & (s >= 0)
        for k, name in enumerate(CUSP_NAMES):
            sinuses[name][box] = sinus & (cusp == k)
        foot = ann.footprint(coords, grow_mm=1.0)
        sinuses[LVOT][box] = lv[box] & (s < 0) & (s >= -LVOT_MM) & foot

    def point(p_mm):
        index = p_mm / frame.spacing
        return {"index_zyx": index.tolist(), "world_xyz_mm": index_to_world(index, frame.spacing, origin_xyz).tolist(),
                "mm": p_mm.tolist()}

    truth = {
        "hinge_points": {name: point(p) for name, p in hinges.items()},
        "commissures": {name: point(p) for name, p in commissures.items()},
        "cusp_parameters": {**draw, "nadir_deg": nadir_deg.tolist(), "commissure_height_mm": heights.tolist()},
    }
    return Structure("cusps", masks={AORTA: lobes}, truth=truth, aux={"lobes": lobes, "sinuses": sinuses})
