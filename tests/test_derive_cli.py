"""`nnunet-tavr derive`: TotalSegmentator layouts, explicit and multilabel masks, bad input, batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_tavr.cli import main as cli
from nnunet_tavr.io import Geometry, read_array, write_array
from nnunet_tavr.labels import LABELS
from nnunet_tavr.phantom import write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Three phantom subjects in the TotalSegmentator layout; s0002 has no chest (no heart)."""
    root = tmp_path_factory.mktemp("totalseg")
    write_dataset(root, 3, seed=7, no_heart=(2,), progress=False)
    return root


@pytest.fixture(scope="module")
def baseline(dataset, tmp_path_factory):
    """s0000 derived once through the CLI: (labels, report, paths)."""
    out = tmp_path_factory.mktemp("baseline")
    rc = cli(["derive", str(dataset / "s0000"), "-o", str(out / "labels.nii.gz"), "--report", str(out / "r.json"), "--qc", str(out / "qc.png")])
    assert rc == 0
    labels, _ = read_array(out / "labels.nii.gz")
    return labels, json.loads((out / "r.json").read_text()), out


def _digest(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*.nii.gz"))}


def test_subject_outputs_geometry_report_and_figure(dataset, baseline):
    labels, report, out = baseline
    ct = sitk.ReadImage(str(dataset / "s0000" / "ct.nii.gz"))
    written = sitk.ReadImage(str(out / "labels.nii.gz"))
    assert Geometry.of(ct).mismatch(Geometry.of(written)) is None
    import nibabel as nib

    np.testing.assert_allclose(nib.load(out / "labels.nii.gz").affine, nib.load(dataset / "s0000" / "ct.nii.gz").affine, atol=1e-5)
    assert written.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(labels)) == set(LABELS.values())
    truth = json.loads((dataset / "s0000" / "truth.json").read_text())
    assert report["ok"] and report["excluded_reason"] is None
    assert abs(report["root"]["end_distance_mm"] - truth["stj_distance_mm"]) <= 1.5
    assert report["voxel_counts"]["valve"] == int((labels == LABELS["valve"]).sum())
    assert report["inputs"]["left_ventricle"].endswith("heart_ventricle_left.nii.gz")
    png = (out / "qc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_rerun_resumes_and_force_recomputes(dataset, tmp_path, capsys):
    out, report = tmp_path / "l.nii.gz", tmp_path / "r.json"
    assert cli(["derive", str(dataset / "s0001"), "-o", str(out), "--report", str(report)]) == 0
    stamp = out.stat().st_mtime_ns
    capsys.readouterr()
    assert cli(["derive", str(dataset / "s0001"), "-o", str(out), "--report", str(report)]) == 0
    assert "up to date" in capsys.readouterr().out and out.stat().st_mtime_ns == stamp
    assert cli(["derive", str(dataset / "s0001"), "-o", str(out), "--report", str(report), "--force"]) == 0
    assert out.stat().st_mtime_ns != stamp
    # other settings are not the same derivation: recomputed without --force
    stamp = out.stat().st_mtime_ns
    assert cli(["derive", str(dataset / "s0001"), "-o", str(out), "--report", str(report), "--valve-mm", "6"]) == 0
    assert out.stat().st_mtime_ns != stamp


def test_an_existing_unrelated_output_is_not_taken_for_a_result(dataset, tmp_path, capsys):
    """``-o EXISTING`` without a matching report is derived, not answered with "nothing to do"."""
    out = tmp_path / "l.nii.gz"
    out.write_bytes(b"something else")
    assert cli(["derive", str(dataset / "s0001"), "-o", str(out)]) == 0
    assert read_array(out)[0].max() == max(LABELS.values())


def _rewrite(src: Path, dst: Path, geometry: Geometry, transform=lambda a: a):
    array, _ = read_array(src)
    write_array(transform(array), geometry, dst)
    return dst


def test_explicit_masks_on_an_oblique_grid_keep_the_affine(dataset, baseline, tmp_path):
    """Masks given file by file, on a grid with a rotated direction and a shifted origin."""
    labels_ref, _, _ = baseline
    seg = dataset / "s0000" / "segmentations"
    g0 = Geometry.of(sitk.ReadImage(str(dataset / "s0000" / "ct.nii.gz")))
    c, s = np.cos(0.4), np.sin(0.4)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    g = Geometry(shape=g0.shape, spacing=g0.spacing, origin=(12.5, -40.0, 310.0), direction=direction)
    ct = _rewrite(dataset / "s0000" / "ct.nii.gz", tmp_path / "ct.nii.gz", g)
    aorta = _rewrite(seg / "aorta.nii.gz", tmp_path / "ao.nii.gz", g)
    lv = _rewrite(seg / "heart_ventricle_left.nii.gz", tmp_path / "lv.nii.gz", g)
    il = _rewrite(seg / "iliac_artery_left.nii.gz", tmp_path / "il.nii.gz", g)
    ir = _rewrite(seg / "iliac_artery_right.nii.gz", tmp_path / "ir.nii.gz", g)
    before = _digest(tmp_path)
    out = tmp_path / "out" / "labels.nii.gz"
    rc = cli(["derive", "--aorta", str(aorta), "--left-ventricle", str(lv), "--iliac-left", str(il), "--iliac-right", str(ir), "--ct", str(ct), "-o", str(out)])
    assert rc == 0
    assert Geometry.of(sitk.ReadImage(str(out))).mismatch(g) is None
    labels, _ = read_array(out)
    np.testing.assert_array_equal(labels, labels_ref)  # the rules live in index space x spacing
    assert _digest(tmp_path) == {**before, "labels.nii.gz": out.read_bytes()}  # inputs unchanged


def test_missing_left_ventricle_is_an_exclusion_that_says_how_to_get_one(dataset, tmp_path, capsys):
    subject = tmp_path / "s9"
    shutil.copytree(dataset / "s0000", subject)
    # TotalSegmentator v2's default task: a whole heart, no chambers.
    (subject / "segmentations" / "heart_ventricle_left.nii.gz").rename(subject / "segmentations" / "heart.nii.gz")
    out, report = tmp_path / "labels.nii.gz", tmp_path / "report.json"
    assert cli(["derive", str(subject), "-o", str(out), "--report", str(report)]) == 1  # excluded, as documented
    err = capsys.readouterr().err
    assert "heartchambers_highres" in err and "s9" in err and "heart_ventricle_left" in err and "whole heart" in err
    assert not out.exists()
    record = json.loads(report.read_text())
    assert not record["ok"] and record["excluded_code"] == "missing_mask" and "heartchambers_highres" in record["excluded_reason"]


def test_totalsegmentator_output_folder_without_ct(dataset, baseline, tmp_path):
    """`TotalSegmentator -i ct.nii.gz -o SEG`: the masks directly in SEG, no CT beside them."""
    seg = tmp_path / "seg"
    shutil.copytree(dataset / "s0000" / "segmentations", seg)
    out = tmp_path / "labels.nii.gz"
    assert cli(["derive", str(seg), "-o", str(out)]) == 0
    np.testing.assert_array_equal(read_array(out)[0], baseline[0])
    assert Geometry.of(sitk.ReadImage(str(out))).mismatch(Geometry.of(sitk.ReadImage(str(seg / "aorta.nii.gz")))) is None


@pytest.mark.parametrize("problem", ["spacing", "shape", "origin"])
def test_masks_on_different_grids_are_refused(dataset, tmp_path, capsys, problem):
    subject = tmp_path / "s8"
    shutil.copytree(dataset / "s0000", subject)
    lv_path = subject / "segmentations" / "heart_ventricle_left.nii.gz"
    array, g = read_array(lv_path)
    if problem == "spacing":
        g = Geometry(g.shape, (g.spacing[0], g.spacing[1], 1.6), g.origin, g.direction)
    elif problem == "shape":
        array, g = array[:-1], Geometry((g.shape[0] - 1,) + g.shape[1:], g.spacing, g.origin, g.direction)
    else:
        g = Geometry(g.shape, g.spacing, (g.origin[0] + 3.0,) + g.origin[1:], g.direction)
    write_array(array, g, lv_path)
    out = tmp_path / "labels.nii.gz"
    report = tmp_path / "r.json"
    assert cli(["derive", str(subject), "-o", str(out), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert str(lv_path) in err and problem in err
    assert not out.exists() and not report.exists()


def test_unreadable_mask_names_the_file(dataset, tmp_path, capsys):
    subject = tmp_path / "s7"
    shutil.copytree(dataset / "s0000", subject)
    bad = subject / "segmentations" / "aorta.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    out = tmp_path / "labels.nii.gz"
    assert cli(["derive", str(subject), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot read" in err
    assert not out.exists()


def test_non_binary_mask_is_used_with_a_warning(dataset, baseline, tmp_path, capsys):
    subject = tmp_path / "s6"
    shutil.copytree(dataset / "s0000", subject)
    path = subject / "segmentations" / "aorta.nii.gz"
    array, g = read_array(path)
    write_array(array.astype(np.uint8) * 255, g, path)
    out = tmp_path / "labels.nii.gz"
    assert cli(["derive", str(subject), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "not binary" in err and str(path) in err
    np.testing.assert_array_equal(read_array(out)[0], baseline[0])


def test_empty_ventricle_excludes_the_case_with_its_reason(dataset, tmp_path, capsys):
    subject = tmp_path / "s5"
    shutil.copytree(dataset / "s0000", subject)
    path = subject / "segmentations" / "heart_ventricle_left.nii.gz"
    array, g = read_array(path)
    write_array(np.zeros_like(array), g, path)
    out, report, qc = tmp_path / "labels.nii.gz", tmp_path / "r.json", tmp_path / "qc.png"
    assert cli(["derive", str(subject), "-o", str(out), "--report", str(report), "--qc", str(qc)]) == 1
    err = capsys.readouterr().err
    assert "excluded" in err and "empty_mask" in err and str(path) in err
    record = json.loads(report.read_text())
    assert not record["ok"] and record["excluded_code"] == "empty_mask" and record["output"] is None
    assert not out.exists() and qc.stat().st_size > 10_000


def test_totalsegmentator_multilabel_files(dataset, baseline, tmp_path):
    """v1 'total' multilabel file alone, and v2 'total' + 'heartchambers_highres' together."""
    seg = dataset / "s0000" / "segmentations"
    masks = {name: read_array(seg / f"{name}.nii.gz")[0] > 0 for name in ("aorta", "heart_ventricle_left", "iliac_artery_left", "iliac_artery_right")}
    g = read_array(seg / "aorta.nii.gz")[1]
    v1 = np.zeros(g.shape, np.uint8)
    for name, value in (("heart_ventricle_left", 46), ("aorta", 7), ("iliac_artery_left", 51), ("iliac_artery_right", 52)):
        v1[masks[name]] = value
    v1[(v1 == 0) & (np.arange(g.shape[0]) < 10)[:, None, None]] = 90  # another structure (hip)
    write_array(v1, g, tmp_path / "total_v1.nii.gz")
    assert cli(["derive", "--multilabel", f"total_v1={tmp_path / 'total_v1.nii.gz'}", "-o", str(tmp_path / "a.nii.gz")]) == 0
    np.testing.assert_array_equal(read_array(tmp_path / "a.nii.gz")[0], baseline[0])
    v2 = np.zeros(g.shape, np.uint8)
    for name, value in (("aorta", 52), ("iliac_artery_left", 65), ("iliac_artery_right", 66)):
        v2[masks[name]] = value
    heart = np.zeros(g.shape, np.uint8)
    heart[masks["heart_ventricle_left"]] = 3
    heart[masks["aorta"] & (v2 > 0)] = 6
    write_array(v2, g, tmp_path / "total.nii.gz")
    write_array(heart, g, tmp_path / "heart.nii.gz")
    rc = cli(["derive", "--multilabel", f"total={tmp_path / 'total.nii.gz'}", "--multilabel", f"heartchambers_highres={tmp_path / 'heart.nii.gz'}", "-o", str(tmp_path / "b.nii.gz")])
    assert rc == 0
    np.testing.assert_array_equal(read_array(tmp_path / "b.nii.gz")[0], baseline[0])


def test_batch_derives_a_dataset_resumably(dataset, tmp_path):
    out = tmp_path / "derived"
    assert cli(["derive", str(dataset), "--batch", "-o", str(out)]) == 0
    rows = (out / "derivation.csv").read_text().splitlines()
    assert rows[0] == "case;ok;root_end_mm;excluded_reason" and len(rows) == 4
    assert rows[3].startswith("s0002;0;;empty_mask")
    assert (out / "s0000.nii.gz").exists() and not (out / "s0002.nii.gz").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 2 and summary["n_excluded"] == 1
    assert (out / "dataset_curves.png").stat().st_size > 20_000 and (out / "qc" / "s0001.png").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("s0*.json")}
    assert cli(["derive", str(dataset), "--batch", "-o", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("s0*.json")} == stamps


def test_cli_module_imports_no_torch_and_help_works():
    code = "import sys, nnunet_tavr.label_derivation.cli; assert 'torch' not in sys.modules and 'nnunetv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    proc = subprocess.run([str(Path(sys.executable).with_name("nnunet-tavr")), "derive", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--left-ventricle" in proc.stdout and "heartchambers_highres" in proc.stdout
