"""``<Trainer>_smoke``: 2 epochs x 3 training iterations x 2 validation iterations, for CPU smoke runs.

``nnUNetv2_train 301 3d_fullres 0 -p nnUNetTinyPlans -tr nnUNetTrainerFocalSR_smoke -device cpu``
goes through nnU-Net's whole training, checkpointing and validation in minutes on a CPU.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tavr.trainers.schedules import ShortSchedule
from nnunet_tavr.trainers.variants.loss_trainers import (
    nnUNetTrainerDiceCE,
    nnUNetTrainerFocal,
    nnUNetTrainerFocalSR,
    nnUNetTrainerSRDiceCE,
    nnUNetTrainerSRFocal,
)


class nnUNetTrainer_smoke(ShortSchedule, nnUNetTrainer):
    pass


class nnUNetTrainerDiceCE_smoke(ShortSchedule, nnUNetTrainerDiceCE):
    pass


class nnUNetTrainerFocal_smoke(ShortSchedule, nnUNetTrainerFocal):
    pass


class nnUNetTrainerSRDiceCE_smoke(ShortSchedule, nnUNetTrainerSRDiceCE):
    pass


class nnUNetTrainerSRFocal_smoke(ShortSchedule, nnUNetTrainerSRFocal):
    pass


class nnUNetTrainerFocalSR_smoke(ShortSchedule, nnUNetTrainerFocalSR):
    pass
