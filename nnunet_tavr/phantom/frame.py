"""The subject's anatomical frame: the grid, the field-of-view centre and rotation, and the
landmarks every builder hangs its structure on (annulus centre and normal, LV axis, ...)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnunet_tavr.geometry import as_spacing, rotation_zyx, unit
from nnunet_tavr.phantom.parameters import Parameters


@dataclass(frozen=True)
class Frame:
    """Grid and landmarks of one subject.

    Landmarks are in the *anatomical* frame: mm, (z, y, x) with z superior, y posterior and x to
    the patient's left, relative to the centre of the field of view, before ``rotation``.
    :meth:`place` and :meth:`turn` take them to the arrays' physical frame (index * spacing, mm).
    """

    shape: tuple[int, int, int]  #: voxels (z, y, x)
    spacing: np.ndarray  #: (3,) mm per array axis
    extent: np.ndarray  #: (3,) field of view in mm: ``shape * spacing``
    centre: np.ndarray  #: (3,) centre of the field of view, physical mm
    rotation_deg: tuple[float, float, float]  #: as given: degrees about z, y, x
    rotation: np.ndarray  #: (3, 3) acting on (z, y, x) vectors
    annulus_centre: np.ndarray
    annulus_normal: np.ndarray  #: unit, from the ventricle into the aorta
    lv_axis: np.ndarray  #: unit long axis of the left ventricle, apex -> base
    lv_centre: np.ndarray
    straight_length: float  #: mm of root + ascending aorta straight along the annulus normal
    ascending_end: np.ndarray  #: where the straight tube hands over to the arch
    descending_top: np.ndarray  #: where the arch hands over to the descending aorta
    bifurcation: np.ndarray  #: aortic bifurcation into the iliac arteries
    diaphragm_z: float  #: anatomical z (mm) of the diaphragm, below the apex

    def place(self, p) -> np.ndarray:
        """Anatomical point (mm, relative to the FOV centre) -> physical mm in the arrays' frame."""
        return self.centre + self.rotation @ np.asarray(p, float)

    def turn(self, v) -> np.ndarray:
        """Anatomical direction -> direction in the arrays' frame (rotation only)."""
        return self.rotation @ np.asarray(v, float)


def anatomical_frame(prm: Parameters, shape, spacing, rotation_deg=(0.0, 0.0, 0.0)) -> Frame:
    """Lay out one subject's landmarks relative to its field of view.

    Parameters
    ----------
    prm : Parameters
        The subject's random draw.
    shape : (int, int, int)
        Voxels (z, y, x). Landmarks scale with the field of view ``shape * spacing`` (mm).
    spacing : float or (float, float, float)
        mm, isotropic or per array axis (z, y, x).
    rotation_deg : (float, float, float)
        Rotation of the anatomy about the FOV centre (degrees about z, y, x).
    """
    spacing = as_spacing(spacing)
    shape = tuple(int(s) for s in shape)
    extent = np.asarray(shape) * spacing
    Z, Y, X = extent
    annulus_c = np.array([0.18 * Z, -0.02 * Y, -0.03 * X]) + prm.jitter
    tilt, azim = np.deg2rad(prm.root_tilt_deg), np.deg2rad(prm.root_azimuth_deg)
    horizontal = np.array([0.0, -math.cos(0.65 + azim), -math.sin(0.65 + azim)])  # anterior-right
    normal = unit([math.cos(tilt), 0, 0] + math.sin(tilt) * horizontal)  # ventricle -> aorta
    lt, la = np.deg2rad(prm.lv_tilt_deg), np.deg2rad(prm.lv_azimuth_deg)
    # LV long axis, apex -> base: the apex points inferior, anterior and to the left.
    lv_axis = unit([math.cos(lt), math.sin(lt) * math.sin(0.45 + la), -math.sin(lt) * math.cos(0.45 + la)])
    a_lv = prm.lv_semi_axes[0]
    lv_centre = annulus_c - 0.6 * a_lv * lv_axis
    straight = max(prm.stj_distance + 32.0, 52.0)
    asc_end = annulus_c + straight * normal
    return Frame(
        shape=shape,
        spacing=spacing,
        extent=extent,
        centre=(extent - spacing) / 2.0,
        rotation_deg=tuple(rotation_deg),
        rotation=rotation_zyx(rotation_deg),
        annulus_centre=annulus_c,
        annulus_normal=normal,
        lv_axis=lv_axis,
        lv_centre=lv_centre,
        straight_length=straight,
        ascending_end=asc_end,
        # The descending aorta starts behind the heart, a little lower than the ascending end.
        descending_top=np.array([asc_end[0] - 12.0, annulus_c[1] + 0.2 * Y, 0.09 * X]),
        bifurcation=np.array([-0.28 * Z, 0.06 * Y, 0.01 * X]),
        diaphragm_z=lv_centre[0] - a_lv - 12.0,
    )
