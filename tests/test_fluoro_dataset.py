"""The ``fluoro`` dataset scheme (frames -> nnU-Net 2d dataset, grouped by patient) and ``compare
--group-by patient`` (per-patient means, CIs and tests on patients, ASSD in mm from the frames'
pixel size), on small synthetic frame folders with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nnunet_tavr.dataset_conversion.splits import check_groups
from nnunet_tavr.fluoro.run import FORMAT, FRAMES_JSON, frame_geometry, frame_id
from nnunet_tavr.io import write_array

PIXEL_MM = 0.4


def _square(shape=(32, 32), at=(8, 8), size=14):
    mask = np.zeros(shape, np.uint8)
    mask[at[0] : at[0] + size, at[1] : at[1] + size] = 1
    return mask


def write_frames(root, patients: dict[str, int], excluded=(), unfinished=()):
    """Frame folders as ``nnunet-tavr fluoro`` writes them: case -> number of frames."""
    g = frame_geometry((32, 32), PIXEL_MM)
    rng = np.random.default_rng(0)
    for case, n in patients.items():
        record = {"format": FORMAT, "case": case, "patient": f"P{case}", "status": "rendered", "frames": []}
        for k in range(n):
            fid = frame_id(case, k)
            mask = _square()
            write_array((rng.integers(0, 255, (32, 32)) * (1 - 0.5 * mask)).astype(np.uint8), g, root / case / "images" / f"{fid}.nii.gz")
            write_array(mask, g, root / case / "masks" / f"{fid}.nii.gz")
            record["frames"].append({"id": fid, "image": f"images/{fid}.nii.gz", "mask": f"masks/{fid}.nii.gz",
                                     "primary_deg": 10.0 + k, "secondary_deg": -20.0, "label": f"LAO {10 + k} CAU 20",
                                     "off_plane_deg": 1.0})
        (root / case / FRAMES_JSON).write_text(json.dumps(record))
    for case in excluded:
        (root / case).mkdir(parents=True)
        (root / case / FRAMES_JSON).write_text(json.dumps({"format": FORMAT, "case": case, "patient": case, "status": "excluded",
                                                          "reason": "no_contact", "detail": "aorta and ventricle apart", "frames": []}))
    for case in unfinished:
        (root / case / "images").mkdir(parents=True)


@pytest.fixture
def converted(tmp_path, monkeypatch):
    from nnunet_tavr.cli import main

    frames = tmp_path / "frames"
    write_frames(frames, {f"c{i:02d}": 2 + i % 3 for i in range(12)}, excluded=["x_chestless"], unfinished=["y_broken"])
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["convert", str(frames), "--scheme", "fluoro", "-d", "316", "--quiet"]) == 0  # y_broken is dropped, listed in the manifest
    return tmp_path / "raw" / "Dataset316_FluoroRoot"


def test_frames_become_a_2d_dataset_grouped_by_patient(converted):
    record = json.loads((converted / "tavr_splits.json").read_text())
    folds = json.loads((converted / "splits_final.json").read_text())
    groups = record["groups"]
    check_groups(record, folds, groups)  # raises if a patient is split
    patient_sets = {k: {groups[c] for c in record[k]} for k in ("train", "val", "test")}
    assert record["test"] and not (patient_sets["test"] & (patient_sets["train"] | patient_sets["val"]))
    for fold in folds:
        assert not {groups[c] for c in fold["train"]} & {groups[c] for c in fold["val"]}
        assert not set(fold["train"] + fold["val"]) & set(record["test"])
    # every frame of a patient sits in exactly one CV validation set
    validated = [groups[c] for f in folds[:-1] for c in f["val"]]
    for patient in set(validated):
        owners = {i for i, f in enumerate(folds[:-1]) if any(groups[c] == patient for c in f["val"])}
        assert len(owners) == 1

    manifest = pd.read_csv(converted / "manifest.csv", keep_default_na=False)
    kept = manifest[manifest.kept == 1]
    assert len(kept) == sum(2 + i % 3 for i in range(12))
    assert (kept.group == kept.patient).all() and set(kept.patient) == {f"Pc{i:02d}" for i in range(12)}
    dropped = manifest[manifest.kept == 0].set_index("case")
    assert dropped.loc["x_chestless", "reason"] == "no_contact" and dropped.loc["y_broken", "reason"] == "missing_file"
    meta = json.loads((converted / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "aortic_root": 1} and meta["channel_names"] == {"0": "fluoroscopy"}
    from nnunet_tavr.io import read_geometry

    image = next((converted / "imagesTr").iterdir())
    assert read_geometry(image).spacing == pytest.approx((PIXEL_MM, PIXEL_MM))  # mm at the isocentre survives
    assert (converted / "qc" / "frames.png").is_file()


def _shifted(mask, dy):
    return np.roll(mask, dy, axis=0)


def test_compare_group_by_patient_on_known_predictions(converted, tmp_path, monkeypatch):
    """Trainer A shifts every test mask by one pixel (ASSD 0.4 mm x known fraction), B by two in one
    patient's frames: per-patient means, n = patients, frames counted, distances in mm."""
    from nnunet_tavr.cli import main
    from nnunet_tavr.evaluation.metrics import surface_distances

    g = frame_geometry((32, 32), PIXEL_MM)
    record = json.loads((converted / "tavr_splits.json").read_text())
    groups = record["groups"]
    test_frames = sorted(record["test"])
    test_patients = sorted({groups[c] for c in test_frames})
    worst = test_patients[0]
    for trainer, shift in (("A", 1), ("B", 2)):
        for case in test_frames:
            dy = shift if trainer == "A" or groups[case] == worst else 1
            write_array(_shifted(_square(), dy), g, tmp_path / f"pred_{trainer}" / f"{case}.nii.gz")
    monkeypatch.setenv("nnUNet_raw", str(converted.parent))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "res"))
    out = tmp_path / "cmp"
    assert main(["compare", "-d", "316", "-c", "2d", "-tr", "A", "B", "--no-validation", "--test", str(tmp_path / "pred_A"),
                 str(tmp_path / "pred_B"), "--group-by", "patient", "-o", str(out), "-q", "--bootstrap", "200", "-np", "1"]) == 0
    per_patient = pd.read_csv(out / "per_patient.csv")
    per_case = pd.read_csv(out / "per_case.csv")
    assert len(per_case) == 2 * len(test_frames) and len(per_patient) == 2 * len(test_patients)
    one = 1 - 1 / 14  # Dice of a 14-pixel square shifted by one row
    a = per_patient[per_patient.trainer == "A"].set_index("case")
    assert np.allclose(a["Dice"], one) and set(a.index) == set(test_patients)
    assert (a["n_frames"].to_numpy() == [sum(groups[c] == p for c in test_frames) for p in a.index]).all()
    assd_1px, _ = surface_distances(_square().astype(bool), _shifted(_square(), 1).astype(bool), (PIXEL_MM, PIXEL_MM))
    assert a["ASSD"].to_numpy() == pytest.approx(assd_1px) and 0 < assd_1px < PIXEL_MM  # mm, from the 2-D spacing
    summary = json.loads((out / "summary.json").read_text())["splits"]["test"]
    assert summary["unit"] == "patient" and summary["n_common_cases"] == len(test_patients)
    assert summary["n_common_frames"] == {"A": len(test_frames), "B": len(test_frames)}
    assert summary["bootstrap_ci"]["A"]["n"] == len(test_patients) and summary["wilcoxon"][0]["n"] == len(test_patients)
    assert summary["bootstrap_ci_metrics"]["ASSD"]["A"]["mean"] == pytest.approx(assd_1px)
    report = (out / "report.md").read_text()
    assert f"{len(test_patients)} patient(s) ({len(test_frames)} frames)" in report and "per-patient mean Dice" in report
    assert "n patients" in report and "ASSD (mm)" in report
