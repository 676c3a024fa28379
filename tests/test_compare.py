"""`nnunet-tavr compare` on synthetic nnU-Net results trees with known values, and end to end."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from nnunet_tavr.cli import main as cli_main
from nnunet_tavr.evaluation.results import collect_validation, load_dataset
from nnunet_tavr.io import Geometry, InputError, write_array

NAME = "Dataset123_Toy"
SPACING = (0.5, 2.0, 1.0)  # z finest: a one-voxel z shift moves a surface by 0.5 mm
LABELS = {"background": 0, "ring": 1, "core": 2}
FOLDS = [["c0", "c1", "c2"], ["c3", "c4", "c5"]]


def _reference(shape=(10, 16, 16)):
    seg = np.zeros(shape, np.uint8)
    seg[2:8, 3:9, 3:9] = 1
    seg[2:8, 10:14, 10:14] = 2
    return seg


def _geometry(shape):
    return Geometry(shape=shape, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))


def _shift_ring(seg):
    """Label 1 moved by one voxel along z (the 6x6x6 cube of the metric tests): Dice 5/6."""
    out = seg.copy()
    out[out == 1] = 0
    out[3:9, 3:9, 3:9] = 1
    return out


@pytest.fixture
def toy_tree(tmp_path):
    """Two trainers: A perfect on both folds; B with label 1 shifted, fold 1 missing, case c2 missing."""
    raw, pre, res = tmp_path / "raw", tmp_path / "pre", tmp_path / "res"
    meta = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 6, "file_ending": ".nii.gz"}
    for root in (raw, pre):
        (root / NAME).mkdir(parents=True)
        (root / NAME / "dataset.json").write_text(json.dumps(meta))
    (pre / NAME / "splits_final.json").write_text(json.dumps([{"train": FOLDS[1 - k], "val": FOLDS[k]} for k in range(2)]))
    ref = _reference()
    geo = _geometry(ref.shape)
    for fold, cases in enumerate(FOLDS):
        for case in cases:
            write_array(ref, geo, pre / NAME / "gt_segmentations" / f"{case}.nii.gz")
            write_array(ref, geo, res / NAME / "TrA__nnUNetPlans__3d_fullres" / f"fold_{fold}" / "validation" / f"{case}.nii.gz")
            if fold == 0 and case != "c2":
                write_array(_shift_ring(ref), geo, res / NAME / "TrB__nnUNetPlans__3d_fullres" / "fold_0" / "validation" / f"{case}.nii.gz")
    (res / NAME / "TrB__nnUNetPlans__3d_fullres" / "fold_1").mkdir(parents=True)  # started, never validated
    return tmp_path


def _args(tree, out, *extra):
    return [
        "compare", "-d", "123", "-c", "3d_fullres", "-tr", "TrA", "TrB", "-f", "0", "1", "-o", str(out),
        "--raw", str(tree / "raw"), "--preprocessed", str(tree / "pre"), "--results", str(tree / "res"),
        "-np", "1", "-q", "--bootstrap", "500", *extra,
    ]


def test_collect_lists_missing_fold_and_case(toy_tree):
    info = load_dataset(123, toy_tree / "raw", toy_tree / "pre", toy_tree / "res")
    assert info.name == NAME and info.file_ending == ".nii.gz"
    inv = collect_validation(info, ["TrA", "TrB"], "nnUNetPlans", "3d_fullres", [0, 1])
    assert sorted((j.trainer, j.case) for j in inv.jobs) == sorted(
        [("TrA", c) for f in FOLDS for c in f] + [("TrB", "c0"), ("TrB", "c1")]
    )
    gaps = {(g.trainer, g.fold, g.case): g.reason for g in inv.gaps}
    assert set(gaps) == {("TrB", "0", "c2"), ("TrB", "1", None)}
    assert "no validation predictions" in gaps[("TrB", "1", None)]


def test_compare_writes_all_outputs_with_known_values(toy_tree, tmp_path):
    out = tmp_path / "cmp"
    assert cli_main(_args(toy_tree, out)) == 0

    per_case = pd.read_csv(out / "per_case.csv")
    assert len(per_case) == (6 + 2) * 2  # (A: 6 cases, B: 2 cases) x 2 classes
    b_ring = per_case[(per_case.trainer == "TrB") & (per_case["class"] == "ring")]
    assert np.allclose(b_ring.Dice, 5 / 6) and np.allclose(b_ring.IoU, 5 / 7)
    # 52 of 152 surface voxels per side are 0.5 mm from the other surface (see test_metrics)
    assert np.allclose(b_ring.ASSD, 52 * 0.5 / 152) and np.allclose(b_ring.HD95, 0.5)
    a = per_case[per_case.trainer == "TrA"]
    assert (a.Dice == 1).all() and (a.ASSD == 0).all()

    def no_nan(constant):
        raise AssertionError(f"summary.json is not strict JSON: {constant}")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=no_nan)
    val = summary["splits"]["val"]
    # Compared only on the cases both have: c0 and c1 of fold 0.
    assert val["n_common_cases"] == 2 and val["common_cases"] == [["0", "c0"], ["0", "c1"]]
    assert sorted(c for _, c in val["excluded_cases"]["TrA"]) == ["c2", "c3", "c4", "c5"]
    assert val["mean"]["Dice"]["TrA"] == pytest.approx(1.0)
    assert val["mean"]["Dice"]["TrB"] == pytest.approx((5 / 6 + 1) / 2)
    assert val["per_class"]["Dice"]["ring"]["TrB"]["mean"] == pytest.approx(5 / 6)
    assert val["bootstrap_ci"]["TrB"]["n"] == 2
    (test,) = val["wilcoxon"]
    assert (test["a"], test["b"], test["n"], test["wins"]) == ("TrA", "TrB", 2, 2)
    assert test["p"] is None and test["note"] == "n too small"  # 2 pairs: no test (its exact p could only be 0.5)
    assert val["bootstrap_ci"]["TrB"]["low"] is None  # and no interval, not a zero-width one
    assert {(g["trainer"], g["fold"], g["case"]) for g in summary["gaps"]} == {("TrB", "0", "c2"), ("TrB", "1", None)}

    report = (out / "report.md").read_text()
    # labels come from dataset.json: one Dice and one IoU row per class, then means and distances
    for row in ("ring Dice", "ring IoU", "core Dice", "core IoU", "Mean Dice", "Mean IoU", "ring ASSD (mm)", "core HD95 (mm)"):
        assert f"| {row} |" in report, row
    ring_dice = next(line for line in report.splitlines() if line.startswith("| ring Dice |"))
    assert ring_dice.split("|")[2].strip() == "**100.00**" and ring_dice.split("|")[3].strip() == "83.33"
    assert "fold 1: no validation predictions" in report and "case c2: prediction missing" in report
    assert report.count("n too small") >= 3  # the two intervals and the test
    assert "left out of the common comparison" in report
    png = (out / "dice_boxplots_val.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_rerun_uses_cache_and_test_split(toy_tree, tmp_path):
    out = tmp_path / "cmp"
    # Test set: labelsTs with one case; TrB's test folder lacks it.
    ref = _reference()
    write_array(ref, _geometry(ref.shape), toy_tree / "raw" / NAME / "labelsTs" / "t0.nii.gz")
    write_array(ref, _geometry(ref.shape), tmp_path / "predA" / "t0.nii.gz")
    write_array(ref, _geometry(ref.shape), tmp_path / "predB" / "other.nii.gz")
    args = _args(toy_tree, out, "--test", str(tmp_path / "predA"), str(tmp_path / "predB"))
    assert cli_main(args) == 0
    cached = sorted((out / ".cache").glob("*.json"))
    assert len(cached) == 9  # 8 validation cases + 1 test case
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert cli_main(args) == 0
    assert [p.stat().st_mtime_ns for p in sorted((out / ".cache").glob("*.json"))] == stamps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["test"]["trainers"] == ["TrA"]
    assert ("TrB", "test", "t0") in {(g["trainer"], g["split"], g["case"]) for g in summary["gaps"]}


def test_bad_inputs_name_case_and_file(toy_tree, tmp_path, capsys):
    # A prediction on a different grid is a gap with the case and file in its reason; the other
    # cases are still compared and the report is written (exit status 1: a case failed).
    bad = np.zeros((10, 16, 15), np.uint8)
    path = toy_tree / "res" / NAME / "TrA__nnUNetPlans__3d_fullres" / "fold_0" / "validation" / "c1.nii.gz"
    write_array(bad, _geometry(bad.shape), path)
    assert cli_main(_args(toy_tree, tmp_path / "o")) == 1
    out = capsys.readouterr().out
    assert "case c1" in out and str(path) in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    gap = next(g for g in summary["gaps"] if g["case"] == "c1")
    assert gap["trainer"] == "TrA" and "geometry_mismatch" in gap["reason"] and str(path) in gap["reason"]
    assert (tmp_path / "o" / "report.md").is_file()
    with pytest.raises(InputError, match="Dataset999"):
        load_dataset(999, toy_tree / "raw", toy_tree / "pre", toy_tree / "res")
    capsys.readouterr()
    assert cli_main(_args(toy_tree, tmp_path / "o")[:-2] + ["-tr", "Nope"]) == 2  # nothing to compare: bad input
    assert "nothing to evaluate" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_two_smoke_trainers(tavr_nnunet, tmp_path):
    """Two short-schedule trainers on two folds of the phantom dataset, then `compare` (fold 2 missing)."""
    # Baseline vs focal loss: the cheapest pair of real trainers (no skeletons in the data loader).
    trainers = ["nnUNetTrainer_smoke", "nnUNetTrainerFocal_smoke"]
    results = tavr_nnunet.results / tavr_nnunet.dataset_name
    env = {**tavr_nnunet.env, "nnUNet_def_n_proc": "1"}  # one export worker for the fold validation
    for trainer in trainers:
        for fold in ("0", "1"):
            train = ["nnUNetv2_train", str(tavr_nnunet.dataset_id), "3d_fullres", fold, "-p", tavr_nnunet.plans,
                     "-tr", trainer, "-device", "cpu"]
            folder = results / f"{trainer}__{tavr_nnunet.plans}__3d_fullres" / f"fold_{fold}"
            # another test of the session may already have trained or validated it: reuse that
            if not (folder / "checkpoint_final.pth").is_file():
                tavr_nnunet.run(*train, timeout=1800, env=env)
            # _smoke trainers end after training; the validation predictions come from nnU-Net's --val
            if not (folder / "validation" / "summary.json").is_file():
                tavr_nnunet.run(*train, "--val", timeout=1800, env=env)
    out = tmp_path / "cmp"
    proc = tavr_nnunet.run(
        "nnunet-tavr", "compare", "-d", str(tavr_nnunet.dataset_id), "-c", "3d_fullres", "-p", tavr_nnunet.plans,
        "-tr", *trainers, "-f", "0", "1", "2", "-o", str(out), "-np", "2", "-q", "--bootstrap", "1000",
    )
    assert "gap" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    from nnunet_tavr.labels import DISPLAY_NAMES, FOREGROUND

    assert summary["splits"]["val"]["classes"] == list(FOREGROUND)
    splits = json.loads((tavr_nnunet.preprocessed / tavr_nnunet.dataset_name / "splits_final.json").read_text())
    assert summary["splits"]["val"]["n_common_cases"] == len(splits[0]["val"]) + len(splits[1]["val"])
    assert {(g["trainer"], g["fold"], g["case"]) for g in summary["gaps"]} == {(t, "2", None) for t in trainers}
    assert len(summary["splits"]["val"]["wilcoxon"]) == 1
    report = (out / "report.md").read_text()
    assert "fold 2: fold not trained" in report
    for name in FOREGROUND:
        assert f"| {DISPLAY_NAMES[name]} Dice |" in report and f"| {DISPLAY_NAMES[name]} IoU |" in report
    per_case = pd.read_csv(out / "per_case.csv")
    assert set(per_case.trainer) == set(trainers) and set(per_case.fold.astype(str)) == {"0", "1"}
    assert (out / "dice_boxplots_val.png").stat().st_size > 5000
