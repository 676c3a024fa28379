"""``nnunet-tavr convert --calcium``: the TAVR scheme with label 8, cases whose CT is not in HU
dropped with the reason, options checked. (The full nnU-Net run: tests/test_calcium_pipeline.py;
the default dataset's byte-identity: tests/test_identity.py.)"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from nnunet_tavr.io import read_array, write_array
from nnunet_tavr.labels import CALCIUM_LABEL, LABELS_WITH_CALCIUM
from nnunet_tavr.phantom import write_dataset

CLI = str(Path(sys.executable).with_name("nnunet-tavr"))


def test_convert_with_calcium(tmp_path):
    source = tmp_path / "ts"
    ids = write_dataset(source, 4, seed=7, shape=(100, 80, 80), spacing=3.0, calcium=True, progress=False)
    # one case stored without the rescale intercept: raw scanner values, not HU
    ct, geometry = read_array(source / ids[3] / "ct.nii.gz")
    write_array((ct.astype(np.int32) + 1024).astype(np.uint16), geometry, source / ids[3] / "ct.nii.gz")
    raw = tmp_path / "raw"
    run = subprocess.run([CLI, "convert", str(source), "-d", "319", "-n", "Calc", "--raw", str(raw), "--quiet",
                          "--valve-mm", "9", "--annulus-mm", "3", "--calcium", "--calcium-min-mm3", "1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    folder = raw / "Dataset319_Calc"
    assert json.loads((folder / "dataset.json").read_text())["labels"] == LABELS_WITH_CALCIUM
    rows = {r["case"]: r for r in csv.DictReader((folder / "manifest.csv").open())}
    assert rows[ids[3]]["kept"] == "0" and rows[ids[3]]["reason"] == "ct_not_hu" and "Hounsfield" in rows[ids[3]]["detail"]
    for case in ids[:3]:
        assert rows[case]["kept"] == "1" and int(rows[case]["voxels_calcium"]) > 0
        labels, _ = read_array(next(folder.glob(f"labels*/{case}.nii.gz")))
        assert np.count_nonzero(labels == CALCIUM_LABEL) == int(rows[case]["voxels_calcium"])
        assert float(rows[case]["calcium_mm3"]) == np.count_nonzero(labels == CALCIUM_LABEL) * 27.0
    config = json.loads((folder / "conversion" / "config.json").read_text())
    assert config["options"]["calcium"]["min_volume_mm3"] == 1.0
    # the same folder with other calcium settings is refused, not mixed
    run = subprocess.run([CLI, "convert", str(source), "-d", "319", "-n", "Calc", "--raw", str(raw), "--quiet",
                          "--valve-mm", "9", "--annulus-mm", "3", "--calcium"], capture_output=True, text=True)
    assert run.returncode == 2 and "--overwrite" in run.stderr
    run = subprocess.run([CLI, "convert", str(source), "-d", "320", "--raw", str(raw), "--calcium-threshold", "850"], capture_output=True, text=True)
    assert run.returncode == 2 and "need --calcium" in run.stderr


def test_derive_with_calcium(tmp_path):
    source = tmp_path / "ts"
    ids = write_dataset(source, 1, seed=9, shape=(100, 80, 80), spacing=3.0, calcium=True, progress=False)
    subject = source / ids[0]
    rules = ["--valve-mm", "9", "--annulus-mm", "3"]
    run = subprocess.run([CLI, "derive", str(subject), "-o", str(tmp_path / "l.nii.gz"), "--report", str(tmp_path / "r.json"),
                          "--calcium", *rules], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    labels, _ = read_array(tmp_path / "l.nii.gz")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["voxel_counts"]["calcium"] == np.count_nonzero(labels == CALCIUM_LABEL) > 0
    assert report["calcium"]["total_mm3"] == report["voxel_counts"]["calcium"] * 27.0
    # masks without their CT: refused before any work
    masks = subject / "segmentations"
    run = subprocess.run([CLI, "derive", "--aorta", str(masks / "aorta.nii.gz"), "--left-ventricle", str(masks / "heart_ventricle_left.nii.gz"),
                          "-o", str(tmp_path / "m.nii.gz"), "--calcium", *rules], capture_output=True, text=True)
    assert run.returncode == 2 and "give it" in run.stderr and not (tmp_path / "m.nii.gz").exists()
    # a CT that is not in HU: the case is excluded with the reason, no label map
    ct, geometry = read_array(subject / "ct.nii.gz")
    write_array((ct.astype(np.int32) + 1024).astype(np.uint16), geometry, tmp_path / "raw_ct.nii.gz")
    run = subprocess.run([CLI, "derive", str(subject), "--ct", str(tmp_path / "raw_ct.nii.gz"), "-o", str(tmp_path / "x.nii.gz"),
                          "--report", str(tmp_path / "x.json"), "--calcium", *rules], capture_output=True, text=True)
    assert run.returncode == 1 and "ct_not_hu" in run.stderr and not (tmp_path / "x.nii.gz").exists()
    assert json.loads((tmp_path / "x.json").read_text())["excluded_code"] == "ct_not_hu"
