"""Optimal-transport distances between distributions on a regular voxel grid (mm costs).

- :func:`sliced_w2`: exact sliced ``W2^2`` over the lattice directions (:func:`lattice_slices`),
  O(N) per direction; the landmark loss's default.
- :func:`sinkhorn_divergence`: the debiased Sinkhorn divergence with the squared cost, the Gibbs
  kernel separable per axis (log-domain 1-D passes).

Both are exact for point masses (``|p - q|^2``) and obey the translation law
``S(a, b + t) = S(a, b) + |t|^2 + 2 <m_b - m_a, t>`` (see :mod:`nnunet_tavr.trainers.landmark_losses`).
Inputs are ``(M, *S)`` weights or log-weights; ``spacing`` is mm per spatial axis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def _w2_common_support(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact 1-D ``W2^2`` between rows of weights ``a``, ``b`` ``(M, n)`` on one sorted support ``x``
    ``(n,)`` (mm): ``int_0^1 (F_a^-1(u) - F_b^-1(u))^2 du`` over the merged breakpoints of the two
    CDFs. Differentiable in the weights (through the breakpoints' spacing ``du``)."""
    ca, cb = a.cumsum(-1), b.cumsum(-1)
    ca = ca / ca[..., -1:].clamp_min(1e-30)
    cb = cb / cb[..., -1:].clamp_min(1e-30)
    u = torch.sort(torch.cat([ca, cb], dim=-1), dim=-1).values
    u = torch.cat([torch.zeros_like(u[..., :1]), u], dim=-1)
    du = u.diff(dim=-1)
    mid = (u[..., :-1] + 0.5 * du).detach()
    n = x.shape[0]
    ia = torch.searchsorted(ca.detach().contiguous(), mid.contiguous()).clamp_max(n - 1)
    ib = torch.searchsorted(cb.detach().contiguous(), mid.contiguous()).clamp_max(n - 1)
    return (du * (x[ia] - x[ib]) ** 2).sum(-1)


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
    import itertools

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


_BIN_CACHE: dict = {}


def _slice_bins(shape, signs, device):
    """Per voxel (flattened), its bin ``sum_k signs_k i_k - min``; and the number of bins (cached)."""
    key = (tuple(shape), signs, str(device))
    if key not in _BIN_CACHE:
        grids = torch.meshgrid(*[torch.arange(n) * sg for n, sg in zip(shape, signs)], indexing="ij")
        idx = sum(grids).reshape(-1)
        idx = idx - idx.min()
        if len(_BIN_CACHE) > 256:
            _BIN_CACHE.clear()
        _BIN_CACHE[key] = (idx.to(device), int(idx.max()) + 1)
    return _BIN_CACHE[key]


def project(weights: torch.Tensor, signs, shape, marginals: dict | None = None) -> torch.Tensor:
    """The distribution of ``sum_k signs_k i_k`` under ``weights`` ``(M, *shape)``: the marginal on
    the axes with a non-zero sign (cached in ``marginals`` by axes), then one bincount of it."""
    axes = tuple(k for k, sg in enumerate(signs) if sg)
    marginals = {} if marginals is None else marginals
    if axes not in marginals:
        # from a cached marginal on more axes when there is one (a plane's, 1/n of the voxels)
        wider = [key for key in marginals if set(axes) < set(key)]
        source, kept = (marginals[min(wider, key=len)], min(wider, key=len)) if wider else (weights, tuple(range(len(shape))))
        other = tuple(i + 1 for i, k in enumerate(kept) if k not in axes)
        marginals[axes] = source.sum(other) if other else source
    sub = marginals[axes]
    kept = tuple(signs[k] for k in axes)
    if len(axes) == 1:
        return sub.flip(-1) if kept[0] < 0 else sub
    idx, nbins = _slice_bins(tuple(shape[k] for k in axes), kept, weights.device)
    flat = sub.reshape(sub.shape[0], -1)
    return flat.new_zeros(flat.shape[0], nbins).index_add_(1, idx, flat)


def project_product(marginals: list[torch.Tensor], signs) -> torch.Tensor:
    """:func:`project` for a product measure given by its 1-D marginals ``(M, n_k)`` per axis: the
    convolution of the marginals (flipped where ``signs_k = -1``), without touching the N voxels."""
    out = None
    for marginal, sg in zip(marginals, signs):
        if sg == 0:
            continue
        m = marginal.flip(-1) if sg < 0 else marginal
        if out is None:
            out = m
            continue
        rows, n = m.shape
        # full convolution per row: conv1d correlates, so flip the kernel
        out = F.conv1d(out[None], m.flip(-1)[:, None, :], padding=n - 1, groups=rows)[0]
    return out


def sliced_w2(a: torch.Tensor, b: torch.Tensor | None, spacing, directions: str = "faces",
              b_marginals: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Sliced ``W2^2`` (mm^2) on the grid: ``sum_theta w_theta W2^2(theta_# a, theta_# b)`` over
    :func:`lattice_slices`, each 1-D optimal transport solved exactly (quantile coupling).

    ``a``, ``b``: weights ``(M, *S)`` (each sums to 1); a product-measure ``b`` (a Gaussian target)
    can be given by its 1-D marginals ``b_marginals`` instead (then ``b`` is ``None``).

    For point masses ``a = delta_p``, ``b = delta_q`` it is exactly ``|p - q|^2``; translating ``b``
    by ``t`` changes it by ``|t|^2 + 2 <m_b - m_a, t>`` (each 1-D ``W2^2`` changes by
    ``(theta . t)^2 + 2 (theta . t)(theta . (m_b - m_a))`` and ``sum w theta theta^T = I``), the same
    laws as the Sinkhorn divergence. It is a lower bound of ``W2^2``. O(N) per direction.
    """
    shape = a.shape[1:]
    total = a.new_zeros(a.shape[0])
    cache_a, cache_b = {}, {}
    # planes' diagonals first: the axes' marginals then come from the planes' marginals
    for signs, norm, weight in sorted(lattice_slices(spacing, directions), key=lambda s: -sum(map(abs, s[0]))):
        pa = project(a, signs, shape, cache_a)
        pb = project(b, signs, shape, cache_b) if b is not None else project_product(b_marginals, signs)
        x = torch.arange(pa.shape[1], device=a.device, dtype=a.dtype) / norm
        total = total + weight * _w2_common_support(x, pa, pb)
    return total
