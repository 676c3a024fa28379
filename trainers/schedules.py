"""Training-length mixins for ``nnUNetTrainer`` subclasses.

``ShortSchedule`` sets nnU-Net's epoch and iteration counts from class attributes after
``nnUNetTrainer.__init__`` has set its defaults (1000 epochs x 250 iterations), e.g. for CPU smoke
runs: ``class nnUNetTrainerFocalSR_smoke(ShortSchedule, nnUNetTrainerFocalSR): pass``. Such runs also
skip test-time mirroring (``test_time_mirroring = False``), which otherwise dominates their time.
"""

from __future__ import annotations

import torch


class ShortSchedule:
    """Mixin: ``num_epochs`` x ``num_iterations_per_epoch`` (+ ``num_val_iterations_per_epoch``).

    Put it first in the bases so its ``__init__`` runs around the trainer's. The signature is
    nnU-Net's, which nnU-Net needs to re-create the trainer from a checkpoint.
    """

    num_epochs: int = 2
    num_iterations_per_epoch: int = 3
    num_val_iterations_per_epoch: int = 2
    #: mirror at test time (nnU-Net's default). Off for smoke runs: the final validation and
    #: nnUNetv2_predict then run one forward pass per tile instead of eight (the choice is stored in
    #: the checkpoint as ``inference_allowed_mirroring_axes``).
    test_time_mirroring: bool = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # nnUNetTrainer.__init__ assigns its defaults to the instance; read ours from the class.
        cls = type(self)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = cls.num_epochs
        self.num_iterations_per_epoch = cls.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = cls.num_val_iterations_per_epoch

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.test_time_mirroring:
            self.inference_allowed_mirroring_axes = None  # training-time mirroring is unchanged
        return configured
