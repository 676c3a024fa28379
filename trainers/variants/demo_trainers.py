"""``<Trainer>_demo`` and ``<Trainer>_quick``: what ``nnunet-tavr demo`` trains, on a CPU in minutes.

Thin subclasses of the real trainers: the loss, the network family (nnU-Net's U-Net, built from
the plans the demo passes: ``nnUNetDemoPlans`` on a CPU) and the optimizer are the parent's. Only
the schedule and the augmentation strength differ:

- the schedule: ``_demo`` 25 epochs x 100 iterations (``_quick`` 12 x 100), 2 validation
  iterations per epoch (the online Dice of nnU-Net's log), no fold validation after training (the
  demo evaluates the test set; ``nnUNetv2_train ... --val`` validates on demand), no test-time
  mirroring (one forward pass per tile);
- light augmentation (:class:`~nnunet_tavr.trainers.augmentation.LightSpatialAugmentation`): the
  phantoms share one pose, so rotation, scaling and mirroring only slow a short run down.

What they reach on the demo's phantoms, and why these choices: docs/demo.md. These numbers are
minutes of CPU training on phantoms: use the parent trainers for real work.
"""

from __future__ import annotations

from nnunet_tavr.trainers.augmentation import LightSpatialAugmentation
from nnunet_tavr.trainers.schedules import NoTestTimeMirroring, ShortSchedule, ValidateOnDemand
from nnunet_tavr.trainers.variants.loss_trainers import nnUNetTrainerDiceCE, nnUNetTrainerFocalSR


class DemoSchedule(LightSpatialAugmentation, ValidateOnDemand, NoTestTimeMirroring, ShortSchedule):
    num_epochs = 25
    num_iterations_per_epoch = 100
    num_val_iterations_per_epoch = 2


class QuickSchedule(DemoSchedule):
    num_epochs = 12


class nnUNetTrainerFocalSR_demo(DemoSchedule, nnUNetTrainerFocalSR):
    pass


class nnUNetTrainerDiceCE_demo(DemoSchedule, nnUNetTrainerDiceCE):
    pass


class nnUNetTrainerFocalSR_quick(QuickSchedule, nnUNetTrainerFocalSR):
    pass


class nnUNetTrainerDiceCE_quick(QuickSchedule, nnUNetTrainerDiceCE):
    pass
