"""The ``heart`` dataset scheme: seed 004's classes from TotalSegmentator masks (per-structure files or
the heartchambers_highres multilabel file), dropped cases with their reason, the coronary sinus
only from a supplied mask, class subsets, and the crop to the heart."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunet_tavr.dataset_conversion.layouts import CaseSource
from nnunet_tavr.dataset_conversion.schemes.heart import DEFAULT_STRUCTURES, HeartScheme, paint_labels
from nnunet_tavr.io import read_array, write_array
from nnunet_tavr.phantom import write_dataset

GRID = dict(shape=(100, 80, 80), spacing=3.0)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """Five subjects: two whole, one chest-less, one without its pulmonary-vein mask, one with an
    empty superior vena cava."""
    root = tmp_path_factory.mktemp("heart_scheme") / "ts"
    write_dataset(root, 5, seed=2, no_heart=[2], heartchambers_highres=True, progress=False, **GRID)
    (root / "s0003" / "segmentations" / "pulmonary_vein.nii.gz").unlink()
    svc, geometry = read_array(root / "s0004" / "segmentations" / "superior_vena_cava.nii.gz")
    write_array(np.zeros_like(svc), geometry, root / "s0004" / "segmentations" / "superior_vena_cava.nii.gz")
    return root


def _expected_classes(subject: Path) -> dict[str, np.ndarray]:
    seg = subject / "segmentations"

    def mask(name):
        return read_array(seg / f"{name}.nii.gz")[0] > 0

    out = {"pulmonary_veins": mask("pulmonary_vein"), "left_atrium": mask("heart_atrium_left"),
           "left_ventricle_cavity": mask("heart_ventricle_left"), "left_ventricle_myocardium": mask("heart_myocardium"),
           "aorta": mask("aorta"), "superior_vena_cava": mask("superior_vena_cava"), "right_atrium": mask("heart_atrium_right"),
           "right_ventricle_cavity": mask("heart_ventricle_right"), "pulmonary_artery": mask("pulmonary_artery")}
    out["left_atrium"] |= mask("atrial_appendage_left")
    return out


def test_convert_writes_an_nnunet_dataset_and_drops_with_reasons(phantoms, tmp_path):
    from nnunet_tavr.cli import main

    raw = tmp_path / "raw"
    assert main(["convert", str(phantoms), "--scheme", "heart", "-d", "304", "--raw", str(raw), "--quiet"]) == 0
    folder = raw / "Dataset304_Heart"
    labels = json.loads((folder / "dataset.json").read_text())["labels"]
    assert list(labels) == ["background", *DEFAULT_STRUCTURES] and list(labels.values()) == list(range(10))
    rows = {r["case"]: r for r in csv.DictReader((folder / "manifest.csv").open())}
    assert {c: rows[c]["reason"] for c in rows} == {"s0000": "", "s0001": "", "s0002": "no_heart", "s0003": "missing_mask",
                                                    "s0004": "empty_mask"}
    assert "pulmonary_vein" in rows["s0003"]["detail"] and "superior_vena_cava" in rows["s0004"]["detail"]
    # the label map is the union of the masks, the appendage in the left atrium
    for case in ("s0000", "s0001"):
        path = next(folder.glob(f"labels*/{case}.nii.gz"))
        got = read_array(path)[0]
        for name, mask in _expected_classes(phantoms / case).items():
            assert np.array_equal(got == labels[name], mask), (case, name)
        truth = json.loads((phantoms / case / "truth.json").read_text())["heart_volumes_ml"]
        assert float(rows[case]["ml_left_atrium"]) == pytest.approx(truth["left_atrium"], rel=0.03)
        assert rows[case]["overlap_voxels"] == "0"


def _convert(scheme: HeartScheme, folder: Path, case: str = "s0000"):
    return scheme.convert_case(CaseSource(case, folder))


def test_multilabel_file_alone_gives_the_same_labels(phantoms, tmp_path):
    """TotalSegmentator v2: vessels from ``total``, chambers only in heartchambers_highres.nii.gz."""
    copy = tmp_path / "s0000"
    shutil.copytree(phantoms / "s0000", copy)
    for name in ("heart_atrium_left", "heart_ventricle_left", "heart_atrium_right", "heart_ventricle_right",
                 "heart_myocardium", "pulmonary_artery"):
        (copy / "segmentations" / f"{name}.nii.gz").unlink()
    a, b = _convert(HeartScheme(), phantoms / "s0000"), _convert(HeartScheme(), copy)
    assert a.excluded is None and b.excluded is None
    assert np.array_equal(a.outputs[0].labels, b.outputs[0].labels)
    assert "heartchambers_highres.nii.gz" in b.details["mask_files"]["heart_ventricle_left"]


def test_coronary_sinus_only_from_a_supplied_mask(phantoms, tmp_path):
    assert "coronary_sinus" not in HeartScheme().labels()
    copy = tmp_path / "s0001"
    shutil.copytree(phantoms / "s0001", copy)
    lv, geometry = read_array(copy / "segmentations" / "heart_ventricle_left.nii.gz")
    cs = np.zeros_like(lv)
    cs[40:42, 40:42, 40:42] = 1  # a stand-in for the user's own coronary-sinus segmentation
    write_array(cs, geometry, copy / "segmentations" / "my_cs.nii.gz")
    scheme = HeartScheme(coronary_sinus_mask="my_cs")
    labels = scheme.labels()
    assert list(labels)[1:] == ["pulmonary_veins", "left_atrium", "left_ventricle_cavity", "left_ventricle_myocardium",
                                "aorta", "coronary_sinus", "superior_vena_cava", "right_atrium", "right_ventricle_cavity",
                                "pulmonary_artery"]
    assert list(labels.values()) == list(range(11))
    result = _convert(scheme, copy, "s0001")
    assert (result.outputs[0].labels == labels["coronary_sinus"]).sum() == 8
    missing = _convert(scheme, phantoms / "s0000")
    assert missing.excluded[0] == "missing_mask" and "my_cs" in missing.excluded[1]


def test_class_subset_and_left_atrium_without_appendage(phantoms):
    scheme = HeartScheme(structures=("left_atrium", "left_ventricle_cavity", "left_ventricle_myocardium"), appendage=False)
    assert scheme.labels() == {"background": 0, "left_atrium": 1, "left_ventricle_cavity": 2, "left_ventricle_myocardium": 3}
    got = _convert(scheme, phantoms / "s0003", "s0003")  # no pulmonary veins: not needed here
    assert got.excluded is None
    atrium = read_array(phantoms / "s0003" / "segmentations" / "heart_atrium_left.nii.gz")[0] > 0
    assert np.array_equal(got.outputs[0].labels == 1, atrium)
    from nnunet_tavr.errors import UsageError

    with pytest.raises(UsageError, match="coronary_sinus"):
        HeartScheme(structures=("coronary_sinus",))


def test_crop_to_the_heart_keeps_world_positions(phantoms):
    whole = _convert(HeartScheme(), phantoms / "s0000").outputs[0]
    cropped = _convert(HeartScheme(crop_margin_mm=15.0), phantoms / "s0000").outputs[0]
    assert cropped.image is not None and cropped.image.shape == cropped.labels.shape
    assert np.prod(cropped.labels.shape) < 0.5 * np.prod(whole.labels.shape)
    # the crop's first voxel sits where it sat in the whole image (origin moved along the axes)
    start = (np.asarray(cropped.geometry.origin) - np.asarray(whole.geometry.origin)) / np.asarray(whole.geometry.spacing[::-1])
    z0, y0, x0 = np.rint(start[::-1]).astype(int)
    nz, ny, nx = cropped.labels.shape
    assert np.array_equal(whole.labels[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx], cropped.labels)
    ct = read_array(phantoms / "s0000" / "ct.nii.gz")[0]
    assert np.array_equal(ct[z0:z0 + nz, y0:y0 + ny, x0:x0 + nx], cropped.image)
    # every chamber voxel is kept (the aorta, reaching the pelvis, is cut)
    for name in ("left_atrium", "left_ventricle_cavity", "right_atrium", "right_ventricle_cavity"):
        assert cropped.counts[name] == whole.counts[name], name
    assert cropped.counts["aorta"] < whole.counts["aorta"]


def test_overlaps_follow_the_paint_order():
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4, 4), bool)
    b[1:3] = True
    labels, overlap = paint_labels({"pulmonary_veins": a, "left_atrium": b}, {"pulmonary_veins": 1, "left_atrium": 2})
    assert overlap == 16 and (labels[1] == 2).all() and (labels[0] == 1).all()
