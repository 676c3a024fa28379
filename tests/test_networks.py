"""MONAI SwinUNETR / VNet builders: any patch size in, same size out; one output; parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_tavr.trainers.lr_schedulers import WarmupCosineLRScheduler, warmup_cosine_lr
from nnunet_tavr.trainers.networks import (
    PadToMultiple,
    build_swinunetr,
    build_vnet,
    count_parameters,
    padded_shape,
)

# Small SwinUNETR for CPU tests; architecture otherwise as published.
TINY_SWIN = {"feature_size": 12}


@pytest.fixture(autouse=True)
def _few_threads():
    # Shared 2-core CI machine: do not let torch grab every core.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_padded_shape_rounds_up_and_keeps_valid_shapes():
    assert padded_shape((40, 56, 72), 32) == (64, 64, 96)
    assert padded_shape((40, 56, 72), 16) == (48, 64, 80)
    assert padded_shape((64, 128, 96), 32) == (64, 128, 96)
    assert padded_shape((5,), 16) == (16,)
    # SwinUNETR's bottleneck InstanceNorm needs >= 2 voxels: a 32^3 patch grows along the last axis
    assert padded_shape((32, 32, 32), 32, min_coarsest_voxels=2) == (32, 32, 64)
    assert padded_shape((20, 30), 32, min_coarsest_voxels=2) == (32, 64)
    assert padded_shape((64, 32, 32), 32, min_coarsest_voxels=2) == (64, 32, 32)
    with pytest.raises(ValueError):
        padded_shape((8, 8), 0)


class _Recorder(nn.Module):
    """Identity network that records the shape it was given."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x):
        self.seen = tuple(x.shape)
        return x * 1.0


def test_pad_to_multiple_pads_centred_and_crops_back_exactly():
    inner = _Recorder()
    net = PadToMultiple(inner, 16)
    x = torch.randn(2, 3, 5, 17, 33)
    y = net(x)
    assert inner.seen == (2, 3, 16, 32, 48)
    # identity inside: the crop must return exactly the original voxels, not a shifted window
    assert torch.equal(y, x)
    # already valid: no padding at all
    net(torch.randn(1, 1, 16, 32))
    assert inner.seen == (1, 1, 16, 32)


def test_pad_to_multiple_zero_padding_reaches_the_network():
    class Sum(nn.Module):
        def forward(self, x):
            return x.sum(dim=(2, 3), keepdim=True).expand_as(x)

    x = torch.ones(1, 1, 10, 12)
    y = PadToMultiple(Sum(), 16)(x)
    assert y.shape == x.shape
    assert torch.allclose(y, torch.full_like(y, 120.0))  # padded voxels contributed 0
    y = PadToMultiple(Sum(), 16, mode="replicate")(x)
    assert torch.allclose(y, torch.full_like(y, 256.0))  # replicate padding of ones
    with pytest.raises(ValueError):
        PadToMultiple(Sum(), 16, mode="reflect")


@pytest.mark.parametrize("shape", [(40, 56, 72), (50, 70)], ids=["3d_40x56x72", "2d_50x70"])
@pytest.mark.parametrize("arch", ["swinunetr", "vnet"])
def test_forward_odd_patch_gives_input_size_single_output(arch, shape):
    torch.manual_seed(0)
    if arch == "swinunetr":
        net = build_swinunetr(1, 8, shape, **TINY_SWIN)
    else:
        net = build_vnet(1, 8, shape)
    x = torch.randn(2, 1, *shape)
    if len(shape) == 2:
        # training mode and backward in 2D, where it is cheap (3D backward runs in the trainer tests)
        net.train()
        y = net(x)
        y.mean().backward()
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads)
        x = x[:1]
    net.eval()
    with torch.no_grad():
        y = net(x)
    # one tensor (no deep-supervision list), input's spatial size, one channel per head
    assert isinstance(y, torch.Tensor)
    assert y.shape == (x.shape[0], 8, *shape)
    assert torch.isfinite(y).all()


def test_vnet_2d_uses_channel_dropout_not_sample_dropout():
    net = build_vnet(1, 2, (64, 64))
    kinds = {type(m) for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)}
    assert nn.Dropout3d not in kinds and nn.Dropout2d in kinds
    net3 = build_vnet(1, 2, (32, 32, 32))
    assert any(isinstance(m, nn.Dropout3d) for m in net3.modules())


@pytest.mark.parametrize("channels", [1, 2, 3, 9])
def test_vnet_accepts_any_number_of_input_channels(channels):
    net = build_vnet(channels, 4, (16, 16)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, channels, 20, 18)).shape == (1, 4, 20, 18)


def test_parameter_counts_match_monai_reference_sizes():
    # Published sizes: Swin UNETR (feature 48) ~62 M, MONAI VNet ~45.6 M for 1 -> 8 channels.
    swin = count_parameters(build_swinunetr(1, 8, (64, 64, 64)))
    vnet = count_parameters(build_vnet(1, 8, (64, 64, 64)))
    assert 60e6 < swin < 64e6, swin
    assert 44e6 < vnet < 47e6, vnet
    assert count_parameters(build_swinunetr(1, 8, (64, 64), **TINY_SWIN)) < count_parameters(
        build_swinunetr(1, 8, (64, 64, 64), **TINY_SWIN))


def test_swinunetr_gradient_checkpointing_same_parameters_and_result():
    torch.manual_seed(0)
    plain = build_swinunetr(1, 3, (32, 32), **TINY_SWIN)
    ckpt = build_swinunetr(1, 3, (32, 32), gradient_checkpointing=True, **TINY_SWIN)
    ckpt.load_state_dict(plain.state_dict())  # same keys and shapes
    plain.train()
    ckpt.train()
    x = torch.randn(2, 1, 32, 32)
    ya, yb = plain(x), ckpt(x)
    assert torch.allclose(ya, yb, atol=1e-5)
    ya.sum().backward()
    yb.sum().backward()
    pa = dict(plain.named_parameters())
    for name, p in ckpt.named_parameters():
        assert torch.allclose(p.grad, pa[name].grad, atol=1e-4), name


def test_bad_patch_size_is_rejected():
    with pytest.raises(ValueError, match="2 or 3"):
        build_vnet(1, 2, (32,))
    with pytest.raises(ValueError, match="2 or 3"):
        build_swinunetr(1, 2, (32, 32, 32, 32), **TINY_SWIN)


def test_warmup_cosine_schedule():
    lrs = [warmup_cosine_lr(e, 1e-3, 5, 100) for e in range(100)]
    assert lrs[0] == pytest.approx(1e-3 / 6)
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:6]))  # rising during warm-up
    assert lrs[5] == pytest.approx(1e-3)  # peak right after warm-up
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))  # then monotone decay
    assert lrs[99] < 1e-5
    assert warmup_cosine_lr(100, 1e-3, 5, 100) == pytest.approx(0.0)
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLRScheduler(opt, 1e-3, 5, 100)
    sched.step(50)
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[50])
    assert sched.get_last_lr() == [pytest.approx(lrs[50])]
