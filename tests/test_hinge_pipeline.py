"""The hinge-point pipeline on cusped phantoms: the ``hinge`` scheme, the heatmap trainers (in-process
steps), the real ``nnUNetv2_train`` / ``nnUNetv2_predict --save_probabilities`` of the OT trainer,
``nnunet-tavr landmarks`` with errors, ``compare --landmarks`` and ``measure`` with hinge points.

One module fixture builds the dataset (9 phantoms at 4 mm, one without its NCC mask), plans it and
writes tiny plans: about 20 s of CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import NnunetTree, nnunet_env, one_step_each

DATASET_ID = 315
DATASET_NAME = "Dataset315_HingePoints"
SHAPE, SPACING, SPHERE_MM = (75, 60, 60), 4.0, 4.0
NUM = 9


@pytest.fixture(scope="module")
def hinge_tree(tmp_path_factory) -> NnunetTree:
    from nnunet_tavr.phantom import write_dataset
    from nnunet_tavr.tiny_plans import write_tiny_plans

    root = tmp_path_factory.mktemp("hinge")
    tree = NnunetTree(root=root, env=nnunet_env(root), dataset_id=DATASET_ID, dataset_name=DATASET_NAME)
    tree.folders.makedirs()
    write_dataset(tree.phantoms, NUM, seed=15, shape=SHAPE, spacing=SPACING, progress=False, aortic_sinuses=True)
    (tree.phantoms / "s0008" / "segmentations" / "non_coronary_cusp.nii.gz").unlink()  # a case without landmarks
    tree.run("nnunet-tavr", "convert", str(tree.phantoms), "--scheme", "hinge", "--sphere-mm", str(SPHERE_MM),
             "-d", str(DATASET_ID), "--quiet")
    planning_env = {k: v for k, v in tree.env.items() if k != "nnUNet_n_proc_DA"}
    tree.run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
             env=planning_env)
    plans_file = write_tiny_plans(tree.preprocessed / DATASET_NAME, configurations=("3d_fullres",))
    # a real 3d_lowres configuration (twice the spacing, its own preprocessed data), as nnU-Net plans
    # one for large images: the heatmap trainers read spacing and patch from the configuration
    plans = json.loads(plans_file.read_text())
    low = json.loads(json.dumps(plans["configurations"]["3d_fullres"]))
    low.update(spacing=[2 * s for s in low["spacing"]], data_identifier="nnUNetTinyPlans_3d_lowres",
               median_image_size_in_voxels=[s / 2 for s in low["median_image_size_in_voxels"]], patch_size=[16, 16, 16])
    # three stages: nnU-Net's deep-supervision weights are undefined (0/0) with two
    low["architecture"]["arch_kwargs"].update(n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[3, 3, 3]] * 3,
                                              strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2, 2, 2],
                                              n_conv_per_stage_decoder=[2, 2])
    plans["configurations"]["3d_lowres"] = low
    plans_file.write_text(json.dumps(plans, indent=2))
    tree.run("nnUNetv2_preprocess", "-d", str(DATASET_ID), "-plans_name", "nnUNetTinyPlans", "-c", "3d_lowres", "-np", "1",
             env=planning_env)
    tree.run("nnunet-tavr", "convert", "-d", str(DATASET_ID), "-n", "HingePoints", "--install-splits")
    return tree


@pytest.fixture
def env(hinge_tree, monkeypatch):
    from nnunet_tavr.trainer_path import trainer_folder

    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(key, hinge_tree.env[key])
    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    torch.manual_seed(0)
    return hinge_tree


def test_scheme_writes_spheres_landmarks_and_drops_cases_without_cusps(hinge_tree):
    import csv

    from nnunet_tavr.io import read_array

    folder = hinge_tree.raw / DATASET_NAME
    manifest = {r["case"]: r for r in csv.DictReader((folder / "manifest.csv").open())}
    assert manifest["s0008"]["kept"] == "0" and manifest["s0008"]["reason"] == "no_cusp_masks"
    doc = json.loads((folder / "landmarks.json").read_text())
    assert doc["landmarks"] == ["RCC", "LCC", "NCC"] and set(doc["cases"]) == {f"s{i:04d}" for i in range(8)}
    assert json.loads((folder / "dataset.json").read_text())["labels"] == {"background": 0, "RCC": 1, "LCC": 2, "NCC": 3}
    case, points = next(iter(doc["cases"].items()))
    side = "labelsTs" if points["split"] == "test" else "labelsTr"
    labels, geo = read_array(folder / side / f"{case}.nii.gz")
    truth = json.loads((hinge_tree.phantoms / case / "truth.json").read_text())["hinge_points"]
    for value, (name, long) in enumerate(zip(("RCC", "LCC", "NCC"), ("right_coronary_cusp", "left_coronary_cusp", "non_coronary_cusp")), 1):
        idx = np.argwhere(labels == value)
        assert len(idx), name
        # the sphere is centred on the exact point, which lies near the construction (coarse 4 mm grid)
        assert np.linalg.norm(idx.mean(0) * SPACING - np.array(points[name]["mm"])) < SPACING
        assert np.linalg.norm(np.subtract(points[name]["world_xyz_mm"], truth[long]["world_xyz_mm"])) < 3 * SPACING


def test_heatmap_transform_and_lookup(env):
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as lookup

    from nnunet_tavr.trainers.landmark_targets import LandmarkCentreTransform

    cls = lookup("nnUNetTrainerHeatmapOT")
    transforms = cls.get_training_transforms((32, 32, 32), (-0.3, 0.3), [[1, 1, 1], [0.5, 0.5, 0.5]], (0, 1, 2), False,
                                             foreground_labels=[1, 2, 3])
    kinds = [type(t) for t in transforms.transforms]
    assert kinds[kinds.index(LandmarkCentreTransform) + 1] is DownsampleSegForDSTransform
    seg = torch.zeros(1, 32, 32, 32, dtype=torch.int16)
    seg[0, 10:13, 20:23, 5:8] = 2  # landmark 2 wholly inside; landmark 3 cut by the border
    seg[0, 0:2, 3:5, 3:5] = 3
    out = LandmarkCentreTransform([1, 2, 3])(image=torch.zeros(1, 32, 32, 32), segmentation=seg)["segmentation"]
    assert out.shape[0] == 1 + 3 * 4
    present = out[1::4, 0, 0, 0].tolist()
    assert present == [0.0, 1.0, 0.0]
    np.testing.assert_allclose(out[6:9, 7, 7, 7].numpy(), np.array([11.5, 21.5, 6.5]) / 32, atol=1e-6)


def _trainer(cls, tree, enable_ds=True, configuration="3d_fullres"):
    plans = json.loads((tree.preprocessed / DATASET_NAME / "nnUNetTinyPlans.json").read_text())
    plans["continue_training"] = False
    ds = json.loads((tree.preprocessed / DATASET_NAME / "dataset.json").read_text())
    trainer = cls(plans, configuration, 0, ds, device=torch.device("cpu"))
    trainer.enable_deep_supervision = enable_ds
    trainer.initialize()
    return trainer


@pytest.mark.parametrize("name, enable_ds, configuration", [
    ("nnUNetTrainerHeatmapMSE", True, "3d_fullres"), ("nnUNetTrainer", True, "3d_fullres"),
    ("nnUNetTrainerHeatmapOT", False, "3d_fullres"), ("nnUNetTrainerHeatmapOT", True, "3d_lowres")])
def test_real_train_and_validation_step(env, name, enable_ds, configuration):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as lookup

    trainer = _trainer(lookup(name), env, enable_ds, configuration)
    if name.startswith("nnUNetTrainerHeatmap"):  # the loss works at the configuration's own spacing
        loss = trainer.loss
        assert loss.spacing == list(trainer.configuration_manager.spacing)
        assert loss.patch_size == list(trainer.configuration_manager.patch_size)
        # it takes nnU-Net's deep-supervision lists and weights itself (the coarsest scale's is 0)
        assert (loss.scale_weights is not None) == enable_ds
        if enable_ds:
            assert len(loss.scale_weights) == len(trainer._get_deep_supervision_scales()) and loss.scale_weights[-1] == 0
    batch, train, val = one_step_each(trainer)
    assert np.isfinite(train["loss"]) and np.isfinite(val["loss"])
    assert val["tp_hard"].shape == (3,)
    target = batch["target"]
    if name.startswith("nnUNetTrainerHeatmap"):
        full = target[0] if isinstance(target, list) else target
        assert full.shape[1] == 1 + 3 * 4  # seg + (present, z, y, x) per landmark
    assert isinstance(target, list) == enable_ds


@pytest.mark.slow
def test_nnunetv2_train_predict_landmarks_compare_with_the_ot_trainer(hinge_tree, tmp_path):
    tree, trainer = hinge_tree, "nnUNetTrainerHeatmapOT_smoke"
    train = ["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-p", tree.plans, "-tr", trainer, "-device", "cpu", "--npz"]
    tree.run(*train, timeout=1800)
    tree.run(*train, "--val", timeout=1800)  # _smoke trainers validate on demand
    fold = tree.results / DATASET_NAME / f"{trainer}__{tree.plans}__3d_fullres" / "fold_0"
    assert "HeatmapOTLoss" in json.loads((fold / "debug.json").read_text())["loss"]
    assert list((fold / "validation").glob("*.npz"))

    images = tree.raw / DATASET_NAME / "imagesTs"
    pred, points = tmp_path / "pred", tmp_path / "points"
    tree.run("nnUNetv2_predict", "-i", str(images), "-o", str(pred), "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0",
             "-p", tree.plans, "-tr", trainer, "--save_probabilities", "--disable_tta", "-device", "cpu", "-npp", "1", "-nps", "1",
             timeout=1800)
    proc = tree.run("nnunet-tavr", "landmarks", str(pred), "-o", str(points), "-tr", trainer, "--reference", str(DATASET_ID), "-q")
    assert "median" in proc.stdout and "< 2 mm" in proc.stdout
    errors = json.loads((points / "errors.json").read_text())
    assert errors["summary"]["all"]["n"] == 3 * len(list(images.glob("*_0000.nii.gz")))
    assert all(np.isfinite(r["error_mm"]) for r in errors["points"])
    assert list((points / "figures").glob("*.png"))
    lines = (points / "landmarks.csv").read_text().splitlines()
    assert lines[0].startswith("case,landmark,x_mm,y_mm,z_mm") and len(lines) == 1 + errors["summary"]["all"]["n"]

    cmp = tmp_path / "cmp"
    tree.run("nnunet-tavr", "compare", "-d", str(DATASET_ID), "-c", "3d_fullres", "-p", tree.plans, "-tr", trainer, "-f", "0",
             "--landmarks", "--bootstrap", "200", "-o", str(cmp), "-q")
    summary = json.loads((cmp / "landmarks_summary.json").read_text())["summary"]
    assert summary["val"]["trainers"][trainer]["n_cases"] >= 1
    assert (cmp / "report.md").is_file() and (cmp / "landmarks_report.md").is_file()
