"""The left ventricle: an oblique ellipsoid cut flat by the annulus plane, inside a myocardium shell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_tavr.geometry import plane_frame
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import LEFT_VENTRICLE, MYOCARDIUM, Structure

#: Myocardium thickness (mm), added to every semi-axis of the blood pool.
WALL_MM = 9.0


@dataclass(frozen=True)
class VentricleGeometry:
    """The LV blood pool and myocardium as membership tests on mm points (arrays' physical frame).

    The pool is the ellipsoid of semi-axes ``semi`` along ``axes`` (the long axis first) centred on
    ``centre``, the outer surface that ellipsoid grown by :data:`WALL_MM`; both are cut by the
    annulus plane (through ``plane_point``, normal ``plane_normal`` pointing into the aorta): only
    points strictly below it belong to the ventricle. :func:`paint_ventricle` paints with these
    tests, and the heart builder integrates them for the true LV volumes.
    """

    centre: np.ndarray
    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  #: long axis (apex -> base), then two short ones
    semi: tuple[float, float, float]  #: mm
    plane_point: np.ndarray
    plane_normal: np.ndarray

    @classmethod
    def of(cls, frame: Frame, prm: Parameters) -> "VentricleGeometry":
        f1, f2 = plane_frame(frame.lv_axis, hint=(0.0, 0.0, 1.0))
        return cls(centre=frame.place(frame.lv_centre), axes=(frame.turn(frame.lv_axis), frame.turn(f1), frame.turn(f2)),
                   semi=tuple(prm.lv_semi_axes), plane_point=frame.place(frame.annulus_centre),
                   plane_normal=frame.turn(frame.annulus_normal))

    def terms(self, rel):
        """``(q, s_h)`` of offsets ``rel`` (mm, per axis, from :attr:`centre`): the coordinates along
        the three axes and the signed distance from the annulus plane (negative below it)."""
        q = [sum(rel[k] * d[k] for k in range(3)) for d in self.axes]
        s_h = sum((rel[k] + self.centre[k] - self.plane_point[k]) * self.plane_normal[k] for k in range(3))
        return q, s_h

    def inside(self, q, grow: float = 0.0):
        a, b, c = self.semi
        return (q[0] / (a + grow)) ** 2 + (q[1] / (b + grow)) ** 2 + (q[2] / (c + grow)) ** 2 <= 1

    def pool(self, z, y, x):
        """Membership of the blood pool (mm points)."""
        q, s_h = self.terms((z - self.centre[0], y - self.centre[1], x - self.centre[2]))
        return self.inside(q) & (s_h < 0)

    def outer(self, z, y, x):
        """Membership of pool + myocardium (the epicardial surface)."""
        q, s_h = self.terms((z - self.centre[0], y - self.centre[1], x - self.centre[2]))
        return self.inside(q, WALL_MM) & (s_h < 0)

    def reach(self) -> float:
        """Radius (mm) of a ball around :attr:`centre` holding the whole ventricle."""
        return self.semi[0] + WALL_MM + 2


def paint_ventricle(frame: Frame, prm: Parameters, canvas: Canvas, aorta: np.ndarray) -> Structure:
    """Paint the LV blood pool and its myocardium below the annulus plane.

    The blood pool is the ellipsoid of semi-axes ``lv_semi_axes`` (the long one along
    :attr:`Frame.lv_axis`) centred on :attr:`Frame.lv_centre`; the myocardium is the shell between
    it and the ellipsoid grown by :data:`WALL_MM`. Both are cut flat by the annulus plane, so the
    ventricle meets the aorta only at the annulus, and leave the ``aorta`` voxels alone
    (:class:`VentricleGeometry` holds the membership tests).

    Parameters
    ----------
    aorta : np.ndarray
        bool (z, y, x): the aorta painted so far; the ventricle does not claim its voxels.

    Returns
    -------
    Structure
        ``masks``: ``heart_ventricle_left`` and ``heart_myocardium``. ``truth``: LV centre, axis
        and semi-axes. ``aux``: ``box`` (slices around the ventricle, or None), ``axial_mm``
        (signed distance from the annulus plane along its normal, box-shaped, mm; negative on the
        ventricle's side), for the annulus label rule, and ``geometry`` (:class:`VentricleGeometry`).
    """
    geometry = VentricleGeometry.of(frame, prm)
    lvc_w, reach = geometry.centre, geometry.reach()
    lv, myo = canvas.blank(), canvas.blank()
    box, coords = canvas.box(lvc_w - reach, lvc_w + reach)
    s_h = None
    if box is not None:
        q, s_h = geometry.terms(canvas.offsets(coords, lvc_w))
        below = s_h < 0
        pool = geometry.inside(q) & below
        shell = geometry.inside(q, WALL_MM) & below & ~pool
        lv[box] = pool & ~aorta[box]
        myo[box] = shell & ~aorta[box]
    truth = {
        "lv_center_mm": lvc_w.tolist(),
        "lv_axis": geometry.axes[0].tolist(),
        "lv_semi_axes_mm": list(geometry.semi),
    }
    return Structure("ventricle", masks={LEFT_VENTRICLE: lv, MYOCARDIUM: myo}, truth=truth,
                     aux={"box": box, "axial_mm": s_h, "geometry": geometry})
