"""Losses against hand-computed values on tiny tensors (paper eqs. 1-3), gradients, edge cases, DDP."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.nn.functional as F

from nnunet_tavr.trainers.losses import FocalLoss, SegAndSkeletonLoss, SkeletonRecallLoss, one_hot


def logits_of(probabilities) -> torch.Tensor:
    """Logits whose softmax over dim 1 is ``probabilities`` (shape (b, C, ...))."""
    return torch.log(torch.as_tensor(probabilities, dtype=torch.float64)).float()


# ---------------------------------------------------------------- focal loss (eq. 2)


def test_focal_matches_hand_computed_value():
    # two voxels, three classes; voxel 0 is class 0, voxel 1 is class 2
    p = [[[0.7, 0.1], [0.2, 0.3], [0.1, 0.6]]]  # (b=1, C=3, n=2)
    target = torch.tensor([[[0, 2]]])
    loss = FocalLoss(gamma=2)(logits_of(p), target)
    terms = [
        # voxel 0: y=1 for class 0 (p* = p), y=0 for classes 1, 2 (p* = 1 - p)
        -(1 - 0.7) ** 2 * math.log(0.7), -(0.2) ** 2 * math.log(0.8), -(0.1) ** 2 * math.log(0.9),
        # voxel 1: y=1 for class 2
        -(0.1) ** 2 * math.log(0.9), -(0.3) ** 2 * math.log(0.7), -(1 - 0.6) ** 2 * math.log(0.6),
    ]
    assert loss.item() == pytest.approx(sum(terms) / 6, rel=1e-5)


def test_focal_gamma_zero_is_cross_entropy_for_two_classes():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 4)
    target = torch.randint(0, 2, (2, 1, 5, 4))
    # with two classes both one-vs-rest terms equal -log p_true, so the class mean is the CE
    assert FocalLoss(gamma=0)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target[:, 0]).item(), rel=1e-5)


def test_focal_down_weights_easy_voxels():
    easy = logits_of([[[0.99], [0.01]]])
    hard = logits_of([[[0.6], [0.4]]])
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    ratio_focal = FocalLoss(2)(easy, target) / FocalLoss(2)(hard, target)
    ratio_ce = FocalLoss(0)(easy, target) / FocalLoss(0)(hard, target)
    assert ratio_focal < 0.01 * ratio_ce


def test_focal_ignores_ignore_label_and_stays_finite():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 6)
    target = torch.tensor([[[0, 1, 2, 3, 3, 1]]])  # 3 = ignore label (one past the last class)
    loss = FocalLoss(2, ignore_label=3)(logits, target)
    expected = FocalLoss(2)(logits[..., [0, 1, 2, 5]], target[..., [0, 1, 2, 5]])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # scrambling the logits of ignored voxels changes nothing
    logits2 = logits.clone()
    logits2[..., 3:5] = 100 * torch.randn(3, 2)
    assert FocalLoss(2, ignore_label=3)(logits2, target).item() == pytest.approx(loss.item(), rel=1e-6)
    # confidently wrong voxels give a large but finite loss
    wrong = torch.tensor([[[-100.0], [100.0], [-100.0]]])
    value = FocalLoss(2)(wrong, torch.zeros(1, 1, 1, dtype=torch.long))
    assert torch.isfinite(value) and value > 1


def reference_focal(logits, target, gamma, ignore_label=None, include_background=True):
    """Eq. 2 transcribed literally, differentiated by autograd (the oracle for the hand-written backward)."""
    p = torch.softmax(logits.double(), 1)
    y = F.one_hot(target[:, 0].clamp(0, logits.shape[1] - 1), logits.shape[1]).movedim(-1, 1).bool()
    pt = torch.where(y, p, 1 - p)
    terms = -(1 - pt) ** gamma * torch.log(pt)
    if not include_background:
        terms = terms[:, 1:]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_label is None else target != ignore_label
    return (terms * valid).sum() / (valid.sum() * terms.shape[1])


@pytest.mark.parametrize("gamma", [0.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("ignore, background", [(None, True), (4, True), (None, False)])
def test_focal_value_and_hand_written_gradient_match_autograd(gamma, ignore, background):
    torch.manual_seed(int(gamma * 10))
    logits = (3 * torch.randn(2, 4, 3, 5, 6)).requires_grad_(True)
    target = torch.randint(0, 5 if ignore else 4, (2, 1, 3, 5, 6))
    loss = FocalLoss(gamma, ignore_label=ignore, include_background=background)(logits, target)
    (2.5 * loss).backward()  # a non-unit upstream gradient, as under deep supervision
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = reference_focal(ref_logits, target, gamma, ignore, background)
    (2.5 * ref).backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # float32 against a float64 oracle: 1 - p loses digits where p is near 1
    torch.testing.assert_close(logits.grad, ref_logits.grad.float(), rtol=5e-3, atol=2e-5)


def test_sparse_skeleton_recall_gradient_matches_dense_autograd():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 5, 6, 7, requires_grad=True)
    skel = torch.randint(0, 4, (2, 1, 5, 6, 7)) * (torch.rand(2, 1, 5, 6, 7) < 0.3)
    SkeletonRecallLoss(gamma=2)(logits, skel).backward()
    ref_logits = logits.detach().clone().requires_grad_(True)
    p = torch.softmax(ref_logits, 1)[:, 1:]
    y = one_hot(skel, 4)[:, 1:]
    hit = ((1 - p).detach() ** 2 * p * y).sum((0, 2, 3, 4))
    (-(hit / y.sum((0, 2, 3, 4))).mean()).backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- skeleton recall (eqs. 1, 3)

# one sample, classes 0 (background), 1, 2; voxels 0,1 are the skeleton of class 1, voxel 2 of class 2
P_SKEL = [[[0.4, 0.05, 0.3, 0.9], [0.5, 0.9, 0.3, 0.05], [0.1, 0.05, 0.4, 0.05]]]
SKEL = torch.tensor([[[1, 1, 2, 0]]])


def test_skeleton_recall_eq1_hand_computed():
    loss = SkeletonRecallLoss(gamma=0)(logits_of(P_SKEL), SKEL)
    # class 1: (0.5 + 0.9) / 2 ; class 2: 0.4 / 1
    assert loss.item() == pytest.approx(-((0.5 + 0.9) / 2 + 0.4) / 2, rel=1e-5)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_focal_skeleton_recall_eq3_hand_computed(stop_gradient):
    loss = SkeletonRecallLoss(gamma=2, stop_gradient=stop_gradient)(logits_of(P_SKEL), SKEL)
    class1 = ((1 - 0.5) ** 2 * 0.5 + (1 - 0.9) ** 2 * 0.9) / 2
    class2 = (1 - 0.4) ** 2 * 0.4
    assert loss.item() == pytest.approx(-(class1 + class2) / 2, rel=1e-5)


@pytest.mark.parametrize("stop_gradient, sign", [(True, -1), (False, +1)])
def test_gradient_sign_at_p_08(stop_gradient, sign):
    """At p = 0.8 the weight form pushes p up (dL/dp < 0); the literal eq. 3 pushes it down."""
    logits = logits_of([[[0.2], [0.8]]]).requires_grad_(True)
    SkeletonRecallLoss(gamma=2, stop_gradient=stop_gradient)(logits, torch.ones(1, 1, 1, dtype=torch.long)).backward()
    p = 0.8
    dl_dp = -(1 - p) ** 2 if stop_gradient else -(1 - p) * (1 - 3 * p)  # -(0.04) vs +0.28
    # two classes: dp/dz1 = p (1 - p), so dL/dz1 = dL/dp * p (1 - p)
    assert math.copysign(1, logits.grad[0, 1, 0].item()) == sign
    assert logits.grad[0, 1, 0].item() == pytest.approx(dl_dp * p * (1 - p), rel=1e-4)


def test_absent_classes_drop_out_of_the_mean():
    only_class1 = torch.tensor([[[1, 1, 0, 0]]])
    loss = SkeletonRecallLoss()(logits_of(P_SKEL), only_class1)
    assert loss.item() == pytest.approx(-(0.5 + 0.9) / 2, rel=1e-5)


def test_no_skeleton_at_all_gives_zero_loss_and_zero_gradient():
    logits = logits_of(P_SKEL).requires_grad_(True)
    loss = SkeletonRecallLoss(gamma=2)(logits, torch.zeros(1, 1, 4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().max() == 0


def test_background_skeleton_is_never_scored():
    # label 0 everywhere except one class-2 voxel: background never enters the mean
    skel = torch.tensor([[[0, 0, 2, 0]]])
    assert SkeletonRecallLoss()(logits_of(P_SKEL), skel).item() == pytest.approx(-0.4, rel=1e-5)


def test_batch_recall_sums_over_the_batch_and_per_sample_averages_samples():
    p = torch.tensor(P_SKEL * 2)
    p[1] = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.8, 0.8, 0.8, 0.8], [0.1, 0.1, 0.1, 0.1]])
    skel = torch.cat([SKEL, torch.tensor([[[1, 0, 0, 0]]])])
    logits = logits_of(p.tolist())
    # batch: class 1 = (0.5 + 0.9 + 0.8) / 3, class 2 = 0.4 / 1
    batch = SkeletonRecallLoss(batch_recall=True)(logits, skel)
    assert batch.item() == pytest.approx(-((0.5 + 0.9 + 0.8) / 3 + 0.4) / 2, rel=1e-5)
    # per sample: mean over the present (sample, class) pairs: 0.7, 0.4, 0.8
    per_sample = SkeletonRecallLoss(batch_recall=False)(logits, skel)
    assert per_sample.item() == pytest.approx(-(0.7 + 0.4 + 0.8) / 3, rel=1e-5)


def test_recall_works_in_3d_with_nnunet_shaped_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, 6)
    skel = torch.randint(0, 4, (2, 1, 3, 5, 6)).to(torch.int16)
    y = one_hot(skel, 4)[:, 1:]
    p = torch.softmax(logits, 1)[:, 1:]
    expected = -((p * y).sum((0, 2, 3, 4)) / y.sum((0, 2, 3, 4))).mean()
    assert SkeletonRecallLoss()(logits, skel).item() == pytest.approx(expected.item(), rel=1e-5)


def test_seg_and_skeleton_loss_adds_weighted_terms_and_refuses_missing_channel():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    seg = torch.randint(0, 3, (2, 1, 4, 4))
    skel = torch.where(torch.rand(2, 1, 4, 4) > 0.5, seg, 0)
    focal, sr = FocalLoss(2), SkeletonRecallLoss(2)
    combined = SegAndSkeletonLoss(focal, sr, weight_seg=0.5, weight_skel=2.0)(logits, torch.cat([seg, skel], 1))
    assert combined.item() == pytest.approx(0.5 * focal(logits, seg).item() + 2.0 * sr(logits, skel).item(), rel=1e-5)
    with pytest.raises(ValueError, match="SkeletonTargetTransform"):
        SegAndSkeletonLoss(focal, sr)(logits, seg)


def test_invalid_gamma_is_refused():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(-1)
    with pytest.raises(ValueError, match="gamma"):
        SkeletonRecallLoss(-0.5)


# ---------------------------------------------------------------- multi-GPU: batch sums across ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, logits: torch.Tensor, skel: torch.Tensor, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        mine = logits[rank:rank + 1].clone().requires_grad_(True)
        loss = SkeletonRecallLoss(gamma=2, ddp=True)(mine, skel[rank:rank + 1])
        loss.backward()
        queue.put((rank, loss.item(), mine.grad.numpy()))  # numpy: pickled by value, not shared memory
    finally:
        dist.destroy_process_group()


def test_ddp_gathers_batch_sums_like_nnunet_dice():
    """Two gloo ranks, one sample each: each rank's loss is the recall of the *global* batch, and
    its gradient is world_size x the global gradient (DDP's gradient averaging then restores it)."""
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    skel = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    skel[0, 0, 1, 1:3] = 1
    skel[1, 0, 2, 0:4] = 1
    skel[1, 0, 0, 0] = 2  # class 2 only on rank 1
    whole = logits.clone().requires_grad_(True)
    expected = SkeletonRecallLoss(gamma=2)(whole, skel)
    expected.backward()

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, logits, skel, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, (v, g)) for r, v, g in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in range(2):
        value, grad = results[rank]
        assert value == pytest.approx(expected.item(), rel=1e-5)
        torch.testing.assert_close(torch.from_numpy(grad[0]), 2 * whole.grad[rank], rtol=1e-4, atol=1e-7)
