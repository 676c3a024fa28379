"""The six 2-D architectures of seed 002 from ``segmentation_models_pytorch``, built for nnU-Net plans.

=================== ========================================== ======================================
name                smp class                                   input sizes (default encoder depth 5)
=================== ========================================== ======================================
``FPN``             :class:`segmentation_models_pytorch.FPN`           multiples of 32
``UnetPlusPlus``    :class:`segmentation_models_pytorch.UnetPlusPlus`  multiples of 32
``DeepLabV3Plus``   :class:`segmentation_models_pytorch.DeepLabV3Plus` multiples of 16 (output stride 16)
``Linknet``         :class:`segmentation_models_pytorch.Linknet`       multiples of 32
``MAnet``           :class:`segmentation_models_pytorch.MAnet`         multiples of 32
``PSPNet``          :class:`segmentation_models_pytorch.PSPNet`        multiples of 8 (encoder depth 3)
=================== ========================================== ======================================

The networks come unchanged from smp; this module only adapts them to nnU-Net, as
:mod:`nnunet_tavr.trainers.networks` does for MONAI's:

* **Any patch size**: the network is wrapped in :class:`~nnunet_tavr.trainers.networks.PadToMultiple`
  with the model's own output stride (``model.encoder.output_stride``), so every planned patch and
  nnU-Net's sliding window work unchanged.
* **One output** (no deep supervision); 2-D only (smp's models are 2-D).
* **No downloads**: ``encoder_weights=None`` by default (random initialisation). Pretrained encoder
  weights are a switch: ``"imagenet"`` lets smp fetch them (needs the internet or a filled
  Hugging Face / torch hub cache), a **path** loads a local state-dict file of the encoder (e.g.
  torchvision's ``resnet34-b627a593.pth``, or an smp encoder's ``.safetensors``), adapting the first
  convolution to the number of input channels as smp does (sum over RGB for one channel). Trainers
  read the switch from ``$nnUNet_tavr_smp_weights`` (:data:`WEIGHTS_ENV`).

Shapes: ``(batch, channel, y, x)``; sizes in pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from nnunet_tavr.trainers.networks import PadToMultiple

#: nnU-Net trainer name part -> smp class name.
ARCHITECTURES: dict[str, str] = {
    "FPN": "FPN",
    "UnetPlusPlus": "UnetPlusPlus",
    "DeepLabV3Plus": "DeepLabV3Plus",
    "Linknet": "Linknet",
    "MAnet": "MAnet",
    "PSPNet": "PSPNet",
}
#: Default encoder (smp's default; seed 002 tuned EfficientNet-B4 and SE-ResNeXt101 on a GPU).
DEFAULT_ENCODER = "resnet34"
#: Environment variable with the encoder weights: unset / "none", "imagenet", or a local file.
WEIGHTS_ENV = "nnUNet_tavr_smp_weights"


def weights_from_env(environ=None) -> str | None:
    """The encoder-weights switch from :data:`WEIGHTS_ENV` (``None``: random initialisation)."""
    value = (os.environ if environ is None else environ).get(WEIGHTS_ENV, "").strip()
    return None if value.lower() in ("", "none", "0", "false") else value


def build_smp(
    architecture: str,
    num_input_channels: int,
    num_output_channels: int,
    patch_size: Sequence[int],
    *,
    encoder_name: str = DEFAULT_ENCODER,
    encoder_weights: str | None = None,
    pad_mode: str = "constant",
    **kwargs,
) -> PadToMultiple:
    """An smp model for an nnU-Net 2-D configuration, padded to its output stride.

    Parameters
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES`.
    num_input_channels, num_output_channels : int
        Image channels and segmentation heads.
    patch_size : sequence of int
        The configuration's patch size (pixels); only its length is used (must be 2).
    encoder_name : str
        Any smp encoder (``resnet18``, ``resnet34``, ``efficientnet-b4``, ``se_resnext101_32x4d``, ...).
    encoder_weights : str or None
        ``None`` (default, nothing downloaded), ``"imagenet"`` (smp downloads), or a path to a local
        encoder state dict (:func:`load_encoder_weights`).
    pad_mode : str
        See :class:`~nnunet_tavr.trainers.networks.PadToMultiple`.
    **kwargs
        Passed to the smp class (e.g. ``encoder_depth``, ``decoder_channels``).
    """
    import segmentation_models_pytorch as smp

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown smp architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    if len(patch_size) != 2:
        raise ValueError(f"{architecture} (segmentation_models_pytorch) is a 2-D network; the configuration has a "
                         f"{len(patch_size)}-D patch {list(patch_size)}: train the 2d configuration")
    local = encoder_weights is not None and encoder_weights != "imagenet"
    cls = getattr(smp, ARCHITECTURES[architecture])
    model = cls(encoder_name=encoder_name, encoder_weights=None if local else encoder_weights,
                in_channels=num_input_channels, classes=num_output_channels, **kwargs)
    if local:
        load_encoder_weights(model.encoder, encoder_weights)
    multiple = int(model.encoder.output_stride) if getattr(model, "requires_divisible_input_shape", True) else 1
    return PadToMultiple(model, multiple, min_coarsest_voxels=1, mode=pad_mode)


def load_encoder_weights(encoder: nn.Module, path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Load a local state dict into an smp encoder; returns ``(missing, unexpected)`` keys.

    Classifier heads (``fc.*``, ``classifier.*``, ``last_linear.*``) are dropped; a first
    convolution trained on RGB is adapted to the encoder's input channels (summed for one channel,
    repeated and rescaled for more), as smp does for its own pretrained weights.

    Raises
    ------
    FileNotFoundError, ValueError
        No such file, or a file that shares no parameter with the encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights {path} not found (${WEIGHTS_ENV} is 'imagenet' or a local state-dict file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = encoder.state_dict()
    adapted = {}
    for key, value in state.items():
        if key.split(".")[0] in ("fc", "classifier", "last_linear", "head"):
            continue
        target = own.get(key)
        if target is not None and value.ndim == 4 and target.ndim == 4 and value.shape[1] != target.shape[1] and value.shape[0] == target.shape[0]:
            n = target.shape[1]
            value = value.sum(1, keepdim=True) if n == 1 else torch.cat([value] * (n // value.shape[1] + 1), 1)[:, :n] * (value.shape[1] / n)
        adapted[key] = value
    # nn.Module's own method: smp's encoders override load_state_dict and return nothing.
    result = nn.Module.load_state_dict(encoder, adapted, strict=False)
    if not set(adapted) & set(own):
        raise ValueError(f"{path} shares no parameter with the {type(encoder).__name__} encoder: wrong file for this encoder?")
    return list(result.missing_keys), list(result.unexpected_keys)
