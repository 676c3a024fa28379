"""Per-class skeleton targets and the transform that feeds them to nnU-Net's pipeline."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest
import torch
from scipy import ndimage

from nnunet_tavr.trainers.skeletons import SkeletonTargetTransform, _dilate, class_skeleton, skeleton_targets


def tube(shape=(40, 40, 40), radius=4.0) -> np.ndarray:
    """A bent tube (an L of two cylinders), like an iliac artery."""
    z, y, x = np.indices(shape)
    a = ((y - 12) ** 2 + (x - 20) ** 2 <= radius ** 2) & (z >= 5) & (z <= 30)
    b = ((z - 30) ** 2 + (x - 20) ** 2 <= radius ** 2) & (y >= 12) & (y <= 34)
    return a | b


def is_one_voxel_thin(skel: np.ndarray) -> bool:
    # no 2x2x2 block is fully on, and removing nothing thicker than a voxel: every voxel of a thin
    # curve has an empty 6-neighbour on both sides along at least two axes
    blocks = skel[:-1, :-1, :-1] & skel[1:, :-1, :-1] & skel[:-1, 1:, :-1] & skel[:-1, :-1, 1:] \
        & skel[1:, 1:, :-1] & skel[1:, :-1, 1:] & skel[:-1, 1:, 1:] & skel[1:, 1:, 1:]
    return not blocks.any() and ndimage.binary_erosion(skel).sum() == 0


def test_tube_skeleton_is_inside_thin_and_connected():
    mask = tube()
    skel = class_skeleton(mask)
    assert skel.any()
    assert not (skel & ~mask).any()
    assert is_one_voxel_thin(skel)
    assert skel.sum() < 0.1 * mask.sum()
    # a tube's skeleton is one connected curve (26-connectivity)
    assert cc3d.connected_components(skel, connectivity=26).max() == 1


@pytest.mark.parametrize("thickness", [1, 2, 3])
def test_thin_slab_keeps_a_non_empty_skeleton(thickness):
    # scikit-image's 3D thinning deletes 2- and 3-voxel plates completely; we keep their deepest voxel
    slab = np.zeros((20, 30, 30), bool)
    slab[8:8 + thickness, 5:25, 5:25] = True
    skel = class_skeleton(slab)
    assert skel.any() and not (skel & ~slab).any()


def test_every_component_keeps_a_skeleton_voxel():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:8, 2:8, 2:8] = True  # a cube: thins to nothing in scikit-image
    mask[12:18, 12:18, 12:18] = True
    skel = class_skeleton(mask)
    labels = ndimage.label(mask)[0]
    assert set(np.unique(labels[skel])) == {1, 2}
    # a cube's stand-in is its deepest voxel: as far from the background as any voxel of the cube
    depth = ndimage.distance_transform_edt(mask)
    for component in (1, 2):
        kept = skel & (labels == component)
        assert kept.sum() == 1 and depth[kept].max() == depth[labels == component].max()


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_tube_dilation_matches_scipy(ndim, iterations):
    mask = np.random.default_rng(ndim * 10 + iterations).random((15,) * ndim) > 0.97
    mask[(0,) * ndim] = True  # a seed on the border: the outside counts as background
    cross = ndimage.generate_binary_structure(ndim, 1)
    np.testing.assert_array_equal(_dilate(mask, iterations), ndimage.binary_dilation(mask, cross, iterations))


def test_per_class_skeletons_are_disjoint_subsets_and_the_slab_survives():
    """An aorta-like cylinder with a 2-voxel valve slab across it: each class gets its own skeleton,
    labelled with the class, inside the class."""
    seg = np.zeros((40, 30, 30), np.int16)
    cyl = tube((40, 30, 30), radius=6)[..., :30]
    seg[cyl] = 1
    seg[(seg == 1) & (np.indices(seg.shape)[0] >= 18) & (np.indices(seg.shape)[0] < 20)] = 4
    out = skeleton_targets(seg, tube_iterations=0)
    assert out.dtype == seg.dtype and out.shape == seg.shape
    for c in (1, 4):
        assert (out == c).any(), f"class {c} lost its skeleton"
        assert not ((out == c) & (seg != c)).any(), f"skeleton of class {c} leaves the class"
    assert set(np.unique(out)) <= {0, 1, 4}


def test_tube_is_the_dilated_skeleton_clipped_to_its_class():
    seg = np.zeros((40, 40, 40), np.int16)
    seg[tube()] = 7
    thin = skeleton_targets(seg, tube_iterations=0) == 7
    tubed = skeleton_targets(seg, tube_iterations=2) == 7
    assert (thin <= tubed).all() and tubed.sum() > 3 * thin.sum()
    assert not (tubed & (seg != 7)).any()
    expected = ndimage.binary_dilation(thin, ndimage.generate_binary_structure(3, 1), iterations=2) & (seg == 7)
    np.testing.assert_array_equal(tubed, expected)
    # the tube of a connected skeleton is connected
    assert cc3d.connected_components(tubed, connectivity=6).max() == 1


def test_labels_ignore_label_and_empty_input():
    seg = np.zeros((30, 30, 30), np.int16)
    seg[tube((30, 30, 30), 3)] = 2
    seg[:3] = 9  # ignore label
    assert not (skeleton_targets(seg, ignore_label=9) == 9).any()
    assert not skeleton_targets(seg, labels=[1]).any()
    assert not skeleton_targets(np.zeros((5, 5, 5), np.int16)).any()
    assert not skeleton_targets(-np.ones((5, 5, 5), np.int16)).any()  # nnU-Net's -1 padding
    with pytest.raises(ValueError, match="integer"):
        skeleton_targets(seg.astype(float))
    with pytest.raises(ValueError, match="2D or 3D"):
        skeleton_targets(seg[None])


def test_2d_label_maps_work():
    seg = np.zeros((30, 30), np.int16)
    seg[10:20, 3:27] = 3
    skel = skeleton_targets(seg, tube_iterations=0)
    assert (skel == 3).sum() >= 15 and not ((skel > 0) & (seg != 3)).any()


def test_transform_appends_a_channel_and_survives_deep_supervision_downsampling():
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    seg = np.zeros((40, 40, 40), np.int16)
    seg[tube()] = 6
    sample = {"image": torch.zeros(1, 40, 40, 40), "segmentation": torch.from_numpy(seg)[None]}
    skeletons = SkeletonTargetTransform()
    out = ComposeTransforms([skeletons, DownsampleSegForDSTransform([[1, 1, 1], [0.5, 0.5, 0.5]])])(**sample)
    full, half = out["segmentation"]
    assert full.shape == (2, 40, 40, 40) and half.shape == (2, 20, 20, 20)
    assert full.dtype == torch.int16
    torch.testing.assert_close(full[0], torch.from_numpy(seg))
    np.testing.assert_array_equal(full[1].numpy(), skeleton_targets(seg, coarsen=skeletons.coarsen))
    assert (half[1] == 6).any() and not ((half[1] == 6) & (half[0] != 6)).any()


@pytest.mark.parametrize("coarsen", [2, 3])
def test_coarsened_thinning_stays_inside_near_the_exact_skeleton_and_keeps_slabs(coarsen):
    mask = tube()
    exact = class_skeleton(mask)
    coarse = class_skeleton(mask, coarsen=coarsen)
    assert coarse.any() and not (coarse & ~mask).any()
    # every coarse skeleton voxel lies within ~coarsen voxels of the exact skeleton, and vice versa
    assert ndimage.distance_transform_edt(~exact)[coarse].max() <= 2 * coarsen
    assert ndimage.distance_transform_edt(~coarse)[exact].max() <= 2 * coarsen
    assert cc3d.connected_components(coarse, connectivity=26).max() == 1
    slab = np.zeros((20, 30, 30), bool)
    slab[8:10, 5:25, 5:25] = True
    assert (class_skeleton(slab, coarsen=coarsen) & slab).any()
    with pytest.raises(ValueError, match="coarsen"):
        class_skeleton(mask, coarsen=0)


def test_coarsened_targets_are_tubes_inside_their_class():
    seg = np.zeros((40, 40, 40), np.int16)
    seg[tube()] = 6
    exact = skeleton_targets(seg, coarsen=1)
    coarse = skeleton_targets(seg, coarsen=2)
    assert not ((coarse > 0) & (coarse != seg)).any()
    # about as wide as the exact tube: same order of voxel count
    assert 0.5 < (coarse > 0).sum() / (exact > 0).sum() < 2.5
