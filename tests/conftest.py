"""Shared fixtures: a small, fully preprocessed nnU-Net dataset built from phantoms.

Building it (phantoms -> raw dataset -> ``nnUNetv2_plan_and_preprocess`` -> tiny plans) takes about a
minute on two cores, so it is made once per test session and shared by every end-to-end test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATASET_ID = 301
DATASET_NAME = "Dataset301_TAVR"
#: Phantom grid of the shared dataset: 300 x 240 x 240 mm at 3 mm keeps nnU-Net fast on CPU.
PHANTOM_SHAPE = (100, 80, 80)
PHANTOM_SPACING = 3.0
NUM_CASES = 10


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a shared 2-core machine two OpenMP threads spin-wait each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_valve():
    """A 7-class label map, 1 mm voxels, (50, 60, 60): LV below z = 20 mm, aortic root above, a valve
    layer 3 mm thick and the annulus at z = 19 mm (plane z = 19.5 mm, normal +z, radius 10 mm, axis
    at y = x = 30). Returns ``labels`` and the open grid ``(zz, yy, xx)`` to paint more on it."""
    import numpy as np

    from nnunet_tavr.labels import LABELS

    labels = np.zeros((50, 60, 60), np.uint8)
    zz, yy, xx = np.ogrid[:50, :60, :60]
    radial = np.hypot(yy - 30, xx - 30)
    labels[(zz >= 20) & (radial <= 10)] = LABELS["aortic_root"]
    labels[(zz >= 20) & (zz < 23) & (radial <= 10)] = LABELS["valve"]
    labels[(zz < 20) & (radial <= 25)] = LABELS["left_ventricle"]
    labels[(zz == 19) & (radial <= 11)] = LABELS["annulus"]
    return labels, (zz, yy, xx)


def one_step_each(trainer):
    """One real nnU-Net train_step and validation_step with batches from the trainer's own loaders:
    ``(training batch, train_step output, validation_step output)``."""
    import torch

    loader_tr, loader_val = trainer.get_dataloaders()
    batch = next(loader_tr)
    trainer.network.train()
    train = trainer.train_step(batch)
    trainer.network.eval()
    with torch.no_grad():
        val = trainer.validation_step(next(loader_val))
    return batch, train, val


def bin_path(name: str) -> str:
    """A console script of this environment (the tests may run without an activated venv)."""
    return str(Path(sys.executable).with_name(name))


@dataclass
class NnunetTree:
    """Paths and environment of the shared nnU-Net dataset."""

    root: Path
    env: dict = field(repr=False)
    dataset_id: int = DATASET_ID
    dataset_name: str = DATASET_NAME
    plans: str = "nnUNetTinyPlans"

    @property
    def folders(self):
        from nnunet_tavr.folders import NnunetFolders

        return NnunetFolders.under(self.root)

    @property
    def raw(self) -> Path:
        return self.folders.raw

    @property
    def preprocessed(self) -> Path:
        return self.folders.preprocessed

    @property
    def results(self) -> Path:
        return self.folders.results

    @property
    def phantoms(self) -> Path:
        return self.root / "totalsegmentator"

    def run(self, *command: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run an nnU-Net / nnunet-tavr console script with this tree's environment; fail loudly."""
        cmd = [bin_path(command[0]), *command[1:]]
        proc = subprocess.run(cmd, env=self.env if env is None else env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc


def nnunet_env(root: Path) -> dict:
    from nnunet_tavr.folders import NnunetFolders

    env = NnunetFolders.under(root).env()
    env.update(
        nnUNet_n_proc_DA="0",  # data augmentation in the main process: 2 cores, many tests
        nnUNet_def_n_proc="1",  # one export worker in validation/prediction (each imports torch: ~1 GB)
        OMP_NUM_THREADS="2",
    )
    return env


def _build_raw_dataset(tree: NnunetTree) -> None:
    """Phantoms in the TotalSegmentator layout -> ``nnunet-tavr convert`` -> nnU-Net raw dataset.

    The rule distances are the paper's voxel counts (3 and 1 voxels) on the 3 mm phantom grid.
    """
    from nnunet_tavr.phantom import write_dataset

    write_dataset(tree.phantoms, NUM_CASES, seed=0, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING, progress=False)
    tree.run(
        "nnunet-tavr", "convert", str(tree.phantoms), "-d", str(DATASET_ID), "-n", "TAVR", "--quiet",
        "--valve-mm", str(3 * PHANTOM_SPACING), "--annulus-mm", str(PHANTOM_SPACING),
    )


@pytest.fixture(scope="session")
def tavr_nnunet(tmp_path_factory) -> NnunetTree:
    """A converted, planned and preprocessed phantom dataset with the tiny plans ``nnUNetTinyPlans``.

    Its ``splits_final.json`` (folds 0-4 over train+val, fold 5 = the paper's split) is installed in
    ``$nnUNet_preprocessed``; test cases are in ``imagesTs``/``labelsTs``.
    """
    from nnunet_tavr.tiny_plans import write_tiny_plans

    root = tmp_path_factory.mktemp("nnunet")
    tree = NnunetTree(root=root, env=nnunet_env(root))
    tree.folders.makedirs()
    _build_raw_dataset(tree)
    planning_env = {k: v for k, v in tree.env.items() if k != "nnUNet_n_proc_DA"}  # planning needs >= 1
    tree.run(
        "nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "2d",
        "-np", "1", "-npfp", "1", "--verify_dataset_integrity", env=planning_env,
    )
    write_tiny_plans(tree.preprocessed / DATASET_NAME)
    tree.run("nnunet-tavr", "convert", "-d", str(DATASET_ID), "-n", "TAVR", "--install-splits")
    return tree
