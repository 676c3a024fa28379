"""Print the folder that nnU-Net must search for the nnunet-tavr trainers.

nnU-Net v2 finds trainers outside its own package through the environment variable
``nnUNet_extTrainer``.  Set it once per shell (or in your ~/.bashrc):

    export nnUNet_extTrainer=$(nnunet-tavr trainer-path)

and nnU-Net's unchanged commands find every ``nnUNetTrainer...`` class of this project, e.g.
``nnUNetv2_train 301 3d_fullres 0 -tr nnUNetTrainerFocalSR``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def trainer_folder() -> Path:
    """Folder holding the ``nnUNetTrainer`` subclasses (the installed ``trainers/variants``)."""
    import importlib.util

    spec = importlib.util.find_spec("nnunet_tavr.trainers.variants")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nnunet_tavr.trainers.variants is not installed; reinstall nnunet-tavr")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def ext_trainer_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default: ``os.environ``) whose ``nnUNet_extTrainer`` includes our folder."""
    env = dict(os.environ if environ is None else environ)
    folder = str(trainer_folder())
    existing = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if folder not in existing:
        existing.append(folder)
    env["nnUNet_extTrainer"] = os.pathsep.join(existing)
    return env


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", action="store_true", help="print a full 'export nnUNet_extTrainer=...' line")


def main(args: argparse.Namespace) -> int:
    folder = trainer_folder()
    print(f"export nnUNet_extTrainer={folder}" if args.export else folder)
    return 0
