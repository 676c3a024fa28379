"""Optimal-transport distances between distributions on a regular voxel grid (mm costs).

- :func:`sliced_w2`: exact sliced ``W2^2`` over the lattice directions (:func:`lattice_slices`),
  O(N), all directions binned and solved in one batch; the landmark loss's default.
- :func:`sinkhorn_divergence`: the debiased Sinkhorn divergence with the squared cost, the Gibbs
  kernel separable per axis (log-domain 1-D passes).

Both are exact for point masses (``|p - q|^2``) and obey the translation law
``S(a, b + t) = S(a, b) + |t|^2 + 2 <m_b - m_a, t>`` (see :mod:`nnunet_tavr.trainers.landmark_losses`).
Inputs are ``(M, *S)`` weights or log-weights; ``spacing`` is mm per spatial axis.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch

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


def _w2_on_bins(a: torch.Tensor, b: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Exact 1-D ``W2^2`` between rows of weights ``a``, ``b`` ``(R, n)`` on equally spaced bins,
    ``step`` mm apart (a tensor broadcasting to ``(R, 1)``): ``int_0^1 (F_a^-1(u) - F_b^-1(u))^2 du``
    over the merged breakpoints of the two CDFs. Bins of weight 0 (padding) are never a quantile.
    Differentiable in the weights (through the breakpoints' spacing ``du``, see :class:`_QuantileW2`);
    returns ``(R,)``."""
    return _QuantileW2.apply(a, b, step)


class _QuantileW2(torch.autograd.Function):
    """:func:`_w2_on_bins` with its gradient written by hand (a dozen small operations instead of
    autograd's trace through the sort and the cumulative sums: the loss runs at every iteration).

    With the merged breakpoints ``u_1 <= .. <= u_2n`` (``u_0 = 0``) and the cost ``c_j`` of the
    quantile interval ``(u_{j-1}, u_j]`` (constant in a neighbourhood: the bins' indices are
    integers), ``W = sum_j (u_j - u_{j-1}) c_j`` has ``dW/du_j = c_j - c_{j+1}`` (``c_{2n+1} = 0``).
    Each ``u_j`` is one normalised CDF value ``F_i = S_i / S_n`` (``S`` the cumulative sum), and
    ``dF_i/dw_k = [k <= i] / S_n - F_i / S_n``, so a row's gradient ``g`` on the ``F_i`` gives
    ``dW/dw_k = (sum_{i >= k} g_i - sum_i g_i F_i) / S_n``.
    """

    @staticmethod
    def forward(ctx, a, b, step):
        cdf = torch.stack([a, b]).cumsum(-1)  # (2, R, n)
        totals = cdf[..., -1:].clamp_min(1e-30)
        cdf /= totals  # the last is exactly 1, as the padding's
        u, order = torch.sort(torch.cat([cdf[0], cdf[1]], dim=-1), dim=-1)
        du = torch.diff(u, dim=-1, prepend=torch.zeros_like(u[..., :1]))
        mid = u - 0.5 * du
        n = a.shape[-1]
        ia = torch.searchsorted(cdf[0], mid).clamp_max_(n - 1)
        ib = torch.searchsorted(cdf[1], mid).clamp_max_(n - 1)
        cost = ((ia - ib).to(a.dtype) * step).square_()
        ctx.save_for_backward(cdf, totals, order, cost)
        return (du * cost).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        cdf, totals, order, cost = ctx.saved_tensors
        g_u = cost - torch.nn.functional.pad(cost[..., 1:], (0, 1))
        g_cdf = torch.empty_like(g_u).scatter_(-1, order, g_u).reshape(cost.shape[0], 2, -1).transpose(0, 1)
        tail = g_cdf.flip(-1).cumsum(-1).flip(-1)
        g_w = (tail - (g_cdf * cdf).sum(-1, keepdim=True)) / totals * grad[:, None]
        return g_w[0], g_w[1], None


def lattice_slices(spacing, kind: str = "lattice") -> list[tuple[tuple[int, ...], float, float]]:
    """Slicing directions of the grid as ``(signs, norm, weight)``.

    ``signs`` (one of -1, 0, 1 per axis) pick the direction ``theta = u / |u|`` with ``u_k =
    signs_k / spacing_k`` (mm space): a voxel's projection is ``sum_k signs_k i_k / |u|``, an integer
    over ``|u|``, so each projected distribution lives on at most ``sum_k n_k`` points and is one
    bincount of the voxels (O(N)). ``"axes"``: the grid axes; ``"faces"``: the axes plus the face
    diagonals (9 in 3-D, 4 in 2-D; each from a 2-D marginal, so cheap); ``"lattice"``: also the
    body diagonals (13 in 3-D). Diagonals see what the axes' marginals miss (two distributions
    with the same axis marginals but different joints). The weights make ``sum w theta theta^T = I`` exactly (the diagonals' off-diagonal terms
    cancel by sign symmetry; each axis takes up the rest of its diagonal entry, at least 1/2), so
    ``sum_theta w W2^2(theta_# a, theta_# b)`` is ``|d|^2`` for point masses at distance ``d`` and
    obeys the translation law of :func:`sliced_w2`, on any anisotropic grid.
    """
    spacing = [float(s) for s in spacing]
    ndim = len(spacing)
    if kind not in ("axes", "faces", "lattice"):
        raise ValueError(f"directions must be 'axes', 'faces' or 'lattice', got {kind!r}")
    diagonals = []
    if kind != "axes":
        for size in range(2, (ndim if kind == "lattice" else 2) + 1):
            for axes in itertools.combinations(range(ndim), size):
                for tail in itertools.product((1, -1), repeat=size - 1):
                    signs = [0] * ndim
                    signs[axes[0]] = 1
                    for ax, sg in zip(axes[1:], tail):
                        signs[ax] = sg
                    diagonals.append(tuple(signs))
    def unit(signs):
        u = [sg / sp for sg, sp in zip(signs, spacing)]
        norm = math.sqrt(sum(c * c for c in u))
        return [c / norm for c in u], norm
    diag_sum = [sum(unit(sg)[0][k] ** 2 for sg in diagonals) for k in range(ndim)]
    c = 0.5 / max(diag_sum) if diagonals else 0.0
    out = [(tuple(int(i == k) for i in range(ndim)), 1.0 / spacing[k], 1.0 - c * diag_sum[k]) for k in range(ndim)]
    return out + [(sg, unit(sg)[1], c) for sg in diagonals]


class _SliceLayout:
    """Where each cell of the grids' marginals lands in the projections of :func:`lattice_slices`.

    Every direction takes the smallest *source* marginal holding its axes: the 1-D marginals
    (``"axes"``), the planes (``"faces"``; the body diagonals of ``"lattice"`` take the whole
    grid). A cell of a source, at indices ``i`` on its axes, lands for direction ``d`` of grid ``g``
    in bin ``sum_k signs_k i_k - min`` of row ``g D + d`` of a ``(G D, width)`` block (``width``: the
    longest projection of all grids; shorter ones are padded with empty bins). So all projections of
    all grids (the deep-supervision scales of one output) are one gather of the concatenated sources
    and one ``index_add``, whatever ``G`` and ``D``: the loss is a few operations per call.
    """

    def __init__(self, shapes, kind: str, device):
        ndim = len(shapes[0])
        orders = {"axes": [1], "faces": [min(2, ndim)], "lattice": sorted({min(2, ndim), ndim})}[kind]
        candidates = [axes for order in orders for axes in itertools.combinations(range(ndim), order)]
        self.directions = [signs for signs, _, _ in lattice_slices([1.0] * ndim, kind)]
        source_of = [min((axes for axes in candidates if all(k in axes for k, sg in enumerate(signs) if sg)), key=len)
                     for signs in self.directions]
        self.sources = sorted(set(source_of), key=lambda axes: (len(axes), axes))
        self.width = max(sum((n - 1) * abs(sg) for n, sg in zip(shape, signs)) + 1
                         for shape in shapes for signs in self.directions)
        self.rows = len(shapes) * len(self.directions)
        cells, bins, start = [], [], 0
        for g, shape in enumerate(shapes):
            offsets = [start]
            for axes in self.sources:
                offsets.append(offsets[-1] + math.prod(shape[k] for k in axes))
            for d, (signs, axes) in enumerate(zip(self.directions, source_of)):
                s = self.sources.index(axes)
                b = sum(torch.meshgrid(*[torch.arange(shape[k]) * signs[k] for k in axes], indexing="ij")).reshape(-1)
                cells.append(torch.arange(offsets[s], offsets[s + 1]))
                bins.append(b - b.min() + (g * len(self.directions) + d) * self.width)
            start = offsets[-1]
        self.n_cells = start
        self.cells = torch.cat(cells)
        self.bins = torch.cat(bins).to(device)
        self._product_layout(shapes, device)
        self.cells = self.cells.to(device)

    def _product_layout(self, shapes, device):
        """For product measures (:meth:`project_axes`): the sources as outer products of the 1-D
        marginals, in blocks ``(M, S, n, .., n)`` of ``S`` sources of one order: the planes (and
        lines) of all grids in one block padded to the longest axis ``n_max`` (small: a plane is
        ``n_max^2``), a whole grid (the body diagonals' source) in a block of its own, padded only to
        its own longest axis. ``blocks`` holds each block's factor rows ``(order, S)`` (into the
        ``(M, A, n_max)`` marginals) and ``n``; ``product_cells`` where each source cell lies."""
        ndim, n_max = len(shapes[0]), max(max(shape) for shape in shapes)
        groups: dict = {}  # (order, grid or None) -> [(grid, axes)]
        for g in range(len(shapes)):
            for axes in self.sources:
                groups.setdefault((len(axes), None if len(axes) <= 2 else g), []).append((g, axes))
        self.blocks, where, start = [], {}, 0
        for (order, grid), members in groups.items():
            n = n_max if grid is None else max(shapes[grid])
            rows = torch.tensor([[g * ndim + axes[t] for g, axes in members] for t in range(order)], device=device)
            self.blocks.append((rows, n))
            for i, member in enumerate(members):
                where[member] = (start + i * n**order, n)
            start += len(members) * n**order
        padded = []
        for g, shape in enumerate(shapes):
            for axes in self.sources:
                first, n = where[(g, axes)]
                cell = torch.meshgrid(*[torch.arange(shape[k]) for k in axes], indexing="ij")
                padded.append(first + sum(i * n ** (len(axes) - 1 - t) for t, i in enumerate(cell)).reshape(-1))
        self.product_cells = torch.cat(padded)[self.cells].to(device)

    def project_axes(self, marginals: torch.Tensor) -> torch.Tensor:
        """``(M, G D, width)`` projections of product measures, one per grid, from their 1-D marginals
        ``(M, A, n_max)``: row ``g ndim + k`` is axis ``k`` of grid ``g``, zero past the axis' end."""
        m = marginals.shape[0]
        flat = []
        for rows, n in self.blocks:
            joint = marginals[:, rows[0], :n]
            for t in range(1, rows.shape[0]):
                joint = joint[..., None] * marginals[:, rows[t], :n].reshape(m, rows.shape[1], *([1] * t), n)
            flat.append(joint.reshape(m, -1))
        return self._bin(flat[0] if len(flat) == 1 else torch.cat(flat, dim=1), self.product_cells)

    def project(self, sources: list[torch.Tensor]) -> torch.Tensor:
        """``(M, G D, width)`` projections from the sources' marginals ``(M, *source shape)``, grid
        by grid in :attr:`sources` order."""
        return self._bin(torch.cat([m.reshape(m.shape[0], -1) for m in sources], dim=1), self.cells)

    def _bin(self, flat: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """``(M, G D, width)``: each source cell ``cells[i]`` of ``flat`` ``(M, cells)`` added into
        its bin ``bins[i]``."""
        out = flat.new_zeros(flat.shape[0], self.rows * self.width)
        out.index_add_(1, self.bins, flat.index_select(1, cells))
        return out.reshape(flat.shape[0], self.rows, self.width)


_LAYOUTS: dict = {}


def slice_layout(shapes, kind: str, device) -> _SliceLayout:
    """The cached :class:`_SliceLayout` of grid shapes (one or several) and a slicing kind."""
    key = (tuple(tuple(int(n) for n in shape) for shape in shapes), kind, str(device))
    if key not in _LAYOUTS:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        _LAYOUTS[key] = _SliceLayout(key[0], kind, device)
    return _LAYOUTS[key]


def project(weights, kind: str = "faces") -> torch.Tensor:
    """The distributions of ``sum_k signs_k i_k`` under ``weights`` ``(M, *S)`` for every direction
    of :func:`lattice_slices` (in its order), as ``(M, D, width)`` (bins from the smallest value).

    ``weights`` may also be a list of grids of different shapes (the same ``M``): the result is then
    ``(M, G D, width)``, grid after grid, each padded to the longest projection.
    """
    grids = [weights] if isinstance(weights, torch.Tensor) else list(weights)
    return _GridProjection.apply(slice_layout([g.shape[1:] for g in grids], kind, grids[0].device), *grids)


class _GridProjection(torch.autograd.Function):
    """:func:`project` with its gradient written by hand: the projections' gradient is gathered
    back onto the marginals' cells (one ``index_select`` and one ``index_add``), and each grid's
    gradient is the sum of its marginals' gradients broadcast over the axes they summed (autograd's
    trace of the same steps is three times as many operations)."""

    @staticmethod
    def forward(ctx, layout, *grids):
        sources = []
        for g in grids:
            for axes in layout.sources:
                other = tuple(k + 1 for k in range(g.ndim - 1) if k not in axes)
                sources.append(g.sum(other) if other else g)
        ctx.layout, ctx.shapes = layout, [g.shape for g in grids]
        return layout.project(sources)

    @staticmethod
    def backward(ctx, grad):
        layout, m = ctx.layout, grad.shape[0]
        cells = grad.reshape(m, -1).index_select(1, layout.bins)
        per_cell = cells.new_zeros(m, layout.n_cells).index_add_(1, layout.cells, cells)
        out, start = [], 0
        for shape in ctx.shapes:
            total = None
            for axes in layout.sources:
                size = math.prod(shape[k + 1] for k in axes)
                piece = per_cell[:, start:start + size].reshape([m] + [n if k in axes else 1 for k, n in enumerate(shape[1:])])
                start += size
                total = piece if total is None else total + piece
            out.append(total.expand(shape))
        return (None, *out)


def project_product(marginals, kind: str = "faces", shapes=None) -> torch.Tensor:
    """:func:`project` for product measures given by their 1-D marginals, never the N voxels unless
    the kind needs the whole grid: the sources are outer products of the marginals (planes for
    ``"faces"``).

    ``marginals``: one grid's ``(M, n_k)`` per axis, a list of such lists (one per grid), or all
    axes of all grids ``shapes`` padded into one ``(M, A, n_max)`` tensor (row ``g ndim + k``: axis
    ``k`` of grid ``g``, zero past its end; the landmark loss's Gaussians come that way).
    """
    if isinstance(marginals, torch.Tensor):
        padded = marginals
    else:
        grids = [marginals] if isinstance(marginals[0], torch.Tensor) else list(marginals)
        shapes = [[m.shape[1] for m in grid] for grid in grids]
        n_max = max(max(shape) for shape in shapes)
        padded = torch.stack([torch.nn.functional.pad(m, (0, n_max - m.shape[1])) for grid in grids for m in grid], dim=1)
    return slice_layout(shapes, kind, padded.device).project_axes(padded)


@functools.lru_cache(maxsize=64)
def _slice_steps(spacings: tuple, kind: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """mm per projected bin and weight of each direction of :func:`lattice_slices`, grid after grid,
    as ``(G D,)`` tensors."""
    slices = [s for spacing in spacings for s in lattice_slices(spacing, kind)]
    return (torch.tensor([1.0 / norm for _, norm, _ in slices], device=device, dtype=dtype),
            torch.tensor([w for _, _, w in slices], device=device, dtype=dtype))


def sliced_w2(a, b, spacing, directions: str = "faces", b_marginals=None) -> torch.Tensor:
    """Sliced ``W2^2`` (mm^2) on the grid: ``sum_theta w_theta W2^2(theta_# a, theta_# b)`` over
    :func:`lattice_slices`, each 1-D optimal transport solved exactly (quantile coupling).

    ``a``, ``b``: weights ``(M, *S)`` (each sums to 1); a product-measure ``b`` (a Gaussian target)
    can be given by its 1-D marginals ``b_marginals`` instead (then ``b`` is ``None``; any form of
    :func:`project_product`, the padded one for the grids of ``a``). Returns
    ``(M,)``. Several grids of different shapes (deep-supervision scales) are solved in one batch
    when ``a``, ``b`` (or ``b_marginals``) and ``spacing`` are lists, one entry per grid: then the
    result is ``(M, G)``.

    For point masses ``a = delta_p``, ``b = delta_q`` it is exactly ``|p - q|^2``; translating ``b``
    by ``t`` changes it by ``|t|^2 + 2 <m_b - m_a, t>`` (each 1-D ``W2^2`` changes by
    ``(theta . t)^2 + 2 (theta . t)(theta . (m_b - m_a))`` and ``sum w theta theta^T = I``), the same
    laws as the Sinkhorn divergence. It is a lower bound of ``W2^2``. O(N).
    """
    several = not isinstance(a, torch.Tensor)
    grids = list(a) if several else [a]
    spacings = tuple(tuple(float(s) for s in sp) for sp in (spacing if several else [spacing]))
    m = grids[0].shape[0]
    pa = project(grids, directions)
    pb = (project(b, directions) if b is not None
          else project_product(b_marginals, directions, shapes=[g.shape[1:] for g in grids]))
    step, weight = _slice_steps(spacings, directions, grids[0].device, grids[0].dtype)
    width = pa.shape[-1]
    w2 = _w2_on_bins(pa.reshape(-1, width), pb.reshape(-1, width), step.repeat(m)[:, None]).reshape(m, len(grids), -1)
    out = (w2 * weight.reshape(len(grids), -1)).sum(-1)
    return out if several else out[:, 0]
