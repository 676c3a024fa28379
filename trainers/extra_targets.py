"""A mixin for trainers whose targets carry channels beyond the segmentation.

The skeleton recall trainers add the skeleton as a second target channel, the heatmap trainers
the landmarks' centres: the loss needs them, but nnU-Net's ``validation_step`` reads the target as
a label map (its online Dice). :class:`ExtraTargetChannels` hands ``validation_step`` channel 0
and lets the loss still see every channel.
"""

from __future__ import annotations

import contextlib


class ExtraTargetChannels:
    """``validation_step`` on the segmentation channel; the loss on the whole target."""

    @staticmethod
    def segmentation_channel(target):
        """Channel 0 of one target tensor, as ``validation_step`` expects it."""
        return target[:, :1]

    def validation_step(self, batch: dict) -> dict:
        target = batch["target"]
        seg = self.segmentation_channel
        seg_only = [seg(t) for t in target] if isinstance(target, list) else seg(target)
        with self._loss_sees(target):
            return super().validation_step({**batch, "target": seg_only})

    @contextlib.contextmanager
    def _loss_sees(self, target):
        """Within the block, ``self.loss(output, anything)`` is evaluated against ``target``."""
        loss = self.loss
        self.loss = lambda output, _seg_only: loss(output, target)
        try:
            yield
        finally:
            self.loss = loss
