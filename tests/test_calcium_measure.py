"""``measure``'s calcium section (nnunet_tavr/measurement/calcium.py): per region from the calcium
label or the rule, density-weighted scores with the CT, sectors around the annulus, per cusp from
cusp masks or hinge points, the anatomy unchanged by label 8, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_valve
from nnunet_tavr.label_derivation import derive_tavr_labels
from nnunet_tavr.label_derivation.calcium import calcium_of_derivation, paint_calcium
from nnunet_tavr.label_derivation.calcium_regions import REGIONS
from nnunet_tavr.labels import CALCIUM_LABEL
from nnunet_tavr.measurement.calcium import CUSP_KEYS, SECTORS, cusp_of_azimuths, measure_calcium, sector_volumes
from nnunet_tavr.measurement.tavr import measure_tavr
from nnunet_tavr.phantom import make_subject


@pytest.fixture(scope="module")
def case():
    phantom = make_subject(4201, calcium=True, shape=(150, 120, 120), spacing=2.0)
    labels, result = derive_tavr_labels(phantom.masks, phantom.spacing, valve_mm=6.0, annulus_mm=2.0)
    assert result.ok
    calcium = calcium_of_derivation(phantom.ct, labels, phantom.spacing, result.root)
    assert calcium.ok and calcium.components
    return phantom, labels, calcium, paint_calcium(labels, calcium)


def _volumes(section):
    return {r: section[f"{r}_volume"] for r in REGIONS}


def test_calcium_from_the_label_and_from_the_rule_agree(case):
    phantom, labels, calcium, labels8 = case
    from_label = measure_tavr(labels8, phantom.spacing)["calcium"]
    assert any("calcium label" in n for n in from_label.notes)
    assert from_label["total_volume"] == pytest.approx(calcium.total_mm3)
    assert from_label["total_components"] == len(calcium.components)
    assert all(from_label.get(f"{r}_score") is None for r in REGIONS)  # no CT: no densities
    by_rule = measure_tavr(labels, phantom.spacing, ct=phantom.ct)["calcium"]
    assert any("found by rule" in n for n in by_rule.notes)
    expected = calcium.by_region()
    for region in REGIONS:
        assert by_rule[f"{region}_volume"] == pytest.approx(expected[region]["volume_mm3"])
        assert by_rule[f"{region}_components"] == expected[region]["components"]
        assert by_rule[f"{region}_largest"] == pytest.approx(expected[region]["largest_mm3"])
        assert by_rule[f"{region}_score"] == pytest.approx(expected[region]["score"])
    # the label's components fall in the same regions as the rule's (the anatomy view gives the
    # calcium voxels back to the structures they lie on)
    label_with_ct = measure_tavr(labels8, phantom.spacing, ct=phantom.ct)["calcium"]
    assert _volumes(label_with_ct) == pytest.approx(_volumes(by_rule), abs=2 * float(np.prod(phantom.spacing)))
    total_score = sum(label_with_ct[f"{r}_score"] for r in REGIONS)
    assert total_score == pytest.approx(sum(c.score for c in calcium.components), rel=0.02)
    assert "Agatston" in label_with_ct.values["valve_score"].method and "not an Agatston" in label_with_ct.values["valve_score"].method


def test_no_section_without_calcium_label_or_ct(case):
    phantom, labels, _, _ = case
    assert "calcium" not in measure_tavr(labels, phantom.spacing).sections
    forced = measure_tavr(labels, phantom.spacing, calcium="rule")["calcium"]
    assert not forced.ok and "CT" in forced.missing


def test_anatomy_measurements_ignore_the_calcium_label(case):
    phantom, labels, _, labels8 = case
    a, b = measure_tavr(labels, phantom.spacing), measure_tavr(labels8, phantom.spacing)
    assert b["annulus"]["area"] == pytest.approx(a["annulus"]["area"], rel=0.03)
    assert b["aortic_root"]["sinus_diameter"] == pytest.approx(a["aortic_root"]["sinus_diameter"], abs=0.5)
    for side in ("iliac_artery_left", "iliac_artery_right"):
        assert b[side]["min_lumen_diameter"] == pytest.approx(a[side]["min_lumen_diameter"], abs=1.0)
    assert b["volumes"].notes == []  # label 8 is not an unknown label


# ----------------------------------------------------------------------------------------------
# sectors and cusps on a synthetic valve: annulus plane z = 20 mm, normal +z, radius 10 mm, 1 mm voxels.
# Azimuth 0 is e1 = -y, 90 deg is e2 = normal x e1 = -x.


@pytest.fixture(scope="module")
def valve():
    labels, (zz, yy, xx) = synthetic_valve()
    radial = np.hypot(yy - 30, xx - 30)
    labels[(zz >= 18) & (zz <= 20) & (yy == 30) & (xx >= 18) & (xx <= 19)] = CALCIUM_LABEL  # azimuth 90 (-x), annulus
    labels[(zz >= 13) & (zz <= 14) & (yy >= 39) & (yy <= 40) & (xx == 33)] = CALCIUM_LABEL  # azimuth ~198 (+y, +x), LVOT
    labels[(zz >= 26) & (zz <= 27) & (yy == 24) & (xx >= 24) & (xx <= 25)] = CALCIUM_LABEL  # valve, azimuth ~45 (-y, -x)
    plane = {"centre": np.array([19.5, 30.0, 30.0]), "normal": np.array([1.0, 0.0, 0.0])}
    cusp_masks = {}
    angle = np.degrees(np.arctan2(-(xx - 30), -(yy - 30))) % 360  # azimuth of every voxel
    for key, centre in zip(CUSP_KEYS, (0.0, 120.0, 240.0)):
        wedge = np.abs((angle - centre + 180) % 360 - 180) < 50
        cusp_masks[key] = (zz >= 20) & (zz < 30) & (radial <= 10) & (radial >= 3) & wedge
    return labels, plane, cusp_masks


def test_sectors_around_the_annulus(valve):
    labels, plane, _ = valve
    from nnunet_tavr.label_derivation.calcium import anatomy_view

    section, result = measure_calcium(labels, anatomy_view(labels), (1.0, 1.0, 1.0), plane=plane)
    assert section["annulus_volume"] == pytest.approx(6.0) and section["lvot_volume"] == pytest.approx(4.0)
    assert section["valve_volume"] == pytest.approx(4.0)
    volumes = section["annulus_lvot_sector_volumes"]
    assert len(volumes) == SECTORS
    assert volumes[3] == pytest.approx(6.0) and volumes[6] == pytest.approx(4.0) and sum(volumes) == pytest.approx(10.0)
    assert section["annulus_lvot_extent"] == pytest.approx(60.0)
    assert section["annulus_lvot_max_sector"] == pytest.approx(105.0)
    assert "per_cusp" in section.values and section.get("per_cusp") is None  # missing: no cusps given


def test_per_cusp_from_masks_or_hinge_points(valve):
    labels, plane, cusp_masks = valve
    from nnunet_tavr.label_derivation.calcium import anatomy_view

    anatomy = anatomy_view(labels)
    by_masks, _ = measure_calcium(labels, anatomy, (1.0, 1.0, 1.0), plane=plane, cusps=cusp_masks)
    hinges = {k: np.array([19.5, 30 - 8 * np.cos(np.radians(a)), 30 - 8 * np.sin(np.radians(a))]) for k, a in zip(CUSP_KEYS, (0, 120, 240))}
    by_hinges, _ = measure_calcium(labels, anatomy, (1.0, 1.0, 1.0), plane=plane, hinge_points=hinges)
    for section in (by_masks, by_hinges):
        assert section["cusp_rcc_valve_volume"] == pytest.approx(4.0)  # the valve nodule at ~45 deg: RCC (0)
        assert section["cusp_lcc_annulus_lvot_volume"] == pytest.approx(6.0)  # the annulus nodule at 90 deg: LCC (120)
        assert section["cusp_ncc_annulus_lvot_volume"] == pytest.approx(4.0)  # the LVOT nodule at ~198 deg: NCC (240)
        total = sum(section[f"cusp_{k}_annulus_lvot_volume"] for k in CUSP_KEYS)
        assert total == pytest.approx(10.0)
    got = by_masks.geometry["cusp_azimuths_deg"]
    np.testing.assert_allclose([got[k] for k in CUSP_KEYS], [0.0, 120.0, 240.0], atol=2.0)


def test_cusp_sectors_meet_half_way():
    cusp_az = {"rcc": 10.0, "lcc": 130.0, "ncc": 250.0}
    got = cusp_of_azimuths(np.array([69.0, 71.0, 189.0, 191.0, 309.0, 311.0, 350.0]), cusp_az)
    assert got.tolist() == ["rcc", "lcc", "lcc", "ncc", "ncc", "rcc", "rcc"]
    np.testing.assert_allclose(sector_volumes([0.0, 29.9, 30.0, 359.9], 2.0), [4.0, 2.0] + [0.0] * 9 + [2.0])


def test_cli_measures_an_8_class_segmentation(tmp_path, case):
    from nnunet_tavr.io import write_array

    phantom, _, calcium, labels8 = case
    seg, ct = tmp_path / "case.nii.gz", tmp_path / "case_0000.nii.gz"
    write_array(labels8, phantom.geometry, seg)
    write_array(phantom.ct, phantom.geometry, ct)
    cli = str(Path(sys.executable).with_name("nnunet-tavr"))
    run = subprocess.run([cli, "measure", str(seg), "--ct", str(ct), "-o", str(tmp_path / "m")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "m" / "measurements.json").read_text())
    assert data["calcium"]["total_volume"]["value"] == pytest.approx(calcium.total_mm3)
    assert data["calcium"]["valve_score"]["unit"] == "mm3 x density factor"
    assert (tmp_path / "m" / "measurements.png").stat().st_size > 10_000
    run = subprocess.run([cli, "measure", str(seg), "--calcium", "rule", "-o", str(tmp_path / "n")], capture_output=True, text=True)
    assert run.returncode == 2 and "needs the CT" in run.stderr
    bad = labels8.copy()
    bad.flat[0] = 9
    write_array(bad, phantom.geometry, tmp_path / "bad.nii.gz")
    run = subprocess.run([cli, "measure", str(tmp_path / "bad.nii.gz"), "-o", str(tmp_path / "b")], capture_output=True, text=True)
    assert run.returncode == 2 and "0..8" in run.stderr
