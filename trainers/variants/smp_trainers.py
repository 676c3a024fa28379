"""nnU-Net trainers with the six 2-D CNNs of seed 002 (``segmentation_models_pytorch``), for every
loss of this project.

One mixin per architecture, placed before a loss trainer, exactly like the SwinUNETR / VNet mixins
(:mod:`nnunet_tavr.trainers.variants.architecture_trainers`)::

    class nnUNetTrainerSMPMAnetFocalSR(SMPMAnetMixin, nnUNetTrainerFocalSR): ...

The mixin replaces only the network (:func:`nnunet_tavr.trainers.smp_networks.build_smp`, padded to
the model's output stride inside the network so every planned patch works) and switches deep
supervision off (one output); the loss trainer keeps its loss, targets and everything else, and
nnU-Net keeps its optimizer (SGD, poly), augmentation, sliding window and mirroring.

Trainers defined here (all found by nnU-Net's lookup through ``$nnUNet_extTrainer``)::

    nnUNetTrainerSMP<Arch><Loss>          Arch: FPN, UnetPlusPlus, DeepLabV3Plus, Linknet, MAnet, PSPNet
    nnUNetTrainerSMP<Arch><Loss>_smoke    Loss: "" (nnU-Net's Dice + CE), DiceCE, Focal, SRDiceCE, SRFocal, FocalSR

``_smoke``: 2 epochs x 3 iterations with a ResNet-18 encoder, for CPU tests. The encoder is a class
attribute (``encoder_name = "resnet34"``; subclass to change it: the trainer name must identify the
network, because checkpoints store only the name). Encoder weights: none by default (nothing is
downloaded); ``$nnUNet_tavr_smp_weights`` = ``imagenet`` or a local state-dict file initialises the
encoder from pretrained weights (:mod:`nnunet_tavr.trainers.smp_networks`).

nnU-Net imports this module as a top-level module while searching ``$nnUNet_extTrainer``, hence
absolute imports only.
"""

from __future__ import annotations

from torch import nn

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_tavr.trainers.schedules import Smoke
from nnunet_tavr.trainers.smp_networks import ARCHITECTURES, DEFAULT_ENCODER, build_smp, weights_from_env
from nnunet_tavr.trainers.variants.architecture_trainers import SingleOutputMixin
from nnunet_tavr.trainers.variants.loss_trainers import (
    nnUNetTrainerDiceCE,
    nnUNetTrainerFocal,
    nnUNetTrainerFocalSR,
    nnUNetTrainerSRDiceCE,
    nnUNetTrainerSRFocal,
)


class SMPMixin(SingleOutputMixin):
    """A ``segmentation_models_pytorch`` network (``architecture``) in place of nnU-Net's U-Net."""

    #: key of :data:`nnunet_tavr.trainers.smp_networks.ARCHITECTURES`
    architecture: str = ""
    #: smp encoder
    encoder_name: str = DEFAULT_ENCODER
    #: further keyword arguments of the smp class
    network_kwargs: dict = {}

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """Nothing to switch: one output. nnU-Net calls ``set_deep_supervision_enabled(True)`` at the
        end of ``perform_actual_validation`` to restore its default, so True is accepted too."""

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        # A classmethod, as SwinUNETRMixin's: nnU-Net calls it on the instance and, in
        # nnUNetPredictor, on the class. enable_deep_supervision is ignored: one output.
        return build_smp(cls.architecture, num_input_channels, num_output_channels, configuration_manager.patch_size,
                         encoder_name=cls.encoder_name, encoder_weights=weights_from_env(), **cls.network_kwargs)


class SMPFPNMixin(SMPMixin):
    architecture = "FPN"


class SMPUnetPlusPlusMixin(SMPMixin):
    architecture = "UnetPlusPlus"


class SMPDeepLabV3PlusMixin(SMPMixin):
    architecture = "DeepLabV3Plus"


class SMPLinknetMixin(SMPMixin):
    architecture = "Linknet"


class SMPMAnetMixin(SMPMixin):
    architecture = "MAnet"


class SMPPSPNetMixin(SMPMixin):
    architecture = "PSPNet"


class SMPSmoke(Smoke):
    """Short schedule and a ResNet-18 encoder: a real nnU-Net run in seconds on a CPU."""

    encoder_name = "resnet18"


#: Architecture name -> its mixin.
MIXINS: dict[str, type] = {
    "FPN": SMPFPNMixin,
    "UnetPlusPlus": SMPUnetPlusPlusMixin,
    "DeepLabV3Plus": SMPDeepLabV3PlusMixin,
    "Linknet": SMPLinknetMixin,
    "MAnet": SMPMAnetMixin,
    "PSPNet": SMPPSPNetMixin,
}
#: Loss name part -> the loss trainer it inherits from ("" = nnU-Net's default Dice + CE).
LOSSES: dict[str, type] = {
    "": nnUNetTrainer,
    "DiceCE": nnUNetTrainerDiceCE,
    "Focal": nnUNetTrainerFocal,
    "SRDiceCE": nnUNetTrainerSRDiceCE,
    "SRFocal": nnUNetTrainerSRFocal,
    "FocalSR": nnUNetTrainerFocalSR,
}
assert set(MIXINS) == set(ARCHITECTURES)

__all__ = ["SMPMixin", "SMPSmoke", *(m.__name__ for m in MIXINS.values())]


def _define(name: str, bases: tuple, doc: str) -> type:
    """A module-level trainer class (what a one-line ``class name(*bases): pass`` would make)."""
    cls = type(name, bases, {"__module__": __name__, "__qualname__": name, "__doc__": doc})
    globals()[name] = cls
    __all__.append(name)
    return cls


# 6 architectures x 6 losses, and their _smoke twins: one line each, generated rather than written
# out 72 times. The names are listed in the module docstring and in docs/fluoroscopy.md.
for _arch, _mixin in MIXINS.items():
    for _loss, _base in LOSSES.items():
        _full = _define(f"nnUNetTrainerSMP{_arch}{_loss}", (_mixin, _base),
                        f"smp {_arch} ({DEFAULT_ENCODER}) trained with {_base.__name__}'s loss.")
        _define(f"{_full.__name__}_smoke", (SMPSmoke, _full), f"{_full.__name__}, 2 x 3 iterations, ResNet-18 encoder.")
del _arch, _mixin, _loss, _base, _full
