"""Background tissues (air, body, lungs, spine) and the CT intensities of every structure."""

from __future__ import annotations

import numpy as np

from nnunet_tavr.phantom.canvas import Canvas
from nnunet_tavr.phantom.fov import OUTSIDE_FOV_HU
from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.parameters import Parameters
from nnunet_tavr.phantom.structure import AORTA, ILIAC, LEFT_VENTRICLE, MYOCARDIUM, Structure

#: Mean intensities (HU). Lungs are body tissue minus LUNG_DROP_HU; blood is ``contrast_hu``.
AIR_HU, BODY_HU, LUNG_DROP_HU, SPINE_HU, MYOCARDIUM_HU = -1000.0, 40.0, 890.0, 450.0, 100.0
#: The range of an int16 CT (HU).
CT_RANGE_HU = (-1024, 3071)
#: Spine: balls of this radius (mm) every SPINE_STEP_MM along z.
SPINE_RADIUS_MM, SPINE_STEP_MM = 13.0, 2.0


def paint_background(rng: np.random.Generator, frame: Frame, canvas: Canvas, noise_hu: float) -> Structure:
    """The CT without vessels or heart: noise, air, the body, lungs above the diaphragm, the spine.

    Draws from ``rng``, in this order: Gaussian noise of ``noise_hu`` on every voxel, then on every
    spine voxel.

    Returns
    -------
    Structure
        No masks, no truth. ``aux``: ``ct`` (float32 (z, y, x) HU), ``body`` ((1, y, x) bool),
        ``lungs`` and ``spine`` (bool (z, y, x)).
    """
    Z, Y, X = frame.extent
    centre = frame.centre
    _, yc, xc = (np.arange(n) * sp for n, sp in zip(frame.shape, frame.spacing))
    ct = rng.normal(0.0, noise_hu, size=frame.shape).astype(np.float32)
    # Body: elliptic cylinder along the array's z axis (the anatomy's, up to a rare, mild rotation).
    body2d = ((yc[:, None] - centre[1]) / (0.44 * Y)) ** 2 + ((xc[None, :] - centre[2]) / (0.47 * X)) ** 2 <= 1
    ct += np.where(body2d[None], BODY_HU, AIR_HU).astype(np.float32)
    lungs = canvas.blank()
    for side in (-1.0, 1.0):
        c = frame.place([frame.annulus_centre[0] + 10.0, 0.05 * Y, side * 0.27 * X])
        r = np.array([0.22 * Z, 0.3 * Y, 0.17 * X])
        box, coords = canvas.box(c - r, c + r)
        if box is not None:
            dz, dy, dx = canvas.offsets(coords, c)
            lungs[box] |= (dz / r[0]) ** 2 + (dy / r[1]) ** 2 + (dx / r[2]) ** 2 <= 1
    lungs &= body2d[None]
    ct[lungs] -= LUNG_DROP_HU
    spine = canvas.blank()
    behind = frame.descending_top[1] + 30.0  # behind the descending aorta
    pts = np.array([frame.place([z, behind, 0.0]) for z in np.arange(-Z / 2, Z / 2, SPINE_STEP_MM)])
    canvas.balls(spine, pts, np.full(len(pts), SPINE_RADIUS_MM))
    ct[spine] = SPINE_HU + rng.normal(0, noise_hu, int(spine.sum()))
    return Structure("background", aux={"ct": ct, "body": body2d[None], "lungs": lungs, "spine": spine})


def render_ct(rng: np.random.Generator, ct: np.ndarray, masks: dict, prm: Parameters, cut: np.ndarray, noise_hu: float) -> Structure:
    """Paint the structures' intensities over the background ``ct`` (float32 HU, modified in place)
    and round it to an int16 CT.

    Draws from ``rng``, in this order: noise on the myocardium (around :data:`MYOCARDIUM_HU`), then
    on the blood (aorta, left ventricle and iliacs, around ``contrast_hu``). Voxels outside the
    field of view (``cut``) get :data:`OUTSIDE_FOV_HU`.

    Returns
    -------
    Structure
        No masks. ``truth``: ``contrast_hu``. ``aux``: ``ct`` (int16 (z, y, x) HU).
    """
    myo = masks[MYOCARDIUM]
    blood = masks[AORTA] | masks[LEFT_VENTRICLE] | masks[ILIAC["left"]] | masks[ILIAC["right"]]
    ct[myo] = MYOCARDIUM_HU + rng.normal(0, noise_hu, int(myo.sum()))
    ct[blood] = prm.contrast_hu + rng.normal(0, noise_hu, int(blood.sum()))
    ct[cut] = OUTSIDE_FOV_HU
    ct = np.clip(np.rint(ct), *CT_RANGE_HU).astype(np.int16)
    return Structure("intensities", truth={"contrast_hu": prm.contrast_hu}, aux={"ct": ct})
