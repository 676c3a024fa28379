"""The curved aorta: arch, descending and abdominal aorta down to the bifurcation."""

from __future__ import annotations

import numpy as np

from nnunet_tavr.geometry import resample_polyline
from nnunet_tavr.phantom.canvas import Canvas, bezier
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import AORTA, Structure

#: Values of :attr:`Phantom.aorta_part` (0 is no aorta).
AORTA_PARTS = {"root": 1, "ascending": 2, "arch": 3, "descending": 4, "abdominal": 5}

#: Arc-length step (mm) of the centreline the aorta is painted along (one ball per point).
STEP_MM = 0.5


def paint_curved_aorta(frame: Frame, prm: Parameters, canvas: Canvas) -> Structure:
    """Paint the aorta from the end of the straight ascending tube to the bifurcation.

    The centreline is a cubic Bezier arch from :attr:`Frame.ascending_end` to
    :attr:`Frame.descending_top`, then a straight line down to :attr:`Frame.bifurcation`; the
    aorta is the union of balls along it, its radius tapering from the ascending to the
    descending and abdominal radii. Voxels above the diaphragm are "descending", below
    "abdominal".

    Returns
    -------
    Structure
        ``masks``: ``aorta`` (this part only). ``aux["aorta_part"]``: uint8 (z, y, x) map of
        :data:`AORTA_PARTS` arch / descending / abdominal. ``truth``: descending diameter and the
        bifurcation point.
    """
    n, asc_end, desc_top, bif = frame.annulus_normal, frame.ascending_end, frame.descending_top, frame.bifurcation
    arch = bezier(asc_end, asc_end + 38.0 * n + [8.0, 0, 0], desc_top + [42.0, 0, 0], desc_top, 80)
    down = np.linspace(desc_top, bif, 120)
    path, arc = resample_polyline(np.vstack([arch, down[1:]]), STEP_MM)
    arch_len = resample_polyline(arch, STEP_MM)[1][-1]
    r_path = np.interp(
        arc,
        [0, arch_len, arch_len + 30, arc[-1] - 30, arc[-1]],
        [prm.ascending_radius, prm.descending_radius + 1.0, prm.descending_radius, prm.abdominal_radius + 0.8, prm.abdominal_radius],
    )

    aorta_part = canvas.blank(np.uint8)
    # Paint descending/abdominal first and the arch over it: where the balls of two parts
    # overlap, the arch wins.
    below = np.where(path[:, 0] > frame.diaphragm_z, AORTA_PARTS["descending"], AORTA_PARTS["abdominal"])
    part_of_path = np.where(arc <= arch_len, AORTA_PARTS["arch"], below)
    for part in (AORTA_PARTS["abdominal"], AORTA_PARTS["descending"], AORTA_PARTS["arch"]):
        sel = part_of_path == part
        canvas.balls(aorta_part, np.array([frame.place(p) for p in path[sel]]), r_path[sel], value=part)

    truth = {
        "descending_diameter_mm": 2 * prm.descending_radius,
        "bifurcation_mm": frame.place(bif).tolist(),
    }
    return Structure("aorta", masks={AORTA: aorta_part > 0}, truth=truth, aux={"aorta_part": aorta_part})
