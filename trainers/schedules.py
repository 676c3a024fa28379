"""Run-length mixins for ``nnUNetTrainer`` subclasses, and :class:`Smoke`, what ``_smoke`` means.

Each mixin overrides only the hook it changes and goes *before* the trainer in the bases:

- :class:`ShortSchedule`: fewer epochs and iterations (class attributes).
- :class:`NoTestTimeMirroring`: the checkpoint allows no test-time mirroring, so the fold validation
  and ``nnUNetv2_predict`` run one forward pass per tile (training-time mirroring is unchanged).
- :class:`ValidateOnDemand`: ``nnUNetv2_train`` ends after training; ``nnUNetv2_train ... --val``
  runs the fold validation.
- :class:`Smoke` = the three together at 2 epochs x 3 + 2 iterations: every ``<Trainer>_smoke``.
"""

from __future__ import annotations

import torch


class ShortSchedule:
    """Mixin: ``num_epochs`` x ``num_iterations_per_epoch`` (+ ``num_val_iterations_per_epoch``).

    ``nnUNetTrainer.__init__`` assigns its defaults (1000 epochs x 250 + 50 iterations) to the
    instance; this sets the class's values after it. The signature is nnU-Net's, which nnU-Net needs
    to re-create the trainer from a checkpoint.
    """

    num_epochs: int = 1000
    num_iterations_per_epoch: int = 250
    num_val_iterations_per_epoch: int = 50

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        cls = type(self)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = cls.num_epochs
        self.num_iterations_per_epoch = cls.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = cls.num_val_iterations_per_epoch


class NoTestTimeMirroring:
    """Mixin: no test-time mirroring (one forward pass per tile instead of up to eight).

    The choice is stored in the checkpoint (``inference_allowed_mirroring_axes = None``), so it holds
    for the final validation, for ``nnUNetv2_train ... --val`` and for ``nnUNetv2_predict`` (which
    then mirrors with or without ``--disable_tta``: never). Mirroring as a training augmentation is
    unchanged.
    """

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return configured


class ValidateOnDemand:
    """Mixin: no fold validation right after training; ``nnUNetv2_train ... --val`` runs it.

    ``nnUNetv2_train`` calls ``perform_actual_validation`` after ``run_training``, and alone with
    ``--val`` (which loads ``checkpoint_final.pth`` instead of training). The first is skipped (with a
    line in the training log), the second runs nnU-Net's validation unchanged.
    """

    #: set by ``on_train_end``: this process has just trained, so the validation is deferred
    _trained_in_this_process: bool = False

    def on_train_end(self) -> None:
        super().on_train_end()
        self._trained_in_this_process = True

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        if self._trained_in_this_process:
            self.print_to_log_file(
                f"{type(self).__name__}: fold validation skipped after training; run it with "
                "nnUNetv2_train ... --val (same arguments)")
            return
        super().perform_actual_validation(save_probabilities)


class Smoke(ValidateOnDemand, NoTestTimeMirroring, ShortSchedule):
    """What ``<Trainer>_smoke`` means, for every trainer of this project (loss, architecture, nnU-Net's).

    The smallest run that still goes through nnU-Net's whole training code with the trainer's own
    loss, targets, network and optimizer, for CPU smoke runs and CI:

    - **2 epochs x 3 training iterations x 2 validation iterations** (``ShortSchedule``), so data
      loading, augmentation (skeleton targets included), ``train_step``, ``validation_step``, the
      online Dice, checkpointing and the end of training all run;
    - **the network at its smallest width** where the trainer sets a width (SwinUNETR: feature size
      12, :class:`~nnunet_tavr.trainers.variants.architecture_trainers.SmokeSwinUNETR`); nnU-Net's
      U-Net takes its width from the plans and MONAI's VNet has none;
    - **no fold validation after training** (``ValidateOnDemand``): ``nnUNetv2_train ... --val``
      validates the fold on demand (``validation/`` and ``summary.json``, as nnU-Net writes them);
    - **no test-time mirroring** (``NoTestTimeMirroring``): ``--val`` and ``nnUNetv2_predict`` run
      one forward pass per tile.

    Why: on a 2-core CPU with the tiny test plans, the 2 x 3 training iterations take seconds and the
    fold validation (a sliding-window prediction of every validation case) is most of a run: for
    nnU-Net's U-Net 23 s of a 32 s run unmirrored, 115 s with nnU-Net's 8-fold test-time mirroring;
    for VNet 27 s unmirrored, for a width-12 SwinUNETR minutes. Mirroring is nnU-Net's own predictor
    code and flips tiles without changing their shape, so leaving it out loses no code of ours.
    """

    num_epochs = 2
    num_iterations_per_epoch = 3
    num_val_iterations_per_epoch = 2
