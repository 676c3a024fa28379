"""Per-class skeleton targets for the (focal) skeleton recall loss.

The skeleton recall loss (Kirchhoff et al., ECCV 2024) rewards the predicted probability of each
class on that class's *skeleton*. The TAVR paper computes the skeletons "for all classes C", so they
are made **per class** here, not from the union of the foreground: the valve and the annulus are
thin slabs lying against the aorta and the left ventricle, and a skeleton of the union would run
through the middle of the big neighbours and miss them entirely.

Skeleton labels are disjoint (each skeleton lies inside its own class and the classes of a label map
are exclusive), so all of them fit in one label map, which travels as one extra channel of the
segmentation through nnU-Net's deep-supervision downsampling.

Conventions: arrays are label maps with spatial axes only, ``(y, x)`` or ``(z, y, x)``; all sizes
are in **voxels** (a skeleton is a topological object of the voxel grid; the patch grid of nnU-Net
is already at the target spacing).
"""

from __future__ import annotations

from typing import Iterable

import cc3d
import edt
import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from scipy import ndimage
from skimage.morphology import skeletonize

from nnunet_tavr.geometry import bounding_box, grow_box

#: Default number of dilations of the skeleton (face-connected structuring element) that make the
#: "tube": 2, as in Skeleton Recall's tubed skeleton. The tube is clipped to its class.
DEFAULT_TUBE_ITERATIONS = 2

#: Default pooling factor of the thinning in the training pipeline (see :func:`class_skeleton`):
#: with exact thinning nnU-Net's data pipeline runs at about 0.87x its speed, with thinning on a
#: 2x-pooled grid at about 0.96x (benchmarks/trainers.py, 128^3 patches).
DEFAULT_COARSEN = 2


def class_skeleton(mask: np.ndarray, coarsen: int = 1) -> np.ndarray:
    """Skeleton of a binary mask that keeps every connected component.

    scikit-image's 3D thinning (Lee et al. 1994) removes compact components without holes
    completely (a cube, a 2-voxel-thick plate, a short blob all thin to nothing). Recall on an empty
    skeleton is undefined, so each component whose skeleton vanished keeps its deepest voxel (the
    maximum of its Euclidean distance transform) instead.

    Parameters
    ----------
    mask : (Y, X) or (Z, Y, X) array of bool
        One class. Computed on the bounding box of the mask only.
    coarsen : int
        1 (default): thinning at full resolution; the skeleton is one voxel thin. ``k > 1``: the
        mask is max-pooled by ``k`` blocks, thinned, and the skeleton's blocks are intersected with
        the mask, so the skeleton is up to ``k`` voxels thick and lies within about ``k - 1`` voxels
        of the full-resolution one, for about ``k**(ndim + 1)`` times less thinning work
        (``k**ndim`` fewer voxels, ``k`` times fewer passes). Components that merge when pooled
        are guaranteed one skeleton voxel together, not each.

    Returns
    -------
    skeleton : bool array, same shape as ``mask``
        ``skeleton <= mask``; non-empty for every non-empty component of ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if coarsen < 1:
        raise ValueError(f"coarsen must be >= 1, got {coarsen}")
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return out
    # A margin keeps the thinning from treating the crop border as background structure.
    box = grow_box(box, coarsen, mask.shape)
    crop = mask[box]
    if coarsen == 1:
        out[box] = _keep_components(crop, skeletonize(crop).astype(bool))
    else:
        out[box] = _block_repeat(_coarse_skeleton(crop, coarsen), coarsen, crop.shape) & crop
    return out


def _coarse_skeleton(crop: np.ndarray, k: int) -> np.ndarray:
    coarse = _block_any(crop, k)
    return _keep_components(coarse, skeletonize(coarse).astype(bool))


def _keep_components(mask: np.ndarray, skel: np.ndarray) -> np.ndarray:
    """Add the deepest voxel of every component of ``mask`` that ``skel`` misses.

    Components are face-connected. This runs for every class of every augmented patch, hence
    connected-components-3d and ``edt`` (several times faster than their scipy.ndimage
    counterparts on these small boxes); ``edt`` measures each component's depth within itself.
    """
    components = cc3d.connected_components(mask, connectivity=2 * mask.ndim)
    n = int(components.max())
    if n:
        kept = np.zeros(n + 1, dtype=bool)
        kept[components[skel]] = True
        lost = np.flatnonzero(~kept[1:]) + 1
        if lost.size:
            depth = edt.edt(components, black_border=True)
            for idx in ndimage.maximum_position(depth, components, lost):
                skel[idx] = True
    return skel


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary dilation by the face-connected cross, ``iterations`` times, by shifted ORs.

    Same result as ``ndimage.binary_dilation(mask, generate_binary_structure(ndim, 1), iterations)``
    (border treated as background), at a fraction of its per-call overhead on the small per-class
    boxes of a patch.
    """
    out = mask.copy()
    for _ in range(iterations):
        grown = out.copy()
        for axis in range(out.ndim):
            lead = [slice(None)] * out.ndim
            trail = [slice(None)] * out.ndim
            lead[axis], trail[axis] = slice(1, None), slice(None, -1)
            grown[tuple(lead)] |= out[tuple(trail)]
            grown[tuple(trail)] |= out[tuple(lead)]
        out = grown
    return out


def _block_any(mask: np.ndarray, k: int) -> np.ndarray:
    """Max-pool a bool array by ``k`` along every axis (the border is padded with False)."""
    padded = np.pad(mask, [(0, -n % k) for n in mask.shape])
    # OR of the k**ndim strided views: much faster than a reduction over interleaved axes
    out = np.zeros([n // k for n in padded.shape], dtype=bool)
    for offset in np.ndindex(*([k] * mask.ndim)):
        out |= padded[tuple(slice(o, None, k) for o in offset)]
    return out


def _block_repeat(coarse: np.ndarray, k: int, shape) -> np.ndarray:
    """Inverse of :func:`_block_any`'s layout: every coarse voxel becomes a ``k``-block, cropped to ``shape``."""
    fine = coarse
    for axis in range(coarse.ndim):
        fine = np.repeat(fine, k, axis=axis)
    return fine[tuple(slice(0, n) for n in shape)]


def skeleton_targets(
    seg: np.ndarray,
    labels: Iterable[int] | None = None,
    tube_iterations: int = DEFAULT_TUBE_ITERATIONS,
    ignore_label: int | None = None,
    coarsen: int = 1,
) -> np.ndarray:
    """Label map of the per-class (tubed) skeletons of a segmentation.

    Parameters
    ----------
    seg : (Y, X) or (Z, Y, X) integer array
        Label map (nnU-Net's segmentation channel). Values <= 0 are background.
    labels : iterable of int, optional
        Classes to skeletonize; default every value > 0 present in ``seg``.
    tube_iterations : int
        Dilations (face connectivity) of each skeleton; 0 keeps the one-voxel-thin skeleton. The
        tube is intersected with its own class, so it never leaves the structure.
    ignore_label : int, optional
        Never skeletonized: the class of an ignored voxel is unknown, so it has no skeleton.
    coarsen : int
        1: exact thinning, then the tube by ``tube_iterations`` dilations. ``k > 1``: thinning and
        tube on a grid pooled by ``k`` (see :func:`class_skeleton`), the tube dilated by
        ``ceil(tube_iterations / k)`` coarse voxels; the result is back on the full grid, inside
        the class, about as wide as the exact tube.

    Returns
    -------
    skeletons : array, dtype and shape of ``seg``
        ``c`` on the skeleton (tube) of class ``c``, 0 elsewhere.
    """
    seg = np.asarray(seg)
    if seg.ndim not in (2, 3):
        raise ValueError(f"skeleton_targets expects a 2D or 3D label map, got shape {seg.shape}")
    if not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"skeleton_targets expects an integer label map, got dtype {seg.dtype}")
    if tube_iterations < 0:
        raise ValueError(f"tube_iterations must be >= 0, got {tube_iterations}")
    if coarsen < 1:
        raise ValueError(f"coarsen must be >= 1, got {coarsen}")
    out = np.zeros_like(seg)
    if seg.size == 0:
        return out
    # One pass over the patch for all bounding boxes (labels <= 0 are skipped); each class is then
    # thinned inside its own box only. This is what keeps the transform cheap: most TAVR classes
    # fill a small part of a patch.
    boxes = ndimage.find_objects(seg)
    if labels is None:
        labels = [i + 1 for i, box in enumerate(boxes) if box is not None]
    footprint = ndimage.generate_binary_structure(seg.ndim, 1)
    for c in labels:
        c = int(c)
        if c <= 0 or c == ignore_label or c > len(boxes) or boxes[c - 1] is None:
            continue
        box = grow_box(boxes[c - 1], tube_iterations + coarsen, seg.shape)
        mask = seg[box] == c
        if coarsen == 1:
            skel = _keep_components(mask, skeletonize(mask).astype(bool))
            if tube_iterations:
                skel = ndimage.binary_dilation(skel, footprint, iterations=tube_iterations, mask=mask)
        else:
            # thin and tube on the coarse grid: both are k**ndim times cheaper there
            skel = _coarse_skeleton(mask, coarsen)
            if tube_iterations:
                skel = _dilate(skel, -(-tube_iterations // coarsen))
            skel = _block_repeat(skel, coarsen, mask.shape) & mask
        out[box][skel] = c
    return out


class SkeletonTargetTransform(SegOnlyTransform):
    """Append the per-class skeleton label map as the last channel of ``segmentation``.

    Put it after the spatial transforms (the skeleton must be that of the augmented patch) and
    before :class:`DownsampleSegForDSTransform`, which then downsamples it for every deep-supervision
    output exactly like the segmentation (nearest neighbour). The loss reads channel 0 as the
    segmentation and the last channel as the skeletons.

    Parameters
    ----------
    tube_iterations : int
        See :func:`skeleton_targets`.
    ignore_label : int, optional
        Never skeletonized.
    coarsen : int
        See :func:`skeleton_targets`; default :data:`DEFAULT_COARSEN`.
    seg_channel : int
        Channel holding the label map.
    """

    def __init__(self, tube_iterations: int = DEFAULT_TUBE_ITERATIONS, ignore_label: int | None = None,
                 coarsen: int = None, seg_channel: int = 0):
        super().__init__()
        self.tube_iterations = int(tube_iterations)
        self.ignore_label = ignore_label
        self.coarsen = DEFAULT_COARSEN if coarsen is None else int(coarsen)
        self.seg_channel = seg_channel

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        seg = segmentation[self.seg_channel].numpy()
        skel = skeleton_targets(seg, None, self.tube_iterations, self.ignore_label, self.coarsen)
        return torch.cat((segmentation, torch.from_numpy(skel).to(segmentation.dtype)[None]), dim=0)
