"""Calcium (opt-in: ``make_subject(calcium=True)``): calcified nodules and plaques on the valve
leaflets, the annulus, the LVOT, the aortic root, the aorta and the iliac arteries, with a contrast
lumen whose intensity varies from subject to subject.

What a calcium subject has that others do not
---------------------------------------------
- **Contrast**: the blood is ``LUMEN_HU`` (200-550 HU, drawn per subject, instead of 290-360 HU)
  and the bolus is weaker in the iliac arteries (``ILIAC_FRACTION`` of it), so that no single
  fixed threshold separates calcium from lumen in every subject.
- **Nodules** (balls) and **plaques** (ellipsoids flattened against the wall, ``PLAQUE_SHARE`` of the
  wall deposits) of volume-equivalent diameter ``DIAMETER_MM`` (1-8 mm), ``EXCESS_HU`` (350-1000 HU)
  brighter than the lumen of their region. Leaflet (valve) and LVOT nodules lie in the lumen, the
  others straddle the lumen's wall and reach at most ``WALL_MM - 0.5`` mm beyond it. Nodules keep
  ``GAP_MM`` from each other, so each one is its own connected component.
- **Partial volume**: a voxel's value mixes the background and the calcium by the fraction of the
  voxel the deposit fills (``SUPERSAMPLING``^3 samples per voxel), blurred by a Gaussian point-spread
  function of ``PSF_SIGMA_MM``; the calcium carries the subject's noise.
- **Truth**: ``truth.json["calcium"]`` lists every nodule (region, kind, centre, semi-axes,
  volume-equivalent diameter, smallest extent (twice the smallest semi-axis: a plaque's
  thickness), HU, its exact volume and its true voxels' count and volume) and the totals
  per region; the true voxels (those at least half filled) are ``Phantom.calcium`` / the file
  ``calcium_truth.nii.gz`` (uint16: nodule id, 0 elsewhere).

The regions are the calcium rule's (:mod:`nnunet_tavr.label_derivation.calcium_regions`) evaluated on
the label map by construction and the exact annulus plane: a nodule's region is the one holding most
of its true voxels (a placement is redrawn unless that is at least ``MAJORITY`` of them and the
intended region). Near the valve and the root, centres also keep ``MARGIN_MM`` from the region
boundaries a rule has to derive (the annulus plane, the sinotubular junction), and LVOT deposits
lie under the annulus opening.

The builder draws from its own generator, ``np.random.default_rng([seed, BUILDER_ID])``, in this
order: the contrast, the number of deposits per region, then per deposit its placement, shape and
intensity. ``calcium_nodules=0`` gives a calcium-free subject with the calcium contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_tavr.geometry import box_around, box_coordinates, grow_box_mm, unit
from nnunet_tavr.label_derivation.calcium_regions import (
    ANNULUS_HALF_MM,
    LVOT_DEPTH_MM,
    REGION_ID,
    REGIONS,
    VALVE_HEIGHT_MM,
    WALL_MM,
    AnnulusFrame,
    nearest_regions,
    region_map,
)
from nnunet_tavr.phantom.background import CT_RANGE_HU
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.label_map import ANNULUS_MM
from nnunet_tavr.phantom.structure import ILIAC, Structure

#: This builder's generator id (issue 18); other builders use other ids.
BUILDER_ID = 18
LUMEN_HU = (200.0, 550.0)
ILIAC_FRACTION = (0.8, 1.0)
EXCESS_HU = (350.0, 1000.0)
DIAMETER_MM = (1.0, 8.0)
PLAQUE_SHARE = 0.3
#: Plaque semi-axes relative to the equivalent radius: across the wall, along it (two); product 1.
PLAQUE_AXES = (0.6, 1.5, 1.0 / 0.9)
PSF_SIGMA_MM = 0.35
SUPERSAMPLING = 4
GAP_MM = 2.0
MAJORITY = 0.7
ATTEMPTS = 40
#: Deposit centres keep this distance (mm) from the annulus-plane boundaries of their region.
MARGIN_MM = 2.0
#: Deposits per region: drawn uniformly from (low, high) inclusive.
COUNTS = {"valve": (2, 5), "annulus": (1, 4), "lvot": (0, 2), "aortic_root": (0, 2), "aorta": (3, 8),
          "iliac_artery_left": (1, 4), "iliac_artery_right": (1, 4)}
#: The true-voxel file written beside ``ct.nii.gz``.
MASK_FILE = "calcium_truth.nii.gz"
#: Regions whose deposits lie in the lumen (leaflets; the phantom's LVOT has no wall under the annulus).
IN_LUMEN = ("valve", "lvot")


@dataclass(frozen=True)
class CalciumContrast:
    """A calcium subject's blood intensity (HU): aorta and ventricle, and iliac arteries."""

    lumen_hu: float
    iliac_hu: float

    def of(self, region: str) -> float:
        return self.iliac_hu if region.startswith("iliac") else self.lumen_hu


def calcium_generator(seed: int) -> np.random.Generator:
    """The builder's own generator (see the module docstring)."""
    return np.random.default_rng([int(seed), BUILDER_ID])


def draw_contrast(rng: np.random.Generator) -> CalciumContrast:
    """The subject's contrast: the first draws of the builder's generator."""
    lumen = float(rng.uniform(*LUMEN_HU))
    return CalciumContrast(lumen, lumen * float(rng.uniform(*ILIAC_FRACTION)))


def paint_calcium(rng, canvas: Canvas, masks: dict, labels: np.ndarray, annulus, ct: np.ndarray,
                  contrast: CalciumContrast, cut: np.ndarray, noise_hu: float, nodules: int | None = None) -> Structure:
    """Dim the iliac blood and paint the deposits into ``ct`` (int16 (z, y, x) HU, in place).

    Parameters
    ----------
    masks, labels : the subject's masks (cut to the field of view) and its label map by construction.
    annulus : :class:`~nnunet_tavr.phantom.root.Annulus` or None (chest-less scans: no valve regions).
    contrast : what :func:`draw_contrast` drew (the CT's blood is ``contrast.lumen_hu`` already).
    cut : bool (z, y, x), True outside the field of view (deposits stay inside it).
    nodules : None draws the number per region (:data:`COUNTS`); an int places that many, spread
        over the present regions in proportion to the mean counts; 0 makes none.

    Returns
    -------
    Structure
        No masks. ``truth["calcium"]`` (see the module docstring). ``aux["ids"]``: uint16
        (z, y, x) nodule id of every true voxel.
    """
    iliac_only = masks[ILIAC["left"]] | masks[ILIAC["right"]]
    shift = int(round(contrast.iliac_hu - contrast.lumen_hu))
    ct[iliac_only] = np.clip(ct[iliac_only].astype(np.int32) + shift, *CT_RANGE_HU).astype(np.int16)

    spacing = canvas.spacing
    frame = None
    if annulus is not None and np.any(labels == 5):
        frame = AnnulusFrame.make(annulus.centre, annulus.normal, annulus.major_radius + ANNULUS_MM / 2)
    regions = region_map(labels, spacing, frame)
    lumen = labels > 0
    wall = lumen & ~ndimage.binary_erosion(lumen)
    present = [r for r in REGIONS if np.any(regions == REGION_ID[r])]
    plan = _plan(rng, present, nodules)

    ids = canvas.blank(np.uint16)
    occupied = canvas.blank()
    deposits = []
    pools: dict[str, np.ndarray] = {}
    root_top = _root_top(regions, spacing, frame)
    for region in plan:
        if region not in pools:
            where = regions == REGION_ID[region]
            pools[region] = _inner(region, np.argwhere(where if region in IN_LUMEN else where & wall), spacing, frame, annulus, root_top)
        pool = pools[region]
        if len(pool) == 0:
            continue
        for _ in range(ATTEMPTS):
            d = _draw_deposit(rng, region, pool, spacing, lumen, frame)
            placed = _place(d, canvas, regions, occupied, cut)
            if placed is not None:
                break
        else:
            continue
        box, fraction, true = placed
        k = len(deposits) + 1
        hu = contrast.of(region) + float(rng.uniform(*EXCESS_HU))
        _render(rng, ct, box, fraction, hu, spacing, noise_hu)
        ids[box][true] = k
        occupied[box] |= fraction > 0
        voxel = float(np.prod(spacing))
        deposits.append({
            "id": k, "region": region, "kind": d["kind"], "centre_mm": d["centre"].round(3).tolist(),
            "semi_axes_mm": [round(a, 3) for a in d["semi_axes"]], "axes": np.round(d["axes"], 4).tolist(),
            "diameter_mm": round(2 * float(np.prod(d["semi_axes"])) ** (1 / 3), 3),
            "min_extent_mm": round(2 * min(d["semi_axes"]), 3), "hu": round(hu, 1),
            "lumen_hu": round(contrast.of(region), 1),
            "volume_mm3": round(4 / 3 * math.pi * float(np.prod(d["semi_axes"])), 3),
            "voxels": int(true.sum()), "voxel_volume_mm3": round(int(true.sum()) * voxel, 3),
        })
    truth = {"calcium": {
        "builder_id": BUILDER_ID, "mask_file": MASK_FILE, "regions": list(REGIONS),
        "lumen_hu": {"aorta": round(contrast.lumen_hu, 1), "left_ventricle": round(contrast.lumen_hu, 1),
                     "iliac_arteries": round(contrast.iliac_hu, 1)},
        "excess_hu": list(EXCESS_HU), "psf_sigma_mm": PSF_SIGMA_MM, "supersampling": SUPERSAMPLING,
        "region_params": {"annulus_half_mm": ANNULUS_HALF_MM, "valve_height_mm": VALVE_HEIGHT_MM,
                          "lvot_depth_mm": LVOT_DEPTH_MM, "wall_mm": WALL_MM,
                          "annulus_radius_mm": None if frame is None else round(frame.radius_mm, 3)},
        "nodules": deposits,
        "volume_by_region_mm3": {r: round(sum(n["volume_mm3"] for n in deposits if n["region"] == r), 3) for r in REGIONS},
        "count_by_region": {r: sum(1 for n in deposits if n["region"] == r) for r in REGIONS},
        "total_volume_mm3": round(sum(n["volume_mm3"] for n in deposits), 3),
    }}
    return Structure("calcium", truth=truth, aux={"ids": ids})


def _inner(region: str, pool: np.ndarray, spacing, frame, annulus, root_top: tuple[float, float] | None) -> np.ndarray:
    """The voxels of ``pool`` at least ``MARGIN_MM`` from the boundaries of their region that a
    rule derives (the annulus plane, the sinotubular junction ``root_top = (s, radial)`` of the
    root's top), and for the LVOT under the annulus opening: a deposit's region must not hinge on
    a millimetre of the derived plane or root end."""
    if frame is None or region not in ("valve", "annulus", "lvot", "aortic_root", "aorta"):
        return pool
    s, radial, _ = frame.local(pool * spacing)
    if region == "aorta":
        if root_top is None:
            return pool
        return pool[~((s <= root_top[0] + MARGIN_MM) & (radial <= root_top[1] + 5.0))]
    keep = {
        "valve": (s >= ANNULUS_HALF_MM + MARGIN_MM) & (s <= VALVE_HEIGHT_MM - MARGIN_MM),
        "annulus": (np.abs(s) <= ANNULUS_HALF_MM - 1.0) & (radial <= annulus.major_radius + 1.0),
        "lvot": (s >= -LVOT_DEPTH_MM + MARGIN_MM) & (s <= -ANNULUS_HALF_MM - MARGIN_MM) & (radial <= annulus.minor_radius - 1.0),
        "aortic_root": (s >= VALVE_HEIGHT_MM + MARGIN_MM) & (s <= (np.inf if root_top is None else root_top[0]) - MARGIN_MM),
    }[region]
    return pool[keep]


def _root_top(regions: np.ndarray, spacing, frame) -> tuple[float, float] | None:
    """``(s, radial)`` extent of the aortic-root region: its top (the STJ) and its widest reach."""
    if frame is None:
        return None
    idx = np.argwhere(regions == REGION_ID["aortic_root"])
    if len(idx) == 0:
        return None
    s, radial, _ = frame.local(idx * spacing)
    return float(s.max()), float(radial.max())


def _plan(rng, present: list[str], nodules: int | None) -> list[str]:
    """The region of every deposit to place, in placement order."""
    if nodules is None:
        return [r for r in REGIONS if r in present for _ in range(int(rng.integers(COUNTS[r][0], COUNTS[r][1] + 1)))]
    if nodules <= 0 or not present:
        return []
    weights = np.array([sum(COUNTS[r]) / 2 for r in present], float)
    return [present[i] for i in rng.choice(len(present), size=int(nodules), p=weights / weights.sum())]


def _draw_deposit(rng, region: str, pool: np.ndarray, spacing, lumen: np.ndarray, frame) -> dict:
    """Shape, orientation and centre of one deposit on a voxel of ``pool``."""
    radius = float(rng.uniform(*DIAMETER_MM)) / 2
    on_wall = region not in IN_LUMEN
    plaque = on_wall and rng.uniform() < PLAQUE_SHARE
    voxel = pool[int(rng.integers(len(pool)))]
    point = (voxel + rng.uniform(-0.5, 0.5, 3)) * spacing
    normal = _wall_normal(lumen, voxel, spacing) if on_wall else unit(rng.normal(size=3))
    tangent = unit(np.cross(normal, unit(rng.normal(size=3))))
    axes = np.stack([normal, tangent, np.cross(normal, tangent)])
    semi = radius * np.array(PLAQUE_AXES if plaque else (1.0, 1.0, 1.0))
    if on_wall:
        # The wall voxel's centre lies about half a voxel inside the lumen: move the deposit along
        # the wall normal so that it straddles the wall but reaches at most WALL_MM - 0.5 beyond it.
        surface = point + 0.5 * float(np.abs(normal) @ spacing) * normal
        reach = semi[0]
        delta = rng.uniform(-0.5 * reach, max(min(0.5 * reach, WALL_MM - 0.5 - reach), -0.5 * reach))
        point = surface + delta * normal
    return {"kind": "plaque" if plaque else "nodule", "centre": point, "axes": axes, "semi_axes": semi.tolist(), "region": region}


def _wall_normal(lumen: np.ndarray, voxel, spacing) -> np.ndarray:
    """Outward normal of the lumen at a wall voxel (gradient of the smoothed mask)."""
    lo = np.maximum(voxel - 4, 0)
    hi = np.minimum(voxel + 5, lumen.shape)
    crop = lumen[tuple(slice(a, b) for a, b in zip(lo, hi))].astype(np.float32)
    smooth = ndimage.gaussian_filter(crop, sigma=1.5 / np.asarray(spacing))
    c = tuple(voxel - lo)
    grad = np.array([np.gradient(smooth, axis=k)[c] / spacing[k] for k in range(3)])
    n = -grad
    return unit(n) if np.linalg.norm(n) > 1e-6 else np.array([0.0, 0.0, 1.0])


def _place(d: dict, canvas: Canvas, regions: np.ndarray, occupied: np.ndarray, cut: np.ndarray):
    """``(box, fraction, true voxels)`` of a deposit, or ``None`` when it must be redrawn: it leaves
    the grid or the field of view, comes within GAP_MM of another one, reaches beyond the regions'
    wall band, or its true voxels are not mostly (MAJORITY) in its region."""
    spacing = canvas.spacing
    extent = max(d["semi_axes"]) + 3 * PSF_SIGMA_MM + max(spacing)
    lo = np.floor((d["centre"] - extent) / spacing)
    hi = np.ceil((d["centre"] + extent) / spacing) + 1
    if np.any(lo < 0) or np.any(hi > np.asarray(canvas.shape)):
        return None  # the deposit would be clipped by the grid
    box = box_around(d["centre"], extent, spacing, canvas.shape)
    if cut[box].any() or occupied[grow_box_mm(box, GAP_MM, spacing, canvas.shape)].any():
        return None
    fraction = _fraction(box, spacing, d)
    true = fraction >= 0.5
    if not true.any():
        return None
    wide = grow_box_mm(box, WALL_MM + max(spacing), spacing, canvas.shape)
    near, dist = nearest_regions(regions, spacing, wide)
    inner = tuple(slice(b.start - w.start, b.stop - w.start) for b, w in zip(box, wide))
    near, dist = near[inner], dist[inner]
    if np.any(dist[true] > WALL_MM - 0.25):
        return None
    votes = np.bincount(near[true], minlength=len(REGIONS) + 1)
    if votes[REGION_ID[d["region"]]] < MAJORITY * true.sum():
        return None
    return box, fraction, true


def _fraction(box, spacing, d: dict) -> np.ndarray:
    """The fraction of every voxel of ``box`` inside the ellipsoid (SUPERSAMPLING^3 samples)."""
    n = SUPERSAMPLING
    offsets = ((np.arange(n) + 0.5) / n - 0.5)
    coords = box_coordinates(box, spacing)
    # Sub-voxel sample coordinates per axis, shape (voxels, n), relative to the centre.
    sub = [(c[:, None] + offsets[None, :] * s) - p for c, s, p in zip(coords, spacing, d["centre"])]
    axes, semi = d["axes"], np.asarray(d["semi_axes"])
    total = 0.0
    for k in range(3):  # the quadratic form, axis by axis of the ellipsoid
        proj = (axes[k, 0] * sub[0][:, None, None, :, None, None]
                + axes[k, 1] * sub[1][None, :, None, None, :, None]
                + axes[k, 2] * sub[2][None, None, :, None, None, :])
        total = total + (proj / semi[k]) ** 2
    inside = total <= 1.0
    return inside.mean(axis=(3, 4, 5))


def _render(rng, ct: np.ndarray, box, fraction: np.ndarray, hu: float, spacing, noise_hu: float) -> None:
    """Mix the deposit into the CT: ``(1 - f) * CT + f * (hu + noise)`` with ``f`` the blurred fraction."""
    f = ndimage.gaussian_filter(fraction, sigma=PSF_SIGMA_MM / np.asarray(spacing), mode="constant")
    noise = rng.normal(0.0, noise_hu, fraction.shape)
    view = ct[box].astype(np.float64)
    mixed = (1.0 - f) * view + f * (hu + noise)
    ct[box] = np.clip(np.rint(mixed), *CT_RANGE_HU).astype(np.int16)
