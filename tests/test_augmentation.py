"""Augmentation mixins: which axis is the patient's left-right, and what the light augmentation keeps."""

from __future__ import annotations

import pytest

from nnunet_tavr.trainers.augmentation import lateral_axis


@pytest.mark.parametrize("transpose, dims, expected", [
    ([0, 1, 2], 3, 2),   # isotropic CT: x stays the last axis
    ([2, 0, 1], 3, 0),   # x moved first (e.g. anisotropic along x)
    ([0, 1, 2], 2, 1),   # 2-D slices along z: (y, x), x is the second axis
    ([1, 0, 2], 2, 1),
    ([2, 0, 1], 2, None),  # slices along x: a 2-D patch holds no left-right axis
])
def test_lateral_axis(transpose, dims, expected):
    assert lateral_axis(transpose, dims) == expected


def test_light_augmentation_turns_rotation_and_scaling_off():
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_tavr.trainers.augmentation import LightSpatialAugmentation

    class Light(LightSpatialAugmentation, nnUNetTrainer):
        pass

    args = dict(patch_size=(32, 32, 32), rotation_for_DA=(-0.5, 0.5), deep_supervision_scales=None, mirror_axes=None,
                do_dummy_2d_data_aug=False)
    full = [t for t in nnUNetTrainer.get_training_transforms(**args).transforms if isinstance(t, SpatialTransform)][0]
    light = [t for t in Light.get_training_transforms(**args).transforms if isinstance(t, SpatialTransform)][0]
    assert full.p_rotation > 0 and full.p_scaling > 0
    assert light.p_rotation == 0 and light.p_scaling == 0
    n_full = len(nnUNetTrainer.get_training_transforms(**args).transforms)
    assert len(Light.get_training_transforms(**args).transforms) == n_full  # intensity augmentations kept


def test_every_3d_trainer_preserves_laterality():
    """Every dataset of the project has left/right classes (iliac arteries, atria, cusps): a 3-D
    trainer that mirrors along the left-right axis could not tell them apart. The 2-D SMP trainers
    of the fluoroscopy dataset (one class, the aortic root) keep nnU-Net's mirroring, and so does
    ``nnUNetTrainer_smoke``, nnU-Net's own trainer on a short schedule."""
    import importlib
    import inspect
    import pkgutil

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    import nnunet_tavr.trainers.variants as variants
    from nnunet_tavr.trainers.augmentation import LateralityPreservingMirroring

    found = []
    for info in pkgutil.iter_modules(variants.__path__):
        if info.name == "smp_trainers":
            continue
        module = importlib.import_module(f"{variants.__name__}.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, nnUNetTrainer) and name.startswith("nnUNetTrainer") and name not in ("nnUNetTrainer", "nnUNetTrainer_smoke"):
                found.append(name)
                assert issubclass(cls, LateralityPreservingMirroring), f"{module.__name__}.{name} mirrors left-right"
    assert len(found) > 20, found
