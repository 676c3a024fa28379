"""End to end on phantoms (slow): ``fluoro`` -> ``convert --scheme fluoro`` -> the real
``nnUNetv2_plan_and_preprocess`` (2d) -> tiny plans -> the real ``nnUNetv2_train ... 2d ... -tr
nnUNetTrainerSMPFPN_smoke`` -> ``nnUNetv2_predict --disable_tta`` -> ``compare --group-by patient``
with ASSD in mm; every other SMP architecture and nnU-Net's own 2d U-Net run a real training and
validation step in-process on the same preprocessed frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import NnunetTree, nnunet_env

DATASET_ID = 316
DATASET = "Dataset316_FluoroRoot"
PIXEL_MM = 1.6
#: A tiny-plan patch that is no multiple of 32: the SMP networks pad it inside.
PATCH = 48


@pytest.fixture(scope="module")
def fluoro_nnunet(tmp_path_factory) -> NnunetTree:
    """Five 3 mm phantoms x 4 frames of 96^2 at 1.6 mm, converted, planned (2d), preprocessed."""
    from nnunet_tavr.cli import main
    from nnunet_tavr.phantom import write_dataset
    from nnunet_tavr.tiny_plans import write_tiny_plans

    root = tmp_path_factory.mktemp("fluoro")
    tree = NnunetTree(root=root, env=nnunet_env(root), dataset_id=DATASET_ID, dataset_name=DATASET)
    tree.folders.makedirs()
    write_dataset(root / "phantoms", 5, seed=0, shape=(100, 80, 80), spacing=3.0, progress=False)
    assert main(["fluoro", str(root / "phantoms"), "-o", str(root / "frames"), "--frames", "4", "--matrix", "96",
                 "--pixel-mm", str(PIXEL_MM), "--valve-mm", "9", "--annulus-mm", "3", "--no-preview", "--quiet"]) == 0
    assert main(["convert", str(root / "frames"), "--scheme", "fluoro", "-d", str(DATASET_ID), "--raw", str(tree.raw), "--quiet"]) == 0
    planning_env = {k: v for k, v in tree.env.items() if k != "nnUNet_n_proc_DA"}
    tree.run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1",
             "--verify_dataset_integrity", env=planning_env)
    write_tiny_plans(tree.preprocessed / DATASET, configurations=("2d",), patch_size=PATCH)
    return tree


@pytest.mark.slow
def test_train_predict_compare_by_patient(fluoro_nnunet, tmp_path):
    from nnunet_tavr.io import read_geometry

    tree = fluoro_nnunet
    trainer = "nnUNetTrainerSMPFPN_smoke"
    train = ["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-p", tree.plans, "-tr", trainer, "-device", "cpu"]
    tree.run(*train)
    tree.run(*train, "--val")  # _smoke trainers validate on demand
    model = tree.results / DATASET / f"{trainer}__{tree.plans}__2d" / "fold_0"
    assert (model / "checkpoint_final.pth").is_file() and any((model / "validation").glob("*.nii.gz"))
    predictions = tmp_path / "pred"
    tree.run("nnUNetv2_predict", "-i", str(tree.raw / DATASET / "imagesTs"), "-o", str(predictions), "-d", str(DATASET_ID),
             "-c", "2d", "-p", tree.plans, "-tr", trainer, "-f", "0", "--disable_tta", "-device", "cpu")
    test_cases = sorted(p.name for p in (tree.raw / DATASET / "labelsTs").glob("*.nii.gz"))
    assert test_cases and sorted(p.name for p in predictions.glob("*.nii.gz")) == test_cases
    assert read_geometry(predictions / test_cases[0]).spacing == pytest.approx((PIXEL_MM, PIXEL_MM), rel=1e-5)

    out = tmp_path / "cmp"
    from nnunet_tavr.cli import main

    assert main(["compare", "-d", str(DATASET_ID), "-c", "2d", "-p", tree.plans, "-tr", trainer, "-f", "0", "--test", str(predictions),
                 "--group-by", "patient", "-o", str(out), "-q", "-np", "1", "--bootstrap", "200", "--raw", str(tree.raw),
                 "--preprocessed", str(tree.preprocessed), "--results", str(tree.results)]) == 0
    summary = json.loads((out / "summary.json").read_text())["splits"]
    groups = json.loads((tree.raw / DATASET / "tavr_splits.json").read_text())["groups"]
    assert summary["val"]["unit"] == "patient" and summary["val"]["n_common_frames"][trainer] == len(list((model / "validation").glob("*.nii.gz")))
    test = summary["test"]
    assert test["unit"] == "patient" and test["n_common_cases"] == len({groups[c[: -len(".nii.gz")]] for c in test_cases})
    assert test["n_common_frames"][trainer] == len(test_cases)
    frames = pd.read_csv(out / "per_case.csv")
    assert set(frames.case) >= {c[: -len(".nii.gz")] for c in test_cases}
    assd = frames.loc[(frames.split == "test") & (frames.n_ref > 0) & (frames.n_pred > 0), "ASSD"]
    diagonal = np.hypot(95, 95) * PIXEL_MM
    assert (assd.dropna() < diagonal).all()  # distances in mm, within the frame
    report = (out / "report.md").read_text()
    assert "patient(s)" in report and "frames)" in report and "ASSD (mm)" in report and "n patients" in report


def _plans(tree):
    folder = tree.preprocessed / DATASET
    plans = json.loads((folder / f"{tree.plans}.json").read_text())
    plans["continue_training"] = False
    return plans, json.loads((folder / "dataset.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nnUNetTrainerSMPUnetPlusPlus_smoke", "nnUNetTrainerSMPDeepLabV3Plus_smoke",
                                  "nnUNetTrainerSMPLinknet_smoke", "nnUNetTrainerSMPMAnet_smoke", "nnUNetTrainerSMPPSPNet_smoke",
                                  "nnUNetTrainerSMPMAnetFocalSR_smoke", "nnUNetTrainer_smoke"])
def test_train_and_validation_step_in_process(fluoro_nnunet, monkeypatch, name):
    """A real nnU-Net train step (weights change) and validation step on the preprocessed frames;
    nnUNetTrainer_smoke is nnU-Net's own 2d U-Net, the reference."""
    from nnunet_tavr.trainer_path import trainer_folder

    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(key, fluoro_nnunet.env[key])
    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    # One thread: on a shared 2-core machine two OpenMP threads spin-wait each other (10-30x slower).
    torch.set_num_threads(1)
    try:
        _train_and_validate(fluoro_nnunet, name)
    finally:
        torch.set_num_threads(threads)


def _train_and_validate(fluoro_nnunet, name):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    plans, dataset_json = _plans(fluoro_nnunet)
    trainer = recursive_find_trainer_class_by_name(name)(plans, "2d", 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    assert list(trainer.configuration_manager.patch_size) == [PATCH, PATCH]
    loader_tr, loader_val = trainer.get_dataloaders()
    before = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.network.train()
    loss = trainer.train_step(next(loader_tr))["loss"]
    assert np.isfinite(loss)
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, trainer.network.parameters())]
    assert sum(changed) > len(changed) // 2
    trainer.network.eval()
    out = trainer.validation_step(next(loader_val))
    assert np.isfinite(out["loss"]) and len(out["tp_hard"]) == 1  # one foreground class: the aortic root
