"""``nnunet-tavr landmarks``: reading points back from nnU-Net's outputs, errors, the landmark
comparison's statistics, and ``measure`` with hinge points on a cusped phantom."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from conftest import bin_path
from nnunet_tavr.geometry import angle_deg, index_to_world
from nnunet_tavr.io import Geometry, write_array
from nnunet_tavr.landmarks.extract import case_points, heatmap_points, segmentation_points

SPACING = (2.0, 1.5, 1.0)
GEOMETRY = Geometry(shape=(20, 24, 30), spacing=SPACING, origin=(-12.0, 30.0, 7.5), direction=(0, -1, 0, 1, 0, 0, 0, 0, 1))
POINTS = {1: np.array([8.3, 11.6, 14.2]), 2: np.array([12.0, 5.25, 20.7]), 3: np.array([4.6, 18.1, 9.9])}  # indices (z, y, x)


def channel_softmax_of_heatmaps(sigma_mm=2.0):
    """What nnU-Net saves for a heatmap network: the softmax over channels of (z_0, z_1, z_2, z_3),
    z_0 a free reference map and z_l a Gaussian log-heatmap around POINTS[l] (plus z_0)."""
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(GEOMETRY.shape, SPACING)], indexing="ij")
    z0 = rng.normal(0, 2, GEOMETRY.shape)
    logits = [z0]
    for value in (1, 2, 3):
        c = POINTS[value] * SPACING
        logits.append(z0 + 12.0 - sum((g - ci) ** 2 for g, ci in zip(grids, c)) / (2 * sigma_mm**2))
    z = np.stack(logits)
    e = np.exp(z - z.max(0))
    return (e / e.sum(0)).astype(np.float32)


def test_heatmap_points_read_back_the_logit_difference_sub_voxel():
    found = heatmap_points(channel_softmax_of_heatmaps(), SPACING, refine_mm=5.0)
    for value, idx in POINTS.items():
        err_mm = np.linalg.norm((found[value][0] - idx) * SPACING)
        assert err_mm < 0.25, (value, err_mm)  # voxels of 1-2 mm
        assert 0.5 < found[value][1] <= 1.0


def test_heatmap_peak_is_the_mode_not_one_spurious_bright_voxel():
    # a regression heatmap: a broad mode of logit 0.6 at the landmark, and one corner voxel at 1.0
    # (what a briefly trained MSE network produced); the brightest voxel alone is the corner
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(GEOMETRY.shape, SPACING)], indexing="ij")
    heat = 0.6 * np.exp(-sum((g - c) ** 2 for g, c in zip(grids, POINTS[1] * SPACING)) / (2 * 3.0**2))
    heat[0, -1, -1] = 1.0
    z = np.stack([np.zeros(GEOMETRY.shape), heat])
    probs = np.exp(z) / np.exp(z).sum(0)
    found = heatmap_points(probs, SPACING, refine_mm=4.0)[1][0]
    assert np.linalg.norm((found - POINTS[1]) * SPACING) < 1.0


def test_segmentation_points_are_centres_of_mass_of_the_largest_component():
    seg = np.zeros((10, 10, 10), np.uint8)
    seg[2:5, 2:5, 2:5] = 1
    seg[9, 9, 9] = 1  # a stray voxel
    found = segmentation_points(seg, [1, 2])
    np.testing.assert_allclose(found[1], [3, 3, 3])
    assert 2 not in found


def test_case_points_in_world_coordinates_and_the_cli(tmp_path):
    pred = tmp_path / "pred"
    seg = np.zeros(GEOMETRY.shape, np.uint8)
    write_array(seg, GEOMETRY, pred / "c1.nii.gz")
    np.savez_compressed(pred / "c1.npz", probabilities=channel_softmax_of_heatmaps())
    cp = case_points(pred / "c1.nii.gz", "heatmap")
    for value, name in ((1, "RCC"), (2, "LCC"), (3, "NCC")):
        expected = index_to_world(POINTS[value], SPACING, GEOMETRY.origin, GEOMETRY.direction)
        assert np.linalg.norm(np.subtract(cp.world[name], expected)) < 0.25
    # a reference 1 mm off along x for RCC, exact for the others
    ref = {"cases": {"c1": {n: {"world_xyz_mm": (np.array(cp.world[n]) + ([1.0, 0, 0] if n == "RCC" else 0)).tolist()}
                            for n in ("RCC", "LCC", "NCC")}}}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    out = tmp_path / "out"
    proc = subprocess.run([bin_path("nnunet-tavr"), "landmarks", str(pred), "-o", str(out), "--mode", "heatmap",
                           "--reference", str(tmp_path / "ref.json"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    errors = json.loads((out / "errors.json").read_text())["summary"]
    assert errors["RCC"]["median_mm"] == pytest.approx(1.0, abs=1e-3) and errors["LCC"]["max_mm"] < 1e-3
    assert errors["all"]["share_under_2mm"] == 1.0 and errors["all"]["n"] == 3
    assert (out / "figures" / "c1.png").is_file() and (out / "landmarks.csv").is_file()
    # unknown trainer in auto mode: a clear usage error, exit 2
    proc = subprocess.run([bin_path("nnunet-tavr"), "landmarks", str(pred), "-o", str(tmp_path / "o2")], capture_output=True, text=True)
    assert proc.returncode == 2 and "--trainer" in proc.stderr


def test_landmark_comparison_statistics():
    from nnunet_tavr.landmarks.compare import summarise

    rng = np.random.default_rng(1)
    records = []
    for fold in range(3):
        for case in range(6):
            base = rng.uniform(1, 3)
            for trainer, extra in (("A", 0.0), ("B", 1.0), ("C", 0.05)):
                records.append({"trainer": trainer, "split": "val", "fold": str(fold), "case": f"c{case}",
                                "error_RCC_mm": base + extra, "mean_error_mm": base + extra + rng.normal(0, 0.01)})
    records.append({"trainer": "A", "split": "val", "fold": "0", "case": "lost", "mean_error_mm": math.nan})
    s = summarise(records, ["A", "B", "C"], n_resamples=500)["val"]
    assert s["common_cases"] == 18
    a, b = s["trainers"]["A"], s["trainers"]["B"]
    assert a["ci"][0] <= a["mean_mm"] <= a["ci"][1] and b["mean_mm"] - a["mean_mm"] == pytest.approx(1.0, abs=0.02)
    ab = next(t for t in s["tests"] if (t["a"], t["b"]) == ("A", "B"))
    assert ab["p_holm"] < 0.01 and ab["significant"] and ab["p_holm"] >= ab["p"]


@pytest.fixture(scope="module")
def cusped_case(tmp_path_factory):
    from nnunet_tavr.phantom import make_subject, write_subject

    tmp = tmp_path_factory.mktemp("measure_hinge")
    ph = make_subject(seed=9101, aortic_sinuses=True, shape=(200, 160, 160), spacing=1.5)
    write_subject(ph, tmp / "s")
    write_array(ph.labels, ph.geometry, tmp / "seg.nii.gz")
    return tmp, ph


@pytest.mark.parametrize("source", ["cusps", "hinge-points", None])
def test_measure_uses_the_hinge_plane(cusped_case, source):
    tmp, ph = cusped_case
    extra = {"cusps": ["--cusps", str(tmp / "s")], "hinge-points": ["--hinge-points", str(tmp / "s" / "truth.json")], None: []}[source]
    out = tmp / f"m_{source}"
    proc = subprocess.run([bin_path("nnunet-tavr"), "measure", str(tmp / "seg.nii.gz"), "-o", str(out), "--no-figure", *extra],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "measurements.json").read_text())
    a, t = m["annulus"], ph.truth
    assert angle_deg(a["normal"]["value"], t["annulus_normal"]) < 2.0
    assert abs(a["min_diameter"]["value"] - t["annulus_min_diameter_mm"]) < 1.0
    assert abs(a["max_diameter"]["value"] - t["annulus_max_diameter_mm"]) < 1.0
    if source is None:
        assert a["plane_used"]["value"] == "annulus_label" and "hinge_points" not in m
    else:
        assert a["plane_used"]["value"] == "hinge_points"
        assert a["label_plane_angle"]["value"] < 2.0
        h = m["hinge_points"]
        for name, long in (("RCC", "right_coronary_cusp"), ("LCC", "left_coronary_cusp"), ("NCC", "non_coronary_cusp")):
            assert np.linalg.norm(np.subtract(h[name]["value"], t["hinge_points"][long]["mm"])) < 1.5
            assert abs(h[f"{name}_height"]["value"]) < 1.5
