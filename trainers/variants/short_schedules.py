"""``<Trainer>_smoke`` for nnU-Net's default trainer and the loss trainers.

``_smoke`` means one thing for every trainer of this project: see
:class:`nnunet_tavr.trainers.schedules.Smoke` (2 epochs x 3 training x 2 validation iterations, no
fold validation after training, no test-time mirroring). For example::

    nnUNetv2_train 301 3d_fullres 0 -p nnUNetTinyPlans -tr nnUNetTrainerFocalSR_smoke -device cpu
    nnUNetv2_train 301 3d_fullres 0 -p nnUNetTinyPlans -tr nnUNetTrainerFocalSR_smoke -device cpu --val

The architecture trainers' ``_smoke`` twins are in ``architecture_trainers.py``.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tavr.trainers.schedules import Smoke
from nnunet_tavr.trainers.variants.loss_trainers import (
    nnUNetTrainerDiceCE,
    nnUNetTrainerFocal,
    nnUNetTrainerFocalSR,
    nnUNetTrainerSRDiceCE,
    nnUNetTrainerSRFocal,
)


class nnUNetTrainer_smoke(Smoke, nnUNetTrainer):
    pass


class nnUNetTrainerDiceCE_smoke(Smoke, nnUNetTrainerDiceCE):
    pass


class nnUNetTrainerFocal_smoke(Smoke, nnUNetTrainerFocal):
    pass


class nnUNetTrainerSRDiceCE_smoke(Smoke, nnUNetTrainerSRDiceCE):
    pass


class nnUNetTrainerSRFocal_smoke(Smoke, nnUNetTrainerSRFocal):
    pass


class nnUNetTrainerFocalSR_smoke(Smoke, nnUNetTrainerFocalSR):
    pass
