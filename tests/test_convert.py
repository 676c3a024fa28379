"""Dataset conversion: phantoms with broken subjects -> nnU-Net raw dataset.

The phantom grid is 3 mm (small and fast), so the annulus rule runs with ``annulus_mm = 3.0``:
the paper's 1.5 mm (one voxel at TotalSegmentator's 1.5 mm grid) is less than one voxel here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnunet_tavr.dataset_conversion.convert import ConversionOptions, convert_dataset
from nnunet_tavr.dataset_conversion.finalize import read_manifest
from nnunet_tavr.dataset_conversion.layouts import discover_cases, parse_shard, shard_of
from nnunet_tavr.dataset_conversion.schemes.tavr import TavrScheme
from nnunet_tavr.dataset_conversion.splits import check_splits
from nnunet_tavr.errors import Refused as ConversionRefused
from nnunet_tavr.label_derivation.case import DerivationParams

SHAPE, SPACING = (96, 80, 80), 3.0
DERIVE = DerivationParams(annulus_mm=3.0)
N = 10
BROKEN = {
    "s0001": "empty_mask",  # chest-less scan: empty left ventricle
    "s0002": "empty_mask",  # empty aorta mask
    "s0003": "unreadable",  # truncated ct.nii.gz
    "s0004": "geometry_mismatch",  # left ventricle on another grid
    "s0010": "missing_file",  # listed in meta.csv, no folder
}
KEPT = sorted({f"s{i:04d}" for i in range(N)} - set(BROKEN))


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def finished_records(records: Path) -> list[Path]:
    """Case records written to the end: a run killed mid-write leaves a hidden temporary file."""
    return [p for p in records.glob("*.json") if not p.name.startswith(".")]


def dataset_hashes(folder: Path) -> dict[str, str]:
    """Hashes of everything a user or nnU-Net reads; the manifest without its timing column."""
    out = {}
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for p in sorted((folder / sub).iterdir()):
            out[f"{sub}/{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    for name in ("dataset.json", "splits_final.json", "tavr_splits.json"):
        out[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    rows = list(csv.DictReader((folder / "manifest.csv").read_text().splitlines()))
    out["manifest"] = json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows])
    return out


@pytest.fixture(scope="module")
def totalseg(tmp_path_factory) -> Path:
    """Ten TotalSegmentator-layout phantoms, five of them unusable in different ways."""
    from nnunet_tavr.io import Geometry, read_array, write_array
    from nnunet_tavr.phantom import write_dataset

    root = tmp_path_factory.mktemp("totalseg")
    write_dataset(root, N, seed=0, shape=SHAPE, spacing=SPACING, no_heart=[1], no_iliacs=[5], progress=False)
    aorta, g = read_array(root / "s0002/segmentations/aorta.nii.gz")
    write_array(np.zeros_like(aorta), g, root / "s0002/segmentations/aorta.nii.gz")
    ct = root / "s0003/ct.nii.gz"
    ct.write_bytes(ct.read_bytes()[: ct.stat().st_size // 2])
    lv, g = read_array(root / "s0004/segmentations/heart_ventricle_left.nii.gz")
    write_array(lv[:90], Geometry((90,) + g.shape[1:], g.spacing, g.origin, g.direction), root / "s0004/segmentations/heart_ventricle_left.nii.gz")
    with open(root / "meta.csv", "a") as f:
        f.write("s0010;60;m;phantom;ct;train\n")
    return root


@pytest.fixture(scope="module")
def converted(totalseg, tmp_path_factory):
    """One uninterrupted conversion (the reference for the fault tests), input hashed before."""
    raw = tmp_path_factory.mktemp("raw")
    before = tree_hashes(totalseg)
    summary = convert_dataset(totalseg, options(), raw=raw, progress=False)
    return raw, summary, before


def options(dataset_id=301, name=None, require_iliacs=False, **kw):
    return ConversionOptions(dataset_id, name, scheme=TavrScheme(DERIVE, require_iliacs=require_iliacs), **kw)


# ----------------------------------------------------------------------------------------------
# layouts


def test_discover_totalsegmentator_layout_and_shards(totalseg):
    layout, cases = discover_cases(totalseg)
    assert layout == "totalsegmentator"
    assert [c.case_id for c in cases] == [f"s{i:04d}" for i in range(N + 1)]
    assert [c.case_id for c in cases if c.problem] == ["s0010"]
    shards = [shard_of(cases, (i, 3)) for i in range(3)]
    ids = [c.case_id for s in shards for c in s]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(ids) == len(set(ids))
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/2", "a/b", "3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_discover_generic_layout(tmp_path):
    for name in ("patient_a", "patient-b", "bad name"):
        (tmp_path / name / "segmentations").mkdir(parents=True)
        (tmp_path / name / "ct.nii.gz").write_bytes(b"")
    (tmp_path / "patient_c").mkdir()
    (tmp_path / "patient_c" / "total.nii.gz").write_bytes(b"")
    (tmp_path / "notes").mkdir()  # neither CT nor masks: not a case
    layout, cases = discover_cases(tmp_path)
    assert layout == "generic"
    assert [c.case_id for c in cases] == ["bad name", "patient-b", "patient_a", "patient_c"]
    assert "invalid case id" in str(cases[0].problem) and cases[0].problem.code == "invalid_case_id"
    assert cases[0].path == tmp_path  # no path is ever built from an invalid id
    assert not any(c.problem for c in cases[1:])


# ----------------------------------------------------------------------------------------------
# one conversion


def test_kept_and_dropped_cases_carry_their_reasons(converted):
    raw, summary, _ = converted
    folder = raw / "Dataset301_TAVR"
    manifest = read_manifest(folder)
    assert list(manifest["case"]) == [f"s{i:04d}" for i in range(N + 1)]
    reasons = dict(zip(manifest["case"], manifest["reason"]))
    kept = sorted(manifest.loc[manifest["kept"] == 1, "case"])
    assert kept == KEPT == summary.kept
    for case, reason in BROKEN.items():
        assert reasons[case] == reason, (case, reasons[case])
    detail = dict(zip(manifest["case"], manifest["detail"]))
    assert "left_ventricle" in detail["s0001"] and "aorta" in detail["s0002"]
    assert "s0003" in detail["s0003"] and "ct.nii.gz" in detail["s0003"]
    assert "heart_ventricle_left" in detail["s0004"] and "shape" in detail["s0004"]
    # no iliacs in s0005: kept, with empty iliac labels
    row = manifest.set_index("case").loc["s0005"]
    assert int(row["kept"]) == 1 and int(row["voxels_iliac_artery_left"]) == 0 and int(row["voxels_iliac_artery_right"]) == 0
    kept_rows = manifest[manifest["kept"] == 1]
    assert (kept_rows[["voxels_valve", "voxels_annulus", "voxels_aortic_root"]].astype(int) > 0).all().all()
    assert (kept_rows["root_end_mm"].astype(float) > 5).all()


def test_dataset_layout_images_labels_and_splits(converted, totalseg):
    import SimpleITK as sitk

    raw, summary, _ = converted
    folder = raw / "Dataset301_TAVR"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"} and ds["file_ending"] == ".nii.gz"
    assert ds["labels"] == {"background": 0, "aorta": 1, "left_ventricle": 2, "aortic_root": 3, "valve": 4, "annulus": 5, "iliac_artery_left": 6, "iliac_artery_right": 7}
    tr = sorted(p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTr").iterdir())
    ts = sorted(p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTs").iterdir())
    assert ds["numTraining"] == len(tr) and sorted(tr + ts) == KEPT
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in tr]
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == [f"{c}.nii.gz" for c in ts]

    split = json.loads((folder / "tavr_splits.json").read_text())
    folds = json.loads((folder / "splits_final.json").read_text())
    check_splits(split, folds)  # disjoint sets, folds partition train+val, no test case in a fold
    assert sorted(split["test"]) == ts and sorted(split["train"] + split["val"]) == tr
    assert folds[split["paper_fold"]] == {"train": split["train"], "val": split["val"]}

    case = tr[0]
    # the image is the input CT, byte for byte; the label is uint8 on the same grid
    assert (folder / "imagesTr" / f"{case}_0000.nii.gz").read_bytes() == (totalseg / case / "ct.nii.gz").read_bytes()
    image = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    label = sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz"))
    assert label.GetPixelID() == sitk.sitkUInt8
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing())
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin())
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(label))) == set(range(8))
    assert (folder / "qc" / "area_curve.png").stat().st_size > 10_000


def test_input_is_never_modified(converted, totalseg):
    _, _, before = converted
    assert tree_hashes(totalseg) == before


def test_rerun_skips_finished_cases_and_redoes_broken_ones(converted, totalseg, tmp_path):
    import shutil

    raw, _, _ = converted
    reference = dataset_hashes(raw / "Dataset301_TAVR")
    # work on a copy so the other tests keep the reference dataset
    raw2 = tmp_path / "raw"
    shutil.copytree(raw, raw2)
    folder = raw2 / "Dataset301_TAVR"
    again = convert_dataset(totalseg, options(), raw=raw2, progress=False)
    assert again.converted == 0 and again.skipped == N + 1
    assert dataset_hashes(folder) == reference

    # break two kept cases: a missing label and a half-written image
    test_case = json.loads((folder / "tavr_splits.json").read_text())["test"][0]
    train_case = json.loads((folder / "tavr_splits.json").read_text())["train"][0]
    (folder / "labelsTs" / f"{test_case}.nii.gz").unlink()
    image = folder / "imagesTr" / f"{train_case}_0000.nii.gz"
    image.write_bytes(image.read_bytes()[:1000])
    (folder / "imagesTr" / f".{train_case}_0000.abc123.nii.gz").write_bytes(b"left by a killed run")
    redone = convert_dataset(totalseg, options(), raw=raw2, progress=False)
    assert redone.converted_cases == sorted([test_case, train_case]) and redone.skipped == N - 1
    assert dataset_hashes(folder) == reference
    assert not list(folder.glob("images*/.*"))


def test_overwrite_policy(converted, totalseg, tmp_path):
    import shutil

    raw, _, _ = converted
    raw2 = tmp_path / "raw"
    shutil.copytree(raw, raw2)
    with pytest.raises(ConversionRefused, match="seed"):
        convert_dataset(totalseg, options(seed=1), raw=raw2, progress=False)
    with pytest.raises(ConversionRefused, match="already used"):
        convert_dataset(totalseg, options(301, "Other"), raw=raw2, progress=False)
    foreign = tmp_path / "raw3" / "Dataset302_TAVR"
    foreign.mkdir(parents=True)
    (foreign / "dataset.json").write_text("{}")
    with pytest.raises(ConversionRefused, match="not made by"):
        convert_dataset(totalseg, options(302), raw=tmp_path / "raw3", progress=False)
    with pytest.raises(ConversionRefused, match="--overwrite with --shard"):
        convert_dataset(totalseg, options(), raw=raw2, shard=(0, 2), overwrite=True, progress=False)
    # --overwrite rebuilds with the new settings; a --require-iliacs run drops s0005 for its iliacs
    summary = convert_dataset(totalseg, options(require_iliacs=True), raw=raw2, overwrite=True, progress=False)
    assert summary.converted == N + 1
    assert summary.dropped["empty_mask"] == ["s0001", "s0002", "s0005"]  # one requirement, one code
    assert "iliac_artery_left" in read_manifest(summary.folder).set_index("case").loc["s0005", "detail"]
    assert "s0005" not in summary.kept and len(summary.kept) == len(KEPT) - 1


def test_two_shards_merged_equal_one_run(converted, totalseg, tmp_path):
    raw, _, _ = converted
    reference = dataset_hashes(raw / "Dataset301_TAVR")
    raw2 = tmp_path / "raw"
    first = convert_dataset(totalseg, options(), raw=raw2, shard=(0, 2), progress=False)
    assert not first.finalized and not (raw2 / "Dataset301_TAVR" / "dataset.json").exists()
    with pytest.raises(ConversionRefused, match="not converted yet"):
        convert_dataset(totalseg, options(), raw=raw2, merge_only=True, progress=False)
    convert_dataset(totalseg, options(), raw=raw2, shard=(1, 2), progress=False)
    merged = convert_dataset(totalseg, options(), raw=raw2, merge_only=True, progress=False)
    assert merged.converted == 0 and merged.finalized
    assert dataset_hashes(raw2 / "Dataset301_TAVR") == reference


# ----------------------------------------------------------------------------------------------
# the command line: killed midway, rerun in parallel; nnU-Net accepts the result


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "nnunet_tavr.cli", "convert", *map(str, args)]


@pytest.mark.slow
def test_killed_conversion_rerun_gives_the_same_dataset(converted, totalseg, tmp_path):
    raw, _, _ = converted
    reference = dataset_hashes(raw / "Dataset301_TAVR")
    raw2 = tmp_path / "raw"
    records = raw2 / "Dataset301_TAVR" / "conversion" / "cases"
    cmd = _cli(totalseg, "-d", 301, "--raw", raw2, "--annulus-mm", 3.0, "--quiet")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and len(finished_records(records)) >= 2:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # like a cluster scheduler: the whole process group
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the conversion finished before it could be killed"
    done = len(finished_records(records))
    assert 2 <= done < N + 1
    assert not (raw2 / "Dataset301_TAVR" / "dataset.json").exists()

    rerun = subprocess.run(cmd + ["-np", "2"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{done} already done" in rerun.stdout
    assert dataset_hashes(raw2 / "Dataset301_TAVR") == reference


@pytest.mark.slow
def test_nnunet_plan_and_preprocess_verifies_the_dataset(converted, tmp_path):
    """``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` accepts the converted dataset."""
    from nnunet_tavr.cli import main as cli_main
    from nnunet_tavr.folders import NnunetFolders

    raw, _, _ = converted
    pre = tmp_path / "preprocessed"
    env = dict(NnunetFolders(raw, pre, tmp_path / "results").env(), OMP_NUM_THREADS="1")
    exe = str(Path(sys.executable).with_name("nnUNetv2_plan_and_preprocess"))
    proc = subprocess.run([exe, "-d", "301", "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--verify_dataset_integrity"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = raw / "Dataset301_TAVR"
    installed = pre / "Dataset301_TAVR" / "splits_final.json"
    assert json.loads(installed.read_text()) == json.loads((folder / "splits_final.json").read_text())
    n_train = json.loads((folder / "dataset.json").read_text())["numTraining"]
    assert len(list((pre / "Dataset301_TAVR" / "gt_segmentations").glob("*.nii.gz"))) == n_train

    # nnU-Net's own split (e.g. written by a first training) is replaced by --install-splits
    installed.write_text(json.dumps([{"train": ["x"], "val": ["y"]}]))
    assert cli_main(["convert", "-d", "301", "--install-splits", "--raw", str(raw), "--preprocessed", str(pre)]) == 0
    assert json.loads(installed.read_text()) == json.loads((folder / "splits_final.json").read_text())


def test_dataset_script_and_cli_errors(converted, totalseg, capsys):
    """``Dataset301_TAVR.py`` runs the same code (a rerun: nothing to convert); CLI errors are clean."""
    from nnunet_tavr.cli import main as cli_main
    from nnunet_tavr.dataset_conversion.Dataset301_TAVR import run

    raw, _, _ = converted
    assert run([str(totalseg), "--raw", str(raw), "--annulus-mm", "3.0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{N + 1} already done" in out and "dropped (empty_mask): 2" in out
    assert cli_main(["convert", "-d", "301"]) == 2
    assert cli_main(["convert", str(totalseg), "-d", "301", "--raw", str(raw), "--seed", "7", "--quiet"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_generic_layout_with_multilabel_files(tmp_path):
    """Own CTs: a folder of TotalSegmentator masks, multilabel ``--ml`` files, and a case without LV."""
    from nnunet_tavr.io import write_array
    from nnunet_tavr.totalseg import TASKS
    from nnunet_tavr.phantom import make_subject, write_subject

    src = tmp_path / "own"
    write_subject(make_subject(11, shape=SHAPE, spacing=SPACING), src / "patient_a")  # ct + segmentations/
    ph = make_subject(12, shape=SHAPE, spacing=SPACING)
    write_array(ph.ct, ph.geometry, src / "patient_b" / "ct.nii.gz")
    ml = np.zeros(SHAPE, np.uint8)
    ids = TASKS["total_v1"].ids
    for name in ("aorta", "heart_ventricle_left", "iliac_artery_left", "iliac_artery_right"):
        ml[ph.masks[name]] = ids[name]
    write_array(ml, ph.geometry, src / "patient_b" / "total_v1.nii.gz")
    ph = make_subject(13, shape=SHAPE, spacing=SPACING)
    write_subject(ph, src / "patient_c")
    (src / "patient_c" / "segmentations" / "heart_ventricle_left.nii.gz").unlink()  # v2 'total' has no LV

    summary = convert_dataset(src, options(303, "Own"), raw=tmp_path / "raw", qc=True, progress=False)
    assert summary.kept == ["patient_a", "patient_b"]
    # --qc: a figure per case (the excluded one shows its coarse masks and why), and the dataset curve
    assert sorted(p.name for p in (summary.folder / "qc").iterdir()) == ["area_curve.png", "patient_a.png", "patient_b.png", "patient_c.png"]
    assert summary.dropped == {"missing_mask": ["patient_c"]}
    detail = read_manifest(summary.folder).set_index("case").loc["patient_c", "detail"]
    assert "heartchambers_highres" in detail  # says how to get a left ventricle
    assert (summary.folder / "dataset.json").is_file()
