"""Where the calcium rule looks: seven regions of the TAVR anatomy, defined from the 7-class label map
and the annulus plane.

The regions (ids 1-7, :data:`REGIONS`) partition the anatomy's voxels near the valve by their signed
distance ``s`` from the annulus plane (mm, positive toward the aorta) and their distance ``radial``
from the annulus axis (the line through the annulus centre along the plane normal):

============== ==================================================================================
region         voxels
============== ==================================================================================
valve          aortic side (labels valve, aortic_root) with ``annulus_half_mm < s <= valve_height_mm``:
               the leaflets, from their hinges to about their free edges
annulus        aortic or ventricular side with ``|s| <= annulus_half_mm`` and ``radial <= R + lvot_margin_mm``
               (``R``: the annulus radius); the annulus label itself is always annulus
lvot           ventricular side (labels left_ventricle, annulus) with ``-lvot_depth_mm <= s < -annulus_half_mm``
               and ``radial <= R + lvot_margin_mm``: the outflow tract below the annulus
aortic_root    aortic side above ``valve_height_mm`` (the sinus of Valsalva up to the STJ)
aorta          the aorta label: the ascending aorta above the root, arch, descending, abdominal
iliac_artery_* each iliac artery label
============== ==================================================================================

Left-ventricle voxels outside the LVOT belong to no region (calcium there, e.g. of the mitral
annulus or the papillary muscles, is not looked for). The calcium rule then widens the regions by
a few mm (the wall, which TotalSegmentator's lumen masks do not always contain): every voxel within
``wall_mm`` of a region belongs to the nearest one (:func:`nearest_regions`).

Points are mm in the arrays' frame (``index * spacing``), arrays (z, y, x). The functions here are
pure and also define the regions of the phantom's calcium by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_tavr.geometry import (
    DegeneratePlane,
    box_around,
    box_coordinates,
    fit_plane,
    intersect_boxes,
    plane_frame,
    relative_box,
    unit,
)
from nnunet_tavr.labels import LABELS

#: Region names by id (1-based: ``REGIONS[k - 1]`` is region ``k``; 0 is no region).
REGIONS: tuple[str, ...] = ("valve", "annulus", "lvot", "aortic_root", "aorta", "iliac_artery_left", "iliac_artery_right")
REGION_ID: dict[str, int] = {name: k + 1 for k, name in enumerate(REGIONS)}
#: People's names of the regions.
REGION_NAMES: dict[str, str] = {
    "valve": "Valve (leaflets)", "annulus": "Annulus", "lvot": "LVOT", "aortic_root": "Aortic root",
    "aorta": "Aorta (rest)", "iliac_artery_left": "Iliac left", "iliac_artery_right": "Iliac right",
}
#: The regions around the annulus plane (where the plane matters).
VALVE_COMPLEX: tuple[str, ...] = ("valve", "annulus", "lvot")

#: Defaults (mm): half-height of the annulus band, top of the leaflet band, depth of the LVOT band,
#: radial margin of the annulus and LVOT bands beyond the annulus radius, and the wall width by
#: which every region is widened.
ANNULUS_HALF_MM = 2.5
VALVE_HEIGHT_MM = 12.0
LVOT_DEPTH_MM = 10.0
LVOT_MARGIN_MM = 3.0
WALL_MM = 3.0

# Internal codes of the label lookup before the annulus geometry splits them.
_AORTIC_SIDE, _VENTRICLE_SIDE = 254, 255


@dataclass(frozen=True)
class AnnulusFrame:
    """The annulus plane: ``centre`` (mm), unit ``normal`` (ventricle -> aorta), in-plane unit
    vectors ``e1``, ``e2`` (``e2 = normal x e1``) and the annulus ``radius_mm``.

    ``e1`` is the projection of the array's -y axis onto the plane: anterior for images in the
    usual LPS orientation (y grows toward the patient's back). Azimuths around the annulus are
    measured from ``e1`` toward ``e2``.
    """

    centre: np.ndarray
    normal: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    radius_mm: float

    @classmethod
    def make(cls, centre, normal, radius_mm: float) -> "AnnulusFrame":
        normal = unit(normal)
        e1, e2 = plane_frame(normal, hint=(0.0, -1.0, 0.0), max_cos=0.95)
        return cls(np.asarray(centre, float), normal, e1, e2, float(radius_mm))

    def local(self, points_mm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(s, radial, azimuth_deg)`` of ``(n, 3)`` points: signed distance from the plane (mm),
        distance from the axis (mm) and the angle from ``e1`` toward ``e2`` (0-360 degrees)."""
        rel = np.asarray(points_mm, float) - self.centre
        s = rel @ self.normal
        u, v = rel @ self.e1, rel @ self.e2
        return s, np.hypot(u, v), np.degrees(np.arctan2(v, u)) % 360.0

    def to_dict(self) -> dict:
        return {"centre_mm": self.centre.tolist(), "normal": self.normal.tolist(), "e1": self.e1.tolist(),
                "e2": self.e2.tolist(), "radius_mm": self.radius_mm}


def annulus_frame(labels: np.ndarray, spacing, centre=None, normal=None, annulus_box=None) -> AnnulusFrame | None:
    """The annulus frame of a TAVR label map; ``None`` without annulus voxels (label 5).

    Parameters
    ----------
    labels : (z, y, x) integer array
        TAVR label map (:data:`nnunet_tavr.labels.LABELS`).
    spacing : 3 floats
        mm per array axis.
    centre, normal : optional
        The annulus plane at the ventricle/aorta interface, when the caller has it (the
        derivation's ``RootDetails.plane_point_mm``/``plane_normal``, the measurement's plane).
        Without them a plane is fitted to the annulus voxels, oriented toward the aortic side and
        moved half a voxel toward it (the annulus label is the ventricle's layer under the
        interface).
    annulus_box : tuple of slices, optional
        The annulus label's bounding box, if known (saves a pass over the array).

    The radius is the 98th percentile of the annulus voxels' distances from the axis.
    """
    spacing = np.asarray(spacing, float)
    value = LABELS["annulus"]
    if annulus_box is None:
        boxes = ndimage.find_objects((np.asarray(labels) == value).astype(np.uint8))
        annulus_box = boxes[0] if boxes else None
    if annulus_box is None:
        return None
    idx = np.argwhere(labels[annulus_box] == value)
    if len(idx) < 3:
        return None
    pts = (idx + [s.start for s in annulus_box]) * spacing
    if centre is None or normal is None:
        try:
            fit = fit_plane(pts)
        except DegeneratePlane:
            return None
        normal = fit.normal
        aortic = _aortic_side_points(labels, spacing, annulus_box)
        if aortic is not None and np.mean((aortic - fit.centre) @ normal) < 0:
            normal = -normal
        centre = fit.centre + 0.5 * float(np.abs(normal) @ spacing) * normal
    frame = AnnulusFrame.make(centre, normal, 0.0)
    _, radial, _ = frame.local(pts)
    return AnnulusFrame.make(centre, normal, float(np.percentile(radial, 98)))


def _aortic_side_points(labels, spacing, annulus_box):
    """mm points of the aortic-side labels (valve, aortic root) near the annulus, or ``None``."""
    near = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in annulus_box)
    idx = np.argwhere(np.isin(labels[near], (LABELS["valve"], LABELS["aortic_root"])))
    if len(idx) == 0:
        return None
    return (idx + [s.start for s in near]) * np.asarray(spacing, float)


def _label_lookup() -> np.ndarray:
    """Label value -> region id (or the side codes resolved by the annulus geometry)."""
    lut = np.zeros(256, np.uint8)
    lut[LABELS["aorta"]] = REGION_ID["aorta"]
    lut[LABELS["iliac_artery_left"]] = REGION_ID["iliac_artery_left"]
    lut[LABELS["iliac_artery_right"]] = REGION_ID["iliac_artery_right"]
    lut[[LABELS["valve"], LABELS["aortic_root"]]] = _AORTIC_SIDE
    lut[[LABELS["left_ventricle"], LABELS["annulus"]]] = _VENTRICLE_SIDE
    return lut


_LUT = _label_lookup()


def region_map(
    labels: np.ndarray,
    spacing,
    frame: AnnulusFrame | None,
    box=None,
    annulus_half_mm: float = ANNULUS_HALF_MM,
    valve_height_mm: float = VALVE_HEIGHT_MM,
    lvot_depth_mm: float = LVOT_DEPTH_MM,
    lvot_margin_mm: float = LVOT_MARGIN_MM,
) -> np.ndarray:
    """The region id (0-7) of every voxel of ``labels[box]`` (uint8, box-shaped).

    ``labels`` is the 7-class TAVR label map (an 8-class one must first lose its calcium voxels:
    :func:`nnunet_tavr.label_derivation.calcium.anatomy_view`); ``frame`` the annulus frame, or
    ``None`` for a scan without annulus (then valve and root labels count as aortic root and no
    ventricle voxel is in a region).
    """
    spacing = np.asarray(spacing, float)
    box = tuple(slice(0, n) for n in labels.shape) if box is None else box
    lab = labels[box]
    if lab.dtype != np.uint8:
        lab = np.clip(lab, 0, 255).astype(np.uint8)
    regions = _LUT[lab]
    near = None
    if frame is not None:
        reach = frame.radius_mm + lvot_margin_mm + max(valve_height_mm, lvot_depth_mm) + 2.0
        near = box_around(frame.centre, reach, spacing, labels.shape)
        near = None if near is None else intersect_boxes(near, box)
    if near is not None:
        sub_box = relative_box(near, box)
        sub = regions[sub_box]
        zz, yy, xx = box_coordinates(near, spacing)
        rel = [zz[:, None, None] - frame.centre[0], yy[None, :, None] - frame.centre[1], xx[None, None, :] - frame.centre[2]]
        s = rel[0] * frame.normal[0] + rel[1] * frame.normal[1] + rel[2] * frame.normal[2]
        u = rel[0] * frame.e1[0] + rel[1] * frame.e1[1] + rel[2] * frame.e1[2]
        v = rel[0] * frame.e2[0] + rel[1] * frame.e2[1] + rel[2] * frame.e2[2]
        inside = np.hypot(u, v) <= frame.radius_mm + lvot_margin_mm
        aortic, ventricle = sub == _AORTIC_SIDE, sub == _VENTRICLE_SIDE
        band = np.abs(s) <= annulus_half_mm
        out = np.zeros(sub.shape, np.uint8)
        out[aortic] = REGION_ID["aortic_root"]
        out[aortic & (s <= valve_height_mm)] = REGION_ID["valve"]
        out[(aortic | ventricle) & band & inside] = REGION_ID["annulus"]
        out[aortic & (s < -annulus_half_mm)] = REGION_ID["annulus"]  # a tilted fit: aortic voxels under the band
        out[ventricle & inside & (s < -annulus_half_mm) & (s >= -lvot_depth_mm)] = REGION_ID["lvot"]
        out[lab[sub_box] == LABELS["annulus"]] = REGION_ID["annulus"]
        regions[sub_box] = np.where(aortic | ventricle, out, sub)
    regions[regions == _AORTIC_SIDE] = REGION_ID["aortic_root"]
    regions[regions == _VENTRICLE_SIDE] = 0
    return regions


def nearest_regions(regions: np.ndarray, spacing, sampling_box=None) -> tuple[np.ndarray, np.ndarray]:
    """For every voxel of ``regions[sampling_box]``: the id of the nearest region voxel and the
    distance to it (mm; 0 inside a region). Regions' voxels outside ``sampling_box`` are not seen,
    so callers grow the box by the distance they care about.

    Returns ``(nearest_id, distance_mm)``, box-shaped; where the box holds no region voxel at all,
    ids are 0 and distances ``inf``.
    """
    sub = regions if sampling_box is None else regions[sampling_box]
    if not sub.any():
        return np.zeros(sub.shape, np.uint8), np.full(sub.shape, np.inf)
    dist, idx = ndimage.distance_transform_edt(sub == 0, sampling=np.asarray(spacing, float), return_indices=True)
    return sub[tuple(idx)], dist


def regions_box(labels: np.ndarray, spacing, frame: AnnulusFrame | None, wall_mm: float = WALL_MM, boxes=None,
                lvot_reach_mm: float = LVOT_MARGIN_MM + LVOT_DEPTH_MM):
    """The box holding every region grown by ``wall_mm`` (``None`` when there is none): the
    bounding box of the aorta, valve, root, annulus and iliac labels, and of the LVOT band
    (``lvot_reach_mm``: its depth plus its radial margin)."""
    from nnunet_tavr.geometry import grow_box_mm

    spacing = np.asarray(spacing, float)
    boxes = ndimage.find_objects(np.asarray(labels)) if boxes is None else boxes
    names = ("aorta", "aortic_root", "valve", "annulus", "iliac_artery_left", "iliac_artery_right")
    found = [boxes[LABELS[n] - 1] for n in names if len(boxes) >= LABELS[n] and boxes[LABELS[n] - 1] is not None]
    if frame is not None:
        lvot = box_around(frame.centre, frame.radius_mm + lvot_reach_mm + 2.0, spacing, labels.shape)
        if lvot is not None:
            found.append(lvot)
    if not found:
        return None
    union = tuple(slice(min(b[k].start for b in found), max(b[k].stop for b in found)) for k in range(3))
    return grow_box_mm(union, wall_mm + max(spacing), spacing, labels.shape)


__all__ = [
    "ANNULUS_HALF_MM", "AnnulusFrame", "LVOT_DEPTH_MM", "LVOT_MARGIN_MM", "REGIONS", "REGION_ID", "REGION_NAMES",
    "VALVE_COMPLEX", "VALVE_HEIGHT_MM", "WALL_MM", "annulus_frame", "nearest_regions", "region_map", "regions_box",
]
