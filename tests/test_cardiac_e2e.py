"""End to end on whole-heart phantoms with a tiny plan: ``nnunet-tavr phantom --heart-chambers`` ->
``convert --scheme heart`` -> ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` -> the real
``nnUNetv2_train`` of this project's DiceCE trainer -> ``nnUNetv2_predict`` -> ``nnunet-tavr cardiac``
with the agreement report; and one real train step of the other trainer families on the same data
(it is just more classes)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import NnunetTree, nnunet_env

pytestmark = pytest.mark.slow

DATASET_ID, DATASET_NAME = 304, "Dataset304_Heart"
#: 3 mm phantoms, the last one chest-less (dropped: no_heart), cropped to the heart (+12 mm).
NUM_SUBJECTS, CROP_MM = 6, "12"
#: The paper's baseline loss (its skeleton-recall variants need a skeleton per class and patch:
#: they run one real train step below instead, to keep CPU time low).
TRAINER = "nnUNetTrainerDiceCE_smoke"


@pytest.fixture(scope="module")
def heart_tree(tmp_path_factory) -> NnunetTree:
    from nnunet_tavr.tiny_plans import write_tiny_plans

    root = tmp_path_factory.mktemp("heart_nnunet")
    tree = NnunetTree(root=root, env=nnunet_env(root), dataset_id=DATASET_ID, dataset_name=DATASET_NAME)
    tree.folders.makedirs()
    tree.run("nnunet-tavr", "phantom", str(tree.phantoms), "-n", str(NUM_SUBJECTS), "--shape", "100", "80", "80",
             "--spacing", "3", "--heart-chambers", "--no-heart", str(NUM_SUBJECTS - 1))
    tree.run("nnunet-tavr", "convert", str(tree.phantoms), "--scheme", "heart", "-d", str(DATASET_ID), "--quiet",
             "--crop-margin-mm", CROP_MM)
    planning_env = {k: v for k, v in tree.env.items() if k != "nnUNet_n_proc_DA"}  # planning needs >= 1
    tree.run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
             "--verify_dataset_integrity", env=planning_env)
    write_tiny_plans(tree.preprocessed / DATASET_NAME, configurations=("3d_fullres",))
    tree.run("nnunet-tavr", "convert", "-d", str(DATASET_ID), "--install-splits")
    return tree


def test_convert_plan_train_predict_and_cardiac_report(heart_tree, tmp_path):
    tree = heart_tree
    raw = tree.raw / DATASET_NAME
    manifest = {r["case"]: r for r in csv.DictReader((raw / "manifest.csv").open())}
    assert manifest[f"s{NUM_SUBJECTS - 1:04d}"]["reason"] == "no_heart"
    assert sum(r["kept"] == "1" for r in manifest.values()) == NUM_SUBJECTS - 1

    tree.run("nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-p", tree.plans, "-tr", TRAINER, "-device", "cpu",
             timeout=1800)
    out = tree.results / DATASET_NAME / f"{TRAINER}__{tree.plans}__3d_fullres" / "fold_0"
    assert (out / "checkpoint_final.pth").is_file()

    # predict every kept case (training ones included: the smoke model is not judged, the pipeline is)
    images, refs, pred = tmp_path / "images", tmp_path / "refs", tmp_path / "pred"
    images.mkdir(), refs.mkdir()
    for sub in ("Tr", "Ts"):
        for path in (raw / f"images{sub}").glob("*.nii.gz"):
            (images / path.name).symlink_to(path)
        for path in (raw / f"labels{sub}").glob("*.nii.gz"):
            (refs / path.name).symlink_to(path)
    tree.run("nnUNetv2_predict", "-i", str(images), "-o", str(pred), "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0",
             "-p", tree.plans, "-tr", TRAINER, "--disable_tta", "-device", "cpu", "-npp", "1", "-nps", "1", timeout=1800)
    report = tmp_path / "cardiac"
    tree.run("nnunet-tavr", "cardiac", str(pred), "--reference", str(refs), "-o", str(report), "--quiet")

    classes = json.loads((raw / "dataset.json").read_text())["labels"]
    rows = list(csv.DictReader((report / "agreement.csv").open()))
    assert [r["quantity"] for r in rows] == [c for c in classes if c != "background"] + ["lv_mass"]
    n = NUM_SUBJECTS - 1
    for row in rows:
        assert int(row["n"]) == n
        # every statistic is a number (n = 5 is enough for limits and CIs) unless a class was never predicted
        if row["pearson_r"]:
            assert float(row["pearson_ci_low"]) <= float(row["pearson_r"]) <= float(row["pearson_ci_high"])
        assert float(row["lower_ci_low"]) <= float(row["lower_limit"]) <= float(row["upper_limit"]) <= float(row["upper_ci_high"])
    dice = list(csv.DictReader((report / "dice.csv").open()))
    assert len(dice) == n * (len(classes) - 1)
    assert all(0.0 <= float(d["dice"]) <= 1.0 for d in dice if d["dice"])
    assert len(list((report / "figures").glob("agreement_*.png"))) == len(rows)
    text = (report / "report.md").read_text()
    assert "## Agreement" in text and "LV mass (g)" in text
    # the reference volumes are the phantom's truth (labels cropped to the heart keep every chamber voxel)
    volumes = {r["case"]: r for r in csv.DictReader((report / "volumes.csv").open()) if r["source"] == "reference"}
    truth = json.loads((tree.phantoms / "s0000" / "truth.json").read_text())["heart_volumes_ml"]
    assert float(volumes["s0000"]["left_ventricle_cavity_ml"]) == pytest.approx(truth["left_ventricle_cavity"], rel=0.02)


#: One combination per trainer family beyond the DiceCE U-Net trained above: the paper's focal
#: skeleton recall (skeleton targets of every class), and the two architectures.
FAMILIES = ["nnUNetTrainerFocalSR_smoke", "nnUNetTrainerSwinUNETRFocal_smoke", "nnUNetTrainerVNetDiceCE_smoke"]


@pytest.mark.parametrize("name", FAMILIES)
def test_trainer_families_train_on_the_heart_classes(heart_tree, name, monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_tavr.trainer_path import trainer_folder

    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(key, heart_tree.env[key])
    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    torch.manual_seed(0)
    folder = heart_tree.preprocessed / DATASET_NAME
    plans = json.loads((folder / f"{heart_tree.plans}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((folder / "dataset.json").read_text())
    trainer = recursive_find_trainer_class_by_name(name)(plans, "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    assert trainer.label_manager.num_segmentation_heads == len(dataset_json["labels"])
    loader, _ = trainer.get_dataloaders()
    trainer.network.train()
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = trainer.train_step(next(loader))["loss"]
    assert np.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters()))
