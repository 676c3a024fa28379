"""The phantoms behave like TotalSegmentator anatomy for the paper's rules, by construction."""

from __future__ import annotations

import json
import subprocess

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from conftest import bin_path
from nnunet_tavr.labels import LABELS
from nnunet_tavr.phantom import AORTA_PARTS, MASK_NAMES, make_subject, write_dataset

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def phantoms():
    return {seed: make_subject(seed) for seed in SEEDS}


def _cross_sections(ph, keep_parts, step=1.5, stop=60.0):
    """Aorta voxels per plane parallel to the annulus plane (slabs of one step), by distance."""
    centre = np.asarray(ph.truth["annulus_center_mm"])
    normal = np.asarray(ph.truth["annulus_normal"])
    idx = np.argwhere(np.isin(ph.aorta_part, keep_parts))
    s = (idx * np.asarray(ph.spacing) - centre) @ normal
    t = np.arange(0.0, stop, step)
    return t, np.array([np.count_nonzero(np.abs(s - x) <= step / 2) for x in t])


def test_masks_are_binary_and_aligned_with_the_ct(tmp_path):
    write_dataset(tmp_path, 1, seed=3, shape=(100, 80, 80), spacing=3.0, progress=False)
    ct = sitk.ReadImage(str(tmp_path / "s0000" / "ct.nii.gz"))
    assert ct.GetPixelID() == sitk.sitkInt16
    for name in MASK_NAMES:
        mask = sitk.ReadImage(str(tmp_path / "s0000" / "segmentations" / f"{name}.nii.gz"))
        assert mask.GetSize() == ct.GetSize()
        assert np.allclose(mask.GetSpacing(), ct.GetSpacing())
        assert np.allclose(mask.GetOrigin(), ct.GetOrigin())
        assert np.allclose(mask.GetDirection(), ct.GetDirection())
        values = np.unique(sitk.GetArrayViewFromImage(mask))
        assert set(values.tolist()) <= {0, 1}, name
    truth = json.loads((tmp_path / "s0000" / "truth.json").read_text())
    assert truth["spacing"] == [3.0, 3.0, 3.0]
    meta = (tmp_path / "meta.csv").read_text().splitlines()
    assert meta[0].split(";")[:2] == ["image_id", "age"] and meta[1].startswith("s0000;")


@pytest.mark.parametrize("seed", SEEDS)
def test_aorta_and_left_ventricle_touch_only_at_the_root(phantoms, seed):
    ph = phantoms[seed]
    lv, aorta = ph.masks["heart_ventricle_left"], ph.masks["aorta"]
    assert not np.any(lv & aorta)
    contact = aorta & ndimage.binary_dilation(lv, structure=np.ones((3, 3, 3), bool))
    assert contact.sum() > 50
    # Every contact voxel is aortic root: the rules' valve/annulus come from the root only.
    assert set(np.unique(ph.aorta_part[contact]).tolist()) == {AORTA_PARTS["root"]}


@pytest.mark.parametrize("seed", SEEDS)
def test_annulus_plane_is_oblique(phantoms, seed):
    normal = np.asarray(phantoms[seed].truth["annulus_normal"])
    assert np.isclose(np.linalg.norm(normal), 1.0)
    assert np.max(np.abs(normal)) < 0.95  # not aligned with any array axis


@pytest.mark.parametrize("seed", SEEDS)
def test_stj_is_the_first_minimum_after_the_sinus_maximum(phantoms, seed):
    ph = phantoms[seed]
    t, area = _cross_sections(ph, [AORTA_PARTS["root"], AORTA_PARTS["ascending"]], step=0.75)
    smooth = np.convolve(area, np.ones(3) / 3, mode="same")
    i_max = next(i for i in range(1, len(t) - 1) if smooth[i] >= smooth[i - 1] and smooth[i] > smooth[i + 1])
    i_min = next(i for i in range(i_max + 1, len(t) - 1) if smooth[i] <= smooth[i - 1] and smooth[i] < smooth[i + 1])
    assert abs(t[i_max] - ph.truth["sinus_distance_mm"]) <= 2.0
    assert abs(t[i_min] - ph.truth["stj_distance_mm"]) <= 1.5
    assert ph.truth["sinus_diameter_mm"] > ph.truth["stj_diameter_mm"] + 4.0


def test_sweep_planes_also_cut_the_descending_aorta(phantoms):
    """The same planes that sweep the root cut the descending aorta: derivation must exclude it."""
    cut = 0
    for ph in phantoms.values():
        _, desc = _cross_sections(ph, [AORTA_PARTS["arch"], AORTA_PARTS["descending"]])
        cut += desc.sum() > 0
    assert cut >= len(phantoms) // 2


@pytest.mark.parametrize("seed", SEEDS)
def test_iliacs_connect_to_the_aorta(phantoms, seed):
    ph = phantoms[seed]
    vessels = ph.masks["aorta"] | ph.masks["iliac_artery_left"] | ph.masks["iliac_artery_right"]
    components = cc3d.connected_components(vessels, connectivity=26)
    aorta_ids = set(np.unique(components[ph.masks["aorta"]]).tolist())
    assert len(aorta_ids) == 1
    for side in ("left", "right"):
        iliac = ph.masks[f"iliac_artery_{side}"]
        assert iliac.sum() > 100
        assert set(np.unique(components[iliac]).tolist()) == aorta_ids
    # Left is the patient's left: larger x in the arrays' (z, y, x) frame.
    left_x = np.argwhere(ph.masks["iliac_artery_left"])[:, 2].mean()
    right_x = np.argwhere(ph.masks["iliac_artery_right"])[:, 2].mean()
    assert left_x > right_x


@pytest.mark.parametrize("seed", SEEDS)
def test_ct_intensities(phantoms, seed):
    ph = phantoms[seed]
    blood = ph.masks["aorta"] | ph.masks["heart_ventricle_left"]
    assert 250 <= np.median(ph.ct[blood]) <= 400
    assert np.percentile(ph.ct[blood], 5) > 200 and np.percentile(ph.ct[blood], 95) < 450
    assert 70 <= np.median(ph.ct[ph.masks["heart_myocardium"]]) <= 130
    assert ph.ct[0, 0, 0] < -900  # air outside the body
    assert (ph.ct < -700).mean() > 0.05  # lungs and air exist


def test_label_map_by_construction(phantoms):
    ph = phantoms[0]
    counts = np.bincount(ph.labels.ravel(), minlength=8)
    assert np.all(counts[1:] > 0), counts
    # the root label lies inside the aorta mask, the annulus inside the ventricle mask
    assert np.all(ph.masks["aorta"][np.isin(ph.labels, [LABELS["aortic_root"], LABELS["valve"]])])
    assert np.all(ph.masks["heart_ventricle_left"][ph.labels == LABELS["annulus"]])


def test_deterministic_per_seed():
    a, b, c = make_subject(7, shape=(100, 80, 80), spacing=3.0), make_subject(7, shape=(100, 80, 80), spacing=3.0), make_subject(8, shape=(100, 80, 80), spacing=3.0)
    assert np.array_equal(a.ct, b.ct) and np.array_equal(a.labels, b.labels) and a.truth == b.truth
    assert not np.array_equal(a.ct, c.ct)
    assert a.truth["stj_distance_mm"] != c.truth["stj_distance_mm"]  # per-subject variation


def test_chest_less_and_pelvis_less_subjects():
    no_heart = make_subject(2, shape=(100, 80, 80), spacing=3.0, heart=False)
    assert not no_heart.masks["heart_ventricle_left"].any()
    assert no_heart.masks["aorta"].any()  # the abdominal aorta is still there
    assert no_heart.ct.max(axis=(1, 2))[-1] == -1024  # outside the field of view
    no_iliacs = make_subject(2, shape=(100, 80, 80), spacing=3.0, iliacs=False)
    assert not no_iliacs.masks["iliac_artery_left"].any() and not no_iliacs.masks["iliac_artery_right"].any()
    assert no_iliacs.masks["heart_ventricle_left"].any()


def test_anisotropic_and_rotated_subject_keeps_its_geometry():
    ph = make_subject(4, shape=(120, 160, 160), spacing=(2.5, 1.5, 1.5), rotation_deg=(20.0, 10.0, 0.0))
    assert ph.spacing == (2.5, 1.5, 1.5)
    t, area = _cross_sections(ph, [AORTA_PARTS["root"], AORTA_PARTS["ascending"]], step=1.5)
    assert area.max() > 0
    # the area at the STJ is smaller than at the sinus in a rotated, anisotropic grid too
    at = lambda d: area[np.argmin(np.abs(t - d))]  # noqa: E731
    assert at(ph.truth["stj_distance_mm"]) < at(ph.truth["sinus_distance_mm"])


def test_anatomy_partly_outside_a_small_field_of_view():
    ph = make_subject(4, shape=(100, 375, 375), spacing=(3.0, 0.8, 0.8), rotation_deg=(10.0, -20.0, 30.0))
    assert ph.masks["aorta"].any() and ph.labels.shape == (100, 375, 375)


def test_phantom_cli(tmp_path):
    out = tmp_path / "ts"
    proc = subprocess.run(
        [bin_path("nnunet-tavr"), "phantom", str(out), "-n", "3", "--seed", "5", "--shape", "100", "80", "80", "--spacing", "3", "--no-heart", "1"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["meta.csv", "s0000", "s0001", "s0002"]
    assert json.loads((out / "s0001" / "truth.json").read_text())["has_heart"] is False
    before = (out / "s0000" / "ct.nii.gz").stat().st_mtime_ns
    # a rerun resumes: complete subjects are not rewritten; subjects with other parameters are
    subprocess.run([bin_path("nnunet-tavr"), "phantom", str(out), "-n", "3", "--seed", "5", "--shape", "100", "80", "80", "--spacing", "3"], check=True, capture_output=True)
    assert (out / "s0000" / "ct.nii.gz").stat().st_mtime_ns == before
    assert json.loads((out / "s0001" / "truth.json").read_text())["has_heart"] is True
