"""The loss trainers: nnU-Net's lookup finds them, they build the paper's losses, and each runs a real
``train_step`` and ``validation_step`` on the shared preprocessed phantom dataset; the paper's
FocalSK* trainer goes through the real ``nnUNetv2_train`` / ``nnUNetv2_predict`` commands."""

from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import one_step_each
from nnunet_tavr.trainer_path import trainer_folder

LOSS_TRAINERS = ["nnUNetTrainerDiceCE", "nnUNetTrainerFocal", "nnUNetTrainerSRDiceCE", "nnUNetTrainerSRFocal",
                 "nnUNetTrainerFocalSR"]
SR_TRAINERS = LOSS_TRAINERS[2:]


@pytest.fixture
def lookup(monkeypatch):
    """nnU-Net's own trainer lookup, searching our folder through ``$nnUNet_extTrainer``."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    # nnunetv2.paths reads the variable when asked (nnunetv2 >= 2.6), so setting it here is enough
    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    return recursive_find_trainer_class_by_name


@pytest.mark.parametrize("name", LOSS_TRAINERS + [n + "_smoke" for n in LOSS_TRAINERS] + ["nnUNetTrainer_smoke"])
def test_nnunet_lookup_finds_every_trainer(lookup, name):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    cls = lookup(name)
    assert cls.__name__ == name and issubclass(cls, nnUNetTrainer)


def _mro_names(cls):
    # by name: nnU-Net imports the modules of $nnUNet_extTrainer as top-level modules, so the classes it
    # finds are other objects than those of nnunet_tavr.trainers.variants.*
    return [c.__name__ for c in cls.__mro__]


def test_class_attributes_are_the_papers(lookup):
    assert (lookup("nnUNetTrainerDiceCE").weight_dice, lookup("nnUNetTrainerDiceCE").weight_ce) == (0.25, 0.75)
    focal_sr = lookup("nnUNetTrainerFocalSR")
    assert focal_sr.gamma == 2.0 and focal_sr.stop_gradient
    # plain skeleton recall (eq. 1) for the SR trainers; FocalSR's recall exponent is its focal gamma
    assert lookup("nnUNetTrainerSRFocal").recall_gamma == lookup("nnUNetTrainerSRDiceCE").recall_gamma == 0.0
    assert isinstance(inspect.getattr_static(focal_sr, "recall_gamma"), property)
    for name in LOSS_TRAINERS:
        assert ("SkeletonRecallMixin" in _mro_names(lookup(name))) == (name in SR_TRAINERS), name


def _trainer_names(suffix=""):
    """Every trainer class (name ending in ``suffix``) defined in the folder ``$nnUNet_extTrainer`` points at."""
    import importlib
    import pkgutil

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    names = set()
    for module in pkgutil.iter_modules([str(trainer_folder())]):
        found = vars(importlib.import_module(f"nnunet_tavr.trainers.variants.{module.name}"))
        names |= {n for n, obj in found.items() if n.endswith(suffix) and isinstance(obj, type)
                  and issubclass(obj, nnUNetTrainer) and obj is not nnUNetTrainer}
    return sorted(names)


def _parameters(function):
    # names, kinds and defaults (annotations are strings in modules with postponed evaluation)
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_every_trainer_keeps_nnunets_init_signature(lookup):
    """nnU-Net re-creates a trainer from its checkpoint with the recorded ``__init__`` arguments."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    names = _trainer_names()
    assert len(names) > 30
    for name in names:
        assert _parameters(lookup(name).__init__) == _parameters(nnUNetTrainer.__init__), name


def test_every_smoke_trainer_means_the_same(lookup):
    """``_smoke`` is one definition (schedules.Smoke) for loss, architecture and nnU-Net's default trainer."""
    from nnunet_tavr.trainers.schedules import NoTestTimeMirroring, Smoke, ValidateOnDemand

    names = _trainer_names("_smoke")
    # nnUNetTrainer, the 5 loss trainers, 2 MONAI architectures x 6 losses, 2 heatmap trainers,
    # 6 segmentation_models_pytorch architectures x 6 losses
    assert len(names) == 1 + 5 + 12 + 2 + 36 and "nnUNetTrainer_smoke" in names and "nnUNetTrainerVNet_smoke" in names
    assert "nnUNetTrainerHeatmapOT_smoke" in names and "nnUNetTrainerSMPFPN_smoke" in names
    for name in names:
        cls = lookup(name)  # nnU-Net's own lookup finds it, by name, through $nnUNet_extTrainer
        assert issubclass(cls, Smoke), name
        assert (cls.num_epochs, cls.num_iterations_per_epoch, cls.num_val_iterations_per_epoch) == (2, 3, 2), name
        # the hooks that decide mirroring and the fold validation are Smoke's, not overridden later
        assert (cls.configure_rotation_dummyDA_mirroring_and_inital_patch_size
                is NoTestTimeMirroring.configure_rotation_dummyDA_mirroring_and_inital_patch_size), name
        assert cls.perform_actual_validation is ValidateOnDemand.perform_actual_validation, name
        assert cls.on_train_end is ValidateOnDemand.on_train_end, name
        # the network at its smallest width where the trainer sets one
        if "SwinUNETR" in name:
            assert cls.network_kwargs["feature_size"] == 12, name


def test_validate_on_demand_skips_only_right_after_training():
    from nnunet_tavr.trainers.schedules import ValidateOnDemand

    class Recorder:
        def __init__(self):
            self.calls, self.log = [], []

        def on_train_end(self):
            self.calls.append("train_end")

        def perform_actual_validation(self, save_probabilities=False):
            self.calls.append(("validate", save_probabilities))

        def print_to_log_file(self, *args, **kwargs):
            self.log.append(" ".join(map(str, args)))

    class Trainer(ValidateOnDemand, Recorder):
        pass

    # nnUNetv2_train --val --npz: checkpoint loaded, no training in this process -> nnU-Net's validation
    on_demand = Trainer()
    on_demand.perform_actual_validation(True)
    assert on_demand.calls == [("validate", True)] and on_demand.log == []
    # nnUNetv2_train: run_training (ending in on_train_end), then the validation nnU-Net asks for -> skipped
    trained = Trainer()
    trained.on_train_end()
    trained.perform_actual_validation(False)
    assert trained.calls == ["train_end"] and "skipped" in trained.log[0] and "--val" in trained.log[0]


@pytest.mark.parametrize("ds_scales", [[[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], None])
def test_skeleton_transform_runs_after_spatial_and_before_ds_downsampling(lookup, ds_scales):
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    from nnunet_tavr.trainers.skeletons import SkeletonTargetTransform

    cls = lookup("nnUNetTrainerFocalSR")
    for transforms in (
        cls.get_training_transforms((32, 32, 32), (-0.5, 0.5), ds_scales, (0, 1, 2), False, ignore_label=None),
        cls.get_validation_transforms(ds_scales, ignore_label=None),
    ):
        kinds = [type(t) for t in transforms.transforms]
        assert kinds.count(SkeletonTargetTransform) == 1
        at = kinds.index(SkeletonTargetTransform)
        if ds_scales is None:
            assert at == len(kinds) - 1
        else:
            assert kinds[at + 1] is DownsampleSegForDSTransform
        seg = torch.zeros(1, 40, 40, 40, dtype=torch.int16)
        seg[0, 5:35, 18:23, 18:23] = 6
        out = transforms(image=torch.randn(1, 40, 40, 40), segmentation=seg)["segmentation"]
        full = out[0] if ds_scales is not None else out
        assert full.shape[0] == 2 and (full[1] == 6).any()


def _skeleton_transform(transforms):
    from nnunet_tavr.trainers.skeletons import SkeletonTargetTransform

    (skel,) = [t for t in transforms.transforms if isinstance(t, SkeletonTargetTransform)]
    return skel


def test_ignore_label_reaches_the_skeletons_by_position_and_by_keyword(lookup):
    cls = lookup("nnUNetTrainerSRFocal")
    train = ((32, 32, 32), (-0.5, 0.5), None, (0, 1, 2), False)
    # nnU-Net's get_dataloaders passes it by keyword; a subclass or a script may pass all ten positionally
    assert _skeleton_transform(cls.get_training_transforms(*train, ignore_label=8)).ignore_label == 8
    assert _skeleton_transform(cls.get_training_transforms(*train, None, False, None, None, 8)).ignore_label == 8
    assert _skeleton_transform(cls.get_training_transforms(*train, None, False, None, None)).ignore_label is None
    assert _skeleton_transform(cls.get_training_transforms(*train)).ignore_label is None
    assert _skeleton_transform(cls.get_validation_transforms(None, ignore_label=5)).ignore_label == 5
    assert _skeleton_transform(cls.get_validation_transforms(None, False, None, None, 5)).ignore_label == 5
    assert _skeleton_transform(cls.get_validation_transforms(None, False, None)).ignore_label is None
    # a call nnU-Net's signature does not accept is refused, not read wrongly
    with pytest.raises(TypeError):
        cls.get_validation_transforms(None, ignore_labels=5)
    with pytest.raises(TypeError):
        cls.get_validation_transforms(None, False, None, None, 5, ignore_label=5)


def test_skeletons_go_before_a_subclass_of_the_ds_downsampling(lookup):
    """A parent trainer with its own ``DownsampleSegForDSTransform`` subclass: found with ``isinstance``."""
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    from nnunet_tavr.trainers.skeletons import SkeletonTargetTransform

    focal = lookup("nnUNetTrainerFocal")
    mixin = next(c for c in lookup("nnUNetTrainerSRFocal").__mro__ if c.__name__ == "SkeletonRecallMixin")

    class LinearDownsampling(DownsampleSegForDSTransform):
        pass

    class OwnDownsampling(focal):
        @staticmethod
        def get_training_transforms(*args, **kwargs):
            transforms = focal.get_training_transforms(*args, **kwargs)
            steps = transforms.transforms
            at = next(i for i, t in enumerate(steps) if type(t) is DownsampleSegForDSTransform)
            steps[at] = LinearDownsampling(steps[at].ds_scales)
            return transforms

    class WithSkeletons(mixin, OwnDownsampling):
        pass

    ds_scales = [[1, 1, 1], [0.5, 0.5, 0.5]]
    steps = WithSkeletons.get_training_transforms((32, 32, 32), (-0.5, 0.5), ds_scales, (0, 1, 2), False).transforms
    kinds = [type(t) for t in steps]
    assert LinearDownsampling in kinds and DownsampleSegForDSTransform not in kinds
    assert kinds.index(SkeletonTargetTransform) == kinds.index(LinearDownsampling) - 1


# ------------------------------------------------------------------ in-process, on the shared dataset


def _load(tree):
    folder = tree.preprocessed / tree.dataset_name
    plans = json.loads((folder / f"{tree.plans}.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return plans, dataset_json


@pytest.fixture
def nnunet_env(tavr_nnunet, monkeypatch):
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(key, tavr_nnunet.env[key])
    torch.manual_seed(0)
    return tavr_nnunet


def _trainer(cls, tree, configuration="3d_fullres", dataset_json=None):
    plans, ds = _load(tree)
    plans["continue_training"] = False
    trainer = cls(plans, configuration, 0, ds if dataset_json is None else dataset_json, device=torch.device("cpu"))
    trainer.initialize()
    return trainer


@pytest.mark.parametrize("name", LOSS_TRAINERS)
def test_every_trainer_runs_a_real_train_and_validation_step(lookup, nnunet_env, name):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from nnunet_tavr.trainers.losses import SegAndSkeletonLoss

    trainer = _trainer(lookup(name), nnunet_env)
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    assert isinstance(trainer.loss.loss, SegAndSkeletonLoss) == (name in SR_TRAINERS)
    batch, train, val = one_step_each(trainer)
    n_fg = len(trainer.label_manager.foreground_labels)
    assert np.isfinite(train["loss"]) and np.isfinite(val["loss"])
    # the online Dice saw the segmentation only: one entry per foreground class
    assert val["tp_hard"].shape == (n_fg,)
    target = batch["target"]
    assert isinstance(target, list) and len(target) == len(trainer._get_deep_supervision_scales())
    if name in SR_TRAINERS:
        for t in target:
            assert t.shape[1] == 2
            seg, skel = t[:, 0], t[:, 1]
            assert not ((skel > 0) & (skel != seg)).any(), "a skeleton voxel lies outside its class"
        assert (target[0][:, 1] > 0).any()
    else:
        assert target[0].shape[1] == 1


def test_focal_sr_loss_is_focal_plus_focal_skeleton_recall(lookup, nnunet_env):
    from nnunet_tavr.trainers.losses import FocalLoss, SkeletonRecallLoss

    trainer = _trainer(lookup("nnUNetTrainerFocalSR"), nnunet_env)
    inner = trainer.loss.loss
    assert isinstance(inner.seg_loss, FocalLoss) and inner.seg_loss.gamma == 2.0
    assert isinstance(inner.skeleton_loss, SkeletonRecallLoss)
    assert inner.skeleton_loss.gamma == 2.0 and inner.skeleton_loss.stop_gradient
    assert (inner.weight_seg, inner.weight_skel) == (1.0, 1.0)
    # the deep-supervision weights are nnU-Net's
    assert trainer.loss.weight_factors[0] > trainer.loss.weight_factors[1] and trainer.loss.weight_factors[-1] == 0
    # a one-line subclass changes the one gamma of both terms, as in the paper ...
    gamma1 = type("nnUNetTrainerFocalSRGamma1", (lookup("nnUNetTrainerFocalSR"),), {"gamma": 1.0})
    inner1 = _trainer(gamma1, nnunet_env).loss.loss
    assert inner1.seg_loss.gamma == 1.0 and inner1.skeleton_loss.gamma == 1.0
    # ... and setting recall_gamma decouples the skeleton recall's exponent from the focal loss's
    decoupled = type("nnUNetTrainerFocalSRRecall05", (lookup("nnUNetTrainerFocalSR"),), {"recall_gamma": 0.5})
    inner05 = _trainer(decoupled, nnunet_env).loss.loss
    assert inner05.seg_loss.gamma == 2.0 and inner05.skeleton_loss.gamma == 0.5


@pytest.mark.parametrize("name", ["nnUNetTrainerSRFocal", "nnUNetTrainerSRDiceCE"])
def test_sr_loss_uses_the_class_recall_gamma(lookup, nnunet_env, name):
    inner = _trainer(lookup(name), nnunet_env).loss.loss
    assert inner.skeleton_loss.gamma == 0.0  # plain skeleton recall, eq. 1
    focal_recall = type(f"{name}Recall15", (lookup(name),), {"recall_gamma": 1.5})
    inner = _trainer(focal_recall, nnunet_env).loss.loss
    assert inner.skeleton_loss.gamma == 1.5
    if name == "nnUNetTrainerSRFocal":
        assert inner.seg_loss.gamma == 2.0  # the focal loss keeps its own gamma


def test_smoke_schedule(lookup, nnunet_env):
    trainer = _trainer(lookup("nnUNetTrainerFocalSR_smoke"), nnunet_env)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (2, 3, 2)
    *_, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert mirror_axes == (0, 1)  # training augmentation: every axis but the patient's left-right (x)
    assert trainer.inference_allowed_mirroring_axes is None  # no test-time mirroring in smoke runs
    parent = _trainer(lookup("nnUNetTrainerFocalSR"), nnunet_env)
    parent.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert parent.inference_allowed_mirroring_axes == (0, 1)
    plain = _trainer(lookup("nnUNetTrainer_smoke"), nnunet_env)  # nnU-Net's reference keeps its own policy
    assert plain.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[-1] == (0, 1, 2)


def test_sr_trainer_without_deep_supervision(lookup, nnunet_env):
    """As composed with single-output networks: the mixin sets enable_deep_supervision = False."""
    base = lookup("nnUNetTrainerFocalSR")

    class NoDeepSupervision(base):
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.enable_deep_supervision = False

    trainer = _trainer(NoDeepSupervision, nnunet_env)
    batch, train, val = one_step_each(trainer)
    assert torch.is_tensor(batch["target"]) and batch["target"].shape[1] == 2
    assert np.isfinite(train["loss"]) and np.isfinite(val["loss"])


def test_sr_trainer_2d_configuration(lookup, nnunet_env):
    trainer = _trainer(lookup("nnUNetTrainerSRFocal"), nnunet_env, configuration="2d")
    batch, train, val = one_step_each(trainer)
    assert batch["target"][0].ndim == 4 and batch["target"][0].shape[1] == 2
    assert np.isfinite(train["loss"]) and np.isfinite(val["loss"])


def test_ignore_label_is_honoured(lookup, nnunet_env):
    cls = lookup("nnUNetTrainerFocalSR")
    # a batch from the dataset as preprocessed (without an ignore label: its loader would need the
    # ignore label's class locations), then a slab of every target marked as ignored
    loader_tr, loader_val = _trainer(cls, nnunet_env).get_dataloaders()
    batches = [next(loader_tr), next(loader_val)]
    for batch in batches:
        for t in batch["target"]:
            t[:, 0, : t.shape[2] // 4] = 8
            t[:, 1, : t.shape[2] // 4] = 0
    _, ds = _load(nnunet_env)
    trainer = _trainer(cls, nnunet_env, dataset_json={**ds, "labels": {**ds["labels"], "ignore": 8}})
    assert trainer.loss.loss.seg_loss.ignore_label == 8
    trainer.network.train()
    assert np.isfinite(trainer.train_step(batches[0])["loss"])
    trainer.network.eval()
    with torch.no_grad():
        val = trainer.validation_step(batches[1])
    assert np.isfinite(val["loss"]) and val["tp_hard"].shape == (7,)


def test_region_based_training_is_refused(lookup, nnunet_env):
    _, ds = _load(nnunet_env)
    labels = {"background": 0, "aorta_all": [1, 3, 4], "heart": [2, 5], "iliac_artery_left": 6,
              "iliac_artery_right": 7}
    ds = {**ds, "labels": labels, "regions_class_order": [1, 2, 6, 7]}
    plans, _ = _load(nnunet_env)
    plans["continue_training"] = False
    for name in LOSS_TRAINERS:
        with pytest.raises(ValueError, match="region-based training"):
            lookup(name)(plans, "3d_fullres", 0, ds, device=torch.device("cpu"))
        plans["continue_training"] = False  # nnU-Net pops it


# ------------------------------------------------------------------ the real commands


@pytest.mark.slow
def test_nnunetv2_train_and_predict_with_focal_sr(nnunet_env, tmp_path):
    import SimpleITK as sitk

    tree = nnunet_env
    trainer = "nnUNetTrainerFocalSR_smoke"
    # one export worker: nnU-Net otherwise spawns 8 for its final validation, on 2 shared cores
    env = {**tree.env, "nnUNet_def_n_proc": "1"}
    tree.run("nnUNetv2_train", str(tree.dataset_id), "3d_fullres", "0", "-p", tree.plans, "-tr", trainer,
             "-device", "cpu", timeout=1800, env=env)
    out = tree.results / tree.dataset_name / f"{trainer}__{tree.plans}__3d_fullres" / "fold_0"
    assert (out / "checkpoint_final.pth").is_file()
    # nnU-Net's debug.json records the loss the run actually used
    assert "SegAndSkeletonLoss" in json.loads((out / "debug.json").read_text())["loss"]
    # a smoke run ends after training, and says how to validate (nnUNetv2_train ... --val, in test_compare)
    assert not (out / "validation" / "summary.json").exists()
    log = "".join(p.read_text() for p in out.glob("training_log_*.txt"))
    assert "fold validation skipped after training" in log and "--val" in log

    images = sorted((tree.raw / tree.dataset_name / "imagesTr").glob("*_0000.nii.gz"))[:2]
    inp, pred = tmp_path / "in", tmp_path / "pred"
    inp.mkdir()
    for image in images:
        shutil.copy(image, inp / image.name)
    tree.run("nnUNetv2_predict", "-i", str(inp), "-o", str(pred), "-d", str(tree.dataset_id), "-c", "3d_fullres",
             "-f", "0", "-p", tree.plans, "-tr", trainer, "--disable_tta", "-device", "cpu", "-npp", "1", "-nps", "1",
             timeout=1800, env=env)
    for image in images:
        seg_file = pred / image.name.replace("_0000.nii.gz", ".nii.gz")
        assert seg_file.is_file()
        ref, seg = sitk.ReadImage(str(image)), sitk.ReadImage(str(seg_file))
        assert seg.GetSize() == ref.GetSize()
        np.testing.assert_allclose(seg.GetSpacing(), ref.GetSpacing(), rtol=1e-5)
        np.testing.assert_allclose(seg.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        values = np.unique(sitk.GetArrayViewFromImage(seg))
        assert set(values.tolist()) <= set(range(8))
