"""``<Trainer>_demo``: the short schedule ``nnunet-tavr demo`` trains on CPU (or GPU) in minutes.

The loss, network and everything else are the parent trainer's; only the number of epochs and
iterations shrink (30 epochs x 25 training iterations x 5 validation iterations) and test-time
mirroring is off (one forward pass per tile in validation and prediction). Unlike ``_smoke``
(:class:`nnunet_tavr.trainers.schedules.Smoke`), the fold validation runs right after training, as
in nnU-Net. Dice after such a run reflects minutes of training, not the method's quality: use the
parent trainers for real work.
"""

from __future__ import annotations

from nnunet_tavr.trainers.schedules import NoTestTimeMirroring, ShortSchedule
from nnunet_tavr.trainers.variants.loss_trainers import nnUNetTrainerDiceCE, nnUNetTrainerFocalSR


class DemoSchedule(NoTestTimeMirroring, ShortSchedule):
    num_epochs = 30
    num_iterations_per_epoch = 25
    num_val_iterations_per_epoch = 5


class nnUNetTrainerFocalSR_demo(DemoSchedule, nnUNetTrainerFocalSR):
    pass


class nnUNetTrainerDiceCE_demo(DemoSchedule, nnUNetTrainerDiceCE):
    pass
