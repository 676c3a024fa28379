"""What the renderer needs of one case, computed once from its CT and TAVR label map.

- **Background attenuation** (1/mm): the CT converted with ``mu = MU_WATER * (1 + HU / 1000)``
  after *de-enhancement*: inside the blood-pool labels (aorta, left ventricle, root, valve, annulus,
  iliac arteries) voxels brighter than :data:`BLOOD_HU` and darker than :data:`KEEP_HU` are set to
  :data:`BLOOD_HU`, so a contrast CT shows unopacified blood, as the heart is between injections;
  denser voxels (calcium, metal) are kept. Bones and lungs stay as the CT has them.
- **Annulus plane**: least-squares plane of the annulus voxels (:func:`nnunet_tavr.geometry.fit_plane`),
  normal oriented from the ventricle towards the root; its centre is the isocentre.
- **Geodesic distance** through the aortic lumen (labels aorta, aortic_root, valve) from the root
  (aortic_root + valve), in mm (:class:`skimage.graph.MCP_Geometric`). It defines
  - the **mask object**: aortic_root + valve + the aorta voxels within ``ascending_mm`` (default 20)
    of the root along the vessel — the root and the first centimetres of the ascending aorta,
    what seed 002 annotates;
  - the **bolus region**: the same lumen up to ``bolus_mm`` (default 90) along the vessel, with a
    per-frame wash-out ramp (full contrast in the root, a fraction at ``bolus_mm``);
  - the **aortic centreline** the pigtail catheter's shaft follows (centroids of 3 mm distance bins).
- **Non-coronary sinus point** where the pigtail curls: with hinge points, 4 mm above the
  non-coronary nadir and 30 % of the way to the annulus centre; without, the documented rule
  :func:`sinus_point_rule` (the sinus floor on the patient's right-posterior side of the root).

Everything is in the arrays' frame ((z, y, x) mm); world (LPS) copies are kept for the C-arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnunet_tavr.geometry import array_to_world, vector_to_array, vector_to_world
from nnunet_tavr.fluoro.projector import Volume
from nnunet_tavr.errors import Excluded
from nnunet_tavr.geometry import DegeneratePlane, bounding_box, fit_plane, grow_box, resample_polyline, smooth_polyline, unit
from nnunet_tavr.io import Geometry
from nnunet_tavr.labels import LABELS

#: Linear attenuation of water at the effective energy of a 70-80 kVp beam (~60 keV), 1/mm.
MU_WATER = 0.0206
#: Unopacified blood, and the HU above which blood-pool voxels keep their value (calcium, metal).
BLOOD_HU, KEEP_HU = 40.0, 1000.0
#: Labels whose contrast is removed from the background (by name; absent names are skipped).
BLOOD_POOL = ("aorta", "left_ventricle", "aortic_root", "valve", "annulus", "iliac_artery_left", "iliac_artery_right")
#: How far along the vessel the distances are followed (mm): the centreline and the bolus end here.
REACH_MM = 160.0
#: The fine region: the mask object's box grown by this (mm).
FINE_MARGIN_MM = 5.0
#: Pigtail: loop radius and the height of the sinus point above the annulus plane (mm).
PIGTAIL_RADIUS_MM = 6.0
SINUS_HEIGHT_MM = 4.0
#: The patient's right-posterior direction (LPS), where the non-coronary sinus lies.
NON_CORONARY_SIDE_LPS = (-1.0, 1.0, 0.0)


@dataclass(frozen=True)
class Settings:
    """What the case preparation depends on (mm)."""

    ascending_mm: float = 20.0
    bolus_mm: float = 90.0


@dataclass
class CaseAnatomy:
    """A prepared case. Arrays are (z, y, x); points and vectors in the arrays' frame (mm) unless
    named ``*_world`` (LPS mm)."""

    case: str
    geometry: Geometry
    background: Volume  #: attenuation (1/mm) of the whole CT
    coarse: Volume | None  #: [left ventricle, bolus lumen, wash-out ramp] outside the fine box (0/1, 0/1, 0..1)
    fine: Volume  #: [bolus lumen, wash-out ramp] inside the fine box: around the mask object
    mask_object: Volume  #: the mask object (0/1) over the fine box
    annulus_centre: np.ndarray
    annulus_normal: np.ndarray  #: unit, ventricle -> aorta
    annulus_radius_mm: float
    sinus_point: np.ndarray
    sinus_rule: str
    catheter: np.ndarray  #: (n, 3) pigtail axis, shaft end first, loop last (0.5 mm steps)
    hinge_points_world: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> np.ndarray:
        return np.asarray(self.geometry.spacing, float)

    @property
    def centre_world(self) -> np.ndarray:
        return array_to_world(self.annulus_centre, self.geometry)

    @property
    def normal_world(self) -> np.ndarray:
        return unit(vector_to_world(self.annulus_normal, self.geometry))

    @property
    def fine_box(self) -> tuple:
        """The fine region as slices of the image."""
        start = np.rint(self.fine.origin / self.spacing).astype(int)
        return tuple(slice(int(a), int(a) + n) for a, n in zip(start, self.fine.shape))

    def record(self) -> dict:
        """JSON record of the preparation (world and array frames)."""
        return {
            "annulus_centre_lps_mm": self.centre_world.tolist(),
            "annulus_normal_lps": self.normal_world.tolist(),
            "annulus_centre_zyx_mm": self.annulus_centre.tolist(),
            "annulus_normal_zyx": self.annulus_normal.tolist(),
            "annulus_radius_mm": self.annulus_radius_mm,
            "sinus_point_lps_mm": array_to_world(self.sinus_point, self.geometry).tolist(),
            "sinus_rule": self.sinus_rule,
            "hinge_points_lps_mm": self.hinge_points_world,
            "mask_object_voxels": int((self.mask_object.data >= 0.5).sum()),
            "notes": list(self.notes),
        }


def _values(labels: dict[str, int], names) -> list[int]:
    return [int(labels[n]) for n in names if n in labels]


def attenuation(ct: np.ndarray, labelmap: np.ndarray, labels: dict[str, int] = LABELS) -> np.ndarray:
    """Background attenuation (1/mm, float32) of a CT in HU with its blood pool de-enhanced."""
    hu = np.asarray(ct, np.float32).copy()
    pool = np.isin(labelmap, _values(labels, BLOOD_POOL))
    hu[pool & (hu > BLOOD_HU) & (hu < KEEP_HU)] = BLOOD_HU
    return np.maximum(MU_WATER * (1.0 + hu / 1000.0), 0.0).astype(np.float32)


def annulus_plane(labelmap: np.ndarray, spacing, labels: dict[str, int] = LABELS, case: str = "case"):
    """``(centre, normal, radius)`` of the annulus (mm, arrays' frame): plane fitted to the
    annulus voxels, normal towards the root, radius from the voxels' spread in the plane
    (``sqrt(2 <r^2>)``, exact for a filled disc)."""
    spacing = np.asarray(spacing, float)
    points = np.argwhere(labelmap == labels["annulus"]) * spacing
    if len(points) < 10:
        raise Excluded("no_annulus", f"case {case}: {len(points)} annulus voxel(s): no annulus plane (label {labels['annulus']})")
    try:
        fit = fit_plane(points)
    except DegeneratePlane as exc:
        raise Excluded("no_annulus", f"case {case}: annulus plane: {exc}") from None
    root = np.argwhere(np.isin(labelmap, _values(labels, ("aortic_root", "valve")))) * spacing
    if len(root) == 0:
        raise Excluded("no_root", f"case {case}: no aortic_root / valve voxels: nothing to opacify or to mask")
    normal = fit.normal if np.dot(root.mean(axis=0) - fit.centre, fit.normal) >= 0 else -fit.normal
    rel = points - fit.centre
    in_plane = rel - np.outer(rel @ normal, normal)
    radius = float(np.sqrt(2.0 * np.mean(np.sum(in_plane**2, axis=1))))
    return fit.centre, normal, radius


def vessel_distance(labelmap: np.ndarray, spacing, labels: dict[str, int] = LABELS, reach_mm: float = REACH_MM):
    """Geodesic distance (mm) from the root through the aortic lumen, and the crop it lives in.

    Returns ``(distance, box)``: ``distance`` is float32 over ``box`` (the root's bounding box grown
    by ``reach_mm``), ``inf`` outside the lumen or beyond the reach.
    """
    from skimage.graph import MCP_Geometric

    spacing = np.asarray(spacing, float)
    root_values = _values(labels, ("aortic_root", "valve"))
    lumen_values = root_values + _values(labels, ("aorta",))
    root_box = bounding_box(np.isin(labelmap, root_values))
    box = grow_box(root_box, np.ceil(reach_mm / spacing).astype(int), labelmap.shape)
    # only the lumen inside that reach matters: crop to it (the cost array is as large as the box)
    lumen_box = bounding_box(np.isin(labelmap[box], lumen_values))
    box = tuple(slice(b.start + l.start, b.start + l.stop) for b, l in zip(box, lumen_box))
    crop = labelmap[box]
    lumen = np.isin(crop, lumen_values)
    starts = np.argwhere(np.isin(crop, root_values))
    mcp = MCP_Geometric(np.where(lumen, 1.0, np.inf), sampling=tuple(spacing))
    distance, _ = mcp.find_costs(starts)
    distance = np.where(lumen & (distance <= reach_mm), distance, np.inf).astype(np.float32)
    return distance, box


def centreline(distance: np.ndarray, spacing, origin_index, step_mm: float = 3.0, min_voxels: int = 5) -> np.ndarray:
    """Aortic centreline (mm, (n, 3)) from the root outwards: centroids of distance bins."""
    spacing = np.asarray(spacing, float)
    finite = np.isfinite(distance)
    idx = np.argwhere(finite)
    bins = np.floor(distance[finite] / step_mm).astype(int)
    points = []
    for b in range(bins.max() + 1 if bins.size else 0):
        members = idx[bins == b]
        if len(members) >= min_voxels:
            points.append((members.mean(axis=0) + np.asarray(origin_index)) * spacing)
    return np.asarray(points, float).reshape(-1, 3)


def sinus_point_rule(centre, normal, radius_mm: float, geometry: Geometry) -> np.ndarray:
    """The non-coronary sinus without hinge points (arrays' frame, mm).

    The non-coronary sinus is the posterior, rightward one (next to the interatrial septum): the
    point :data:`SINUS_HEIGHT_MM` above the annulus centre along the normal, moved 60 % of the
    annulus radius towards the patient's right-posterior (LPS ``(-1, 1, 0)``) direction projected
    into the annulus plane.
    """
    side = vector_to_array(np.asarray(NON_CORONARY_SIDE_LPS, float), geometry)
    side = side - np.dot(side, normal) * normal
    if np.linalg.norm(side) < 1e-6:  # a horizontal annulus facing right-posterior: any in-plane side
        side = np.cross(normal, [1.0, 0.0, 0.0])
    return np.asarray(centre) + SINUS_HEIGHT_MM * np.asarray(normal) + 0.6 * radius_mm * unit(side)


def sinus_point_from_hinges(non_coronary_world, centre, normal, geometry: Geometry) -> np.ndarray:
    """The pigtail's resting point from the non-coronary nadir (LPS): 4 mm above it, 30 % of the
    way towards the annulus centre (arrays' frame, mm)."""
    from nnunet_tavr.geometry import world_to_array

    nadir = world_to_array(np.asarray(non_coronary_world, float), geometry)
    return nadir + 0.3 * (np.asarray(centre) - nadir) + SINUS_HEIGHT_MM * np.asarray(normal)


def pigtail(line: np.ndarray, sinus_point, normal, centre, radius_mm: float = PIGTAIL_RADIUS_MM, step_mm: float = 0.5) -> np.ndarray:
    """The catheter's axis: down the aortic centreline, then a 1.25-turn loop in the sinus.

    The loop lies in the plane of the annulus normal and the direction from the root axis to the
    sinus point; its lowest point is the sinus point.
    """
    normal = unit(normal)
    outward = np.asarray(sinus_point) - np.asarray(centre)
    outward = unit(outward - np.dot(outward, normal) * normal)
    loop_centre = np.asarray(sinus_point) + radius_mm * normal
    # Start at the loop's top, go outwards and down, round 1.25 turns, end pointing inwards.
    theta = np.linspace(0.0, 2.5 * np.pi, 90)
    loop = loop_centre + radius_mm * (np.cos(theta)[:, None] * normal + np.sin(theta)[:, None] * outward)
    shaft = line[::-1] if len(line) else np.empty((0, 3))
    if len(shaft):
        shaft = smooth_polyline(shaft, 1.5)
    path = np.vstack([shaft, loop]) if len(shaft) else loop
    return resample_polyline(path, step_mm)[0]


def prepare_case(case: str, ct: np.ndarray, labelmap: np.ndarray, geometry: Geometry, settings: Settings = Settings(),
                 labels: dict[str, int] = LABELS, hinge_points_world: dict | None = None) -> CaseAnatomy:
    """Everything the renderer needs of one case (see the module docstring).

    Parameters
    ----------
    ct, labelmap : (Z, Y, X) arrays on one grid
        CT in HU and the TAVR label map (values of ``labels``).
    geometry : Geometry
        The grid (spacing, origin, direction) of both.
    hinge_points_world : dict, optional
        ``{"RCC": xyz, "LCC": xyz, "NCC": xyz}`` cusp nadirs, world (LPS) mm (:mod:`nnunet_tavr.hinge_points`).

    Raises
    ------
    Excluded
        No annulus or root voxels (the case cannot be rendered as seed 002's frames).
    """
    spacing = np.asarray(geometry.spacing, float)
    if ct.shape != labelmap.shape:
        raise ValueError(f"case {case}: CT {ct.shape} and labels {labelmap.shape} differ")
    centre, normal, radius = annulus_plane(labelmap, spacing, labels, case)
    distance, dbox = vessel_distance(labelmap, spacing, labels, max(REACH_MM, settings.bolus_mm))
    origin_index = np.array([s.start for s in dbox])
    root_values = _values(labels, ("aortic_root", "valve"))
    crop = labelmap[dbox]
    in_root = np.isin(crop, root_values)
    mask_object = in_root | (distance <= settings.ascending_mm)
    bolus = in_root | (distance <= settings.bolus_mm)
    ramp = np.where(in_root, 0.0, np.clip(distance / settings.bolus_mm, 0.0, 1.0)).astype(np.float32) * bolus

    # Full resolution where the mask's edge is decided: around the mask object; the rest of the
    # bolus (further up the aorta) and the ventricle are rendered with the background.
    fine_box = grow_box(bounding_box(mask_object), np.ceil(FINE_MARGIN_MM / spacing).astype(int), crop.shape)
    outer = bolus.copy()
    outer[fine_box] = False
    fine = Volume(np.stack([bolus[fine_box], ramp[fine_box]]), spacing, (origin_index + [s.start for s in fine_box]) * spacing)
    mask_volume = Volume(mask_object[fine_box], spacing, fine.origin)
    coarse = _coarse_extras(labelmap, labels, outer, ramp * outer, dbox, spacing)

    notes = []
    if hinge_points_world and "NCC" in hinge_points_world:
        sinus = sinus_point_from_hinges(hinge_points_world["NCC"], centre, normal, geometry)
        rule = "hinge points: 4 mm above the non-coronary nadir, 30 % towards the annulus centre"
    else:
        sinus = sinus_point_rule(centre, normal, radius, geometry)
        rule = ("no hinge points: 4 mm above the annulus centre, 0.6 annulus radii towards the patient's "
                "right-posterior (LPS (-1, 1, 0)) in the annulus plane")
    line = centreline(np.where(in_root, np.inf, distance), spacing, origin_index)
    if len(line) < 3:
        notes.append("aortic centreline shorter than 9 mm: the catheter is the sinus loop only")
    catheter = pigtail(line, sinus, normal, centre)

    return CaseAnatomy(case=case, geometry=geometry, background=Volume(attenuation(ct, labelmap, labels), spacing),
                       coarse=coarse, fine=fine, mask_object=mask_volume, annulus_centre=centre, annulus_normal=normal,
                       annulus_radius_mm=radius, sinus_point=sinus, sinus_rule=rule, catheter=catheter,
                       hinge_points_world=hinge_points_world, notes=notes)


def _coarse_extras(labelmap, labels, outer_bolus, outer_ramp, dbox, spacing) -> Volume | None:
    """[left ventricle, bolus, ramp] over the union of the ventricle's and the outer bolus' boxes."""
    ventricle = labelmap == labels["left_ventricle"] if "left_ventricle" in labels else np.zeros(labelmap.shape, bool)
    bolus_box = bounding_box(outer_bolus)
    if bolus_box is not None:  # as slices of the image
        bolus_box = tuple(slice(d.start + b.start, d.start + b.stop) for d, b in zip(dbox, bolus_box))
    boxes = [b for b in (bounding_box(ventricle), bolus_box) if b is not None]
    if not boxes:
        return None
    box = tuple(slice(min(b[k].start for b in boxes), max(b[k].stop for b in boxes)) for k in range(3))
    data = np.zeros((3, *[s.stop - s.start for s in box]), np.float32)
    data[0] = ventricle[box]
    if bolus_box is not None:
        inner = tuple(slice(b.start - x.start, b.stop - x.start) for b, x in zip(bolus_box, box))
        source = tuple(slice(b.start - d.start, b.stop - d.start) for b, d in zip(bolus_box, dbox))
        data[1][inner] = outer_bolus[source]
        data[2][inner] = outer_ramp[source]
    return Volume(data, spacing, np.array([s.start for s in box]) * spacing)
