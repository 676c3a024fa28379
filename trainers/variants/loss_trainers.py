"""The TAVR paper's loss ablation (Table 2) as ``nnUNetTrainer`` subclasses.

======================== ============================================== =============
trainer                  loss                                           paper
======================== ============================================== =============
nnUNetTrainerDiceCE      0.25 Dice + 0.75 CE                            Tables 2, 3
nnUNetTrainerFocal       focal (gamma = 2)                              Table 2
nnUNetTrainerSRDiceCE    skeleton recall + DiceCE                       Table 2
nnUNetTrainerSRFocal     skeleton recall + focal                        Table 2
nnUNetTrainerFocalSR     focal skeleton recall + focal (FocalSK*)       Tables 2, 3
======================== ============================================== =============

Planning, data loading, augmentation, deep supervision, 5-fold cross-validation and inference are
nnU-Net's; only the loss (``_build_loss``) changes and, for the skeleton recall (SR) trainers,
:class:`SkeletonRecallMixin` adds the skeleton targets (``get_training_transforms`` /
``get_validation_transforms``, ``validation_step``) and the skeleton recall term of the loss.
The exponents and loss weights are class attributes, so an ablation is a one-line subclass::

    class nnUNetTrainerFocalSRGamma1(nnUNetTrainerFocalSR):
        gamma = 1.0          # focal loss and focal skeleton recall: one gamma, as in the paper

nnU-Net imports this module as a top-level module while searching ``$nnUNet_extTrainer``, hence the
absolute imports.
"""

from __future__ import annotations

import inspect

import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tavr.trainers.augmentation import LateralityPreservingMirroring
from nnunet_tavr.trainers.extra_targets import ExtraTargetChannels
from nnunet_tavr.trainers.losses import FocalLoss, SegAndSkeletonLoss, SkeletonRecallLoss
from nnunet_tavr.trainers.skeletons import DEFAULT_COARSEN, DEFAULT_TUBE_ITERATIONS, SkeletonTargetTransform


class _SoftmaxLossTrainer(LateralityPreservingMirroring, nnUNetTrainer):
    """Refuses region-based training: these losses are defined on softmax classes."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.label_manager.has_regions:
            raise ValueError(
                f"{type(self).__name__}: region-based training (dataset.json of "
                f"{self.plans_manager.dataset_name} defines regions) is not supported: the focal and "
                "skeleton recall losses are defined on mutually exclusive softmax classes. Train "
                "regions with nnUNetTrainer, or convert the dataset to plain labels.")

    def _segmentation_loss(self) -> torch.nn.Module:
        """The loss of one output (no deep supervision); what the subclasses change."""
        raise NotImplementedError

    def _build_loss(self):
        # nnU-Net's own _build_loss decides on deep supervision and its weights (including the DDP
        # special case); keep that and swap the wrapped loss.
        loss = super()._build_loss()
        if isinstance(loss, DeepSupervisionWrapper):
            loss.loss = self._segmentation_loss()
            return loss
        return self._segmentation_loss()


class nnUNetTrainerDiceCE(_SoftmaxLossTrainer):
    """nnU-Net's Dice + CE weighted as the paper's baseline: 0.25 Dice + 0.75 CE."""

    weight_dice: float = 0.25
    weight_ce: float = 0.75

    def _segmentation_loss(self):
        return DC_and_CE_loss(
            {"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5, "do_bg": False,
             "ddp": self.is_ddp},
            {}, weight_ce=self.weight_ce, weight_dice=self.weight_dice,
            ignore_label=self.label_manager.ignore_label, dice_class=MemoryEfficientSoftDiceLoss)


class nnUNetTrainerFocal(_SoftmaxLossTrainer):
    """Focal loss (Lin et al.), gamma = 2; the ignore label is masked out."""

    gamma: float = 2.0

    def _segmentation_loss(self):
        return FocalLoss(gamma=self.gamma, ignore_label=self.label_manager.ignore_label)


#: nnU-Net's transform-building signatures: the SR mixin reads ``ignore_label`` from a call by name
_TRAINING_TRANSFORMS = inspect.signature(nnUNetTrainer.get_training_transforms)
_VALIDATION_TRANSFORMS = inspect.signature(nnUNetTrainer.get_validation_transforms)


def _ignore_label(signature: inspect.Signature, args: tuple, kwargs: dict):
    """The ``ignore_label`` of a call with nnU-Net's ``signature``, passed positionally, by keyword or not at all."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments["ignore_label"]


class SkeletonRecallMixin(ExtraTargetChannels):
    """Adds the skeleton recall term: skeleton targets in the data pipeline, SR term in the loss.

    Put it before a loss trainer (``class nnUNetTrainerSRFocal(SkeletonRecallMixin, nnUNetTrainerFocal)``);
    the loss becomes ``weight_seg * <the trainer's loss> + weight_sr * <(focal) skeleton recall>``.

    The per-class skeleton label map is appended to the segmentation after the spatial transforms
    (so it is the skeleton of the augmented patch) and before nnU-Net's deep-supervision
    downsampling (so every output gets its own, like the segmentation). ``train_step`` is nnU-Net's
    unchanged: the two-channel target goes straight to :class:`SegAndSkeletonLoss`.
    ``validation_step`` is nnU-Net's too, but its online Dice must see the segmentation channel only.

    Works without deep supervision (``enable_deep_supervision = False``, e.g. for single-output
    networks): the target is then one tensor instead of a list, as in nnU-Net.
    """

    #: focal exponent of the skeleton recall: each skeleton voxel is weighted by (1 - p)^recall_gamma
    #: (focal skeleton recall, eq. 3); 0 is the plain skeleton recall (eq. 1). The focal loss's own
    #: exponent is ``gamma`` (nnUNetTrainerFocal); nnUNetTrainerFocalSR ties the two.
    recall_gamma: float = 0.0
    #: weight of the skeleton recall term and of the segmentation term
    weight_sr: float = 1.0
    weight_seg: float = 1.0
    #: treat (1 - p)^recall_gamma as a weight (True) or differentiate through it (literal eq. 3)
    stop_gradient: bool = True
    #: dilations of the one-voxel skeleton into a tube (clipped to the class); 0 = bare skeleton
    skeleton_tube_iterations: int = DEFAULT_TUBE_ITERATIONS
    #: thin on a grid pooled by this factor (1 = exact thinning; 2 keeps augmentation fast)
    skeleton_coarsen: int = DEFAULT_COARSEN
    #: recall summed over the batch (gathered over DDP ranks) instead of per sample
    batch_recall: bool = True

    def _build_loss(self):
        sr = SkeletonRecallLoss(gamma=self.recall_gamma, stop_gradient=self.stop_gradient,
                                batch_recall=self.batch_recall, ddp=self.is_ddp)
        loss = super()._build_loss()
        if isinstance(loss, DeepSupervisionWrapper):
            loss.loss = SegAndSkeletonLoss(loss.loss, sr, self.weight_seg, self.weight_sr)
            return loss
        return SegAndSkeletonLoss(loss, sr, self.weight_seg, self.weight_sr)

    @classmethod
    def _with_skeletons(cls, transforms, ignore_label):
        skel = SkeletonTargetTransform(cls.skeleton_tube_iterations, ignore_label=ignore_label,
                                       coarsen=cls.skeleton_coarsen)
        steps = transforms.transforms
        # before the deep-supervision downsampling if there is one, i.e. after everything else
        at = next((i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform)), len(steps))
        steps.insert(at, skel)
        return transforms

    @classmethod
    def get_training_transforms(cls, *args, **kwargs):
        ignore_label = _ignore_label(_TRAINING_TRANSFORMS, args, kwargs)
        return cls._with_skeletons(super().get_training_transforms(*args, **kwargs), ignore_label)

    @classmethod
    def get_validation_transforms(cls, *args, **kwargs):
        ignore_label = _ignore_label(_VALIDATION_TRANSFORMS, args, kwargs)
        return cls._with_skeletons(super().get_validation_transforms(*args, **kwargs), ignore_label)


class nnUNetTrainerSRDiceCE(SkeletonRecallMixin, nnUNetTrainerDiceCE):
    """Skeleton recall (Kirchhoff et al.) + 0.25 Dice + 0.75 CE."""


class nnUNetTrainerSRFocal(SkeletonRecallMixin, nnUNetTrainerFocal):
    """Skeleton recall + focal loss."""


class nnUNetTrainerFocalSR(SkeletonRecallMixin, nnUNetTrainerFocal):
    """The paper's FocalSK*: focal skeleton recall + focal loss, one gamma (2) for both.

    The focal factor of the skeleton recall is a gradient-stopped weight by default
    (``stop_gradient = True``); see :mod:`nnunet_tavr.trainers.losses` for why.
    """

    @property
    def recall_gamma(self) -> float:
        """The focal loss's ``gamma``: one exponent for both terms, as in the paper (eqs. 2 and 3).

        A subclass that sets ``gamma`` changes both; one that sets ``recall_gamma`` decouples them.
        """
        return self.gamma
