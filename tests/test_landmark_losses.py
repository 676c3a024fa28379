"""The grid OT loss: point masses, translations, gradients, anisotropic spacing; GLiP; MSE; targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnunet_tavr.trainers.landmark_losses import (
    HeatmapMSELoss,
    HeatmapOTLoss,
    axis_marginals,
    gaussian_log_heatmap,
    gaussian_marginals,
    glip_can_pay,
    glip_penalty,
)
from nnunet_tavr.trainers.landmark_ot import _w2_on_bins, lattice_slices, project, project_product, sinkhorn_divergence, sliced_w2

#: Both OT distances of the loss: (name, function of log-weights, spacing) -> mm^2
OT = {
    "sinkhorn": lambda la, lb, sp, **kw: sinkhorn_divergence(la, lb, sp, **kw),
    "sliced": lambda la, lb, sp, **kw: sliced_w2(la.exp(), lb.exp(), sp),
}


def dirac(shape, index) -> torch.Tensor:
    log = torch.full(shape, -math.inf, dtype=torch.float64)
    log[tuple(index)] = 0.0
    return log[None]


@pytest.mark.parametrize("ot", list(OT))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.8, 1.5)])
def test_point_masses_cost_their_distance_squared_in_mm(ot, spacing):
    shape = (9, 10, 11)
    for a, b in (((1, 2, 3), (6, 7, 5)), ((0, 9, 0), (8, 0, 10))):
        d2 = sum(((i - j) * s) ** 2 for i, j, s in zip(a, b, spacing))
        s = OT[ot](dirac(shape, a), dirac(shape, b), spacing)
        assert float(s) == pytest.approx(d2, rel=1e-6, abs=1e-6)
        # the distance variant of the loss: sqrt(S) is the distance in mm
        assert math.sqrt(float(s)) == pytest.approx(math.sqrt(d2), rel=1e-6)
    if ot == "sinkhorn":  # any entropic blur
        assert float(sinkhorn_divergence(dirac(shape, a), dirac(shape, b), spacing, blur_mm=0.5)) == pytest.approx(d2, rel=1e-6)


@pytest.mark.parametrize("ot", list(OT))
def test_anisotropic_spacing_is_honoured_along_each_axis(ot):
    shape = (8, 8, 8)
    along = {}
    for axis in range(3):
        b = [2, 2, 2]
        b[axis] = 5
        along[axis] = float(OT[ot](dirac(shape, (2, 2, 2)), dirac(shape, b), (2.5, 1.0, 0.5)))
    assert along[0] == pytest.approx((3 * 2.5) ** 2) and along[1] == pytest.approx(9.0) and along[2] == pytest.approx((3 * 0.5) ** 2)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 1.2), (1.0, 3.0)])
def test_lattice_slices_weigh_to_the_identity(spacing):
    total = np.zeros((len(spacing), len(spacing)))
    for signs, norm, weight in lattice_slices(spacing):
        theta = np.array([sg / sp for sg, sp in zip(signs, spacing)]) / norm
        assert weight >= 0 and np.linalg.norm(theta) == pytest.approx(1.0)
        total += weight * np.outer(theta, theta)
    np.testing.assert_allclose(total, np.eye(len(spacing)), atol=1e-12)


@pytest.mark.parametrize("kind", ["axes", "faces", "lattice"])
def test_projections_bin_each_voxel_on_each_direction(kind):
    shape, spacing = (7, 9, 6), (2.0, 1.0, 1.5)
    frac = torch.tensor([[0.4, 0.55, 0.5], [0.2, 0.7, 0.6]], dtype=torch.float64)
    full = gaussian_log_heatmap(shape, spacing, frac, 2.0).exp()
    projected = project(full, kind)
    # by hand: the bincount of sum_k signs_k i_k over the voxels, from its smallest value
    index = np.indices(shape).reshape(len(shape), -1)
    for d, (signs, _, _) in enumerate(lattice_slices(spacing, kind)):
        bins = np.tensordot(signs, index, axes=1)
        for row in range(2):
            expected = np.bincount(bins - bins.min(), weights=full[row].reshape(-1).numpy())
            np.testing.assert_allclose(projected[row, d, :expected.size].numpy(), expected, rtol=1e-12, atol=1e-15)
            assert float(projected[row, d, expected.size:].abs().sum()) == 0.0  # padding
    # a product measure from its 1-D marginals, without the voxels
    torch.testing.assert_close(project_product(gaussian_marginals(shape, spacing, frac, 2.0), kind), projected,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["axes", "faces", "lattice"])
def test_several_grids_project_and_transport_as_each_grid_alone(kind):
    # the deep-supervision scales of one output are binned and solved in one batch
    shapes, spacings = [(8, 10, 6), (4, 5, 3), (2, 3, 2)], [(1.0, 1.5, 2.0), (2.0, 3.0, 4.0), (4.0, 5.0, 6.0)]
    gen = torch.Generator().manual_seed(1)
    frac = torch.rand(3, 3, generator=gen, dtype=torch.float64)
    grids = [torch.softmax(torch.randn(3, math.prod(s), generator=gen, dtype=torch.float64), 1).reshape(3, *s).requires_grad_()
             for s in shapes]
    together = project(grids, kind)
    marginals = axis_marginals(shapes, spacings, frac, 2.0)
    d = len(lattice_slices(spacings[0], kind))
    for g, (shape, spacing) in enumerate(zip(shapes, spacings)):
        alone = project(grids[g], kind)
        torch.testing.assert_close(together[:, g * d:(g + 1) * d, :alone.shape[-1]], alone)
        assert float(together[:, g * d:(g + 1) * d, alone.shape[-1]:].detach().abs().sum()) == 0.0
        # the padded marginals of all grids give each grid's product projection
        torch.testing.assert_close(project_product(marginals, kind, shapes=shapes)[:, g * d:(g + 1) * d, :alone.shape[-1]],
                                   project_product(gaussian_marginals(shape, spacing, frac, 2.0), kind))
    w2 = sliced_w2(grids, None, spacings, kind, b_marginals=marginals)
    assert w2.shape == (3, len(shapes))
    weights = torch.rand(3, len(shapes), generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((w2 * weights).sum(), grids)
    for g, (shape, spacing) in enumerate(zip(shapes, spacings)):
        alone = sliced_w2(grids[g], None, spacing, kind, b_marginals=gaussian_marginals(shape, spacing, frac, 2.0))
        torch.testing.assert_close(w2[:, g], alone)
        torch.testing.assert_close(grads[g], torch.autograd.grad((alone * weights[:, g]).sum(), grids[g])[0])


def test_projection_gradient_is_autograd_s():
    grids = [torch.rand(2, 4, 3, 5, dtype=torch.float64, requires_grad=True), torch.rand(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)]
    for kind in ("axes", "faces", "lattice"):
        assert torch.autograd.gradcheck(lambda *g: project(list(g), kind), grids)


def w2_by_autograd(a, b, step):
    """The 1-D quantile W2^2 traced by autograd (the reference for the hand-written gradient)."""
    ca, cb = a.cumsum(-1), b.cumsum(-1)
    ca, cb = ca / ca[..., -1:], cb / cb[..., -1:]
    u = torch.sort(torch.cat([ca, cb], dim=-1), dim=-1).values
    u = torch.cat([torch.zeros_like(u[..., :1]), u], dim=-1)
    du = u.diff(dim=-1)
    mid = (u[..., :-1] + 0.5 * du).detach()
    ia = torch.searchsorted(ca.detach().contiguous(), mid.contiguous()).clamp_max(a.shape[-1] - 1)
    ib = torch.searchsorted(cb.detach().contiguous(), mid.contiguous()).clamp_max(a.shape[-1] - 1)
    return (du * ((ia - ib).to(a.dtype) * step) ** 2).sum(-1)


def test_quantile_w2_gradient_equals_autograd_s():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(7, 12, generator=gen, dtype=torch.float64)
    a[:, -3:] = 0.0  # padding bins: ties at the CDF's end
    a.requires_grad_()
    b = torch.rand(7, 12, generator=gen, dtype=torch.float64).requires_grad_()
    step = torch.rand(7, 1, generator=gen, dtype=torch.float64) + 0.5
    weights = torch.randn(7, generator=gen, dtype=torch.float64)
    ours, reference = _w2_on_bins(a, b, step), w2_by_autograd(a, b, step)
    torch.testing.assert_close(ours, reference)
    for x, y in zip(torch.autograd.grad((ours * weights).sum(), (a, b)), torch.autograd.grad((reference * weights).sum(), (a, b))):
        torch.testing.assert_close(x, y)


def blob(shape, centre, sigma, spacing):
    frac = torch.tensor([[(c + 0.5) / n for c, n in zip(centre, shape)]], dtype=torch.float64)
    return gaussian_log_heatmap(shape, spacing, frac, sigma)


def test_translation_changes_the_loss_as_the_formula_says():
    shape, spacing = (16, 14, 22), (2.0, 1.5, 1.0)  # every blob at least 4 sigma inside the grid
    pred = blob(shape, (6, 6, 10), 3.0, spacing)
    target = blob(shape, (8, 7, 11), 2.0, spacing)
    shift = (2, -1, 1)  # voxels
    moved = blob(shape, (10, 6, 12), 2.0, spacing)
    t = torch.tensor([k * s for k, s in zip(shift, spacing)], dtype=torch.float64)

    def mean(log):
        grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) * s for n, s in zip(shape, spacing)], indexing="ij")
        w = log.exp()[0]
        return torch.stack([(w * g).sum() for g in grids])

    for ot in OT:
        s0 = OT[ot](pred, target, spacing, blur_mm=3.0, extra_iterations=3)
        s1 = OT[ot](pred, moved, spacing, blur_mm=3.0, extra_iterations=3)
        expected = float(s0) + float(t @ t) + 2 * float((mean(target) - mean(pred)) @ t)
        assert float(s1) == pytest.approx(expected, rel=2e-3, abs=2e-3), ot
        # a prediction equal to the target moved by t costs |t|^2
        same = OT[ot](target, moved, spacing, blur_mm=3.0, extra_iterations=3)
        assert float(same) == pytest.approx(float(t @ t), rel=2e-3), ot


@pytest.mark.parametrize("ot", list(OT))
def test_gradient_moves_predicted_mass_toward_the_target(ot):
    shape, spacing = (12, 12, 12), (1.5, 1.5, 1.5)
    logits = torch.zeros((1, *shape), dtype=torch.float64, requires_grad=True)
    target = blob(shape, (9, 3, 4), 1.5, spacing)
    centre = torch.tensor([9, 3, 4], dtype=torch.float64) * 1.5

    def mean_dist(log_p):
        grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) * s for n, s in zip(shape, spacing)], indexing="ij")
        w = log_p.exp()[0]
        return float(torch.sqrt(sum(((g - c) ** 2 * w).sum() for g, c in zip(grids, centre))))

    log_p = torch.log_softmax(logits.reshape(1, -1), -1).reshape(logits.shape)
    before = mean_dist(log_p.detach())
    OT[ot](log_p, target, spacing).sum().backward()
    with torch.no_grad():
        stepped = logits - logits.grad / logits.grad.abs().max()  # a step of at most 1 in any logit
    after = mean_dist(torch.log_softmax(stepped.reshape(1, -1), -1).reshape(logits.shape))
    assert after < before - 0.1
    # the logit rises most near the target, falls most far from it
    g = -logits.grad[0]
    assert g[9, 3, 4] > g[0, 11, 11]


def targets(shape, centres_vox, present):
    """Segmentation channel + constant (present, fractions) channels, as LandmarkCentreTransform makes them."""
    b, L = len(centres_vox), len(centres_vox[0])
    out = torch.zeros((b, 1 + L * 4, *shape))
    for i in range(b):
        for l in range(L):
            out[i, 1 + 4 * l] = float(present[i][l])
            for k in range(3):
                out[i, 2 + 4 * l + k] = (centres_vox[i][l][k] + 0.5) / shape[k]
    return out


@pytest.mark.parametrize("ot", ["sliced"])  # the Sinkhorn variant obeys the same distance laws (tests above)
def test_heatmap_ot_loss_prefers_the_right_peak_and_skips_absent_landmarks(ot):
    shape, spacing = (12, 12, 12), (2.0, 2.0, 2.0)
    loss = HeatmapOTLoss(2, spacing, shape, sigma_mm=2.0, ot=ot)
    tgt = targets(shape, [[(3, 3, 3), (8, 8, 8)]], [[1, 0]])

    def output(peak):
        out = torch.zeros((1, 3, *shape))
        out[0, 1][peak] = 12.0
        return out

    good, bad = loss(output((3, 3, 3)), tgt), loss(output((8, 8, 3)), tgt)
    assert float(good) < float(bad)
    # landmark 2 is absent: its channel changes only the GLiP term, never the OT term
    no_glip = HeatmapOTLoss(2, spacing, shape, glip_weight=0.0, ce_weight=0.0, ot=ot)
    a = output((3, 3, 3))
    b = a.clone()
    b[0, 2, 1, 1, 1] = 30.0
    assert float(no_glip(a, tgt)) == pytest.approx(float(no_glip(b, tgt)), rel=1e-6)
    # nothing present: zero loss that still has a graph
    none = targets(shape, [[(3, 3, 3), (8, 8, 8)]], [[0, 0]])
    out = torch.zeros((1, 3, *shape), requires_grad=True)
    value = no_glip(out, none)
    value.backward()
    assert float(value) == 0.0 and out.grad is not None
    # the channel cross-entropy on the spheres anchors the absolute level, also without landmarks:
    # a landmark channel above the reference everywhere costs more than one below it
    anchored = HeatmapOTLoss(2, spacing, shape, glip_weight=0.0, ot=ot)
    high, low = torch.zeros((1, 3, *shape)), torch.zeros((1, 3, *shape))
    high[0, 1], low[0, 1] = 5.0, -5.0
    assert float(anchored(high, none)) > float(anchored(low, none)) + 1.0


@pytest.mark.parametrize("extra_channels", [0, 2])
def test_reference_logits_and_their_gradient(extra_channels):
    # channel 0 is the reference; channels past 1 + L (none in the trainers) get no gradient
    loss = HeatmapMSELoss(2, (1.0, 1.0, 1.0), (3, 4, 5))
    out = torch.randn(2, 3 + extra_channels, 3, 4, 5, requires_grad=True)
    torch.testing.assert_close(loss.logits(out), out[:, 1:3] - out[:, :1])
    weights = torch.randn(2, 2, 3, 4, 5)
    (loss.logits(out) * weights).sum().backward()
    expected = torch.cat([-weights.sum(1, keepdim=True), weights, torch.zeros(2, extra_channels, 3, 4, 5)], dim=1)
    torch.testing.assert_close(out.grad, expected)


def scales_of(shape, centres, present, channels, gen):
    """Deep-supervision outputs and targets (the patch, then halvings), as nnU-Net hands them over."""
    sizes = [tuple(n // 2 ** i for n in shape) for i in range(3)]
    outputs = [(3 * torch.randn(1, channels, *s, generator=gen, dtype=torch.float64)).requires_grad_() for s in sizes]
    tgts = [targets(s, [[tuple(int(c * s[k] / shape[k]) for k, c in enumerate(centre)) for centre in centres]], [present]).double()
            for s in sizes]
    for t in tgts:  # the centre channels hold the same fractions at every scale
        t[:, 1:] = tgts[0][:, 1:].flatten(2)[..., :1].reshape(1, -1, *[1] * 3)
    return outputs, tgts


@pytest.mark.parametrize("present", [[1, 1], [1, 0]])
def test_deep_supervision_lists_are_nnunets_weighted_sum_with_glip_at_full_resolution(present):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    shape, spacing, weights = (16, 12, 16), (1.5, 2.0, 1.5), [0.6, 0.4, 0.0]
    gen = torch.Generator().manual_seed(2)
    outputs, tgts = scales_of(shape, [(5, 4, 9), (10, 6, 3)], present, 3, gen)
    for glip in (0.0, 1.0):
        ours = HeatmapOTLoss(2, spacing, shape, glip_weight=glip, scale_weights=weights)(outputs, tgts)
        single = HeatmapOTLoss(2, spacing, shape, glip_weight=0.0)
        expected = DeepSupervisionWrapper(single, weights)(outputs, tgts)
        if glip:  # GLiP reads the full-resolution output only
            z = (outputs[0][:, 1:] - outputs[0][:, :1]).float()
            p = torch.softmax(z.flatten(2), -1).reshape(z.shape)
            term = glip_penalty(p.flatten(0, 1), spacing, 2.0)
            assert float(term) > 0
            expected = expected + weights[0] * 2.0**2 * term
        # (the loss computes in float32)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
        for x, y in zip(torch.autograd.grad(ours, outputs[:2]), torch.autograd.grad(expected, outputs[:2])):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6 * float(y.abs().max()))
    mse = HeatmapMSELoss(2, spacing, shape, scale_weights=weights)(outputs, tgts)
    torch.testing.assert_close(mse, DeepSupervisionWrapper(HeatmapMSELoss(2, spacing, shape), weights)(outputs, tgts))
    with pytest.raises(ValueError, match="3 outputs, 3 targets and 2 scale weights"):
        HeatmapOTLoss(2, spacing, shape, scale_weights=[0.5, 0.5])(outputs, tgts)


def test_deep_supervision_scale_uses_the_scaled_spacing():
    loss = HeatmapOTLoss(1, (1.0, 2.0, 3.0), (16, 16, 16))
    assert loss.scale_spacing((8, 8, 4)) == [2.0, 4.0, 12.0]


def test_glip_charges_collapsed_peaks_not_smooth_ones():
    shape, spacing = (16, 16, 16), (1.0, 1.0, 1.0)
    smooth = blob(shape, (8, 8, 8), 2.0, spacing).exp().float()
    sharp = dirac(shape, (8, 8, 8)).exp().float()
    assert float(glip_penalty(smooth, spacing, 2.0)) == pytest.approx(0.0, abs=1e-8)
    assert float(glip_penalty(sharp, spacing, 2.0)) > 0


def glip_by_definition(p, spacing, sigma_mm):
    """GLiP on every edge of the grid, straight from its formula (the reference for the sparse one)."""
    h = p / p.flatten(1).max(dim=1).values.reshape([-1] + [1] * (p.ndim - 1))
    bound = 1.0 / (sigma_mm * math.sqrt(math.e))
    terms = [torch.relu(torch.diff(h, dim=k + 1).abs() / sp - bound).square().mean()
             for k, sp in enumerate(spacing) if p.shape[k + 1] > 1]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("logits", ["peaked", "two_level", "flat"])
@pytest.mark.parametrize("shape,spacing", [((20, 22, 18), (1.5, 1.5, 1.5)), ((12, 30, 16), (2.5, 0.7, 1.2)),
                                           ((1, 9, 11), (1.0, 1.0, 1.0)), ((25, 21), (0.7, 1.1))])
def test_glip_on_its_paying_edges_equals_the_definition(logits, shape, spacing):
    # "peaked": few voxels near the max (the candidates' edges); "two_level": half the voxels at the
    # max, so the edges are found by dense differences; "flat": an untrained network, nothing pays
    gen = torch.Generator().manual_seed(3)
    z = {"peaked": 3.0 * torch.randn(4, *shape, generator=gen, dtype=torch.float64),
         # (slightly noisy: with exact ties the max's gradient may pick another of the tied voxels)
         "two_level": 5.0 * torch.randint(0, 2, (4, *shape), generator=gen).double()
         + 0.01 * torch.randn(4, *shape, generator=gen, dtype=torch.float64),
         "flat": 0.01 * torch.randn(4, *shape, generator=gen, dtype=torch.float64)}[logits].requires_grad_()
    values, grads = [], []
    for fn in (glip_penalty, glip_by_definition):
        value = fn(torch.softmax(z.flatten(1), 1).reshape(z.shape), spacing, 2.0)
        values.append(float(value))
        grads.append(torch.autograd.grad(value, z)[0])
    assert values[0] == pytest.approx(values[1], rel=1e-12, abs=1e-300)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12 * float(grads[1].abs().max()))
    assert (values[1] > 0) == (logits != "flat")


def test_glip_is_skipped_only_where_no_edge_can_pay():
    # sigma 2 mm: the bound is 0.30 / mm, so a 4 mm edge would need |dh| > 1.2 (impossible)
    assert glip_can_pay((1.5, 1.5, 1.5), 2.0) and not glip_can_pay((4.0, 4.0, 4.0), 2.0)
    sharp = dirac((8, 8, 8), (4, 4, 4)).exp().float()
    assert float(glip_penalty(sharp, (3.2, 3.2, 3.2), 2.0)) > 0  # just under the limit: pays
    assert float(glip_penalty(sharp, (3.4, 3.4, 3.4), 2.0)) == 0.0


def test_mse_loss_weighs_the_gaussian_like_the_background_at_any_patch_size():
    # predicting 0 everywhere must cost the same whatever the patch, not vanish as the patch grows
    # (a fixed peak weight lets a few-voxel Gaussian drown: the network then learns all zeros)
    costs = []
    for n in (12, 36):
        shape = (n, n, n)
        loss = HeatmapMSELoss(1, (2.0, 2.0, 2.0), shape, sigma_mm=3.0)
        costs.append(float(loss(torch.zeros((1, 2, *shape)), targets(shape, [[(n // 2,) * 3]], [[1]]))))
    assert costs[0] == pytest.approx(costs[1], rel=0.1) and costs[1] > 0.15
    # an absent landmark asks for zeros only, with weight 1
    shape = (12, 12, 12)
    out = torch.zeros((1, 2, *shape))
    out[0, 1] = 0.5
    absent = HeatmapMSELoss(1, (2.0, 2.0, 2.0), shape)(out, targets(shape, [[(6, 6, 6)]], [[0]]))
    assert float(absent) == pytest.approx(0.25)


def test_mse_loss_zero_at_the_target_heatmap():
    shape, spacing = (10, 10, 10), (1.5, 1.5, 1.5)
    tgt = targets(shape, [[(4, 5, 6)]], [[1]])
    frac = torch.tensor([[(4.5) / 10, 5.5 / 10, 6.5 / 10]])
    log_q = gaussian_log_heatmap(shape, spacing, frac, 2.0)
    heat = torch.exp(log_q - log_q.max())
    out = torch.zeros((1, 2, *shape))
    out[0, 1] = heat[0]
    loss = HeatmapMSELoss(1, spacing, shape, sigma_mm=2.0)
    assert float(loss(out, tgt)) == pytest.approx(0.0, abs=1e-10)
    assert float(loss(torch.zeros_like(out), tgt)) > 0
    np.testing.assert_allclose(float(heat.max()), 1.0)
