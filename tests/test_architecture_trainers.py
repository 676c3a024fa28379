"""SwinUNETR / VNet trainers: nnU-Net's lookup builds every architecture x loss combination, each runs a
real ``train_step`` on the shared phantom dataset without deep supervision, checkpoints load through
``nnUNetPredictor``, and ``nnUNetv2_train`` + ``nnUNetv2_predict`` work unchanged (slow tests)."""

from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pytest
import torch

from nnunet_tavr.trainer_path import trainer_folder

LOSSES = ["", "DiceCE", "Focal", "SRDiceCE", "SRFocal", "FocalSR"]
ARCHS = ["SwinUNETR", "VNet"]
TRAINERS = [f"nnUNetTrainer{a}{loss}" for a in ARCHS for loss in LOSSES]
#: the loss trainer each combination must inherit its loss from
LOSS_PARENT = {loss: f"nnUNetTrainer{loss}" if loss else "nnUNetTrainer" for loss in LOSSES}


@pytest.fixture
def lookup(monkeypatch):
    """nnU-Net's own trainer lookup, searching our folder through ``$nnUNet_extTrainer`` only."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    return recursive_find_trainer_class_by_name


@pytest.fixture
def tree(tavr_nnunet, monkeypatch):
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(key, tavr_nnunet.env[key])
    monkeypatch.delenv("nnUNet_tavr_gradient_checkpointing", raising=False)
    torch.manual_seed(0)
    return tavr_nnunet


def _plans(tree):
    folder = tree.preprocessed / tree.dataset_name
    plans = json.loads((folder / f"{tree.plans}.json").read_text())
    plans["continue_training"] = False
    return plans, json.loads((folder / "dataset.json").read_text())


def _trainer(cls, tree, configuration="3d_fullres"):
    plans, dataset_json = _plans(tree)
    trainer = cls(plans, configuration, 0, dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    return trainer


# ------------------------------------------------------------------ lookup and composition (fast)


def test_lookup_builds_every_combination_from_its_architecture_and_loss(lookup):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    for arch in ARCHS:
        for loss in LOSSES:
            for suffix in ("", "_smoke"):
                name = f"nnUNetTrainer{arch}{loss}{suffix}"
                cls = lookup(name)
                mro = [c.__name__ for c in cls.__mro__]
                assert cls.__name__ == name and issubclass(cls, nnUNetTrainer)
                assert f"{arch}Mixin" in mro, name
                assert LOSS_PARENT[loss] in mro, name
                # the architecture's hooks win over the loss trainer's
                assert mro.index(f"{arch}Mixin") < mro.index(LOSS_PARENT[loss])


def test_build_network_architecture_keeps_nnunet_signature(lookup):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    reference = list(inspect.signature(nnUNetTrainer.build_network_architecture).parameters)
    for name in TRAINERS:
        # nnUNetPredictor checks for 'plans_manager' and calls trainer_class.build_network_architecture(...)
        assert list(inspect.signature(lookup(name).build_network_architecture).parameters) == reference


# ------------------------------------------------------------------ on the shared preprocessed dataset


def test_networks_from_the_plan_default_sizes_and_gradient_checkpointing(lookup, tree, monkeypatch):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_tavr.trainers.networks import PadToMultiple, count_parameters

    plans, dataset_json = _plans(tree)
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    heads = pm.get_label_manager(dataset_json).num_segmentation_heads
    swin = lookup("nnUNetTrainerSwinUNETRFocalSR").build_network_architecture(pm, cm, 1, heads, False)
    assert isinstance(swin, PadToMultiple) and 60e6 < count_parameters(swin) < 64e6  # feature size 48
    smoke = lookup("nnUNetTrainerSwinUNETRFocalSR_smoke").build_network_architecture(pm, cm, 1, heads, False)
    assert count_parameters(smoke) < 5e6
    vnet = lookup("nnUNetTrainerVNetFocalSR").build_network_architecture(pm, cm, 1, heads, True)
    assert 44e6 < count_parameters(vnet) < 47e6
    assert not any(getattr(m, "use_checkpoint", False) for m in smoke.modules())
    monkeypatch.setenv("nnUNet_tavr_gradient_checkpointing", "1")
    ckpt = lookup("nnUNetTrainerSwinUNETRFocalSR_smoke").build_network_architecture(pm, cm, 1, heads, False)
    assert any(getattr(m, "use_checkpoint", False) for m in ckpt.modules())
    assert ckpt.state_dict().keys() == smoke.state_dict().keys()


def _one_train_step(trainer):
    loader_tr, _ = trainer.get_dataloaders()
    batch = next(loader_tr)
    before = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.network.train()
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"])
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, trainer.network.parameters())]
    assert sum(changed) > len(changed) // 2, "the optimizer step left most weights unchanged"
    return batch


@pytest.mark.parametrize("name", TRAINERS)
def test_every_combination_runs_a_train_step_without_deep_supervision(lookup, tree, name):
    """One real nnU-Net ``train_step`` per combination, with the trainer's own data loader.

    Runs the ``_smoke`` subclass (the same composition of network, loss, targets and optimizer, with a
    feature-size-12 SwinUNETR; the full-size networks are built above) on the 2d configuration to keep
    CPU time low; the 3d configuration runs below and end-to-end.
    """
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    trainer = _trainer(lookup(name + "_smoke"), tree, configuration="2d")
    assert trainer.enable_deep_supervision is False
    assert trainer._get_deep_supervision_scales() is None
    assert not isinstance(trainer.loss, DeepSupervisionWrapper)
    # nnU-Net switches deep supervision off before its fold validation and on again after it: nothing
    # to switch on a single-output network, and nothing changes
    state = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    trainer.set_deep_supervision_enabled(False)
    trainer.set_deep_supervision_enabled(True)
    assert trainer.enable_deep_supervision is False
    assert all(torch.equal(v, trainer.network.state_dict()[k]) for k, v in state.items())
    if "SwinUNETR" in name:
        assert isinstance(trainer.optimizer, torch.optim.AdamW)
    else:
        assert isinstance(trainer.optimizer, torch.optim.SGD)

    batch = _one_train_step(trainer)
    target = batch["target"]
    # a single target tensor at full resolution, with the skeleton channel for the SR losses
    assert torch.is_tensor(target) and batch["data"].ndim == 4
    assert target.shape[2:] == batch["data"].shape[2:] == tuple(trainer.configuration_manager.patch_size)
    assert target.shape[1] == (2 if "SR" in name else 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_3d_train_step_and_odd_sized_forward(lookup, tree, arch):
    trainer = _trainer(lookup(f"nnUNetTrainer{arch}FocalSR_smoke"), tree)
    batch = _one_train_step(trainer)
    assert batch["data"].ndim == 5 and torch.is_tensor(batch["target"]) and batch["target"].shape[1] == 2
    trainer.network.eval()
    x = batch["data"][:1, :, 3:, 5:, 1:]  # an odd size: the network pads and crops inside
    with torch.no_grad():
        y = trainer.network(x)
    assert y.shape == (1, trainer.label_manager.num_segmentation_heads, *x.shape[2:])


def test_swinunetr_schedule_is_warmup_then_cosine(lookup, tree):
    cls = lookup("nnUNetTrainerSwinUNETR")
    trainer = _trainer(cls, tree)
    assert trainer.num_epochs == 1000
    lr = []
    for epoch in (0, 25, 49, 50, 500, 999):
        trainer.lr_scheduler.step(epoch)
        lr.append(trainer.optimizer.param_groups[0]["lr"])
    assert trainer.initial_lr == 1e-4
    assert lr[0] < lr[1] < lr[2] < lr[3] == pytest.approx(1e-4)
    assert lr[3] > lr[4] > lr[5] and lr[5] < 1e-7
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_loads_in_nnunet_predictor(lookup, tree, arch, monkeypatch, tmp_path):
    """A checkpoint saved by the trainer is restored by ``nnUNetPredictor`` through ``$nnUNet_extTrainer``
    alone (same weights, same outputs) and its sliding-window prediction runs on an odd-sized image, with
    and without test-time mirroring."""
    from batchgenerators.utilities.file_and_folder_operations import save_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    name = f"nnUNetTrainer{arch}FocalSR_smoke"
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    trainer = _trainer(lookup(name), tree)
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the inference mirror axes
    with torch.no_grad():  # move BatchNorm running stats off their init so that loading them matters
        for m in trainer.network.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
    save_json(trainer.plans_manager.plans, f"{trainer.output_folder_base}/plans.json", sort_keys=False)
    save_json(trainer.dataset_json, f"{trainer.output_folder_base}/dataset.json", sort_keys=False)
    trainer.save_checkpoint(f"{trainer.output_folder}/checkpoint_final.pth")

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, device=torch.device("cpu"),
                                perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(trainer.output_folder_base, use_folds=(0,))
    assert predictor.trainer_name == name
    assert predictor.allowed_mirroring_axes is None  # a _smoke checkpoint: no test-time mirroring
    trainer.network.eval()
    predictor.network.eval()
    x = torch.randn(1, 1, 32, 32, 32)
    image = torch.randn(1, 32, 37, 32)  # two tiles
    with torch.no_grad():
        assert torch.allclose(predictor.network(x), trainer.network(x), atol=1e-5)
        logits = predictor.predict_sliding_window_return_logits(image)
    assert logits.shape == (trainer.label_manager.num_segmentation_heads, 32, 37, 32)
    assert torch.isfinite(logits).all()

    # the mirrored sliding window of nnU-Net's predictor (which the parent trainers' checkpoints allow) on the
    # same network; one mirror axis (2 passes per tile instead of 8) runs the same code
    mirrored = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, device=torch.device("cpu"),
                               perform_everything_on_device=False, allow_tqdm=False)
    mirrored.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                   trainer.dataset_json, name, (1,))
    with torch.no_grad():
        mirrored_logits = mirrored.predict_sliding_window_return_logits(image)
    assert mirrored_logits.shape == logits.shape and torch.isfinite(mirrored_logits).all()
    assert not torch.allclose(mirrored_logits, logits, atol=1e-4)  # the flipped passes were averaged in


# ------------------------------------------------------------------ the real commands


def _small_image(tree, folder, shape_xyz=(32, 32, 48)):
    """A crop of a training image: a few sliding-window tiles keep CPU prediction of these networks short."""
    import SimpleITK as sitk

    image_file = sorted((tree.raw / tree.dataset_name / "imagesTr").glob("*_0000.nii.gz"))[0]
    image = sitk.ReadImage(str(image_file))
    size = image.GetSize()
    start = [(s - c) // 2 for s, c in zip(size, shape_xyz)]
    crop = sitk.RegionOfInterest(image, list(shape_xyz), start)
    folder.mkdir()
    out = folder / image_file.name
    sitk.WriteImage(crop, str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_nnunetv2_train_and_predict(tree, arch, tmp_path):
    import SimpleITK as sitk

    trainer = f"nnUNetTrainer{arch}FocalSR_smoke"
    fold = "3"  # one validation case (the others have two): half the cost of the --val below
    splits = json.loads((tree.preprocessed / tree.dataset_name / "splits_final.json").read_text())
    assert len(splits[int(fold)]["val"]) == 1
    train = ["nnUNetv2_train", str(tree.dataset_id), "3d_fullres", fold, "-p", tree.plans, "-tr", trainer, "-device", "cpu"]
    tree.run(*train, timeout=900)
    out = tree.results / tree.dataset_name / f"{trainer}__{tree.plans}__3d_fullres" / f"fold_{fold}"
    assert (out / "checkpoint_final.pth").is_file()
    assert not (out / "validation" / "summary.json").exists()  # _smoke: validation on demand (--val)
    debug = json.loads((out / "debug.json").read_text())
    assert "SegAndSkeletonLoss" in debug["loss"] and debug["enable_deep_supervision"] == "False"
    assert "PadToMultiple" in debug["network"]

    checkpoint = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["inference_allowed_mirroring_axes"] is None

    if arch == "VNet":
        # nnU-Net's fold validation, which ends by switching deep supervision back on. One architecture is
        # enough (the single-output mixin is shared); a width-12 SwinUNETR validates the whole cases in minutes.
        tree.run(*train, "--val", timeout=900)
        assert "Dice" in json.loads((out / "validation" / "summary.json").read_text())["foreground_mean"]

    image = _small_image(tree, tmp_path / "in")
    ref = sitk.ReadImage(str(image))
    pred = tmp_path / "pred"
    # without --disable_tta: the checkpoint allows no mirroring (the mirrored sliding window runs in-process above)
    proc = tree.run("nnUNetv2_predict", "-i", str(image.parent), "-o", str(pred), "-d", str(tree.dataset_id),
                    "-c", "3d_fullres", "-f", fold, "-p", tree.plans, "-tr", trainer, "-device", "cpu",
                    "-npp", "1", "-nps", "1", "--verbose", timeout=900)
    assert "mirror_axes: None" in proc.stdout
    seg = sitk.ReadImage(str(pred / image.name.replace("_0000.nii.gz", ".nii.gz")))
    assert seg.GetSize() == ref.GetSize()
    np.testing.assert_allclose(seg.GetSpacing(), ref.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(seg.GetOrigin(), ref.GetOrigin(), atol=1e-4)
    assert set(np.unique(sitk.GetArrayViewFromImage(seg)).tolist()) <= set(range(8))
