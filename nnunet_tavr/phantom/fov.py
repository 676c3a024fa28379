"""The field of view: chest-less scans end at the diaphragm, pelvis-less ones above the bifurcation."""

from __future__ import annotations

import numpy as np

from nnunet_tavr.phantom.frame import Frame
from nnunet_tavr.phantom.structure import Structure

#: Hounsfield units outside the field of view (what scanners pad with).
OUTSIDE_FOV_HU = -1024

#: A pelvis-less scan ends this far (mm) above the bifurcation, so no iliac voxel is left.
ABOVE_BIFURCATION_MM = 6.0


def field_of_view(frame: Frame, heart: bool = True, iliacs: bool = True) -> Structure:
    """The axial slices a scan keeps.

    ``heart=False`` keeps the slices below the diaphragm (the left ventricle and the thoracic
    aorta are absent), ``iliacs=False`` those above the bifurcation. The cut runs along the array's
    z axis, so it needs unrotated anatomy.

    Returns
    -------
    Structure
        No masks. ``truth``: ``has_heart`` and ``has_iliacs``. ``aux``: ``kept`` (bool per z slice)
        and ``cut`` (bool (z, y, x) view, True outside the field of view; read-only).

    Raises
    ------
    ValueError
        A cut is asked for a rotated subject.
    """
    if (not heart or not iliacs) and np.any(frame.rotation_deg):
        raise ValueError("heart=False / iliacs=False cut the field of view along z: use them unrotated")
    zc = np.arange(frame.shape[0]) * frame.spacing[0]
    kept = np.ones(frame.shape[0], bool)
    if not heart:
        kept &= zc < frame.place([frame.diaphragm_z, 0, 0])[0]
    if not iliacs:
        kept &= zc > frame.place(frame.bifurcation)[0] + ABOVE_BIFURCATION_MM
    cut = np.broadcast_to(~kept[:, None, None], frame.shape)
    truth = {"has_heart": bool(heart), "has_iliacs": bool(iliacs)}
    return Structure("fov", truth=truth, aux={"kept": kept, "cut": cut})


def cut_to_field_of_view(arrays, cut: np.ndarray) -> None:
    """Clear (in place) the voxels of every array outside the field of view (``cut`` True)."""
    for array in arrays:
        array[cut] = 0
