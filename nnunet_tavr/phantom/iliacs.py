"""The iliac arteries: two straight tubes from the aortic bifurcation, one optionally stenosed."""

from __future__ import annotations

import math

import numpy as np

from nnunet_tavr.geometry import resample_polyline, unit
from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import ILIAC, Structure

#: Arc-length step (mm) of the centrelines (one ball per point).
STEP_MM = 0.5
#: Gaussian half-width (mm along the centreline) of the stenosis.
STENOSIS_WIDTH_MM = 6.0
#: The iliacs end this far (mm) above the bottom of the field of view.
BOTTOM_MARGIN_MM = 4.0


def paint_iliacs(frame: Frame, prm: Parameters, canvas: Canvas, aorta: np.ndarray, stenosis: bool = True) -> Structure:
    """Paint both iliac arteries from :attr:`Frame.bifurcation` down, sideways and slightly back,
    ``iliac_spread_deg`` from the -z axis, to just above the bottom of the field of view.

    With ``stenosis``, the artery on ``stenosis_side`` narrows by ``stenosis_depth`` of its radius
    (a Gaussian dip at ``stenosis_position`` of its length).

    Parameters
    ----------
    aorta : np.ndarray
        bool (z, y, x): the iliacs do not claim aorta voxels (nor does the right one left ones).

    Returns
    -------
    Structure
        ``masks``: ``iliac_artery_left`` and ``iliac_artery_right``. ``truth``: ``iliac``, per side
        the start point, unit direction, length and diameter (mm) and the stenosis (position along
        the artery, point, minimum diameter, depth) or None.
    """
    spread = np.deg2rad(prm.iliac_spread_deg)
    bif, Z = frame.bifurcation, frame.extent[0]
    masks, truth = {}, {}
    for side, sign in (("left", 1.0), ("right", -1.0)):  # +x is the patient's left
        direction = unit([-math.cos(spread), 0.15, sign * math.sin(spread)])
        # bif[0] + Z / 2 is the bifurcation's height above the bottom of the field of view.
        length = (bif[0] + 0.5 * Z - BOTTOM_MARGIN_MM) / math.cos(spread)
        pts, t = resample_polyline(np.array([bif, bif + length * direction]), STEP_MM)
        r = np.full(t.shape, prm.iliac_radius)
        sten = None
        if stenosis and side == prm.stenosis_side:
            t0 = prm.stenosis_position * length
            r = r * (1.0 - prm.stenosis_depth * np.exp(-(((t - t0) / STENOSIS_WIDTH_MM) ** 2)))
            sten = {
                "position_mm": float(t0),
                "point_mm": frame.place(bif + t0 * direction).tolist(),
                "min_diameter_mm": float(2 * r.min()),
                "depth": float(prm.stenosis_depth),
            }
        mask = canvas.blank()
        canvas.balls(mask, np.array([frame.place(p) for p in pts]), r)
        masks[ILIAC[side]] = mask & ~aorta
        truth[side] = {
            "start_mm": frame.place(bif).tolist(),
            "direction": frame.turn(direction).tolist(),
            "length_mm": float(length),
            "diameter_mm": float(2 * prm.iliac_radius),
            "stenosis": sten,
        }
    masks[ILIAC["right"]] &= ~masks[ILIAC["left"]]
    return Structure("iliacs", masks=masks, truth={"iliac": truth})
