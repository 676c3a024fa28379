"""Focal loss, (focal) skeleton recall loss and their compounds, for softmax nnU-Net training.

Notation (the TAVR paper, section 2.2): ``p`` is the softmax probability, ``C`` the foreground
classes, ``y_skel`` the class-wise ground-truth skeleton.

- :class:`FocalLoss`, eq. 2: ``-(1 - p*)^gamma log p*`` with ``p* = p`` where ``y = 1`` and
  ``1 - p`` elsewhere, evaluated for every class (one-vs-rest on the softmax probabilities) and
  averaged over voxels and classes.
- :class:`SkeletonRecallLoss`, eq. 1 (``gamma = 0``) and eq. 3 (``gamma > 0``):
  ``-1/|C| sum_c sum_i w_ic y_skel,ic p_ic / sum_i y_skel,ic`` with ``w = (1 - p)^gamma``.

**Why the focal weight is gradient-stopped by default.** Differentiating eq. 3 literally,
``d/dp [(1 - p)^2 p] = (1 - p)(1 - 3p)``, which is negative for ``p > 1/3``: minimising the literal
loss pushes skeleton probabilities *down* toward ``p = 1/(1 + gamma)`` instead of toward 1. The paper
describes ``(1 - p)^gamma`` as a dynamic *weight* that emphasises low-confidence voxels, so by
default it is treated as one (``stop_gradient=True``: the weight is computed on detached
probabilities and the gradient is ``-(1 - p)^gamma`` per skeleton voxel, always toward ``p = 1``).
``stop_gradient=False`` keeps the literal eq. 3 for ablations.

Targets: the segmentation losses take nnU-Net's label map ``(b, 1, ...)``; the skeleton losses take
the skeleton label map ``(b, 1, ...)`` made by :mod:`nnunet_tavr.trainers.skeletons` (``c`` on
the skeleton of class ``c``). :class:`SegAndSkeletonLoss` takes both stacked as two channels, which
is how they travel through nnU-Net's data pipeline and deep-supervision wrapper.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FocalLoss", "SkeletonRecallLoss", "SegAndSkeletonLoss", "one_hot"]


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(b, 1, ...)`` (or ``(b, ...)``) integer label map -> ``(b, num_classes, ...)`` bool.

    Values outside ``[0, num_classes)`` (e.g. an ignore label) give all-False columns.
    """
    if labels.ndim >= 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    labels = labels.long()
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, *([1] * (labels.ndim - 1)))
    return labels[:, None] == classes


class FocalLoss(nn.Module):
    """Focal loss (Lin et al.; TAVR paper eq. 2) on softmax probabilities, one-vs-rest per class.

    Parameters
    ----------
    gamma : float
        Focusing exponent; 0 gives the (one-vs-rest) binary cross-entropy of the softmax output.
    ignore_label : int, optional
        Voxels with this label contribute nothing; the mean runs over the other voxels.
    include_background : bool
        Average over all classes (default) or over the foreground classes only.

    Notes
    -----
    Input ``(b, C, ...)`` logits, target ``(b, 1, ...)`` label map. The result is the mean over
    voxels (and classes) of the per-class terms. Computed in float32 with ``log(1 - p)`` clamped at
    ``log(eps)`` so confidently wrong voxels stay finite.
    """

    def __init__(self, gamma: float = 2.0, ignore_label: int | None = None, include_background: bool = True,
                 eps: float = 1e-6):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.ignore_label = ignore_label
        self.include_background = include_background
        self.eps = eps

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = net_output.float()
        log_p = torch.log_softmax(logits, 1)
        p = log_p.exp()
        y = one_hot(target, logits.shape[1])
        # log p* = log p on the class of the voxel, log(1 - p) on the other classes
        log_pt = torch.where(y, log_p, torch.log1p(-p).clamp_min(torch.log(torch.tensor(self.eps)).item()))
        pt = torch.where(y, p, 1 - p)
        terms = -(1 - pt).pow(self.gamma) * log_pt if self.gamma else -log_pt
        if not self.include_background:
            terms = terms[:, 1:]
        if self.ignore_label is None:
            return terms.mean()
        valid = (target[:, :1] != self.ignore_label)
        n = valid.sum() * terms.shape[1]
        return (terms * valid).sum() / n.clamp_min(1)


class SkeletonRecallLoss(nn.Module):
    """Skeleton recall (eq. 1) and focal skeleton recall (eq. 3) over the foreground classes.

    Parameters
    ----------
    gamma : float
        0 gives the skeleton recall loss (eq. 1); > 0 weights each skeleton voxel by
        ``(1 - p)^gamma`` (eq. 3).
    stop_gradient : bool
        Treat the focal factor as a weight (default, see the module docstring) or differentiate
        through it (the literal eq. 3).
    batch_recall : bool
        Sum over the whole batch before dividing (default, like eq. 1's sum over all voxels ``i``,
        Skeleton Recall and nnU-Net's batch Dice) or compute one recall per sample.
    ddp : bool
        With ``batch_recall``, gather the per-rank sums over all DDP ranks (nnU-Net's
        ``AllGatherGrad``, as its Dice does), so every rank optimises the recall of the global
        batch. Ignored when torch.distributed is not initialised.

    Notes
    -----
    Input ``(b, C, ...)`` logits (class 0 is background and never scored), target
    ``(b, 1, ...)`` skeleton label map. Classes with an empty skeleton (in the batch, or in the
    sample with ``batch_recall=False``) drop out of the mean; if no class has a skeleton the loss is
    0 (still attached to the graph, with zero gradient).
    """

    def __init__(self, gamma: float = 0.0, stop_gradient: bool = True, batch_recall: bool = True,
                 ddp: bool = False):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.stop_gradient = stop_gradient
        self.batch_recall = batch_recall
        self.ddp = ddp

    def forward(self, net_output: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(net_output.float(), 1)[:, 1:]
        y = one_hot(skeleton, net_output.shape[1])[:, 1:]
        axes = tuple(range(2, p.ndim))
        if self.gamma:
            weight = (1 - p).pow(self.gamma)
            if self.stop_gradient:
                weight = weight.detach()
            hit = torch.where(y, weight * p, 0).sum(axes)
        else:
            hit = torch.where(y, p, 0).sum(axes)
        size = y.sum(axes, dtype=torch.float32)
        if self.batch_recall:
            if self.ddp and torch.distributed.is_available() and torch.distributed.is_initialized():
                from nnunetv2.utilities.ddp_allgather import AllGatherGrad

                hit = AllGatherGrad.apply(hit).sum(0)
                size = AllGatherGrad.apply(size).sum(0)
            hit, size = hit.sum(0), size.sum(0)
        present = size > 0
        if not present.any():
            return hit.sum() * 0.0
        return -(hit[present] / size[present]).mean()


class SegAndSkeletonLoss(nn.Module):
    """``weight_seg * seg_loss(x, seg) + weight_skel * skeleton_loss(x, skel)``.

    The target is nnU-Net's segmentation with the skeleton label map appended as the last channel
    (see :class:`nnunet_tavr.trainers.skeletons.SkeletonTargetTransform`): channel 0 goes to the
    segmentation loss, the last channel to the skeleton loss. Wrap it in nnU-Net's
    ``DeepSupervisionWrapper`` like any other loss.
    """

    def __init__(self, seg_loss: nn.Module, skeleton_loss: nn.Module, weight_seg: float = 1.0,
                 weight_skel: float = 1.0):
        super().__init__()
        self.seg_loss = seg_loss
        self.skeleton_loss = skeleton_loss
        self.weight_seg = weight_seg
        self.weight_skel = weight_skel

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[1] < 2:
            raise ValueError(
                "SegAndSkeletonLoss needs the skeleton label map as an extra target channel; add "
                "SkeletonTargetTransform to the data pipeline (the nnUNetTrainer*SR* trainers do)")
        loss = self.weight_seg * self.seg_loss(net_output, target[:, :1])
        if self.weight_skel:
            loss = loss + self.weight_skel * self.skeleton_loss(net_output, target[:, -1:])
        return loss
