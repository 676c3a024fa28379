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
    """``(b, 1, ...)`` integer label map -> ``(b, num_classes, ...)`` bool.

    Values outside ``[0, num_classes)`` (e.g. an ignore label) give all-False columns.
    """
    if labels.ndim < 2 or labels.shape[1] != 1:
        raise ValueError(f"expected a (b, 1, ...) label map, got shape {tuple(labels.shape)}")
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, *([1] * (labels.ndim - 2)))
    return labels == classes


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
        labels = target if target.ndim == logits.ndim else target[:, None]
        valid = None if self.ignore_label is None else labels != self.ignore_label
        first = 0 if self.include_background else 1
        total = _OneVsRestFocalSum.apply(logits, labels.long(), valid, self.gamma, self.eps, first)
        classes = logits.shape[1] - first
        count = labels.numel() if valid is None else valid.sum()
        return total / (torch.as_tensor(count, device=logits.device).clamp_min(1) * classes)


class _OneVsRestFocalSum(torch.autograd.Function):
    """Sum of the one-vs-rest focal terms, with a hand-written backward.

    Written as "every class is a non-target class" (``-p^gamma log(1 - p)`` on the full tensor)
    plus a correction on the voxel's own class, computed on the gathered ``(b, 1, ...)`` values
    only. With autograd through a plain transcription of eq. 2 the loss costs about three times
    nnU-Net's Dice + CE; this recomputes the softmax in backward and applies the closed-form
    gradient (checked against autograd in the tests). With ``u_c = p_c dL/dp_c`` the logit gradient
    is ``u_k - p_k sum_c u_c``, where

    - for the voxel's class: ``u = gamma p (1 - p)^(gamma - 1) log p - (1 - p)^gamma``
    - for the other classes: ``u = p^gamma (p / (1 - p) - gamma log(1 - p))``.

    ``1 - p`` is clamped at ``eps`` (where it is, the term is constant in ``p``).
    """

    @staticmethod
    def forward(ctx, logits, labels, valid, gamma, eps, first):
        # Every full-size (b, C, ...) tensor costs a pass over memory and, when freshly allocated,
        # page faults that cost about as much again: the ops below are arranged to allocate few.
        num_classes = logits.shape[1]
        p = torch.softmax(logits, 1)
        one_minus = torch.rsub(p, 1).clamp_min_(eps)
        log_one_minus = one_minus.log()
        if gamma:
            other = p * p if gamma == 2 else p.pow(gamma)
            other.mul_(log_one_minus)  # -(term) for y = 0
        else:
            other = log_one_minus
        # own class: swap its y = 0 term for the y = 1 term, on the gathered values only
        own = labels.clamp(0, num_classes - 1)
        counted = (labels >= first) & (labels < num_classes)
        if valid is not None:
            counted = counted & valid
        p_own = p.gather(1, own)
        true_term = p_own.clamp_min(1e-30).log()
        if gamma:
            true_term = (1 - p_own).clamp_min(eps).pow(gamma) * true_term
        swap = (true_term - other.gather(1, own)) * counted
        other = other[:, first:]
        total = other.sum() if valid is None else (other * valid).sum()
        # p, 1 - p and log(1 - p) are what backward needs: the same memory autograd would keep
        ctx.save_for_backward(p, one_minus, log_one_minus, own, counted, valid, p_own)
        ctx.gamma, ctx.eps, ctx.first = gamma, eps, first
        return -(total + swap.sum())

    @staticmethod
    def backward(ctx, grad_output):
        p, one_minus, log_one_minus, own, counted, valid, p_own = ctx.saved_tensors
        gamma, eps, first = ctx.gamma, ctx.eps, ctx.first
        # where 1 - p was clamped the forward term no longer depends on p through log(1 - p)
        u = torch.div(p, one_minus).masked_fill_(one_minus <= eps, 0)
        if gamma:
            u.add_(log_one_minus, alpha=-gamma)
            if gamma == 2:
                u.mul_(p).mul_(p)
            else:
                u.mul_(p.pow(gamma))
        if first:
            u[:, :first] = 0
        if valid is not None:
            u.mul_(valid)
        # own class: replace the y = 0 derivative by the y = 1 one
        one_minus_own = (1 - p_own).clamp_min(eps)
        if gamma:
            u_true = gamma * p_own * one_minus_own.pow(gamma - 1) * p_own.clamp_min(1e-30).log() - one_minus_own.pow(gamma)
        else:
            u_true = -torch.ones_like(p_own)
        u.scatter_add_(1, own, (u_true - u.gather(1, own)) * counted)
        # d/dlogit_k = u_k - p_k sum_c u_c, in place
        grad = u.addcmul_(p, u.sum(1, keepdim=True), value=-1).mul_(grad_output)
        return grad, None, None, None, None, None


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
        batch, num_classes = net_output.shape[:2]
        labels = (skeleton if skeleton.ndim == net_output.ndim else skeleton[:, None])[:, 0].long()
        # Skeletons cover a few percent of a patch: the softmax is needed on those voxels only.
        where = ((labels > 0) & (labels < num_classes)).nonzero(as_tuple=True)
        sample, cls = where[0], labels[where]
        logits = net_output[(where[0], slice(None), *where[1:])]  # (voxels, classes)
        p = torch.softmax(logits.float(), -1).gather(1, cls[:, None])[:, 0]
        if self.gamma:
            weight = (1 - p).pow(self.gamma)
            p = p * (weight.detach() if self.stop_gradient else weight)
        hit = torch.zeros(batch, num_classes, device=p.device, dtype=p.dtype).index_put((sample, cls), p, accumulate=True)
        size = torch.zeros(batch, num_classes, device=p.device, dtype=p.dtype).index_put(
            (sample, cls), torch.ones_like(p), accumulate=True)
        hit, size = hit[:, 1:], size[:, 1:]
        if self.batch_recall:
            if self.ddp and torch.distributed.is_available() and torch.distributed.is_initialized():
                from nnunetv2.utilities.ddp_allgather import AllGatherGrad

                hit = AllGatherGrad.apply(hit).sum(0)
                size = AllGatherGrad.apply(size).sum(0)
            hit, size = hit.sum(0), size.sum(0)
        present = size > 0
        if not present.any():
            return net_output.sum() * 0.0
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
