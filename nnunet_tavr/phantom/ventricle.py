"""The left ventricle: an oblique ellipsoid cut flat by the annulus plane, inside a myocardium shell."""

from __future__ import annotations

import numpy as np

from nnunet_tavr.geometry import plane_frame
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import LEFT_VENTRICLE, MYOCARDIUM, Structure

#: Myocardium thickness (mm), added to every semi-axis of the blood pool.
WALL_MM = 9.0


def paint_ventricle(frame: Frame, prm: Parameters, canvas: Canvas, aorta: np.ndarray) -> Structure:
    """Paint the LV blood pool and its myocardium below the annulus plane.

    The blood pool is the ellipsoid of semi-axes ``lv_semi_axes`` (the long one along
    :attr:`Frame.lv_axis`) centred on :attr:`Frame.lv_centre`; the myocardium is the shell between
    it and the ellipsoid grown by :data:`WALL_MM`. Both are cut flat by the annulus plane, so the
    ventricle meets the aorta only at the annulus, and leave the ``aorta`` voxels alone.

    Parameters
    ----------
    aorta : np.ndarray
        bool (z, y, x): the aorta painted so far; the ventricle does not claim its voxels.

    Returns
    -------
    Structure
        ``masks``: ``heart_ventricle_left`` and ``heart_myocardium``. ``truth``: LV centre, axis
        and semi-axes. ``aux``: ``box`` (slices around the ventricle, or None) and ``axial_mm``
        (signed distance from the annulus plane along its normal, box-shaped, mm; negative on the
        ventricle's side), for the annulus label rule.
    """
    a_lv, b_lv, c_lv = prm.lv_semi_axes
    lv_w, lvc_w = frame.turn(frame.lv_axis), frame.place(frame.lv_centre)
    a_w, n_w = frame.place(frame.annulus_centre), frame.turn(frame.annulus_normal)
    f1, f2 = plane_frame(frame.lv_axis, hint=(0.0, 0.0, 1.0))
    f1_w, f2_w = frame.turn(f1), frame.turn(f2)
    reach = a_lv + WALL_MM + 2
    lv, myo = canvas.blank(), canvas.blank()
    box, coords = canvas.box(lvc_w - reach, lvc_w + reach)
    s_h = None
    if box is not None:
        rel = canvas.offsets(coords, lvc_w)
        q = [sum(rel[k] * d[k] for k in range(3)) for d in (lv_w, f1_w, f2_w)]
        s_h = sum((rel[k] + lvc_w[k] - a_w[k]) * n_w[k] for k in range(3))
        below = s_h < 0
        pool = ((q[0] / a_lv) ** 2 + (q[1] / b_lv) ** 2 + (q[2] / c_lv) ** 2 <= 1) & below
        outer = (q[0] / (a_lv + WALL_MM)) ** 2 + (q[1] / (b_lv + WALL_MM)) ** 2 + (q[2] / (c_lv + WALL_MM)) ** 2 <= 1
        shell = outer & below & ~pool
        lv[box] = pool & ~aorta[box]
        myo[box] = shell & ~aorta[box]
    truth = {
        "lv_center_mm": lvc_w.tolist(),
        "lv_axis": lv_w.tolist(),
        "lv_semi_axes_mm": [a_lv, b_lv, c_lv],
    }
    return Structure("ventricle", masks={LEFT_VENTRICLE: lv, MYOCARDIUM: myo}, truth=truth, aux={"box": box, "axial_mm": s_h})
