"""nnU-Net trainers with MONAI's SwinUNETR and VNet, for every loss of this project.

An architecture is a mixin placed *before* a loss trainer, so a combination is one line::

    class nnUNetTrainerSwinUNETRFocalSR(SwinUNETRMixin, nnUNetTrainerFocalSR):
        pass

The mixin only replaces what the architecture changes: ``build_network_architecture`` (MONAI's
network from :mod:`nnunet_tavr.trainers.networks`, padded inside so any planned patch size works),
deep supervision (off: these networks have one output, so the loss, the targets and
``set_deep_supervision_enabled`` all see a single resolution) and, for SwinUNETR, the optimizer.
The loss trainer keeps everything else.  Adding an architecture is one mixin; adding a loss is one
line per architecture at the end of this module.

nnU-Net imports this module as a top-level module while it searches ``$nnUNet_extTrainer``, hence
absolute imports only.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_tavr.trainers.augmentation import LateralityPreservingMirroring
from nnunet_tavr.trainers.lr_schedulers import WarmupCosineLRScheduler
from nnunet_tavr.trainers.networks import build_swinunetr, build_vnet
from nnunet_tavr.trainers.schedules import Smoke
from nnunet_tavr.trainers.variants.loss_trainers import (
    nnUNetTrainerDiceCE,
    nnUNetTrainerFocal,
    nnUNetTrainerFocalSR,
    nnUNetTrainerSRDiceCE,
    nnUNetTrainerSRFocal,
)

#: Set to 1/true to build SwinUNETR with gradient checkpointing (less activation memory, more compute:
#: the Swin stages are recomputed in the backward pass) without a new trainer name; weights and
#: checkpoints are the same either way.  A subclass can instead set
#: ``network_kwargs = {"feature_size": 48, "gradient_checkpointing": True}``.
GRADIENT_CHECKPOINTING_ENV = "nnUNet_tavr_gradient_checkpointing"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "t", "yes")


class SingleOutputMixin:
    """Deep supervision off, for networks with one output (put before the ``nnUNetTrainer`` base).

    nnU-Net reads ``enable_deep_supervision`` when it builds the loss (no ``DeepSupervisionWrapper``),
    the training transforms (no downsampled targets, skeletons included) and the network; the flag
    is set right after ``nnUNetTrainer.__init__`` and before any of these run.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # nnU-Net records the __init__ arguments by name (for checkpoints), so keep its signature.
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """Nothing to switch: the network has a single output.

        nnU-Net calls it with ``False`` before the fold validation and with ``True`` after it (to
        restore training mode, in ``nnUNetv2_train`` and ``--val`` alike): both are no-ops, as in
        nnU-Net's own single-output trainers. The loss and the targets follow
        ``enable_deep_supervision``, which stays ``False``.
        """


class SwinUNETRMixin(SingleOutputMixin):
    """MONAI's Swin UNETR, trained with AdamW, linear warm-up and cosine decay.

    Defaults follow MONAI's Swin UNETR reference training (AdamW, lr 1e-4, weight decay 1e-5,
    warm-up then cosine): nnU-Net's SGD at 1e-2 with momentum 0.99 trains windowed-attention
    transformers poorly.  nnU-Net's gradient clipping (norm 12) and, on CUDA, its mixed precision
    (autocast + GradScaler) are kept.
    """

    #: keyword arguments of :func:`nnunet_tavr.trainers.networks.build_swinunetr`
    network_kwargs: dict = {"feature_size": 48}
    #: epochs of linear warm-up, capped at ``warmup_fraction * num_epochs`` for short schedules
    warmup_epochs: int = 50
    warmup_fraction: float = 0.1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.weight_decay = 1e-5

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        # A classmethod (not nnU-Net's staticmethod) so that subclasses can change network_kwargs; nnU-Net
        # calls it identically, as self.build_network_architecture(...) and as
        # trainer_class.build_network_architecture(...) in nnUNetPredictor.  enable_deep_supervision
        # is ignored: the network has one output.
        kwargs = dict(cls.network_kwargs)
        kwargs.setdefault("gradient_checkpointing", _env_flag(GRADIENT_CHECKPOINTING_ENV))
        return build_swinunetr(num_input_channels, num_output_channels, configuration_manager.patch_size, **kwargs)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        warmup = min(self.warmup_epochs, int(self.warmup_fraction * self.num_epochs))
        scheduler = WarmupCosineLRScheduler(optimizer, self.initial_lr, warmup, self.num_epochs)
        return optimizer, scheduler


class VNetMixin(SingleOutputMixin):
    """MONAI's VNet (ELU, batch norm, dropout 0.5 deep), trained like nnU-Net's U-Net.

    VNet is a convolutional network with normalisation, for which nnU-Net's SGD (lr 1e-2, Nesterov
    momentum 0.99, poly decay) is the tested default, so only the network changes.
    """

    #: keyword arguments of :func:`nnunet_tavr.trainers.networks.build_vnet`
    network_kwargs: dict = {}

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        # classmethod: see SwinUNETRMixin.build_network_architecture
        return build_vnet(num_input_channels, num_output_channels, configuration_manager.patch_size,
                          **cls.network_kwargs)


# --- architectures with nnU-Net's default loss (Dice + CE) -------------------------------------------

class nnUNetTrainerSwinUNETR(SwinUNETRMixin, LateralityPreservingMirroring, nnUNetTrainer):
    pass


class nnUNetTrainerVNet(VNetMixin, LateralityPreservingMirroring, nnUNetTrainer):
    pass


# --- architectures x the paper's losses (Tables 2 and 3) -------------------------------------------------

class nnUNetTrainerSwinUNETRDiceCE(SwinUNETRMixin, nnUNetTrainerDiceCE):
    pass


class nnUNetTrainerSwinUNETRFocal(SwinUNETRMixin, nnUNetTrainerFocal):
    pass


class nnUNetTrainerSwinUNETRSRDiceCE(SwinUNETRMixin, nnUNetTrainerSRDiceCE):
    pass


class nnUNetTrainerSwinUNETRSRFocal(SwinUNETRMixin, nnUNetTrainerSRFocal):
    pass


class nnUNetTrainerSwinUNETRFocalSR(SwinUNETRMixin, nnUNetTrainerFocalSR):
    pass


class nnUNetTrainerVNetDiceCE(VNetMixin, nnUNetTrainerDiceCE):
    pass


class nnUNetTrainerVNetFocal(VNetMixin, nnUNetTrainerFocal):
    pass


class nnUNetTrainerVNetSRDiceCE(VNetMixin, nnUNetTrainerSRDiceCE):
    pass


class nnUNetTrainerVNetSRFocal(VNetMixin, nnUNetTrainerSRFocal):
    pass


class nnUNetTrainerVNetFocalSR(VNetMixin, nnUNetTrainerFocalSR):
    pass


# --- <Trainer>_smoke: nnunet_tavr.trainers.schedules.Smoke, for CPU smoke runs and CI -------------------

class SmokeSwinUNETR(Smoke):
    """:class:`Smoke` with SwinUNETR at its smallest width (feature size 12, 4 M parameters).

    MONAI's SwinUNETR needs a feature size divisible by 12. VNet has no width parameter in MONAI, so
    the VNet smoke trainers use :class:`Smoke` alone.
    """

    network_kwargs = {"feature_size": 12}


class nnUNetTrainerSwinUNETR_smoke(SmokeSwinUNETR, nnUNetTrainerSwinUNETR):
    pass


class nnUNetTrainerSwinUNETRDiceCE_smoke(SmokeSwinUNETR, nnUNetTrainerSwinUNETRDiceCE):
    pass


class nnUNetTrainerSwinUNETRFocal_smoke(SmokeSwinUNETR, nnUNetTrainerSwinUNETRFocal):
    pass


class nnUNetTrainerSwinUNETRSRDiceCE_smoke(SmokeSwinUNETR, nnUNetTrainerSwinUNETRSRDiceCE):
    pass


class nnUNetTrainerSwinUNETRSRFocal_smoke(SmokeSwinUNETR, nnUNetTrainerSwinUNETRSRFocal):
    pass


class nnUNetTrainerSwinUNETRFocalSR_smoke(SmokeSwinUNETR, nnUNetTrainerSwinUNETRFocalSR):
    pass


class nnUNetTrainerVNet_smoke(Smoke, nnUNetTrainerVNet):
    pass


class nnUNetTrainerVNetDiceCE_smoke(Smoke, nnUNetTrainerVNetDiceCE):
    pass


class nnUNetTrainerVNetFocal_smoke(Smoke, nnUNetTrainerVNetFocal):
    pass


class nnUNetTrainerVNetSRDiceCE_smoke(Smoke, nnUNetTrainerVNetSRDiceCE):
    pass


class nnUNetTrainerVNetSRFocal_smoke(Smoke, nnUNetTrainerVNetSRFocal):
    pass


class nnUNetTrainerVNetFocalSR_smoke(Smoke, nnUNetTrainerVNetFocalSR):
    pass
