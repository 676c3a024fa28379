"""Learning-rate schedules stepped the way nnU-Net steps them: once per epoch, given the epoch.

``nnUNetTrainer.on_train_epoch_start`` calls ``lr_scheduler.step(current_epoch)``, so a schedule here
is a closed-form function of the epoch (resuming from a checkpoint needs no scheduler state), like
nnU-Net's own :class:`nnunetv2.training.lr_scheduler.polylr.PolyLRScheduler`.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler

__all__ = ["WarmupCosineLRScheduler", "warmup_cosine_lr"]


def warmup_cosine_lr(epoch: int, peak_lr: float, warmup_epochs: int, max_epochs: int, final_lr: float = 0.0) -> float:
    """Learning rate at ``epoch`` (0-based): linear warm-up to ``peak_lr``, then cosine decay.

    During warm-up the rate rises linearly, ``peak_lr * (epoch + 1) / (warmup_epochs + 1)``, so the
    first epoch already trains (at a small rate).  From ``warmup_epochs`` on it follows half a cosine
    from ``peak_lr`` down to ``final_lr`` at ``max_epochs``.
    """
    if epoch < warmup_epochs:
        return peak_lr * (epoch + 1) / (warmup_epochs + 1)
    span = max(1, max_epochs - warmup_epochs)
    progress = min(1.0, (epoch - warmup_epochs) / span)
    return final_lr + 0.5 * (peak_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLRScheduler(_LRScheduler):
    """Per-epoch linear warm-up plus cosine decay (see :func:`warmup_cosine_lr`).

    ``step(epoch)`` sets the rate for that epoch; ``step()`` without an argument advances an internal
    counter, as nnU-Net's ``PolyLRScheduler`` does.
    """

    def __init__(self, optimizer: Optimizer, peak_lr: float, warmup_epochs: int, max_epochs: int,
                 final_lr: float = 0.0):
        self.peak_lr = float(peak_lr)
        self.warmup_epochs = int(warmup_epochs)
        self.max_epochs = int(max_epochs)
        self.final_lr = float(final_lr)
        self.ctr = 0
        super().__init__(optimizer, -1)

    def step(self, current_step: int | None = None) -> None:  # noqa: D102 - nnU-Net's signature
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = warmup_cosine_lr(current_step, self.peak_lr, self.warmup_epochs, self.max_epochs, self.final_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr
