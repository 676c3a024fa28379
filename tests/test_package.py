"""The package installs cleanly, imports lightly, and nnU-Net finds our trainers by its own lookup."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import bin_path
from nnunet_tavr.cli import SUBCOMMANDS
from nnunet_tavr.trainer_path import ext_trainer_env, trainer_folder

REPO = Path(__file__).resolve().parents[1]
#: repository folder -> where it lands inside the nnunet_tavr namespace
MAPPED_FOLDERS = {"nnunet_tavr": "nnunet_tavr", "label_derivation": "nnunet_tavr/label_derivation", "dataset_conversion": "nnunet_tavr/dataset_conversion", "trainers": "nnunet_tavr/trainers"}


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)


def test_import_and_every_subcommand_parser_import_no_torch():
    code = (
        "import sys, nnunet_tavr, nnunet_tavr.cli as cli\n"
        "for name in cli.SUBCOMMANDS:\n"
        "    cli.build_parser(name)\n"
        "    assert 'torch' not in sys.modules, name\n"
        "    assert 'nnunetv2' not in sys.modules, name\n"
        "print('ok')\n"
    )
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_cli_help_on_every_subcommand():
    top = subprocess.run([bin_path("nnunet-tavr"), "--help"], capture_output=True, text=True)
    assert top.returncode == 0
    for name in SUBCOMMANDS:
        assert name in top.stdout
        sub = subprocess.run([bin_path("nnunet-tavr"), name, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0, (name, sub.stderr)
        assert f"nnunet-tavr {name}" in sub.stdout
    bad = subprocess.run([bin_path("nnunet-tavr"), "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_trainer_path_prints_the_variants_folder():
    proc = subprocess.run([bin_path("nnunet-tavr"), "trainer-path"], capture_output=True, text=True, check=True)
    folder = Path(proc.stdout.strip())
    assert folder == trainer_folder() and folder.is_dir()
    assert any(p.name.startswith("nnUNetTrainer") or p.suffix == ".py" for p in folder.iterdir())
    export = subprocess.run([bin_path("nnunet-tavr"), "trainer-path", "--export"], capture_output=True, text=True, check=True)
    assert export.stdout.strip() == f"export nnUNet_extTrainer={folder}"


@pytest.mark.parametrize("with_env", [True, False])
def test_real_nnunetv2_train_finds_our_trainer(tmp_path, with_env):
    """``nnUNetv2_train`` resolves ``-tr nnUNetTrainerFocalSR`` through ``$nnUNet_extTrainer`` only."""
    env = ext_trainer_env() if with_env else {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(tmp_path / name)
    proc = subprocess.run(
        [bin_path("nnUNetv2_train"), "999", "3d_fullres", "0", "-tr", "nnUNetTrainerFocalSR", "-device", "cpu"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0  # dataset 999 does not exist: it must fail *after* the trainer lookup
    if with_env:
        assert f"Using trainer 'nnUNetTrainerFocalSR' from: {trainer_folder()}" in out, out[-3000:]
        assert "Could not find requested nnunet trainer" not in out
    else:
        assert "Could not find requested nnunet trainer nnUNetTrainerFocalSR" in out, out[-3000:]


def test_plain_wheel_installs_everything_inside_the_namespace(tmp_path):
    """``pip install .`` (not editable): all folders importable, nothing generic at top level."""
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = wheel_dir.glob("nnunet_tavr-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"nnunet_tavr"}
    for folder, target in MAPPED_FOLDERS.items():
        for source in (REPO / folder).rglob("*.py"):
            rel = source.relative_to(REPO / folder).as_posix()
            assert f"{target}/{rel}" in names, f"{folder}/{rel} is missing from the wheel"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True, capture_output=True)
    code = (
        "import nnunet_tavr.label_derivation as a, nnunet_tavr.dataset_conversion as b, nnunet_tavr.trainers.variants as c\n"
        "import nnunet_tavr.trainer_path as t\n"
        "print(a.__file__); print(b.__file__); print(c.__file__); print(t.trainer_folder())\n"
    )
    proc = _python(code, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert line.startswith(str(site)), line
