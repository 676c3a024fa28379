"""Landmark heatmap losses on the voxel grid: a Sinkhorn optimal-transport loss with a grid-based
Lipschitz penalty (GLiP), and the Gaussian-heatmap MSE baseline.

Conventions
-----------
- Network output ``(B, C, *S)`` with ``C = 1 + L``: channel 0 is a *reference* channel and the
  heatmap logit of landmark ``l`` is ``z_l - z_0``. nnU-Net's predictor saves the channel softmax
  ``P_c = exp(z_c) / sum_k exp(z_k)``, from which ``log P_l - log P_0 = z_l - z_0`` recovers the
  logit exactly (:mod:`nnunet_tavr.landmarks.extract`), so training and inference read the same map.
- The OT loss reads each landmark channel as a distribution over the patch: ``p_l = softmax_x(z_l -
  z_0)`` (a softmax over voxels, not over channels).
- Targets: the segmentation channel followed by ``(present, f_0, .., f_{d-1})`` per landmark, each
  a constant channel (:class:`~nnunet_tavr.trainers.landmark_targets.LandmarkCentreTransform`):
  ``f_k`` is the landmark's position as a fraction of the patch extent along axis ``k``, so it
  holds at every deep-supervision scale (voxel ``i`` of an axis of ``n`` voxels covers the fractions
  ``[i/n, (i+1)/n)``).
- ``spacing`` is mm per spatial axis of the full-resolution patch; a deep-supervision output of
  shape ``S_s`` has spacing ``spacing * patch_size / S_s``.

The OT distance
---------------
Sinkhorn divergence (debiased entropic OT) with the squared Euclidean cost in mm,
``S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2``, ``OT_eps(a, b) = min_pi <pi, C> +
eps KL(pi | a x b)``, ``C(x, y) = |x - y|^2`` (mm^2, the grid's physical coordinates). The cost is
a sum over axes, so the Gibbs kernel ``exp(-C / eps)`` is a product of one 1-D kernel per axis and
every Sinkhorn "softmin" is ``d`` one-dimensional log-sum-exp passes (a separable convolution in
the log domain: no ``N x N`` matrix, stable for any eps). Iterations follow eps-scaling from the
patch's squared diameter down to ``blur_mm**2``; the potentials' last update is differentiable
(the gradient of the divergence with respect to ``a`` is its dual potential).

Exact properties (any eps, at convergence): point masses at distance ``d`` mm have ``S = d^2``;
translating the target by ``t`` changes ``S(a, b)`` to ``S(a, b) + |t|^2 + 2 <m_b - m_a, t>``
(``m`` the means; the cost changes by a function of ``x`` plus one of ``y``, which every coupling
integrates alike, and the entropy term is translation invariant), so a prediction equal to the
target moved by ``t`` costs ``|t|^2``. ``squared=False`` reports ``sqrt(S)``, an OT distance in mm
(``d`` for point masses).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_tavr.trainers.landmark_ot import sinkhorn_divergence, sliced_w2



def gaussian_marginals(shape, spacing, centre_frac: torch.Tensor, sigma_mm: float) -> list[torch.Tensor]:
    """The 1-D marginals ``(M, n_k)`` (each sums to 1) of the grid Gaussian of
    :func:`gaussian_log_heatmap`, which is their product."""
    out = []
    for k, (n, sp) in enumerate(zip(shape, spacing)):
        x = (torch.arange(n, device=centre_frac.device, dtype=centre_frac.dtype) + 0.5) * float(sp)
        logit = -((x[None, :] - centre_frac[:, k, None] * n * float(sp)) ** 2) / (2 * sigma_mm**2)
        out.append(torch.softmax(logit, dim=-1))
    return out


def gaussian_log_heatmap(shape, spacing, centre_frac: torch.Tensor, sigma_mm: float) -> torch.Tensor:
    """Log of a normalised Gaussian (sum 1 over the grid) around each centre.

    ``centre_frac``: ``(M, d)`` positions as fractions of the patch extent; returns ``(M, *shape)``.
    """
    logs = 0.0
    for k, (n, sp) in enumerate(zip(shape, spacing)):
        x = (torch.arange(n, device=centre_frac.device, dtype=centre_frac.dtype) + 0.5) * float(sp)
        c = centre_frac[:, k] * n * float(sp)
        term = -((x[None, :] - c[:, None]) ** 2) / (2 * sigma_mm**2)
        view = [term.shape[0]] + [1] * len(shape)
        view[k + 1] = n
        logs = logs + term.reshape(view)
    logs = logs.expand(centre_frac.shape[0], *shape)
    return logs - torch.logsumexp(logs.reshape(logs.shape[0], -1), dim=1).reshape([-1] + [1] * len(shape))


def glip_penalty(p: torch.Tensor, spacing, sigma_mm: float, factor: float = 1.0) -> torch.Tensor:
    """Grid-based Lipschitz penalty (GLiP) of spatial distributions ``p`` ``(M, *S)`` (weights).

    The peak-normalised heatmap ``h = p / max p`` is penalised wherever its finite-difference slope
    along a grid axis exceeds the largest slope of the target Gaussian of the same peak,
    ``L = factor / (sigma * sqrt(e))`` per mm: ``mean(relu(|h(x + e_k) - h(x)| / spacing_k - L)^2)``
    over all grid edges and axes. A prediction as smooth as the target pays nothing; one that
    collapses onto one or two voxels (a grid-quantised peak whose soft-argmax cannot be sub-voxel)
    pays. Units: mm^-2.
    """
    h = p / p.flatten(1).max(dim=1).values.reshape([-1] + [1] * (p.ndim - 1)).clamp_min(1e-30)
    bound = factor / (sigma_mm * math.sqrt(math.e))
    total = p.new_zeros(())
    for k, sp in enumerate(spacing):
        # relu(|dh| / sp - L)^2 = softshrink(dh, L sp)^2 / sp^2: two fused passes over the patch
        excess = F.softshrink(torch.diff(h, dim=k + 1), bound * float(sp))
        total = total + torch.linalg.vector_norm(excess).square() / excess.numel() / float(sp) ** 2
    return total / len(spacing)


def read_targets(target: torch.Tensor, num_landmarks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(present (B, L) bool, centre_frac (B, L, d))`` from the constant target channels."""
    d = target.ndim - 2
    flat = target[:, 1:1 + num_landmarks * (1 + d)].reshape(target.shape[0], num_landmarks, 1 + d, -1)[..., 0]
    return flat[..., 0] > 0.5, flat[..., 1:].float()


class _HeatmapLoss(nn.Module):
    """Shared plumbing: logits ``z_l - z_0``, the scale's spacing, fp32 outside autocast."""

    def __init__(self, num_landmarks: int, spacing, patch_size, sigma_mm: float):
        super().__init__()
        self.num_landmarks = int(num_landmarks)
        self.spacing = [float(s) for s in spacing]
        self.patch_size = [int(n) for n in patch_size]
        self.sigma_mm = float(sigma_mm)

    def scale_spacing(self, shape) -> list[float]:
        """mm per axis of an output of ``shape`` (a deep-supervision scale of the patch)."""
        return [sp * n / s for sp, n, s in zip(self.spacing, self.patch_size, shape)]

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        return output[:, 1:1 + self.num_landmarks].float() - output[:, :1].float()

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(output.device.type, enabled=False):
            return self.compute(output, target)


class HeatmapOTLoss(_HeatmapLoss):
    """OT (``ot="sliced"``: exact sliced ``W2^2`` over the lattice directions, the default chosen by
    ``benchmarks/landmark_loss.py``; ``ot="sinkhorn"``: the Sinkhorn divergence) between each landmark channel's spatial softmax and a Gaussian target (sigma in
    mm), plus ``glip_weight`` x :func:`glip_penalty`.

    Landmarks absent from a patch (``present == 0``: not in it, or their sphere cut by its border)
    have no target distribution: their OT term is left out and the loss averages over the present
    (sample, landmark) pairs only; a batch with none gives 0 (still connected to the graph). The
    GLiP term applies to every channel. A softmax over voxels is blind to a constant added to a
    channel, so patches alone cannot tell the network *where in the image* the landmark is not:
    ``ce_weight`` x the channel cross-entropy against the sphere labels (channel 0 = background)
    anchors the logits' absolute level, so that far from a landmark ``z_l - z_0 < 0`` in every
    patch, including those without it, and the tiles of nnU-Net's sliding window agree. The OT term is divided by ``sigma_mm**2`` (``squared``) or
    ``sigma_mm`` (distance), so 1 means "off by about one sigma".
    """

    def __init__(self, num_landmarks, spacing, patch_size, sigma_mm: float = 2.0, blur_mm: float = 1.0,
                 squared: bool = True, glip_weight: float = 1.0, glip_factor: float = 1.0, scaling: float = 0.5,
                 extra_iterations: int = 3, ot: str = "sliced", directions: str = "faces", ce_weight: float = 1.0):
        super().__init__(num_landmarks, spacing, patch_size, sigma_mm)
        self.ce_weight = float(ce_weight)
        if ot not in ("sliced", "sinkhorn"):
            raise ValueError(f"ot must be 'sliced' or 'sinkhorn', got {ot!r}")
        self.ot, self.directions = ot, directions
        self.blur_mm, self.squared = float(blur_mm), bool(squared)
        self.glip_weight, self.glip_factor = float(glip_weight), float(glip_factor)
        self.scaling, self.extra_iterations = float(scaling), int(extra_iterations)

    def compute(self, output, target):
        spacing = self.scale_spacing(output.shape[2:])
        z = self.logits(output)
        b, l = z.shape[:2]
        flat = z.reshape(b * l, -1)
        present, frac = read_targets(target, self.num_landmarks)
        loss = output.new_zeros((), dtype=torch.float32) + 0.0 * z.sum()
        sel = present.reshape(-1)
        centres = frac.reshape(b * l, -1)[sel]
        if self.ot == "sliced":
            p = torch.softmax(flat, dim=-1).reshape(b * l, *z.shape[2:])
            if sel.any():
                div = sliced_w2(p[sel], None, spacing, self.directions,
                                b_marginals=gaussian_marginals(z.shape[2:], spacing, centres, self.sigma_mm))
        else:
            log_p = torch.log_softmax(flat, dim=-1).reshape(b * l, *z.shape[2:])
            p = log_p.exp()
            if sel.any():
                log_q = gaussian_log_heatmap(z.shape[2:], spacing, centres, self.sigma_mm)
                div = sinkhorn_divergence(log_p[sel], log_q, spacing, self.blur_mm, self.scaling, self.extra_iterations)
        if sel.any():
            ot = (div.clamp_min(0) + 1e-6).sqrt() / self.sigma_mm if not self.squared else div / self.sigma_mm**2
            loss = loss + ot.mean()
        if self.glip_weight:
            loss = loss + self.glip_weight * self.sigma_mm**2 * glip_penalty(p, spacing, self.sigma_mm, self.glip_factor)
        if self.ce_weight:
            # anchors the logits' absolute level: z_l - z_0 < 0 away from landmark l, > 0 on its sphere,
            # so the tiles of nnU-Net's sliding window (and patches without the landmark) are comparable
            seg = target[:, 0].round().long()
            loss = loss + self.ce_weight * F.cross_entropy(output[:, : 1 + self.num_landmarks].float(), seg)
        return loss


class HeatmapMSELoss(_HeatmapLoss):
    """L2 between ``z_l - z_0`` and a Gaussian heatmap of peak 1 (sigma in mm); an absent landmark's
    target is 0 everywhere (the channel learns "not in this patch"). Voxels are weighted
    ``1 + peak_weight * target`` so the few voxels of the peak are not drowned by the background."""

    def __init__(self, num_landmarks, spacing, patch_size, sigma_mm: float = 2.0, peak_weight: float = 10.0):
        super().__init__(num_landmarks, spacing, patch_size, sigma_mm)
        self.peak_weight = float(peak_weight)

    def compute(self, output, target):
        spacing = self.scale_spacing(output.shape[2:])
        z = self.logits(output)
        b, l = z.shape[:2]
        present, frac = read_targets(target, self.num_landmarks)
        log_q = gaussian_log_heatmap(z.shape[2:], spacing, frac.reshape(b * l, -1), self.sigma_mm)
        peak = torch.exp(log_q - log_q.flatten(1).max(1).values.reshape([-1] + [1] * (log_q.ndim - 1)))
        heat = (peak * present.reshape(-1).float().reshape([-1] + [1] * (log_q.ndim - 1))).reshape(z.shape)
        return ((z - heat) ** 2 * (1 + self.peak_weight * heat)).mean()
