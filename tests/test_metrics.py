"""Metrics against hand-computed values: cubes and spheres with known overlap and surface distance."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_tavr.evaluation.metrics import (
    SegClass,
    case_metrics,
    classes_from_labels,
    image_diagonal_mm,
    label_indices,
    surface_distances,
    surface_points,
)


def surface(mask):
    """Independent reference: voxels removed by a face-connected erosion (outside = background)."""
    from scipy.ndimage import binary_erosion, generate_binary_structure

    return mask & ~binary_erosion(mask, generate_binary_structure(mask.ndim, 1), border_value=0)


def _cube(shape, start, size, value=1):
    a = np.zeros(shape, np.uint8)
    a[tuple(slice(s, s + size) for s in start)] = value
    return a


def _by_class(records):
    return {r["class"]: r for r in records}


def test_identical_masks_are_perfect():
    ref = _cube((12, 12, 12), (2, 2, 2), 6)
    (rec,) = case_metrics(ref, ref.copy(), [SegClass("c", (1,))], spacing=(2.0, 0.7, 0.7))
    assert rec["Dice"] == 1.0 and rec["IoU"] == 1.0
    assert rec["ASSD"] == 0.0 and rec["HD95"] == 0.0
    assert rec["n_ref"] == rec["n_pred"] == rec["TP"] == 216


def test_cube_shifted_one_voxel_along_the_finest_axis():
    # A 6^3 cube shifted by one voxel along z, the axis with the smallest spacing (0.5 mm).
    # Overlap 5*6*6 = 180 of 216: Dice = 360/432 = 5/6, IoU = 180/252 = 5/7.
    # Surface: 216 - 4^3 = 152 voxels each. The only surface voxels that are not also surface
    # voxels of the other cube are the 16 inner voxels of the face entering the other cube and the
    # 36 voxels of the face leaving it, and each is exactly 1 z-step = 0.5 mm from the other
    # surface (any lateral step costs >= 2 mm). So 52 of 152 distances are 0.5 mm, the rest 0:
    # ASSD = 2*52*0.5 / (2*152), and the 95th percentile of each direction is 0.5 mm.
    spacing = (0.5, 2.0, 3.0)
    ref = _cube((12, 12, 12), (2, 3, 3), 6)
    pred = _cube((12, 12, 12), (3, 3, 3), 6)
    (rec,) = case_metrics(ref, pred, [SegClass("c", (1,))], spacing)
    assert rec["Dice"] == pytest.approx(5 / 6)
    assert rec["IoU"] == pytest.approx(5 / 7)
    assert (rec["TP"], rec["FP"], rec["FN"]) == (180, 36, 36)
    assert rec["ASSD"] == pytest.approx(52 * 0.5 / 152)
    assert rec["HD95"] == pytest.approx(0.5)


def test_cube_shift_along_coarse_axis_uses_that_spacing():
    # Same shift along x with 3 mm spacing there and 5 mm elsewhere: the 52 moved surface voxels
    # are now 3 mm from the other surface (the coarse axes cost >= 5 mm).
    spacing = (5.0, 5.0, 3.0)
    ref = _cube((10, 10, 12), (2, 2, 2), 6)
    pred = _cube((10, 10, 12), (2, 2, 3), 6)
    assd, hd95 = surface_distances(ref > 0, pred > 0, spacing)
    assert assd == pytest.approx(52 * 3.0 / 152)
    assert hd95 == pytest.approx(3.0)


def test_concentric_spheres_anisotropic():
    # Spheres of radius 12 mm and 8 mm about the same centre on a (2, 1, 1) mm grid: every surface
    # point is ~4 mm from the other surface; voxelisation moves it by at most ~one voxel.
    spacing = np.array([2.0, 1.0, 1.0])
    shape = (20, 40, 40)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    r = np.sqrt((zz - 19.0) ** 2 + (yy - 19.5) ** 2 + (xx - 19.5) ** 2)
    ref = (r <= 12).astype(np.uint8)
    pred = (r <= 8).astype(np.uint8)
    (rec,) = case_metrics(ref, pred, [SegClass("c", (1,))], tuple(spacing))
    assert rec["ASSD"] == pytest.approx(4.0, abs=0.6)
    assert rec["HD95"] == pytest.approx(4.0, abs=1.1)
    assert rec["HD95"] >= rec["ASSD"] - 1e-9
    # Dice from the voxel counts, which approach the volume ratio of the two spheres.
    assert rec["Dice"] == pytest.approx(2 * pred.sum() / (ref.sum() + pred.sum()))
    assert rec["Dice"] == pytest.approx(2 * 8**3 / (12**3 + 8**3), abs=0.03)


def test_distances_match_brute_force_on_random_blobs():
    from scipy.ndimage import gaussian_filter
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    spacing = (2.5, 0.8, 1.3)
    ref = gaussian_filter(rng.random((14, 20, 18)), 2) > 0.5
    pred = gaussian_filter(rng.random((14, 20, 18)), 2) > 0.5
    assert ref.any() and pred.any()
    pts_ref = np.argwhere(surface(ref)) * spacing
    pts_pred = np.argwhere(surface(pred)) * spacing
    d = cdist(pts_pred, pts_ref)
    d_pr, d_rp = d.min(axis=1), d.min(axis=0)
    expected_assd = (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size)
    expected_hd95 = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
    assd, hd95 = surface_distances(ref, pred, spacing)
    assert assd == pytest.approx(expected_assd, rel=1e-5)
    assert hd95 == pytest.approx(expected_hd95, rel=1e-5)


def test_surface_points_match_erosion_surface():
    from scipy.ndimage import gaussian_filter

    mask = gaussian_filter(np.random.default_rng(1).random((9, 13, 11)), 1.5) > 0.5
    mask[0, :3, :3] = True  # touching the image border
    points = surface_points(np.flatnonzero(mask), mask.shape)
    assert sorted(map(tuple, points)) == sorted(map(tuple, np.argwhere(surface(mask))))


def test_label_indices_groups_every_label():
    a = np.array([[0, 3, 1], [1, 0, 3]], np.uint8)
    groups = label_indices(a)
    assert set(groups) == {1, 3}
    assert groups[1].tolist() == [2, 3] and groups[3].tolist() == [1, 5]


def test_far_island_counts_in_distances():
    # A one-voxel false island 40 voxels (40 mm) away: 1 of the prediction's surface voxels is 40 mm
    # off; HD95 ignores it (well under 5% of the surface), ASSD includes it.
    ref = _cube((60, 12, 12), (2, 2, 2), 6)
    pred = ref.copy()
    pred[48, 5, 5] = 1
    (rec,) = case_metrics(ref, pred, [SegClass("c", (1,))], (1.0, 1.0, 1.0))
    n_surface = 152
    assert rec["HD95"] == 0.0
    d = 48 - 7  # from the island to the top face of the cube at z = 7
    assert rec["ASSD"] == pytest.approx(d / (2 * n_surface + 1))
    assert rec["Dice"] == pytest.approx(2 * 216 / (216 + 217))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_agrees_with_monai():
    torch = pytest.importorskip("torch", reason="MONAI cross-check needs torch")
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(5)
    from scipy.ndimage import gaussian_filter

    spacing = (2.0, 0.75, 1.0)
    ref = gaussian_filter(rng.random((12, 24, 20)), 2) > 0.5
    pred = gaussian_filter(rng.random((12, 24, 20)), 2) > 0.5
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    y_hat = torch.from_numpy(pred[None, None].astype(np.float32))
    m_assd = compute_average_surface_distance(y_hat, y, symmetric=True, spacing=spacing).item()
    m_hd95 = compute_hausdorff_distance(y_hat, y, percentile=95, spacing=spacing).item()
    assd, hd95 = surface_distances(ref, pred, spacing)
    assert assd == pytest.approx(m_assd, rel=1e-4)
    assert hd95 == pytest.approx(m_hd95, rel=1e-4)


def test_empty_conventions():
    shape, spacing = (8, 10, 12), (3.0, 1.0, 2.0)
    ref = np.zeros(shape, np.uint8)
    ref[2:4, 2:5, 2:6] = 1
    pred = np.zeros(shape, np.uint8)
    classes = [SegClass("present", (1,)), SegClass("absent", (2,))]
    # class 1: reference only -> Dice 0, distances = image diagonal; class 2: absent -> NaN.
    recs = _by_class(case_metrics(ref, pred, classes, spacing))
    diag = np.sqrt((7 * 3.0) ** 2 + (9 * 1.0) ** 2 + (11 * 2.0) ** 2)
    assert image_diagonal_mm(shape, spacing) == pytest.approx(diag)
    assert recs["present"]["Dice"] == 0.0 and recs["present"]["IoU"] == 0.0
    assert recs["present"]["ASSD"] == pytest.approx(diag) and recs["present"]["HD95"] == pytest.approx(diag)
    assert all(np.isnan(recs["absent"][m]) for m in ("Dice", "IoU", "ASSD", "HD95"))
    # prediction only, with the NaN convention for distances
    recs = _by_class(case_metrics(pred, ref, classes, spacing, one_empty="nan"))
    assert recs["present"]["Dice"] == 0.0 and recs["present"]["n_pred"] == 24
    assert np.isnan(recs["present"]["ASSD"]) and np.isnan(recs["present"]["HD95"])
    with pytest.raises(ValueError, match="one_empty"):
        case_metrics(ref, pred, classes, spacing, one_empty="zero")


def test_several_labels_regions_and_2d_images():
    # Labels 1 and 2 side by side; a region (1, 2) is their union.
    ref = np.zeros((1, 20, 20), np.uint8)
    ref[0, 2:8, 2:8] = 1
    ref[0, 2:8, 8:14] = 2
    pred = ref.copy()
    pred[0, 2:8, 8:10] = 1  # two columns of label 2 predicted as label 1
    classes = classes_from_labels({"background": 0, "a": 1, "b": 2, "ab": [1, 2]})
    assert [c.name for c in classes] == ["a", "b", "ab"]
    recs = _by_class(case_metrics(ref, pred, classes, spacing=(999.0, 0.5, 0.5)))
    assert recs["a"]["Dice"] == pytest.approx(2 * 36 / (36 + 48))
    assert recs["b"]["Dice"] == pytest.approx(2 * 24 / (36 + 24))
    assert recs["ab"]["Dice"] == 1.0 and recs["ab"]["ASSD"] == 0.0
    # A (1, y, x) image is evaluated as 2d: the 999 mm dummy spacing never enters a distance;
    # label 1 grows by 2 columns (1 mm): its moved edge is 1 mm from the reference edge.
    assert recs["a"]["HD95"] == pytest.approx(1.0)
    assert recs["a"]["ASSD"] < 1.0


def test_shape_and_spacing_errors():
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        case_metrics(a, np.zeros((4, 4, 5), np.uint8), [SegClass("c", (1,))], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(a, a, [SegClass("c", (1,))], (1, 1))


def test_ignore_label_voxels_count_neither_way():
    ref = _cube((12, 12, 12), (2, 2, 2), 6)
    pred = ref.copy()
    ref[2:8, 2:8, 8:10] = 9  # "ignore" next to the cube
    pred[2:8, 2:8, 8:10] = 1  # predicted as class 1 there: not a false positive
    (rec,) = case_metrics(ref, pred, [SegClass("c", (1,))], (1.0, 1.0, 1.0), ignore_value=9)
    assert rec["Dice"] == 1.0 and rec["FP"] == 0 and rec["ASSD"] == 0.0
    (rec,) = case_metrics(ref, pred, [SegClass("c", (1,))], (1.0, 1.0, 1.0))
    assert rec["FP"] == 72 and rec["Dice"] < 1.0
