"""MONAI's SwinUNETR and VNet, built for nnU-Net plans of any patch size.

Both networks come unchanged from MONAI (:class:`monai.networks.nets.SwinUNETR`,
:class:`monai.networks.nets.VNet`); this module only adapts them to what nnU-Net hands a network:

* **Any spatial size.**  SwinUNETR needs every spatial size divisible by 32 (patch embedding plus
  four patch-merging stages), VNet by 16 (four stride-2 down transitions).  nnU-Net's planned patch
  sizes are divisible by ``2 ** num_pool`` of *its* U-Net, which is often not 32 (e.g. 80 or 112
  along z).  :class:`PadToMultiple` zero-pads the input inside the network to the next valid size
  and crops the logits back, so the network maps a ``(b, c, *S)`` tensor to ``(b, k, *S)`` for every
  ``S``.  The plans stay untouched, so nnU-Net's preprocessing, its patch sampling and its
  sliding-window predictor (with or without mirroring) work unchanged, and a checkpoint needs nothing
  but the plans it was trained with.  The price is compute spent on the padding: see
  :func:`padded_shape` and ``benchmarks/architectures.py``.
* **One output.**  Neither network has deep supervision; the trainers switch it off.
* **2D.**  Both networks are built with ``spatial_dims = len(patch_size)``.  MONAI's VNet ignores
  its ``dropout_dim`` argument and always builds ``Dropout3d``, which on a 4D ``(b, c, y, x)`` tensor
  treats the batch axis as channels and drops whole *samples*; for 2D the builder swaps those layers
  for ``Dropout2d`` of the same probability (channel dropout, as intended).
* **Any number of input channels for VNet.**  MONAI's VNet requires ``16 % in_channels == 0``
  (its input block adds the input repeated to 16 channels); otherwise (e.g. a cascade stage with
  one-hot previous segmentations) a learned 1x1 convolution maps the input to 16 channels first.

Shapes are ``(batch, channel, *spatial)`` with spatial axes in nnU-Net's order, (z, y, x) in 3D and
(y, x) in 2D; sizes are in voxels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SWINUNETR_DIVISOR",
    "VNET_DIVISOR",
    "PadToMultiple",
    "padded_shape",
    "build_swinunetr",
    "build_vnet",
    "count_parameters",
]

#: SwinUNETR (patch_size=2): patch embedding /2, then four patch-merging stages /2 each.
SWINUNETR_DIVISOR = 32
#: VNet: four stride-2 down transitions.
VNET_DIVISOR = 16


def padded_shape(shape: Sequence[int], multiple: int, min_coarsest_voxels: int = 1) -> tuple[int, ...]:
    """Smallest spatial shape >= ``shape`` whose sizes are all multiples of ``multiple``.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape in voxels (any number of axes).
    multiple : int
        Every output size is divisible by this.
    min_coarsest_voxels : int, optional
        Minimum number of voxels of the coarsest feature map, ``prod(out // multiple)``.  SwinUNETR
        needs 2: its bottleneck ``InstanceNorm`` cannot normalise a single voxel while training, so a
        32**3 patch is grown to 32x32x64.  Sizes grow one ``multiple`` at a time along the smallest
        axis (the last one on ties), which keeps the added volume minimal.

    Returns
    -------
    tuple of int
        The padded spatial shape.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    out = [max(multiple, math.ceil(int(s) / multiple) * multiple) for s in shape]
    while math.prod(o // multiple for o in out) < min_coarsest_voxels:
        smallest = min(out)
        axis = max(i for i, o in enumerate(out) if o == smallest)
        out[axis] += multiple
    return tuple(out)


class PadToMultiple(nn.Module):
    """Wrap a network so it accepts any spatial size: pad the input, run, crop the output.

    The input is padded (centred: half before, half after, the odd voxel after) to
    :func:`padded_shape`; the output is cropped back to the input's spatial shape.  Because the
    wrapper preserves shapes, nnU-Net's sliding-window inference and losses see an ordinary
    segmentation network.

    Parameters
    ----------
    network : nn.Module
        Maps ``(b, c, *P)`` to ``(b, k, *P)`` for the padded shapes ``P``.
    multiple : int
        Spatial sizes fed to ``network`` are multiples of this.
    min_coarsest_voxels : int, optional
        See :func:`padded_shape`.
    mode : {'constant', 'replicate'}, optional
        ``torch.nn.functional.pad`` mode.  ``'constant'`` (zeros) is the default because nnU-Net's
        z-scored CT intensities are zero-mean and its own sliding window pads images with zeros too.
    """

    def __init__(self, network: nn.Module, multiple: int, min_coarsest_voxels: int = 1, mode: str = "constant"):
        super().__init__()
        if mode not in ("constant", "replicate"):
            raise ValueError(f"mode must be 'constant' or 'replicate', got {mode!r}")
        self.network = network
        self.multiple = int(multiple)
        self.min_coarsest_voxels = int(min_coarsest_voxels)
        self.mode = mode

    def extra_repr(self) -> str:
        return f"multiple={self.multiple}, min_coarsest_voxels={self.min_coarsest_voxels}, mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        target = padded_shape(spatial, self.multiple, self.min_coarsest_voxels)
        if target == spatial:
            return self.network(x)
        before = [(t - s) // 2 for s, t in zip(spatial, target)]
        after = [t - s - b for s, t, b in zip(spatial, target, before)]
        # F.pad takes (last_before, last_after, second_last_before, ...).
        pad = [p for b, a in zip(reversed(before), reversed(after)) for p in (b, a)]
        y = self.network(F.pad(x, pad, mode=self.mode))
        crop = (slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(before, spatial))
        return y[crop]


def _spatial_dims(patch_size: Sequence[int]) -> int:
    dims = len(patch_size)
    if dims not in (2, 3):
        raise ValueError(f"patch_size must have 2 or 3 axes, got {list(patch_size)}")
    return dims


def build_swinunetr(
    num_input_channels: int,
    num_output_channels: int,
    patch_size: Sequence[int],
    *,
    feature_size: int = 48,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    dropout_path_rate: float = 0.0,
    use_v2: bool = False,
    gradient_checkpointing: bool = False,
    pad_mode: str = "constant",
) -> PadToMultiple:
    """MONAI's SwinUNETR for an nnU-Net configuration, wrapped in :class:`PadToMultiple`.

    Parameters
    ----------
    num_input_channels, num_output_channels : int
        Image channels and segmentation heads (nnU-Net's ``num_segmentation_heads``).
    patch_size : sequence of int
        The configuration's patch size in voxels; only its length (2 or 3 spatial dims) is used,
        any input size is accepted afterwards.
    feature_size : int, optional
        Embedding width, divisible by 12.  48 is the published Swin UNETR (62 M parameters, the size
        of MONAI's pretrained weights); 24 is MONAI's default; 12 is a toy size for tests.
    depths, num_heads, drop_rate, attn_drop_rate, dropout_path_rate, use_v2 :
        Passed to :class:`monai.networks.nets.SwinUNETR` unchanged.
    gradient_checkpointing : bool, optional
        MONAI's ``use_checkpoint``: recompute the Swin stages in the backward pass, trading
        compute for activation memory.  Weights are identical either way.
    pad_mode : str, optional
        See :class:`PadToMultiple`.
    """
    from monai.networks.nets import SwinUNETR

    net = SwinUNETR(
        in_channels=num_input_channels,
        out_channels=num_output_channels,
        feature_size=feature_size,
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        drop_rate=drop_rate,
        attn_drop_rate=attn_drop_rate,
        dropout_path_rate=dropout_path_rate,
        use_checkpoint=gradient_checkpointing,
        use_v2=use_v2,
        spatial_dims=_spatial_dims(patch_size),
    )
    return PadToMultiple(net, SWINUNETR_DIVISOR, min_coarsest_voxels=2, mode=pad_mode)


def build_vnet(
    num_input_channels: int,
    num_output_channels: int,
    patch_size: Sequence[int],
    *,
    dropout_prob_down: float | None = 0.5,
    dropout_prob_up: tuple[float | None, float] = (0.5, 0.5),
    act: tuple[str, dict] | str = ("elu", {"inplace": True}),
    pad_mode: str = "constant",
) -> PadToMultiple:
    """MONAI's VNet for an nnU-Net configuration, wrapped in :class:`PadToMultiple`.

    Parameters
    ----------
    num_input_channels, num_output_channels : int
        Image channels and segmentation heads.
    patch_size : sequence of int
        The configuration's patch size in voxels; only its length (2 or 3) is used.
    dropout_prob_down, dropout_prob_up, act :
        Passed to :class:`monai.networks.nets.VNet` (MONAI's defaults: ELU, dropout 0.5 in the two
        deepest down and up transitions).
    pad_mode : str, optional
        See :class:`PadToMultiple`.
    """
    from monai.networks.nets import VNet

    dims = _spatial_dims(patch_size)
    # MONAI's input block adds the input repeated to 16 channels, so 16 % in_channels must be 0.
    vnet_in = num_input_channels if 16 % num_input_channels == 0 else 16
    net: nn.Module = VNet(
        spatial_dims=dims,
        in_channels=vnet_in,
        out_channels=num_output_channels,
        act=act,
        dropout_prob_down=dropout_prob_down,
        dropout_prob_up=dropout_prob_up,
    )
    if dims == 2:
        _use_dropout2d(net)
    if vnet_in != num_input_channels:
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        net = nn.Sequential(conv(num_input_channels, vnet_in, kernel_size=1), net)
    return PadToMultiple(net, VNET_DIVISOR, min_coarsest_voxels=1, mode=pad_mode)


def _use_dropout2d(module: nn.Module) -> None:
    """Replace every ``Dropout3d`` below ``module`` by a ``Dropout2d`` of the same probability."""
    for name, child in module.named_children():
        if isinstance(child, nn.Dropout3d):
            setattr(module, name, nn.Dropout2d(child.p, inplace=child.inplace))
        else:
            _use_dropout2d(child)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
