"""Augmentation mixins for ``nnUNetTrainer`` subclasses (each overrides only the hook it changes).

- :class:`LateralityPreservingMirroring`: nnU-Net mirrors along every axis in training and at test
  time. Mirroring along the patient's left-right axis swaps the sides of the anatomy but not the
  labels, so a network can no longer tell ``iliac_artery_left`` from ``iliac_artery_right`` (or the
  left from the right atrium, the left from the right coronary cusp): every dataset of this project
  has such classes. This mixin mirrors along the other axes only, in training and at test time.
- :class:`LightSpatialAugmentation`: no rotation, no scaling and no mirroring; nnU-Net's intensity
  augmentations stay. For short runs on data with little pose variation (the demo's phantoms).

The left-right axis: nnU-Net reads images as (z, y, x) arrays (x the image's first axis, the
patient's left-right on axial CT) and reorders their axes by the plans' ``transpose_forward``; the
mirror axes count spatial axes of the transposed patch (the last two for 2-D configurations).
"""

from __future__ import annotations

#: Array axis (z, y, x) of the patient's left-right direction on axial CT.
LATERAL_ARRAY_AXIS = 2


def lateral_axis(transpose_forward, patch_dims: int) -> int | None:
    """The spatial axis of nnU-Net's patches that is the patient's left-right, or ``None`` when a
    2-D configuration's slices do not contain it."""
    position = list(transpose_forward).index(LATERAL_ARRAY_AXIS)
    if patch_dims == 3:
        return position
    return position - 1 if position > 0 else None


class LateralityPreservingMirroring:
    """Mirror along every axis but the patient's left-right one (see the module docstring)."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        lateral = lateral_axis(self.plans_manager.transpose_forward, len(self.configuration_manager.patch_size))
        if mirror_axes is not None:
            mirror_axes = tuple(a for a in mirror_axes if a != lateral) or None
        if self.inference_allowed_mirroring_axes is not None:
            kept = tuple(a for a in self.inference_allowed_mirroring_axes if a != lateral)
            self.inference_allowed_mirroring_axes = kept or None
        return rotation, dummy_2d, initial_patch, mirror_axes


class LightSpatialAugmentation:
    """No rotation, scaling or mirroring in training; intensity augmentations unchanged."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return rotation, dummy_2d, initial_patch, None

    @classmethod
    def get_training_transforms(cls, *args, **kwargs):
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

        transforms = super().get_training_transforms(*args, **kwargs)
        for step in transforms.transforms:
            if isinstance(step, SpatialTransform):
                step.p_rotation = 0.0
                step.p_scaling = 0.0
        return transforms
