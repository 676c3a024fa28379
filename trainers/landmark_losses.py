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

#: Elements of the largest intermediate ``(rows, n, n)`` tensor of one log-sum-exp pass.
CHUNK_ELEMENTS = 2 ** 26


def grid_costs(shape, spacing, device=None, dtype=torch.float32) -> list[torch.Tensor]:
    """Per axis, the ``(n, n)`` squared distances (mm^2) between the voxel centres."""
    out = []
    for n, sp in zip(shape, spacing):
        x = torch.arange(n, device=device, dtype=dtype) * float(sp)
        out.append((x[:, None] - x[None, :]) ** 2)
    return out


def _lse_axis(h: torch.Tensor, cost: torch.Tensor, eps: float, axis: int) -> torch.Tensor:
    """``log sum_j exp(h[.., j, ..] - cost[i, j] / eps)`` along ``axis`` (a 1-D log-domain convolution)."""
    moved = h.movedim(axis, -1)
    shape = moved.shape
    flat = moved.reshape(-1, shape[-1])
    n = shape[-1]
    rows = max(1, CHUNK_ELEMENTS // (n * n))
    k = -cost / eps
    out = torch.cat([torch.logsumexp(part[:, None, :] + k[None], dim=-1) for part in flat.split(rows)])
    return out.reshape(shape).movedim(-1, axis)


def softmin(h: torch.Tensor, costs: list[torch.Tensor], eps: float) -> torch.Tensor:
    """``-eps log sum_y exp(h(y) - C(x, y) / eps)`` on the grid (``h``: ``(M, *S)``)."""
    for axis, cost in enumerate(costs):
        h = _lse_axis(h, cost, eps, axis + 1)
    return -eps * h


def eps_schedule(shape, spacing, blur_mm: float, scaling: float, extra: int) -> list[float]:
    """eps-scaling: from the squared grid diameter down to ``blur_mm**2`` (mm^2), each step
    ``scaling**2`` times the last, then ``extra`` more iterations at the final eps."""
    diameter2 = sum(((n - 1) * float(sp)) ** 2 for n, sp in zip(shape, spacing))
    eps, final = max(diameter2, blur_mm**2), blur_mm**2
    out = []
    while eps > final:
        out.append(eps)
        eps *= scaling**2
    return out + [final] * (1 + extra)


def sinkhorn_divergence(log_a: torch.Tensor, log_b: torch.Tensor, spacing, blur_mm: float = 1.0,
                        scaling: float = 0.5, extra_iterations: int = 5) -> torch.Tensor:
    """Debiased Sinkhorn divergence ``S_eps`` (mm^2) between distributions on a regular grid.

    Parameters
    ----------
    log_a, log_b : Tensor ``(M, *S)``
        Log-weights of ``M`` pairs of distributions (each sums to 1 over ``S``; ``-inf`` allowed).
    spacing : sequence of float
        mm per spatial axis.
    blur_mm : float
        ``sqrt(eps)``: the entropic blur (mm); the divergence's exact properties (module docstring)
        hold for any value, smaller values approach the unregularised ``W2^2``.
    scaling, extra_iterations
        eps-scaling factor of the blur per iteration, iterations at the final eps.

    Returns
    -------
    Tensor ``(M,)``
        ``S_eps`` in mm^2, differentiable with respect to ``log_a`` and ``log_b``.
    """
    shape = log_a.shape[1:]
    costs = grid_costs(shape, spacing, log_a.device, log_a.dtype)
    schedule = eps_schedule(shape, spacing, blur_mm, scaling, extra_iterations)
    with torch.no_grad():
        la, lb = log_a.detach(), log_b.detach()
        eps = schedule[0]
        f, g = softmin(lb, costs, eps), softmin(la, costs, eps)
        fa, gb = softmin(la, costs, eps), softmin(lb, costs, eps)
        for eps in schedule:  # symmetric (averaged) updates, as in geomloss
            f_new, g_new = softmin(lb + g / eps, costs, eps), softmin(la + f / eps, costs, eps)
            fa_new, gb_new = softmin(la + fa / eps, costs, eps), softmin(lb + gb / eps, costs, eps)
            f, g, fa, gb = 0.5 * (f + f_new), 0.5 * (g + g_new), 0.5 * (fa + fa_new), 0.5 * (gb + gb_new)
    eps = schedule[-1]
    # the last update is differentiable: its gradient with respect to the weights is the potential
    f, g = softmin(log_b + g / eps, costs, eps), softmin(log_a + f / eps, costs, eps)
    fa, gb = softmin(log_a + fa / eps, costs, eps), softmin(log_b + gb / eps, costs, eps)
    a, b = log_a.exp(), log_b.exp()
    dims = tuple(range(1, log_a.ndim))
    return (a * (f - fa)).sum(dims) + (b * (g - gb)).sum(dims)


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


def glip_penalty(log_p: torch.Tensor, spacing, sigma_mm: float, factor: float = 1.0) -> torch.Tensor:
    """Grid-based Lipschitz penalty (GLiP) of spatial distributions ``(M, *S)``.

    The peak-normalised heatmap ``h = p / max p`` is penalised wherever its finite-difference slope
    along a grid axis exceeds the largest slope of the target Gaussian of the same peak,
    ``L = factor / (sigma * sqrt(e))`` per mm: ``mean(relu(|h(x + e_k) - h(x)| / spacing_k - L)^2)``
    over all grid edges and axes. A prediction as smooth as the target pays nothing; one that
    collapses onto one or two voxels (a grid-quantised peak whose soft-argmax cannot be sub-voxel)
    pays. Units: mm^-2.
    """
    h = torch.exp(log_p - log_p.flatten(1).max(dim=1).values.reshape([-1] + [1] * (log_p.ndim - 1)))
    bound = factor / (sigma_mm * math.sqrt(math.e))
    total = log_p.new_zeros(())
    for k, sp in enumerate(spacing):
        slope = (h.narrow(k + 1, 1, h.shape[k + 1] - 1) - h.narrow(k + 1, 0, h.shape[k + 1] - 1)).abs() / float(sp)
        total = total + F.relu(slope - bound).pow(2).mean()
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
    """Sinkhorn OT between each landmark channel's spatial softmax and a Gaussian target (sigma in
    mm), plus ``glip_weight`` x :func:`glip_penalty`.

    Landmarks absent from a patch (``present == 0``: not in it, or their sphere cut by its border)
    have no target distribution: their OT term is left out and the loss averages over the present
    (sample, landmark) pairs only; a batch with none gives 0 (still connected to the graph). The
    GLiP term applies to every channel. The OT term is divided by ``sigma_mm**2`` (``squared``) or
    ``sigma_mm`` (distance), so 1 means "off by about one sigma".
    """

    def __init__(self, num_landmarks, spacing, patch_size, sigma_mm: float = 2.0, blur_mm: float = 1.0,
                 squared: bool = True, glip_weight: float = 1.0, glip_factor: float = 1.0, scaling: float = 0.5,
                 extra_iterations: int = 3):
        super().__init__(num_landmarks, spacing, patch_size, sigma_mm)
        self.blur_mm, self.squared = float(blur_mm), bool(squared)
        self.glip_weight, self.glip_factor = float(glip_weight), float(glip_factor)
        self.scaling, self.extra_iterations = float(scaling), int(extra_iterations)

    def compute(self, output, target):
        spacing = self.scale_spacing(output.shape[2:])
        z = self.logits(output)
        b, l = z.shape[:2]
        log_p = torch.log_softmax(z.reshape(b, l, -1), dim=-1).reshape(b * l, *z.shape[2:])
        present, frac = read_targets(target, self.num_landmarks)
        loss = output.new_zeros((), dtype=torch.float32) + 0.0 * z.sum()
        sel = present.reshape(-1)
        if sel.any():
            log_q = gaussian_log_heatmap(z.shape[2:], spacing, frac.reshape(b * l, -1)[sel], self.sigma_mm)
            div = sinkhorn_divergence(log_p[sel], log_q, spacing, self.blur_mm, self.scaling, self.extra_iterations)
            ot = (div.clamp_min(0) + 1e-6).sqrt() / self.sigma_mm if not self.squared else div / self.sigma_mm**2
            loss = loss + ot.mean()
        if self.glip_weight:
            loss = loss + self.glip_weight * self.sigma_mm**2 * glip_penalty(log_p, spacing, self.sigma_mm, self.glip_factor)
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
