"""Landmark targets made from label spheres in nnU-Net's data pipeline.

The landmark dataset (scheme ``hinge``) stores each landmark as a small labelled sphere, so nnU-Net
plans, crops, resamples, samples foreground and augments it like any segmentation. After the
spatial transforms, :class:`LandmarkCentreTransform` reads every sphere's centre off the augmented
patch and appends it to the segmentation as constant channels, which survive nnU-Net's
deep-supervision downsampling unchanged (nearest-neighbour downsampling of a constant is the
constant). The heatmap losses (:mod:`nnunet_tavr.trainers.landmark_losses`) build their Gaussian
targets from these centres at every output scale.

A landmark counts as **present** in a patch only when its sphere lies wholly inside it (no voxel on
the patch border): the centroid of a cut sphere is biased toward the patch's inside. Absent
landmarks get ``present = 0``; the OT loss leaves them out and the MSE loss asks for an empty
heatmap (documented in ``docs/hinge_points.md``).
"""

from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from scipy import ndimage


def sphere_centres(seg: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(present (L,) bool, fractions (L, d))`` of the spheres ``labels`` in one label map.

    ``fractions[l, k] = (centroid index + 0.5) / n_k``: the centre as a fraction of the patch
    extent along axis ``k`` (0 and 1 are the patch's outer faces). Absent or cut spheres get 0.
    """
    seg = np.asarray(seg)
    labels = [int(v) for v in labels]
    present = np.zeros(len(labels), bool)
    frac = np.zeros((len(labels), seg.ndim))
    if not labels:
        return present, frac
    boxes = ndimage.find_objects(seg.astype(np.int32, copy=False), max_label=max(labels))
    for i, value in enumerate(labels):
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        if box is None or any(s.start == 0 or s.stop == n for s, n in zip(box, seg.shape)):
            continue
        idx = np.argwhere(seg[box] == value) + [s.start for s in box]
        present[i] = True
        frac[i] = (idx.mean(axis=0) + 0.5) / np.asarray(seg.shape)
    return present, frac


class LandmarkCentreTransform(SegOnlyTransform):
    """Append ``(present, f_0, .., f_{d-1})`` per landmark as constant float channels.

    Put it after the spatial transforms and before ``DownsampleSegForDSTransform``. The segmentation
    becomes float32 (label values stay exact integers in channel 0).

    Parameters
    ----------
    labels : sequence of int
        The landmarks' label values, in output-channel order (channel ``1 + i`` is ``labels[i]``).
    seg_channel : int
        Channel holding the label map.
    """

    def __init__(self, labels, seg_channel: int = 0):
        super().__init__()
        self.labels = [int(v) for v in labels]
        self.seg_channel = seg_channel

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        seg = segmentation[self.seg_channel].numpy()
        present, frac = sphere_centres(seg, self.labels)
        values = np.concatenate([present[:, None].astype(float), frac], axis=1).ravel()
        extra = torch.from_numpy(values.astype(np.float32)).reshape(-1, *([1] * seg.ndim)).expand(-1, *seg.shape)
        return torch.cat((segmentation.float(), extra), dim=0)
