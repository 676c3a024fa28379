"""SMP trainers (seed 002's six CNNs): nnU-Net's lookup finds every architecture x loss, the mixin's
network wins over the loss trainer's, any patch size works, 3-D is refused, and the pretrained-
weights switch loads a local file without downloading anything."""

from __future__ import annotations

import inspect

import pytest
import torch

from nnunet_tavr.trainer_path import trainer_folder
from nnunet_tavr.trainers.smp_networks import ARCHITECTURES, WEIGHTS_ENV, build_smp, load_encoder_weights, weights_from_env

LOSSES = ["", "DiceCE", "Focal", "SRDiceCE", "SRFocal", "FocalSR"]
LOSS_PARENT = {loss: f"nnUNetTrainer{loss}" if loss else "nnUNetTrainer" for loss in LOSSES}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def lookup(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(trainer_folder()))
    return recursive_find_trainer_class_by_name


def test_lookup_builds_every_architecture_with_every_loss(lookup):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_tavr.trainers.variants import smp_trainers

    reference = list(inspect.signature(nnUNetTrainer.build_network_architecture).parameters)
    # nnU-Net's own lookup for every architecture (plain and _smoke) and every loss of one of them
    # (each lookup walks the trainer folders); the module holds all 72 classes.
    looked_up = [f"nnUNetTrainerSMP{a}{s}" for a in ARCHITECTURES for s in ("", "_smoke")] + [f"nnUNetTrainerSMPMAnet{loss}" for loss in LOSSES[1:]]
    for name in looked_up:
        found = lookup(name)  # nnU-Net imports the folder's modules top-level: a twin of our class
        assert found.__name__ == name and found.__module__.endswith("smp_trainers") and found.architecture == getattr(smp_trainers, name).architecture
    for arch in ARCHITECTURES:
        for loss in LOSSES:
            for suffix in ("", "_smoke"):
                name = f"nnUNetTrainerSMP{arch}{loss}{suffix}"
                cls = getattr(smp_trainers, name)
                mro = [c.__name__ for c in cls.__mro__]
                assert cls.__name__ == name and cls.__module__ == smp_trainers.__name__ and issubclass(cls, nnUNetTrainer)
                assert cls.architecture == arch and name in smp_trainers.__all__
                assert mro.index(f"SMP{arch}Mixin") < mro.index(LOSS_PARENT[loss]), name  # the network is the mixin's
                assert cls.encoder_name == ("resnet18" if suffix else "resnet34")
                assert list(inspect.signature(cls.build_network_architecture).parameters) == reference


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_any_patch_size_gives_logits_of_the_input_size(arch):
    torch.manual_seed(0)
    net = build_smp(arch, 1, 2, (48, 40), encoder_name="resnet18").eval()
    for shape in ((37, 61), (64, 64)):
        with torch.no_grad():
            out = net(torch.randn(1, 1, *shape))
        assert out.shape == (1, 2, *shape)
    stride = net.network.encoder.output_stride
    assert net.multiple == stride and stride == {"PSPNet": 8, "DeepLabV3Plus": 16}.get(arch, 32)


def test_3d_configurations_are_refused():
    with pytest.raises(ValueError, match="2-D network.*2d configuration"):
        build_smp("FPN", 1, 2, (32, 64, 64))
    with pytest.raises(ValueError, match="unknown smp architecture"):
        build_smp("Unet3000", 1, 2, (64, 64))


def test_local_pretrained_weights_are_loaded_and_adapted_to_one_channel(tmp_path, monkeypatch):
    import segmentation_models_pytorch as smp

    torch.manual_seed(1)
    rgb = smp.FPN(encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=1).encoder
    state = {k: v for k, v in rgb.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # a torchvision checkpoint's classifier is ignored
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(state, path)

    assert weights_from_env({}) is None and weights_from_env({WEIGHTS_ENV: "none"}) is None
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    net = build_smp("Linknet", 1, 2, (64, 64), encoder_name="resnet18", encoder_weights=weights_from_env())
    conv = net.network.encoder.conv1.weight
    torch.testing.assert_close(conv, state["conv1.weight"].sum(1, keepdim=True))  # RGB summed for one channel
    torch.testing.assert_close(net.network.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])

    other = smp.FPN(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=1).encoder
    missing, unexpected = load_encoder_weights(other, path)
    assert not missing and not unexpected
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="shares no parameter"):
        load_encoder_weights(other, tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV):
        build_smp("FPN", 1, 2, (64, 64), encoder_name="resnet18", encoder_weights=str(tmp_path / "absent.pth"))
