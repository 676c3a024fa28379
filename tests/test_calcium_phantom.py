"""The phantom's calcium (nnunet_tavr/phantom/calcium.py): opt-in, its own generator, nodules where
the truth says, with their true voxels, volumes and regions; the lumen varies between subjects.
(Byte-identity of subjects without the option: tests/test_identity.py.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from nnunet_tavr.label_derivation.calcium_regions import REGION_ID, REGIONS, AnnulusFrame, nearest_regions, region_map
from nnunet_tavr.phantom import make_subject, write_dataset
from nnunet_tavr.phantom.calcium import DIAMETER_MM, LUMEN_HU, MASK_FILE, WALL_MM
from nnunet_tavr.phantom.label_map import ANNULUS_MM
from nnunet_tavr.phantom.structure import AORTA, ILIAC, LEFT_VENTRICLE

GRID = dict(shape=(100, 80, 80), spacing=3.0)


@pytest.fixture(scope="module")
def pair():
    return make_subject(31), make_subject(31, calcium=True)


def test_option_off_adds_nothing(pair):
    plain, _ = pair
    assert plain.calcium is None and "calcium" not in plain.truth


def test_calcium_leaves_the_shared_generator_alone(pair):
    """Same seed: same masks and labels; the CT differs only in the blood (the contrast) and
    around the deposits."""
    plain, calc = pair
    for name in plain.masks:
        assert np.array_equal(plain.masks[name], calc.masks[name]), name
    assert np.array_equal(plain.labels, calc.labels)
    blood = plain.masks[AORTA] | plain.masks[LEFT_VENTRICLE] | plain.masks[ILIAC["left"]] | plain.masks[ILIAC["right"]]
    near = ndimage.binary_dilation(calc.calcium > 0, iterations=4)
    same = ~blood & ~near
    assert np.array_equal(plain.ct[same], calc.ct[same])
    lumen = calc.truth["calcium"]["lumen_hu"]
    for mask, hu in ((plain.masks[AORTA] | plain.masks[LEFT_VENTRICLE], lumen["aorta"]),
                     (plain.masks[ILIAC["left"]] | plain.masks[ILIAC["right"]], lumen["iliac_arteries"])):
        shift = calc.ct[mask & ~near].astype(int) - plain.ct[mask & ~near]  # the same noise, another contrast
        assert np.all(np.abs(shift - (hu - plain.truth["contrast_hu"])) <= 1.0)
    assert calc.truth["contrast_hu"] == pytest.approx(lumen["aorta"], abs=0.1)


def test_deterministic_per_seed(pair):
    _, calc = pair
    again = make_subject(31, calcium=True)
    assert np.array_equal(again.ct, calc.ct) and np.array_equal(again.calcium, calc.calcium)
    assert again.truth == calc.truth


def test_nodules_match_their_truth(pair):
    _, calc = pair
    truth = calc.truth["calcium"]
    nodules = truth["nodules"]
    assert len(nodules) >= 8
    assert {n["region"] for n in nodules} >= {"valve", "annulus", "aorta", "iliac_artery_left", "iliac_artery_right"}
    voxel = float(np.prod(calc.spacing))
    lumen = truth["lumen_hu"]
    for n in nodules:
        true = calc.calcium == n["id"]
        assert true.sum() == n["voxels"] and n["voxel_volume_mm3"] == pytest.approx(n["voxels"] * voxel)
        assert n["volume_mm3"] == pytest.approx(4 / 3 * math.pi * np.prod(n["semi_axes_mm"]), rel=5e-3)  # semi-axes rounded to 1 um
        assert DIAMETER_MM[0] - 1e-6 <= n["diameter_mm"] <= DIAMETER_MM[1] + 1e-6
        expected_lumen = lumen["iliac_arteries"] if n["region"].startswith("iliac") else lumen["aorta"]
        assert n["hu"] - expected_lumen >= 350 - 1e-6
        if n["voxels"] >= 8:  # fully calcified voxels carry the nodule's intensity (plus noise, minus blur)
            assert calc.ct[true].max() > expected_lumen + 0.6 * (n["hu"] - expected_lumen)
        centre = np.asarray(n["centre_mm"]) / calc.spacing
        if n["voxels"]:
            assert np.linalg.norm(np.argwhere(true).mean(0) - centre) < 1.0
    totals = truth["volume_by_region_mm3"]
    assert sum(totals.values()) == pytest.approx(truth["total_volume_mm3"], abs=0.01)


def test_regions_by_construction(pair):
    """Each nodule's region is the calcium rule's region holding most of its true voxels (exact
    annulus plane), and no true voxel lies beyond the wall band the rule looks in."""
    _, calc = pair
    # The annulus by construction, from the truth.
    t = calc.truth
    frame = AnnulusFrame.make(t["annulus_center_mm"], t["annulus_normal"], t["annulus_major_radius_mm"] + ANNULUS_MM / 2)
    regions = region_map(calc.labels, calc.spacing, frame)
    near, dist = nearest_regions(regions, calc.spacing)
    for n in t["calcium"]["nodules"]:
        true = calc.calcium == n["id"]
        if not true.any():
            continue
        votes = np.bincount(near[true], minlength=len(REGIONS) + 1)
        assert votes[REGION_ID[n["region"]]] >= 0.7 * true.sum()
        assert dist[true].max() <= WALL_MM


def test_lumen_varies_and_calcium_free_subjects():
    lumens = []
    for seed in range(40, 46):
        ph = make_subject(seed, calcium=True, calcium_nodules=0, **GRID)
        c = ph.truth["calcium"]
        assert c["nodules"] == [] and not ph.calcium.any() and c["total_volume_mm3"] == 0
        assert LUMEN_HU[0] <= c["lumen_hu"]["aorta"] <= LUMEN_HU[1]
        assert 0.8 * c["lumen_hu"]["aorta"] - 1 <= c["lumen_hu"]["iliac_arteries"] <= c["lumen_hu"]["aorta"] + 1e-6
        lumens.append(c["lumen_hu"]["aorta"])
    # wider than a fixed threshold can serve: some lumen is above what calcium can be below
    assert max(lumens) - min(lumens) > 150


def test_chestless_and_rotated_subjects_place_what_they_can():
    ph = make_subject(47, calcium=True, heart=False, **GRID)
    assert {n["region"] for n in ph.truth["calcium"]["nodules"]} <= {"aorta", "iliac_artery_left", "iliac_artery_right"}
    ph = make_subject(48, calcium=True, calcium_nodules=12, shape=(120, 192, 192), spacing=(2.5, 1.25, 1.25), rotation_deg=(10, -15, 20))
    assert 8 <= len(ph.truth["calcium"]["nodules"]) <= 12


def test_writer_and_cli(tmp_path):
    from nnunet_tavr.io import read_array

    out = tmp_path / "ph"
    ids = write_dataset(out, 2, seed=5, calcium=True, calcium_free=[1], progress=False, **GRID)
    truth = json.loads((out / ids[0] / "truth.json").read_text())
    mask, geometry = read_array(out / ids[0] / MASK_FILE)
    ph = make_subject(5 * 100003, calcium=True, **GRID)
    assert np.array_equal(mask, ph.calcium) and truth["calcium"]["mask_file"] == MASK_FILE
    assert json.loads((out / ids[1] / "truth.json").read_text())["calcium"]["nodules"] == []
    stamp = (out / ids[0] / "ct.nii.gz").stat().st_mtime_ns
    write_dataset(out, 2, seed=5, calcium=True, calcium_free=[1], progress=False, **GRID)  # resumes
    assert (out / ids[0] / "ct.nii.gz").stat().st_mtime_ns == stamp
    write_dataset(out, 2, seed=5, progress=False, **GRID)  # other options: rewritten without calcium
    assert "calcium" not in json.loads((out / ids[0] / "truth.json").read_text())
    cli = str(Path(sys.executable).with_name("nnunet-tavr"))
    bad = subprocess.run([cli, "phantom", str(tmp_path / "x"), "-n", "2", "--calcium-free", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--calcium-free needs --calcium" in bad.stderr
