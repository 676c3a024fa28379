"""Write synthetic TotalSegmentator-like subjects whose TAVR anatomy is known by construction.

Each subject is a CT with an oblique ellipsoidal left ventricle cut flat by the annulus plane, an
aortic root with an elliptic annulus, sinuses of Valsalva and a sinotubular junction (STJ), the
ascending aorta, the arch, a descending aorta running back down behind the heart, the abdominal
aorta and its bifurcation into two iliac arteries (one of them with a stenosis). The output uses the
TotalSegmentator dataset layout::

    OUT_DIR/meta.csv
    OUT_DIR/s0000/ct.nii.gz
    OUT_DIR/s0000/segmentations/{aorta,heart_ventricle_left,heart_myocardium,
                                 iliac_artery_left,iliac_artery_right}.nii.gz
    OUT_DIR/s0000/truth.json          (ground truth by construction, mm)

Arrays are (z, y, x) with z pointing superior, y posterior and x to the patient's left; all truth
coordinates are in the arrays' physical frame (index * spacing, mm, (z, y, x) order).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: TotalSegmentator mask names written for every subject.
MASK_NAMES = ("aorta", "heart_ventricle_left", "heart_myocardium", "iliac_artery_left", "iliac_artery_right")

#: Values of :attr:`Phantom.aorta_part`.
AORTA_PARTS = {"root": 1, "ascending": 2, "arch": 3, "descending": 4, "abdominal": 5}

#: The rule thresholds used for the by-construction valve and annulus labels (paper 2.1 on 1.5 mm).
VALVE_MM = 4.5
ANNULUS_MM = 1.5

#: Hounsfield units outside the field of view (what scanners pad with).
OUTSIDE_FOV_HU = -1024


@dataclass
class Phantom:
    """One synthetic subject. Arrays are (z, y, x); ``spacing`` is mm per array axis."""

    ct: np.ndarray
    masks: dict[str, np.ndarray]
    labels: np.ndarray
    aorta_part: np.ndarray
    spacing: tuple[float, float, float]
    truth: dict = field(default_factory=dict)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def geometry(self):
        from nnunet_tavr.io import Geometry

        return Geometry(
            shape=tuple(self.ct.shape),
            spacing=tuple(float(s) for s in self.spacing),
            origin=tuple(float(o) for o in self.origin),
            direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        )


# ----------------------------------------------------------------------------------------------
# small geometry helpers


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _frame(axis: np.ndarray, hint=(1.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing ``axis`` to a right-handed orthonormal frame."""
    hint = np.asarray(hint, float)
    if abs(np.dot(hint, axis)) > 0.9:
        hint = np.array([0.0, 1.0, 0.0])
    e1 = _unit(hint - np.dot(hint, axis) * axis)
    e2 = np.cross(axis, e1)
    return e1, e2


def _rotation(degrees_zyx) -> np.ndarray:
    """Rotation matrix acting on (z, y, x) vectors: rotations about z, then y, then x (degrees)."""
    az, ay, ax = np.deg2rad(degrees_zyx)
    # Axes in (z, y, x) coordinates; a rotation about one axis mixes the other two.
    rz = np.array([[1, 0, 0], [0, math.cos(az), -math.sin(az)], [0, math.sin(az), math.cos(az)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rx = np.array([[math.cos(ax), -math.sin(ax), 0], [math.sin(ax), math.cos(ax), 0], [0, 0, 1]])
    return rx @ ry @ rz


def _ease(t: np.ndarray) -> np.ndarray:
    """Cosine ease from 0 to 1 on t in [0, 1] with zero slope at both ends."""
    t = np.clip(t, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _profile(s: np.ndarray, knots: list[tuple[float, float]]) -> np.ndarray:
    """Piecewise cosine-eased interpolation through ``knots`` [(s, value), ...]; constant outside.

    Every knot is a stationary point, so an interior knot that is lower than both neighbours is an
    exact local minimum of the profile (used for the STJ).
    """
    s = np.asarray(s, dtype=float)
    out = np.full(s.shape, knots[0][1], dtype=float)
    for (s0, v0), (s1, v1) in zip(knots[:-1], knots[1:]):
        inside = s >= s0
        out = np.where(inside, v0 + (v1 - v0) * _ease((s - s0) / (s1 - s0)), out)
    return out


def _bezier(p0, p1, p2, p3, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _resample(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a polyline at a constant arc-length ``step`` (mm); returns points and arc length."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    new_arc = np.arange(0.0, arc[-1] + 1e-9, step)
    out = np.stack([np.interp(new_arc, arc, points[:, k]) for k in range(3)], axis=1)
    return out, new_arc


class _Canvas:
    """Rasterises shapes given in mm onto a (z, y, x) grid with per-axis spacing."""

    def __init__(self, shape, spacing):
        self.shape = tuple(shape)
        self.spacing = np.asarray(spacing, float)

    def box(self, lo_mm, hi_mm):
        """Index slices covering the mm box [lo, hi] (clipped), and the voxel-centre coordinates."""
        lo = np.maximum(np.floor(np.asarray(lo_mm) / self.spacing).astype(int), 0)
        hi = np.minimum(np.ceil(np.asarray(hi_mm) / self.spacing).astype(int) + 1, self.shape)
        if np.any(hi <= lo):
            return None, None
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        coords = [np.arange(a, b) * sp for a, b, sp in zip(lo, hi, self.spacing)]
        return sl, coords

    def balls(self, target: np.ndarray, centers: np.ndarray, radii: np.ndarray, value=True, only_empty=False):
        """Paint the union of balls (centres and radii in mm)."""
        for c, r in zip(centers, radii):
            sl, coords = self.box(c - r, c + r)
            if sl is None:  # the ball lies outside the grid
                continue
            zz, yy, xx = coords
            d2 = (zz[:, None, None] - c[0]) ** 2 + (yy[None, :, None] - c[1]) ** 2 + (xx[None, None, :] - c[2]) ** 2
            inside = d2 <= r * r
            view = target[sl]
            if only_empty:
                inside &= view == 0
            view[inside] = value


# ----------------------------------------------------------------------------------------------


def _draw_parameters(rng: np.random.Generator) -> dict:
    """Per-subject anatomical variation (mm and degrees)."""
    u = rng.uniform
    a0 = u(11.5, 13.5)
    s_sin = u(9.0, 13.0)
    r_sin = u(15.5, 18.0)
    s_stj = s_sin + u(9.0, 13.0)
    r_stj = u(12.0, min(14.0, r_sin - 2.5))
    return dict(
        annulus_major=a0,
        annulus_minor=a0 * u(0.75, 0.9),
        annulus_twist_deg=u(0.0, 180.0),
        sinus_distance=s_sin,
        sinus_radius=r_sin,
        stj_distance=s_stj,
        stj_radius=r_stj,
        ascending_radius=u(max(r_stj + 1.0, 14.0), 16.5),
        root_tilt_deg=u(30.0, 45.0),
        root_azimuth_deg=u(-15.0, 15.0),
        lv_tilt_deg=u(50.0, 65.0),
        lv_azimuth_deg=u(-20.0, 20.0),
        lv_semi_axes=(u(42.0, 50.0), u(22.0, 26.0), u(20.0, 24.0)),
        descending_radius=u(10.5, 12.5),
        abdominal_radius=u(8.0, 9.5),
        iliac_radius=u(4.5, 5.8),
        iliac_spread_deg=u(22.0, 32.0),
        jitter=rng.uniform(-6.0, 6.0, size=3),
        contrast_hu=u(290.0, 360.0),
        stenosis_side=("left", "right")[int(rng.integers(2))],
        stenosis_position=u(0.35, 0.6),
        stenosis_depth=u(0.35, 0.55),
    )


def make_subject(
    seed: int,
    shape: tuple[int, int, int] = (200, 160, 160),
    spacing: float | tuple[float, float, float] = 1.5,
    heart: bool = True,
    iliacs: bool = True,
    stenosis: bool = True,
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    noise_hu: float = 12.0,
) -> Phantom:
    """Build one subject in memory.

    Parameters
    ----------
    seed : int
        Everything random about the subject derives from it (deterministic).
    shape : (int, int, int)
        Array shape (z, y, x) in voxels. The anatomy is laid out relative to the field of view, so
        any shape of roughly 300 x 240 x 240 mm works.
    spacing : float or (float, float, float)
        Voxel size in mm, isotropic or per array axis (z, y, x).
    heart : bool
        ``False`` makes a chest-less scan: the field of view ends at the diaphragm, so the left
        ventricle and the thoracic aorta are absent (their masks are written empty).
    iliacs : bool
        ``False`` ends the field of view above the aortic bifurcation: iliac masks are empty.
    stenosis : bool
        Narrow one iliac artery (side, position and depth drawn from ``seed``).
    rotation_deg : (float, float, float)
        Extra rotation of the whole anatomy about the centre of the field of view (degrees about
        z, y, x), for tests of orientation-independent geometry.
    noise_hu : float
        Standard deviation of the Gaussian CT noise.

    Returns
    -------
    Phantom
        CT (int16 HU), TotalSegmentator-named masks (bool), the 7-class TAVR label map by
        construction, the aorta part map and ``truth`` (JSON-serialisable).
    """
    rng = np.random.default_rng(seed)
    prm = _draw_parameters(rng)
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,)).copy()
    shape = tuple(int(s) for s in shape)
    extent = np.asarray(shape) * spacing
    canvas = _Canvas(shape, spacing)
    centre = (extent - spacing) / 2.0
    rot = _rotation(rotation_deg)

    def place(p):  # anatomical mm (relative to the FOV centre) -> array frame
        return centre + rot @ np.asarray(p, float)

    def turn(v):
        return rot @ np.asarray(v, float)

    Z, Y, X = extent
    # --- landmarks in the anatomical frame (z up, y posterior, x left), relative to the centre
    annulus_c = np.array([0.18 * Z, -0.02 * Y, -0.03 * X]) + prm["jitter"]
    tilt, azim = np.deg2rad(prm["root_tilt_deg"]), np.deg2rad(prm["root_azimuth_deg"])
    horizontal = np.array([0.0, -math.cos(0.65 + azim), -math.sin(0.65 + azim)])  # anterior-right
    n = _unit([math.cos(tilt), 0, 0] + math.sin(tilt) * horizontal)  # ventricle -> aorta
    lt, la = np.deg2rad(prm["lv_tilt_deg"]), np.deg2rad(prm["lv_azimuth_deg"])
    # LV long axis, apex -> base: the apex points inferior, anterior and to the left.
    lv_axis = _unit([math.cos(lt), math.sin(lt) * math.sin(0.45 + la), -math.sin(lt) * math.cos(0.45 + la)])
    a_lv, b_lv, c_lv = prm["lv_semi_axes"]
    lv_centre = annulus_c - 0.6 * a_lv * lv_axis

    straight = max(prm["stj_distance"] + 32.0, 52.0)  # root + ascending aorta straight along n
    asc_end = annulus_c + straight * n
    desc_top = np.array([asc_end[0] - 12.0, annulus_c[1] + 0.2 * Y, 0.09 * X])
    bif = np.array([-0.28 * Z, 0.06 * Y, 0.01 * X])
    diaphragm_z = lv_centre[0] - a_lv - 12.0  # below the apex: the abdomen

    # --- centreline of the curved aorta (arch + descending + abdominal) in the anatomical frame
    arch = _bezier(asc_end, asc_end + 38.0 * n + [8.0, 0, 0], desc_top + [42.0, 0, 0], desc_top, 80)
    down = np.linspace(desc_top, bif, 120)
    path, arc = _resample(np.vstack([arch, down[1:]]), 0.5)
    arch_len = _resample(arch, 0.5)[1][-1]
    r_path = np.interp(
        arc,
        [0, arch_len, arch_len + 30, arc[-1] - 30, arc[-1]],
        [prm["ascending_radius"], prm["descending_radius"] + 1.0, prm["descending_radius"], prm["abdominal_radius"] + 0.8, prm["abdominal_radius"]],
    )

    aorta_part = np.zeros(shape, np.uint8)
    # Paint descending/abdominal first and the arch over it, then the straight tube: parts of the
    # root and ascending aorta are never claimed by a ball of the curved path.
    part_of_path = np.where(arc <= arch_len, AORTA_PARTS["arch"], np.where(path[:, 0] > diaphragm_z, AORTA_PARTS["descending"], AORTA_PARTS["abdominal"]))
    for part in (AORTA_PARTS["abdominal"], AORTA_PARTS["descending"], AORTA_PARTS["arch"]):
        sel = part_of_path == part
        canvas.balls(aorta_part, np.array([place(p) for p in path[sel]]), r_path[sel], value=part)

    # --- the straight root + ascending tube, rendered analytically (elliptic annulus)
    n_w = turn(n)
    e1, e2 = _frame(n, hint=[0, 1, 0])
    twist = np.deg2rad(prm["annulus_twist_deg"])
    major_dir = math.cos(twist) * e1 + math.sin(twist) * e2
    minor_dir = np.cross(n, major_dir)
    major_w, minor_w, a_w = turn(major_dir), turn(minor_dir), place(annulus_c)
    rmax = max(prm["sinus_radius"], prm["ascending_radius"]) + 2
    corners = np.array([a_w + sgn1 * rmax * major_w + sgn2 * rmax * minor_w + t * n_w for sgn1 in (-1, 1) for sgn2 in (-1, 1) for t in (0, straight)])
    sl, (zz, yy, xx) = canvas.box(corners.min(0), corners.max(0))
    rel = [zz[:, None, None] - a_w[0], yy[None, :, None] - a_w[1], xx[None, None, :] - a_w[2]]
    s = sum(rel[k] * n_w[k] for k in range(3))
    u_ = sum(rel[k] * major_w[k] for k in range(3))
    v_ = sum(rel[k] * minor_w[k] for k in range(3))
    knots = [(0.0, 0.0), (prm["sinus_distance"], prm["sinus_radius"]), (prm["stj_distance"], prm["stj_radius"]), (prm["stj_distance"] + 20.0, prm["ascending_radius"])]
    radius = _profile(s, knots)
    grow = _ease(s / prm["sinus_distance"])  # elliptic annulus -> circular sinus
    semi_a = np.where(s < prm["sinus_distance"], prm["annulus_major"] + (prm["sinus_radius"] - prm["annulus_major"]) * grow, radius)
    semi_b = np.where(s < prm["sinus_distance"], prm["annulus_minor"] + (prm["sinus_radius"] - prm["annulus_minor"]) * grow, radius)
    tube = ((u_ / semi_a) ** 2 + (v_ / semi_b) ** 2 <= 1.0) & (s >= 0) & (s <= straight)
    view = aorta_part[sl]
    view[tube & (s <= prm["stj_distance"])] = AORTA_PARTS["root"]
    view[tube & (s > prm["stj_distance"])] = AORTA_PARTS["ascending"]
    aorta = aorta_part > 0

    # --- left ventricle (ellipsoid cut flat by the annulus plane) and myocardium (10 mm shell)
    lv_w, lvc_w = turn(lv_axis), place(lv_centre)
    f1, f2 = _frame(lv_axis, hint=[0, 0, 1])
    f1_w, f2_w = turn(f1), turn(f2)
    wall = 9.0
    reach = a_lv + wall + 2
    sl_h, (zz, yy, xx) = canvas.box(lvc_w - reach, lvc_w + reach)
    rel = [zz[:, None, None] - lvc_w[0], yy[None, :, None] - lvc_w[1], xx[None, None, :] - lvc_w[2]]
    q = [sum(rel[k] * d[k] for k in range(3)) for d in (lv_w, f1_w, f2_w)]
    s_h = sum((rel[k] + lvc_w[k] - a_w[k]) * n_w[k] for k in range(3))
    below = s_h < 0
    lv_h = ((q[0] / a_lv) ** 2 + (q[1] / b_lv) ** 2 + (q[2] / c_lv) ** 2 <= 1) & below
    myo_h = ((q[0] / (a_lv + wall)) ** 2 + (q[1] / (b_lv + wall)) ** 2 + (q[2] / (c_lv + wall)) ** 2 <= 1) & below & ~lv_h
    lv = np.zeros(shape, bool)
    myo = np.zeros(shape, bool)
    lv[sl_h] = lv_h & ~aorta[sl_h]
    myo[sl_h] = myo_h & ~aorta[sl_h]

    # --- iliac arteries from the bifurcation, down and sideways, one with a stenosis
    iliac = {}
    iliac_truth = {}
    spread = np.deg2rad(prm["iliac_spread_deg"])
    for side, sign in (("left", 1.0), ("right", -1.0)):
        direction = _unit([-math.cos(spread), 0.15, sign * math.sin(spread)])
        length = (bif[0] + 0.5 * Z - 4.0) / math.cos(spread)
        pts, t = _resample(np.array([bif, bif + length * direction]), 0.5)
        r = np.full(t.shape, prm["iliac_radius"])
        sten = None
        if stenosis and side == prm["stenosis_side"]:
            t0 = prm["stenosis_position"] * length
            r = r * (1.0 - prm["stenosis_depth"] * np.exp(-(((t - t0) / 6.0) ** 2)))
            sten = {
                "position_mm": float(t0),
                "point_mm": place(bif + t0 * direction).tolist(),
                "min_diameter_mm": float(2 * r.min()),
                "depth": float(prm["stenosis_depth"]),
            }
        mask = np.zeros(shape, bool)
        canvas.balls(mask, np.array([place(p) for p in pts]), r)
        iliac[side] = mask & ~aorta
        iliac_truth[side] = {
            "start_mm": place(bif).tolist(),
            "direction": turn(direction).tolist(),
            "length_mm": float(length),
            "diameter_mm": float(2 * prm["iliac_radius"]),
            "stenosis": sten,
        }
    iliac["right"] &= ~iliac["left"]

    # --- field of view: chest-less or pelvis-less scans
    if (not heart or not iliacs) and np.any(rotation_deg):
        raise ValueError("heart=False / iliacs=False cut the field of view along z: use them unrotated")
    zc = np.arange(shape[0]) * spacing[0]
    fov = np.ones(shape[0], bool)
    if not heart:
        fov &= zc < place([diaphragm_z, 0, 0])[0]
    if not iliacs:
        fov &= zc > place(bif)[0] + 6.0
    cut = np.broadcast_to(~fov[:, None, None], shape)
    for m in (aorta, lv, myo, iliac["left"], iliac["right"]):
        m[cut] = False
    aorta_part[cut] = 0

    # --- CT intensities
    ct = _render_ct(rng, shape, spacing, centre, rot, annulus_c, desc_top, noise_hu)
    blood = aorta | lv | iliac["left"] | iliac["right"]
    ct[myo] = 100.0 + rng.normal(0, noise_hu, int(myo.sum()))
    ct[blood] = prm["contrast_hu"] + rng.normal(0, noise_hu, int(blood.sum()))
    ct[cut] = OUTSIDE_FOV_HU
    ct = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)

    # --- the 7-class TAVR label map by construction (same rules as paper 2.1, evaluated exactly)
    from nnunet_tavr.labels import LABELS

    labels = np.zeros(shape, np.uint8)
    labels[iliac["left"]] = LABELS["iliac_artery_left"]
    labels[iliac["right"]] = LABELS["iliac_artery_right"]
    labels[lv] = LABELS["left_ventricle"]
    labels[aorta] = LABELS["aorta"]
    labels[aorta_part == AORTA_PARTS["root"]] = LABELS["aortic_root"]
    if heart:
        valve = np.zeros(shape, bool)
        valve[sl] = tube & (s <= VALVE_MM)
        labels[valve & aorta] = LABELS["valve"]
        ann = np.zeros(shape, bool)
        # LV voxels within ANNULUS_MM of the plane, under the aortic footprint (grown by half a mm-step).
        s_full = np.zeros(shape, np.float32)
        s_full[sl_h] = s_h
        relh = [zz[:, None, None] - a_w[0], yy[None, :, None] - a_w[1], xx[None, None, :] - a_w[2]]
        uh = sum(relh[k] * major_w[k] for k in range(3))
        vh = sum(relh[k] * minor_w[k] for k in range(3))
        grow_mm = ANNULUS_MM / 2
        foot = (uh / (prm["annulus_major"] + grow_mm)) ** 2 + (vh / (prm["annulus_minor"] + grow_mm)) ** 2 <= 1
        ann[sl_h] = lv[sl_h] & (s_h >= -ANNULUS_MM) & foot
        labels[ann] = LABELS["annulus"]

    a, b = prm["annulus_major"], prm["annulus_minor"]
    h = ((a - b) / (a + b)) ** 2
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    asc40 = float(_profile(np.array([40.0]), knots)[0])
    truth = {
        "seed": int(seed),
        "shape": list(shape),
        "spacing": spacing.tolist(),
        "rotation_deg": list(map(float, rotation_deg)),
        "has_heart": bool(heart),
        "has_iliacs": bool(iliacs),
        "annulus_center_mm": a_w.tolist(),
        "annulus_normal": n_w.tolist(),
        "annulus_major_axis": major_w.tolist(),
        "annulus_major_radius_mm": a,
        "annulus_minor_radius_mm": b,
        "annulus_area_mm2": math.pi * a * b,
        "annulus_perimeter_mm": perimeter,
        "annulus_min_diameter_mm": 2 * b,
        "annulus_max_diameter_mm": 2 * a,
        "annulus_area_diameter_mm": 2 * math.sqrt(a * b),
        "annulus_perimeter_diameter_mm": perimeter / math.pi,
        "sinus_distance_mm": prm["sinus_distance"],
        "sinus_diameter_mm": 2 * prm["sinus_radius"],
        "stj_distance_mm": prm["stj_distance"],
        "stj_diameter_mm": 2 * prm["stj_radius"],
        "root_height_mm": prm["stj_distance"],
        "ascending_diameter_40mm": 2 * asc40,
        "straight_aorta_length_mm": straight,
        "lv_center_mm": lvc_w.tolist(),
        "lv_axis": lv_w.tolist(),
        "lv_semi_axes_mm": [a_lv, b_lv, c_lv],
        "descending_diameter_mm": 2 * prm["descending_radius"],
        "bifurcation_mm": place(bif).tolist(),
        "iliac": iliac_truth,
        "contrast_hu": prm["contrast_hu"],
    }
    masks = {
        "aorta": aorta,
        "heart_ventricle_left": lv,
        "heart_myocardium": myo,
        "iliac_artery_left": iliac["left"],
        "iliac_artery_right": iliac["right"],
    }
    origin = tuple(float(-c) for c in (extent[::-1] / 2))  # SimpleITK (x, y, z) origin
    return Phantom(ct=ct, masks=masks, labels=labels, aorta_part=aorta_part, spacing=tuple(spacing.tolist()), truth=truth, origin=origin)


def _render_ct(rng, shape, spacing, centre, rot, annulus_c, desc_top, noise_hu):
    """Background anatomy: air, body, lungs above the diaphragm, spine; float32 HU with noise."""
    Z, Y, X = np.asarray(shape) * np.asarray(spacing)
    canvas = _Canvas(shape, spacing)
    zc, yc, xc = (np.arange(n) * sp for n, sp in zip(shape, spacing))
    ct = rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    # Body: elliptic cylinder along the anatomical z axis (approximately; rotation is rare and mild).
    body2d = ((yc[:, None] - centre[1]) / (0.44 * Y)) ** 2 + ((xc[None, :] - centre[2]) / (0.47 * X)) ** 2 <= 1
    ct += np.where(body2d[None], 40.0, -1000.0).astype(np.float32)
    lungs = np.zeros(shape, bool)
    for side in (-1.0, 1.0):
        c = centre + rot @ np.array([annulus_c[0] + 10.0, 0.05 * Y, side * 0.27 * X])
        r = np.array([0.22 * Z, 0.3 * Y, 0.17 * X])
        sl, coords = canvas.box(c - r, c + r)
        if sl is not None:
            zz, yy, xx = coords
            lungs[sl] |= ((zz[:, None, None] - c[0]) / r[0]) ** 2 + ((yy[None, :, None] - c[1]) / r[1]) ** 2 + ((xx[None, None, :] - c[2]) / r[2]) ** 2 <= 1
    lungs &= body2d[None]
    ct[lungs] -= 890.0
    spine = np.zeros(shape, bool)
    pts = np.array([centre + rot @ np.array([z, desc_top[1] + 30.0, 0.0]) for z in np.arange(-Z / 2, Z / 2, 2.0)])
    canvas.balls(spine, pts, np.full(len(pts), 13.0))
    ct[spine] = 450.0 + rng.normal(0, noise_hu, int(spine.sum()))
    return ct


# ----------------------------------------------------------------------------------------------
# writing


def subject_id(index: int) -> str:
    """TotalSegmentator-style subject identifier."""
    return f"s{index:04d}"


def write_subject(phantom: Phantom, subject_dir: str | Path) -> Path:
    """Write one subject in the TotalSegmentator layout (atomic per file; truth.json last)."""
    from nnunet_tavr.io import write_array, write_json

    subject_dir = Path(subject_dir)
    geometry = phantom.geometry
    write_array(phantom.ct, geometry, subject_dir / "ct.nii.gz")
    for name in MASK_NAMES:
        write_array(phantom.masks[name].astype(np.uint8), geometry, subject_dir / "segmentations" / f"{name}.nii.gz")
    write_json(phantom.truth, subject_dir / "truth.json")  # written last: marks the subject complete
    return subject_dir


def _is_complete(subject_dir: Path, params: dict) -> bool:
    """A subject is complete when its truth.json (written last) records the same parameters."""
    import json

    try:
        truth = json.loads((subject_dir / "truth.json").read_text())
    except (OSError, ValueError):
        return False
    spacing = np.broadcast_to(np.asarray(params["spacing"], float), (3,)).tolist()
    return (truth.get("seed"), truth.get("shape"), truth.get("spacing"), truth.get("has_heart"), truth.get("has_iliacs")) == (
        params["seed"], list(params["shape"]), spacing, params["heart"], params["iliacs"])


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    shape=(200, 160, 160),
    spacing=1.5,
    no_heart=(),
    no_iliacs=(),
    progress: bool = True,
) -> list[str]:
    """Write ``n`` subjects plus ``meta.csv``; subjects already complete with the same parameters are
    kept (reruns resume), others are (re)written.

    Subject ``i`` uses seed ``seed * 100003 + i``, so adding subjects never changes earlier ones.
    ``no_heart`` and ``no_iliacs`` are subject indices made chest-less or pelvis-less.
    """
    from tqdm import tqdm

    from nnunet_tavr.io import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = []
    splits = ("train", "train", "train", "val", "test")
    for i in tqdm(range(n), desc="phantoms", unit="subject", disable=not progress):
        sid = subject_id(i)
        ids.append(sid)
        params = dict(seed=seed * 100003 + i, shape=tuple(shape), spacing=spacing, heart=i not in set(no_heart), iliacs=i not in set(no_iliacs))
        if _is_complete(out_dir / sid, params):
            continue
        phantom = make_subject(**params)
        write_subject(phantom, out_dir / sid)
    rows = [("image_id", "age", "gender", "institute", "study_type", "split")]
    for i, sid in enumerate(ids):
        rows.append((sid, str(50 + (i * 7) % 40), "mf"[i % 2], "phantom", "ct thorax-abdomen-pelvis", splits[i % len(splits)]))
    write_text("".join(";".join(r) + "\n" for r in rows), out_dir / "meta.csv")
    return ids


# ----------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="output folder (TotalSegmentator dataset layout)")
    parser.add_argument("-n", "--num-subjects", type=int, default=8, help="number of subjects (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(200, 160, 160), help="voxels per subject (default 200 160 160)")
    parser.add_argument("--spacing", type=float, nargs="+", default=[1.5], metavar="MM", help="voxel size in mm: one value, or three (z y x) (default 1.5)")
    parser.add_argument("--no-heart", type=int, nargs="*", default=[], metavar="I", help="subject indices without heart (chest-less scans)")
    parser.add_argument("--no-iliacs", type=int, nargs="*", default=[], metavar="I", help="subject indices without iliac arteries")


def main(args: argparse.Namespace) -> int:
    if len(args.spacing) not in (1, 3):
        raise SystemExit("--spacing takes one value or three (z y x)")
    spacing = args.spacing[0] if len(args.spacing) == 1 else tuple(args.spacing)
    ids = write_dataset(args.out_dir, args.num_subjects, args.seed, tuple(args.shape), spacing, args.no_heart, args.no_iliacs)
    print(f"wrote {len(ids)} subjects to {args.out_dir} (TotalSegmentator layout, truth.json per subject)")
    print(f"next: nnunet-tavr derive {args.out_dir / ids[0]} -o labels.nii.gz   or   nnunet-tavr convert {args.out_dir} -d 301")
    return 0
