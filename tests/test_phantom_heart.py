"""The whole-heart phantom (``make_subject(heart_chambers=True)``): volumes measured from the written
masks agree with the construction, the anatomy touches where a heart does, the option adds without
changing the rest, and ``nnunet-tavr cardiac`` reads TotalSegmentator cases through the heart
scheme's mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnunet_tavr.phantom import MASK_NAMES, make_subject, write_dataset
from nnunet_tavr.phantom.heart import HEART_MASK_NAMES

GRID_3MM = dict(shape=(100, 80, 80), spacing=3.0)
#: The grid on which every written heart mask must be within 2 % of its construction volume
#: (measured worst case over seeds 0-5: 1.3 %, the SVC; on 3 mm grids the SVC reaches ~5.6 %).
GRID_FINE = dict(shape=(200, 160, 160), spacing=1.5)
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """One 1.5 mm subject with the heart and its heartchambers_highres file, written to disk."""
    out = tmp_path_factory.mktemp("heart_phantom")
    write_dataset(out, 1, seed=4, heartchambers_highres=True, progress=False, **GRID_FINE)
    return out


def _read(path):
    from nnunet_tavr.io import read_array

    return read_array(path)


def test_written_mask_volumes_match_the_construction(written):
    subject = written / "s0000"
    truth = json.loads((subject / "truth.json").read_text())
    assert truth["heart_chambers"] and truth["heartchambers_highres"]
    errors = {}
    for name, true_ml in truth["heart_mask_volumes_ml"].items():
        mask, geometry = _read(subject / "segmentations" / f"{name}.nii.gz")
        measured = mask.astype(bool).sum() * np.prod(geometry.spacing) / 1000.0
        assert true_ml > 1.0, name  # every structure is there
        errors[name] = abs(measured - true_ml) / true_ml
    assert max(errors.values()) <= TOLERANCE, errors
    # the seed's quantities: LA includes the appendage, LV mass is the myocardium x 1.05 g/ml
    volumes = truth["heart_volumes_ml"]
    masks = truth["heart_mask_volumes_ml"]
    assert volumes["left_atrium"] == pytest.approx(masks["heart_atrium_left"] + masks["atrial_appendage_left"], abs=1e-3)
    assert truth["lv_mass_g"] == pytest.approx(1.05 * volumes["left_ventricle_myocardium"], abs=1e-3)
    assert truth["myocardial_density_g_per_ml"] == 1.05


def test_multilabel_file_holds_the_masks_under_the_task_ids(written):
    from nnunet_tavr.totalseg import TASKS

    subject = written / "s0000"
    multilabel, _ = _read(subject / "heartchambers_highres.nii.gz")
    for value, name in TASKS["heartchambers_highres"].labels.items():
        mask, _ = _read(subject / "segmentations" / f"{name}.nii.gz")
        assert np.array_equal(multilabel == value, mask.astype(bool)), name


def test_cardiac_reads_totalsegmentator_cases_through_the_heart_mapping(written, tmp_path):
    """``nnunet-tavr cardiac`` on the phantom folder (TotalSegmentator layout) gives the truth."""
    from nnunet_tavr.cli import main

    out = tmp_path / "cardiac"
    assert main(["cardiac", str(written), "-o", str(out), "--quiet"]) == 0
    truth = json.loads((written / "s0000" / "truth.json").read_text())
    record = json.loads((out / "volumes.json").read_text())["cases"][0]
    for name, true_ml in truth["heart_volumes_ml"].items():
        assert record["volumes_ml"][name] == pytest.approx(true_ml, rel=TOLERANCE), name
    assert record["lv_mass_g"] == pytest.approx(truth["lv_mass_g"], rel=TOLERANCE)
    assert "## Volumes per case" in (out / "report.md").read_text()


def test_truth_does_not_depend_on_the_grid_or_the_rotation(written):
    """The construction volumes are those of the continuous shapes: the same on a 3 mm grid, and
    rotated on an anisotropic one (the aorta, a voxel count, aside)."""
    truth = json.loads((written / "s0000" / "truth.json").read_text())
    fine, seed = truth["heart_mask_volumes_ml"], truth["seed"]  # 1.5 mm
    coarse = make_subject(seed, heart_chambers=True, **GRID_3MM).truth["heart_mask_volumes_ml"]
    turned = make_subject(seed, heart_chambers=True, shape=(90, 96, 96), spacing=(3.3, 2.5, 2.5),
                          rotation_deg=(8.0, -12.0, 15.0)).truth["heart_mask_volumes_ml"]
    for name in HEART_MASK_NAMES + ("heart_ventricle_left", "heart_myocardium"):
        # the SVC leans on the aorta, which claims whole voxels: its share there follows the grid (~1 %)
        tolerance = 0.015 if name == "superior_vena_cava" else 0.006
        assert coarse[name] == pytest.approx(fine[name], rel=tolerance), name
        assert turned[name] == pytest.approx(fine[name], rel=tolerance), name


#: Pairs of structures a heart has in contact, and the LV cavity's only neighbours.
CONTACTS = [("heart_atrium_left", "heart_ventricle_left"), ("heart_myocardium", "heart_ventricle_right"),
            ("heart_ventricle_right", "heart_atrium_right"), ("heart_ventricle_right", "pulmonary_artery"),
            ("heart_atrium_left", "atrial_appendage_left"), ("heart_atrium_left", "pulmonary_vein"),
            ("heart_atrium_right", "superior_vena_cava"), ("heart_atrium_left", "heart_atrium_right"),
            ("aorta", "pulmonary_artery"), ("aorta", "superior_vena_cava"), ("aorta", "heart_atrium_left"),
            ("aorta", "heart_ventricle_left")]
LV_NEIGHBOURS = {"aorta", "heart_myocardium", "heart_atrium_left"}


def _touching(a: np.ndarray, b: np.ndarray) -> int:
    """Face-adjacent voxel pairs between two masks."""
    n = 0
    for axis in range(3):
        x, y = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
        n += int((x[:-1] & y[1:]).sum() + (y[:-1] & x[1:]).sum())
    return n


@pytest.mark.parametrize("seed", [0, 6, 9])
def test_chambers_touch_where_a_heart_does(seed):
    masks = make_subject(seed, heart_chambers=True, **GRID_3MM).masks
    for a, b in CONTACTS:
        assert _touching(masks[a], masks[b]) > 0, f"{a} does not touch {b}"
    lv = masks["heart_ventricle_left"]
    for name in (*HEART_MASK_NAMES, "aorta", "heart_myocardium"):
        if name not in LV_NEIGHBOURS:
            assert _touching(lv, masks[name]) == 0, f"the LV cavity opens into {name}"
    names = ["aorta", "heart_ventricle_left", "heart_myocardium", *HEART_MASK_NAMES]
    total = sum(masks[n].astype(int) for n in names)
    assert total.max() == 1  # every voxel belongs to one structure at most


def test_the_option_adds_without_changing_the_rest():
    off = make_subject(7, **GRID_3MM)
    on = make_subject(7, heart_chambers=True, **GRID_3MM)
    for name in ("aorta", "iliac_artery_left", "iliac_artery_right"):
        assert np.array_equal(on.masks[name], off.masks[name]), name
    # papillary muscles move from the cavity into the myocardium; the myocardium also closes the base
    assert not (on.masks["heart_ventricle_left"] & ~off.masks["heart_ventricle_left"]).any()
    moved = off.masks["heart_ventricle_left"] & ~on.masks["heart_ventricle_left"]
    assert moved.sum() > 0 and not (moved & ~on.masks["heart_myocardium"]).any()
    assert not (off.masks["heart_myocardium"] & ~on.masks["heart_myocardium"]).any()
    assert set(on.masks) == set(off.masks) | set(HEART_MASK_NAMES)
    for key, value in off.truth.items():
        assert on.truth[key] == value, key
    assert on.truth["heart_chambers"] is True and "heart_chambers" not in off.truth


def test_each_subject_draws_its_own_heart():
    a = make_subject(1, heart_chambers=True, **GRID_3MM).truth["heart_volumes_ml"]
    b = make_subject(2, heart_chambers=True, **GRID_3MM).truth["heart_volumes_ml"]
    again = make_subject(1, heart_chambers=True, **GRID_3MM).truth["heart_volumes_ml"]
    assert a == again
    assert all(a[k] != b[k] for k in a if k != "aorta")


def test_chest_less_subject_has_an_empty_heart():
    phantom = make_subject(8, heart=False, heart_chambers=True, **GRID_3MM)
    for name in (*HEART_MASK_NAMES, "heart_ventricle_left", "heart_myocardium"):
        assert not phantom.masks[name].any(), name
        assert phantom.truth["heart_mask_volumes_ml"][name] == 0.0, name
    assert phantom.truth["lv_mass_g"] == 0.0


def test_intensities_of_an_aortic_phase_scan():
    """Left heart like the aorta, right heart less, SVC with the injected contrast, myocardium
    ~100 HU, the right atrium brighter at its roof (SVC inflow) than at its floor (caval blood)."""
    phantom = make_subject(3, heart_chambers=True, **GRID_3MM)
    hu = phantom.truth["heart_hu"]
    mean = {name: float(phantom.ct[phantom.masks[name]].mean()) for name in phantom.masks if phantom.masks[name].any()}
    for name in ("heart_atrium_left", "atrial_appendage_left", "pulmonary_vein"):
        assert mean[name] == pytest.approx(hu["left_heart"], abs=5), name
    for name in ("heart_ventricle_right", "pulmonary_artery"):
        assert mean[name] == pytest.approx(hu["right_heart"], abs=5), name
    assert mean["superior_vena_cava"] == pytest.approx(hu["superior_vena_cava"], abs=5)
    assert mean["heart_myocardium"] == pytest.approx(100.0, abs=5)
    assert hu["right_heart"] < hu["left_heart"]
    z = np.nonzero(phantom.masks["heart_atrium_right"])[0]
    values = phantom.ct[phantom.masks["heart_atrium_right"]]
    assert values[z > np.median(z)].mean() > values[z < np.median(z)].mean() + 20


def test_shapes_integrate_their_analytic_volumes_below_the_voxel():
    """``shapes.measure`` gives the continuous volume of a shape on a coarse anisotropic grid."""
    from nnunet_tavr.phantom.canvas import Canvas
    from nnunet_tavr.phantom.shapes import Difference, Ellipsoid, HalfSpace, Intersection, Tube, measure, paint

    canvas = Canvas((40, 40, 40), (3.0, 2.5, 2.5))
    axes = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]  # an oblique ellipsoid
    centre = np.array([60.0, 50.0, 50.0])
    ellipsoid = Ellipsoid(centre, axes, (20.0, 12.0, 7.0))
    capsule = Tube([[40.0, 40.0, 40.0], [70.0, 60.0, 55.0]], 6.0)  # cylinder + two half balls
    half_ball = Intersection(Ellipsoid(centre, np.eye(3), (15.0, 15.0, 15.0)), HalfSpace(centre, (0.3, 0.2, 0.9)))
    expected = {ellipsoid: 4 / 3 * np.pi * 20 * 12 * 7,
                capsule: np.pi * 36 * capsule.length_mm + 4 / 3 * np.pi * 216,
                half_ball: 2 / 3 * np.pi * 15**3}
    for shape, volume in expected.items():
        mask = paint(shape, canvas)
        assert measure(shape, canvas, mask) == pytest.approx(volume, rel=0.003)
    # precedence is exact: a shape without the one before it keeps the rest of its volume
    without = Difference(half_ball, Ellipsoid(centre, np.eye(3), (10.0, 10.0, 10.0)))
    assert measure(without, canvas, paint(without, canvas)) == pytest.approx(2 / 3 * np.pi * (15**3 - 10**3), rel=0.005)


def test_rerun_resumes_and_a_changed_option_rewrites(tmp_path):
    write_dataset(tmp_path, 1, seed=5, heart_chambers=True, progress=False, **GRID_3MM)
    truth = tmp_path / "s0000" / "truth.json"
    stamp = truth.stat().st_mtime_ns
    write_dataset(tmp_path, 1, seed=5, heart_chambers=True, progress=False, **GRID_3MM)
    assert truth.stat().st_mtime_ns == stamp  # complete with the same options: kept
    write_dataset(tmp_path, 1, seed=5, heartchambers_highres=True, progress=False, **GRID_3MM)
    assert (tmp_path / "s0000" / "heartchambers_highres.nii.gz").is_file()
    write_dataset(tmp_path, 1, seed=5, progress=False, **GRID_3MM)
    assert "heart_volumes_ml" not in json.loads(truth.read_text())
    # the heart's masks and multilabel file of the earlier write are gone
    written = {p.name for p in (tmp_path / "s0000" / "segmentations").iterdir()}
    assert written == {f"{name}.nii.gz" for name in MASK_NAMES}
    assert not (tmp_path / "s0000" / "heartchambers_highres.nii.gz").exists()
