"""Landmark heatmap losses on the voxel grid: an optimal-transport loss (exact sliced W2 by default,
or the Sinkhorn divergence) with a grid-based Lipschitz penalty (GLiP) and a cross-entropy anchor,
and the Gaussian-heatmap MSE baseline.

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
The default is the exact sliced ``W2^2`` over the lattice directions
(:func:`~nnunet_tavr.trainers.landmark_ot.sliced_w2`). The alternative is the Sinkhorn divergence
(debiased entropic OT) with the squared Euclidean cost in mm, ``S_eps(a, b) = OT_eps(a, b) -
OT_eps(a, a)/2 - OT_eps(b, b)/2``, ``OT_eps(a, b) = min_pi <pi, C> + eps KL(pi | a x b)``, ``C(x, y)
= |x - y|^2`` (mm^2, the grid's physical coordinates). The cost is a sum over axes, so the Gibbs
kernel ``exp(-C / eps)`` is a product of one 1-D kernel per axis and every Sinkhorn "softmin" is
``d`` one-dimensional log-sum-exp passes (a separable convolution in the log domain: no ``N x N``
matrix, stable for any eps). Iterations follow eps-scaling from the patch's squared diameter down to
``blur_mm**2``; the potentials' last update is differentiable (the gradient of the divergence with
respect to ``a`` is its dual potential).

Exact properties (any eps, at convergence): point masses at distance ``d`` mm have ``S = d^2``;
translating the target by ``t`` changes ``S(a, b)`` to ``S(a, b) + |t|^2 + 2 <m_b - m_a, t>``
(``m`` the means; the cost changes by a function of ``x`` plus one of ``y``, which every coupling
integrates alike, and the entropy term is translation invariant), so a prediction equal to the
target moved by ``t`` costs ``|t|^2``. ``squared=False`` reports ``sqrt(S)``, an OT distance in mm
(``d`` for point masses).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_tavr.trainers.landmark_ot import sinkhorn_divergence, sliced_w2


@functools.lru_cache(maxsize=64)
def _axis_centres(shapes: tuple, spacings: tuple, device, dtype) -> tuple[torch.Tensor, ...]:
    """Every axis of every grid as one row (``A`` rows): the voxel centres (mm) padded to the
    longest axis ``(A, n_max)``, the axis' extent (mm) ``(A,)``, its index ``k`` ``(A,)``, and the
    padding ``(A, n_max)`` (True past the axis' end)."""
    lengths = [n for shape in shapes for n in shape]
    sizes = [float(sp) for spacing in spacings for sp in spacing]
    half = torch.arange(max(lengths), device=device, dtype=dtype) + 0.5
    size = torch.tensor(sizes, device=device, dtype=dtype)
    length = torch.tensor(lengths, device=device)
    axis = torch.tensor([k for shape in shapes for k in range(len(shape))], device=device)
    return half[None] * size[:, None], length * size, axis, half[None] > length[:, None]


def _axis_log_gaussians(shapes, spacings, centre_frac: torch.Tensor, sigma_mm: float) -> torch.Tensor:
    """``-(x - c_k)^2 / (2 sigma^2)`` at the voxel centres ``x`` (mm) of every axis ``k`` of every
    grid, ``(M, A, n_max)`` (rows as :func:`_axis_centres`), ``-inf`` past each axis' end."""
    x, extent, axis, pad = _axis_centres(tuple(tuple(int(n) for n in s) for s in shapes),
                                         tuple(tuple(float(v) for v in sp) for sp in spacings),
                                         centre_frac.device, centre_frac.dtype)
    centre = centre_frac[:, axis] * extent
    return (x - centre[..., None]).square_().mul_(-0.5 / sigma_mm**2).masked_fill_(pad, -math.inf)


def axis_marginals(shapes, spacings, centre_frac: torch.Tensor, sigma_mm: float) -> torch.Tensor:
    """The 1-D marginals of the grid Gaussians of several grids (deep-supervision scales) at once:
    ``(M, A, n_max)``, row ``g d + k`` axis ``k`` of grid ``g`` (each sums to 1), zero past the
    axis' end (the padded form of :func:`~nnunet_tavr.trainers.landmark_ot.project_product`)."""
    return torch.softmax(_axis_log_gaussians(shapes, spacings, centre_frac, sigma_mm), dim=-1)


def gaussian_marginals(shape, spacing, centre_frac: torch.Tensor, sigma_mm: float) -> list[torch.Tensor]:
    """The 1-D marginals ``(M, n_k)`` (each sums to 1) of the grid Gaussian of
    :func:`gaussian_log_heatmap`, which is their product."""
    soft = axis_marginals([shape], [spacing], centre_frac, sigma_mm)
    return [soft[:, k, :n] for k, n in enumerate(shape)]


def gaussian_log_heatmap(shape, spacing, centre_frac: torch.Tensor, sigma_mm: float) -> torch.Tensor:
    """Log of a normalised Gaussian (sum 1 over the grid) around each centre.

    ``centre_frac``: ``(M, d)`` positions as fractions of the patch extent; returns ``(M, *shape)``.
    """
    terms = _axis_log_gaussians([shape], [spacing], centre_frac, sigma_mm)
    logs = 0.0
    for k, n in enumerate(shape):
        view = [terms.shape[0]] + [1] * len(shape)
        view[k + 1] = n
        logs = logs + terms[:, k, :n].reshape(view)
    logs = logs.expand(centre_frac.shape[0], *shape)
    return logs - torch.logsumexp(logs.reshape(logs.shape[0], -1), dim=1).reshape([-1] + [1] * len(shape))


def glip_penalty(p: torch.Tensor, spacing, sigma_mm: float, factor: float = 1.0) -> torch.Tensor:
    """Grid-based Lipschitz penalty (GLiP) of spatial distributions ``p`` ``(M, *S)`` (weights).

    The peak-normalised heatmap ``h = p / max p`` is penalised wherever its finite-difference slope
    along a grid axis exceeds the largest slope of the target Gaussian of the same peak,
    ``L = factor / (sigma * sqrt(e))`` per mm: ``mean(relu(|h(x + e_k) - h(x)| / spacing_k - L)^2)``
    over all grid edges of an axis, averaged over the axes that have edges. A prediction as smooth
    as the target pays nothing; one that collapses onto one or two voxels (a grid-quantised peak
    whose soft-argmax cannot be sub-voxel) pays. Units: mm^-2.

    Only the few edges that pay are evaluated (the others have no value and no gradient, see
    :func:`_paying_edges`), with their gradient written by hand: one sparse ``index_add`` in the
    backward pass, whatever the number of edges.
    """
    axes = tuple(k for k, n in enumerate(p.shape[1:]) if n > 1)
    if not axes:
        return p.sum() * 0.0
    grid = _glip_grid(p.shape, tuple(float(spacing[k]) for k in axes), axes, glip_slope_bound(sigma_mm, factor),
                      p.device, p.dtype)
    return _EdgeGLiP.apply(p, grid)


class _GlipGrid:
    """GLiP's constants on one grid ``(M, *S)``, per axis ``k`` of ``axes`` (cached: the loss runs
    every iteration on the same patch): the stride ``step``, the size, the cut ``L spacing_k`` and
    ``c = 1 / (edges x spacing_k^2 x axes)`` (a mean over the axis' edges, then over the axes)."""

    def __init__(self, shape, spacing, axes, bound, device, dtype):
        m, grid = shape[0], shape[1:]
        self.n_vox, self.n_last = math.prod(grid), grid[-1]
        self.n_lines = self.n_vox // self.n_last
        self.strides = [math.prod(grid[k + 1:]) for k in range(len(grid))]
        strides = [self.strides[k] for k in axes]
        self.cuts = [bound * sp for sp in spacing]
        self.dense = list(zip(axes, self.cuts))
        self.step = torch.tensor(strides, device=device)[:, None]
        self.size = torch.tensor([grid[k] for k in axes], device=device)[:, None]
        self.axis = torch.arange(len(axes), device=device)[:, None]
        self.last = self.size - 1
        c = [1.0 / (m * (grid[k] - 1) * (self.n_vox // grid[k]) * sp**2 * len(axes)) for k, sp in zip(axes, spacing)]
        # per axis: the cut's bounds, c and 2 c
        self.table = torch.tensor([[-cut, cut, ck, 2 * ck] for cut, ck in zip(self.cuts, c)], device=device, dtype=dtype)
        self.row_lines = torch.arange(m, device=device) * self.n_lines


@functools.lru_cache(maxsize=32)
def _glip_grid(shape, spacing, axes, bound, device, dtype) -> _GlipGrid:
    return _GlipGrid(shape, spacing, axes, bound, device, dtype)


class _EdgeGLiP(torch.autograd.Function):
    """GLiP of ``p`` on its paying edges; backward ``d/dp`` as one ``index_add`` (see
    :func:`glip_penalty`). With ``dh = (p(v + e_k) - p(v)) / P``, ``P`` the row's maximum and
    ``x = softshrink(dh, L spacing_k)``, the term ``c x^2`` has ``d/dp(v + e_k) = 2 c x / P = -d/dp(v)``
    and ``d/dP = -2 c x dh / P``."""

    @staticmethod
    def forward(ctx, p, grid):
        peak, first, axis = _paying_edges(p, grid)
        low, high, c, c2 = grid.table[axis].unbind(1)
        flat = p.reshape(-1)
        end, row = first + grid.step[axis, 0], first // grid.n_vox
        top = flat[peak].clamp_min(1e-30)[row]
        dh = (flat[end] - flat[first]) / top
        excess = dh - dh.clamp(low, high)  # softshrink with a cut per edge
        g = c2 * excess / top
        ctx.save_for_backward(torch.cat([end, first, peak[row]]), torch.cat([g, -g, -g * dh]))
        ctx.shape = p.shape
        return (c * excess.square()).sum()

    @staticmethod
    def backward(ctx, grad):
        where, grads = ctx.saved_tensors
        out = grads.new_zeros(ctx.shape.numel()).index_add_(0, where, grads * grad)
        return out.reshape(ctx.shape), None


def glip_can_pay(spacing, sigma_mm: float, factor: float = 1.0) -> bool:
    """Whether any edge of a grid of ``spacing`` (mm) can exceed GLiP's bound: a slope bound of
    ``L * spacing >= 1`` per edge is beyond any peak-normalised heatmap (``|dh| <= 1``), so GLiP is
    0 on coarse grids (a 4 mm grid with sigma 2 mm)."""
    return glip_slope_bound(sigma_mm, factor) * min(float(s) for s in spacing) < 1.0


def glip_slope_bound(sigma_mm: float, factor: float = 1.0) -> float:
    """GLiP's slope bound ``L = factor / (sigma sqrt(e))`` (1/mm): the steepest slope of a Gaussian
    of peak 1, ``|d/dr exp(-r^2 / 2 sigma^2)|`` at ``r = sigma``, times ``factor``."""
    return factor / (sigma_mm * math.sqrt(math.e))


def _paying_edges(p: torch.Tensor, grid: _GlipGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The linear index (in ``p.reshape(-1)``) of each row's maximum; and the edges ``(v, v + e_k)``
    of a superset of those whose ``|dh|`` exceeds the axis' cut (``h = p / max p``), as their first
    endpoints ``v`` and their axis (an index into ``axes``), each edge once.

    As ``0 <= h <= 1``, ``|dh| <= max(h(v), h(v + e_k))``: only edges touching a voxel above the
    smallest cut can pay, usually a handful around the peak. They are found line by line: the
    maximum of every grid line along the last axis (one fast reduction) tells which few lines hold
    such a voxel, and only those lines are compared voxel by voxel (a full-size comparison and
    ``nonzero`` cost more than the rest of GLiP). When those lines are a large share of the patch,
    a heatmap whose range ``1 - min h`` is under the cuts (a flat one: an untrained network) has no
    paying edge at all; otherwise the finite differences are compared with the cut, one dense pass
    per axis without gradient.
    """
    m = p.shape[0]
    flat = p.reshape(-1)
    lines = p.reshape(-1, grid.n_last)
    line_top = lines.amax(1)
    top, top_line = line_top.reshape(m, -1).max(1)
    top_line = top_line + grid.row_lines
    peak = top_line * grid.n_last + lines[top_line].argmax(1)
    threshold = top * min(grid.cuts)
    hot = torch.nonzero(line_top > threshold.repeat_interleave(grid.n_lines)).squeeze(1)
    if hot.numel() * grid.n_last * 8 <= p.numel():
        level = threshold[hot // grid.n_lines]
        line, at = torch.nonzero(lines[hot] > level[:, None], as_tuple=True)
        above, level = hot[line] * grid.n_last + at, level[line]
        # each voxel's forward edges, and its backward edges unless the voxel behind is above too
        # (then that edge is already the other voxel's forward edge); all axes at once
        pos = (above % grid.n_vox) // grid.step % grid.size
        back = above - grid.step
        forward = pos < grid.last
        backward = (pos > 0) & (flat[back.clamp_min(0)] <= level)
        axis = grid.axis.expand_as(pos)
        return peak, torch.cat([above.expand_as(pos)[forward], back[backward]]), torch.cat([axis[forward], axis[backward]])
    if bool((1 - p.reshape(m, -1).amin(dim=1) / top.clamp_min(1e-30) <= min(grid.cuts)).all()):
        # flat heatmaps (an untrained network): |dh| <= 1 - min h, under every cut, so nothing pays
        return peak, hot[:0], hot[:0]
    firsts, which = [], []
    for i, (k, cut) in enumerate(grid.dense):
        dp = torch.diff(p, dim=k + 1).abs_()
        where = torch.nonzero(dp > (top * cut).reshape([-1] + [1] * (p.ndim - 1)), as_tuple=True)
        firsts.append(where[0] * grid.n_vox + sum(j * st for j, st in zip(where[1:], grid.strides)))
        which.append(torch.full_like(firsts[-1], i))
    return peak, torch.cat(firsts), torch.cat(which)


def read_targets(target: torch.Tensor, num_landmarks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(present (B, L) bool, centre_frac (B, L, d))`` from the constant target channels."""
    d = target.ndim - 2
    flat = target[:, 1:1 + num_landmarks * (1 + d)].reshape(target.shape[0], num_landmarks, 1 + d, -1)[..., 0]
    return flat[..., 0] > 0.5, flat[..., 1:].float()


class _ReferenceLogits(torch.autograd.Function):
    """``z_l - z_0`` for the channels ``1..L`` of ``(B, 1 + L, *S)``, with a backward that writes the
    input's gradient once (autograd's slicing would allocate and zero it once per slice; the
    reference channel's ``-sum_l`` is accumulated in place rather than summed and concatenated)."""

    @staticmethod
    def forward(ctx, output):
        return output[:, 1:] - output[:, :1]

    @staticmethod
    def backward(ctx, grad):
        out = grad.new_empty(grad.shape[0], grad.shape[1] + 1, *grad.shape[2:])
        out[:, 1:] = grad
        reference = out[:, 0]
        torch.neg(grad[:, 0], out=reference)
        for k in range(1, grad.shape[1]):
            reference.sub_(grad[:, k])
        return out


class _HeatmapLoss(nn.Module):
    """Shared plumbing: logits ``z_l - z_0``, each scale's spacing, deep supervision, fp32 outside
    autocast.

    ``forward`` takes one output and its target, or nnU-Net's deep-supervision lists (finest first);
    the lists are weighted by ``scale_weights`` (nnU-Net's ``DeepSupervisionWrapper`` weights: 1 each
    when ``None``), scales of weight 0 skipped, as that wrapper does. The loss takes the lists itself
    (rather than being wrapped) so that the scales' small problems are solved in one batch.
    """

    def __init__(self, num_landmarks: int, spacing, patch_size, sigma_mm: float, scale_weights=None):
        super().__init__()
        self.num_landmarks = int(num_landmarks)
        self.spacing = [float(s) for s in spacing]
        self.patch_size = [int(n) for n in patch_size]
        self.sigma_mm = float(sigma_mm)
        self.scale_weights = None if scale_weights is None else [float(w) for w in scale_weights]

    def scale_spacing(self, shape) -> list[float]:
        """mm per axis of an output of ``shape`` (a deep-supervision scale of the patch)."""
        return [sp * n / s for sp, n, s in zip(self.spacing, self.patch_size, shape)]

    def channels(self, output: torch.Tensor) -> torch.Tensor:
        """The reference and landmark channels (not sliced when they are all there: even a full-range
        slice allocates and zeroes the whole gradient in its backward)."""
        return output if output.shape[1] == 1 + self.num_landmarks else output[:, :1 + self.num_landmarks]

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        return _ReferenceLogits.apply(self.channels(output).float())

    def forward(self, output, target) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            scales = [(output, target, 1.0)]
        else:
            weights = self.scale_weights if self.scale_weights is not None else [1.0] * len(output)
            if not len(weights) == len(output) == len(target):
                raise ValueError(f"{type(self).__name__}: {len(output)} outputs, {len(target)} targets and "
                                 f"{len(weights)} scale weights; they must match")
            scales = [(o, t, w) for o, t, w in zip(output, target, weights) if w != 0]
        with torch.autocast(scales[0][0].device.type, enabled=False):
            return self.compute(scales)

    def compute(self, scales: list[tuple[torch.Tensor, torch.Tensor, float]]) -> torch.Tensor:
        """The loss of ``(output, target, weight)`` per scale, finest first."""
        return sum(w * self.compute_one(output, target) for output, target, w in scales)

    def compute_one(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class HeatmapOTLoss(_HeatmapLoss):
    """OT (``ot="sliced"``: exact sliced ``W2^2`` over the lattice directions, the default chosen by
    ``benchmarks/landmark_loss.py``; ``ot="sinkhorn"``: the Sinkhorn divergence) between each
    landmark channel's spatial softmax and a Gaussian target (sigma in mm), plus ``glip_weight`` x
    :func:`glip_penalty`.

    Landmarks absent from a patch (``present == 0``: not in it, or their sphere cut by its border)
    have no target distribution: their OT term is left out and the loss averages over the present
    (sample, landmark) pairs only; a batch with none gives 0 (still connected to the graph). The
    GLiP term applies to every channel of the full-resolution output (the first): that is the map
    inference reads; the deep-supervision outputs are auxiliary, and on their coarser grids fewer
    edges can pay (none once ``L * spacing >= 1``, :func:`glip_can_pay`). A softmax over voxels is
    blind to a constant added to a channel, so patches alone cannot tell the network *where in the
    image* the landmark is not: ``ce_weight`` x the channel cross-entropy against the sphere labels
    (channel 0 = background) anchors the logits' absolute level at every scale, so that far from a
    landmark ``z_l - z_0 < 0`` in every patch, including those without it, and the tiles of
    nnU-Net's sliding window agree. The OT term is divided by ``sigma_mm**2`` (``squared``) or
    ``sigma_mm`` (distance), so 1 means "off by about one sigma". With deep supervision, the sliced
    OT of all scales is one batched problem.
    """

    def __init__(self, num_landmarks, spacing, patch_size, sigma_mm: float = 2.0, blur_mm: float = 1.0,
                 squared: bool = True, glip_weight: float = 1.0, glip_factor: float = 1.0, scaling: float = 0.5,
                 extra_iterations: int = 3, ot: str = "sliced", directions: str = "faces", ce_weight: float = 1.0,
                 scale_weights=None):
        super().__init__(num_landmarks, spacing, patch_size, sigma_mm, scale_weights)
        self.ce_weight = float(ce_weight)
        if ot not in ("sliced", "sinkhorn"):
            raise ValueError(f"ot must be 'sliced' or 'sinkhorn', got {ot!r}")
        self.ot, self.directions = ot, directions
        self.blur_mm, self.squared = float(blur_mm), bool(squared)
        self.glip_weight, self.glip_factor = float(glip_weight), float(glip_factor)
        self.scaling, self.extra_iterations = float(scaling), int(extra_iterations)

    def _scaled(self, div: torch.Tensor) -> torch.Tensor:
        """The OT term of divergences ``div`` (mm^2) in units of sigma (or sigma^2)."""
        return (div.clamp_min(0) + 1e-6).sqrt() / self.sigma_mm if not self.squared else div / self.sigma_mm**2

    def compute(self, scales):
        # the centre channels are constant, so every scale holds the same (present, centre)
        present, frac = read_targets(scales[0][1], self.num_landmarks)
        sel = present.reshape(-1)
        n_present = int(sel.sum())  # one host sync
        # indexing copies the whole patch (and its gradient): only when some landmark is absent
        rows = (lambda x: x) if n_present == sel.numel() else (lambda x: x[sel])  # noqa: E731
        centres = rows(frac.reshape(sel.numel(), -1))
        terms, grids, spacings, weights = [], [], [], []
        for i, (output, target, w) in enumerate(scales):
            spacing = self.scale_spacing(output.shape[2:])
            glip = i == 0 and self.glip_weight and glip_can_pay(spacing, self.sigma_mm, self.glip_factor)
            z = self.logits(output)
            flat = z.reshape(sel.numel(), -1)
            if self.ot == "sliced":
                p = torch.softmax(flat, dim=-1).reshape(sel.numel(), *z.shape[2:])
                if n_present:
                    grids.append(rows(p))
                    spacings.append(spacing)
                    weights.append(w)
            else:
                log_p = torch.log_softmax(flat, dim=-1).reshape(sel.numel(), *z.shape[2:])
                p = log_p.exp() if glip else None
                if n_present:
                    log_q = gaussian_log_heatmap(z.shape[2:], spacing, centres, self.sigma_mm)
                    div = sinkhorn_divergence(rows(log_p), log_q, spacing, self.blur_mm, self.scaling, self.extra_iterations)
                    terms.append(w * self._scaled(div).mean())
            if glip:
                terms.append(w * self.glip_weight * self.sigma_mm**2 * glip_penalty(p, spacing, self.sigma_mm, self.glip_factor))
            if self.ce_weight:
                # anchors the logits' absolute level: z_l - z_0 < 0 away from landmark l, > 0 on its sphere,
                # so the tiles of nnU-Net's sliding window (and patches without the landmark) are comparable
                seg = target[:, 0].round().long()
                terms.append(w * self.ce_weight * F.cross_entropy(self.channels(output).float(), seg))
        if grids:
            marginals = axis_marginals([g.shape[1:] for g in grids], spacings, centres, self.sigma_mm)
            div = sliced_w2(grids, None, spacings, self.directions, b_marginals=marginals)  # (M, scales)
            terms.append(self._scaled(div).mean(0) @ div.new_tensor(weights))
        # a batch with nothing to learn still returns a loss connected to the graph
        return sum(terms[1:], terms[0]) if terms else 0.0 * sum(o.sum() for o, _, _ in scales)


class HeatmapMSELoss(_HeatmapLoss):
    """L2 between ``z_l - z_0`` and a Gaussian heatmap of peak 1 (sigma in mm); an absent landmark's
    target is 0 everywhere (the channel learns "not in this patch").

    Voxels are weighted ``1 + peak_weight * (N / sum(target)) * target`` per (sample, landmark), ``N``
    the voxels of the output: the Gaussian as a whole weighs ``peak_weight`` times the whole
    background, at every deep-supervision scale and sigma. A fixed weight does not do this: a
    Gaussian of a few voxels in a patch of 32^3 is drowned, and the network learns to predict 0
    everywhere (``benchmarks/landmark_trainers.py`` measured exactly that with ``1 + 10 * target``).
    """

    def __init__(self, num_landmarks, spacing, patch_size, sigma_mm: float = 2.0, peak_weight: float = 1.0,
                 scale_weights=None):
        super().__init__(num_landmarks, spacing, patch_size, sigma_mm, scale_weights)
        self.peak_weight = float(peak_weight)

    def compute_one(self, output, target):
        spacing = self.scale_spacing(output.shape[2:])
        z = self.logits(output)
        b, l = z.shape[:2]
        present, frac = read_targets(target, self.num_landmarks)
        log_q = gaussian_log_heatmap(z.shape[2:], spacing, frac.reshape(b * l, -1), self.sigma_mm)
        per_row = [-1] + [1] * (log_q.ndim - 1)
        peak = torch.exp(log_q - log_q.flatten(1).max(1).values.reshape(per_row))
        heat = peak * present.reshape(-1).float().reshape(per_row)
        mass = heat.flatten(1).sum(1).reshape(per_row)
        weight = 1 + self.peak_weight * heat * (heat[0].numel() / mass.clamp_min(1e-12))
        return ((z - heat.reshape(z.shape)) ** 2 * weight.reshape(z.shape)).mean()
