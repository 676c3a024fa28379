"""Landmark error of each hinge-point trainer after a short CPU training on cusped phantoms.

Builds the ``hinge`` dataset from cusped phantoms (4 mm grid, spheres of ``--sphere-mm``), plans it
with nnU-Net, writes the demo's CPU plans (``nnUNetDemoPlans``: 32^3 patch, 4 stages of 16-128
features, see docs/demo.md), then for each trainer (``nnUNetTrainerHeatmapOT``,
``nnUNetTrainerHeatmapMSE`` and nnU-Net's own ``nnUNetTrainer`` on the spheres) trains fold 0 for
``--epochs`` x ``--iterations`` with the demo's schedule (light augmentation, no test-time
mirroring; ``trainers/variants/demo_trainers.py``) on the CPU (nnU-Net's training loop,
in-process), predicts the test cases with nnU-Net's predictor (probabilities saved) and reads the
points as ``nnunet-tavr landmarks`` does. Errors are against the dataset's ``landmarks.json``
(world mm). Each trainer trains ``--runs`` times (seeds 0, 1, ...: the initialisation and nnU-Net's
patch sampling): a few minutes of training vary a lot from run to run. Writes each run's and the
pooled errors to ``--out`` and a box plot of the pooled errors next to it.

The Gaussian targets use ``--sigma-mm`` (default 4 mm, one voxel of this grid; the trainers'
default of 2 mm is meant for CT at ~1 mm). Minutes on two cores, not the seed's 3D U-Net training:
the errors show how far a short run gets on a 4 mm grid, not the methods' accuracy (the seed's
< 2 mm median needs CT resolution and a GPU training).

Usage::

    python benchmarks/landmark_trainers.py [--cases 20] [--epochs 25] [--iterations 100] [--runs 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TRAINERS = ("nnUNetTrainerHeatmapOT", "nnUNetTrainerHeatmapMSE", "nnUNetTrainer")
DATASET_ID, DATASET = 316, "Dataset316_HingeBench"


def build(work: Path, cases: int, sphere_mm: float) -> None:
    import subprocess

    from nnunet_tavr.demo import DEMO_FEATURES, DEMO_PLANS
    from nnunet_tavr.phantom import write_dataset
    from nnunet_tavr.tiny_plans import write_tiny_plans

    bin_dir = Path(sys.executable).parent
    if not (work / "nnUNet_preprocessed" / DATASET / f"{DEMO_PLANS}.json").is_file():
        write_dataset(work / "phantoms", cases, seed=316, shape=(75, 60, 60), spacing=4.0, aortic_sinuses=True)
        subprocess.run([bin_dir / "nnunet-tavr", "convert", work / "phantoms", "--scheme", "hinge", "--sphere-mm", str(sphere_mm),
                        "-d", str(DATASET_ID), "-n", "HingeBench", "--quiet"], check=True)
        subprocess.run([bin_dir / "nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
                       check=True, capture_output=True, env={**os.environ, "nnUNet_n_proc_DA": "1"})
        write_tiny_plans(work / "nnUNet_preprocessed" / DATASET, target_plans=DEMO_PLANS, configurations=("3d_fullres",),
                         features=DEMO_FEATURES)
        subprocess.run([bin_dir / "nnunet-tavr", "convert", "-d", str(DATASET_ID), "-n", "HingeBench", "--install-splits"], check=True)


def train_and_predict(work: Path, name: str, epochs: int, iterations: int, sigma_mm: float, seed: int) -> tuple[Path, float]:
    import random

    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_tavr.demo import DEMO_PLANS
    from nnunet_tavr.trainers.variants.demo_trainers import DemoSchedule

    base = recursive_find_trainer_class_by_name(name)
    cls = type(f"{name}_bench", (DemoSchedule, base), {"num_epochs": epochs, "num_iterations_per_epoch": iterations,
                                                       "sigma_mm": sigma_mm})
    folder = work / "nnUNet_preprocessed" / DATASET
    plans = json.loads((folder / f"{DEMO_PLANS}.json").read_text())
    plans["continue_training"] = False  # nnU-Net's run_training.py sets this; a fresh start here
    ds = json.loads((folder / "dataset.json").read_text())
    # the weights' initialisation and, with nnUNet_n_proc_DA=0, nnU-Net's patch sampling and augmentation
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    trainer = cls(plans, "3d_fullres", 0, ds, device=torch.device("cpu"))
    t0 = time.perf_counter()
    trainer.run_training()
    seconds = time.perf_counter() - t0
    trainer.set_deep_supervision_enabled(False)  # as nnU-Net's own validation does before predicting
    trainer.network.eval()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                    [trainer.network.state_dict()], ds,
                                    type(trainer).__name__, None)
    out = work / "predictions" / name / f"seed{seed}"
    predictor.predict_from_files(str(work / "nnUNet_raw" / DATASET / "imagesTs"), str(out), save_probabilities=True,
                                 overwrite=True, num_processes_preprocessing=1, num_processes_segmentation_export=1)
    return out, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--sigma-mm", type=float, default=4.0, help="the heatmap trainers' Gaussian sigma (mm)")
    parser.add_argument("--sphere-mm", type=float, default=6.0, help="radius of the landmark spheres (mm)")
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--runs", type=int, default=3, help="trainings per trainer (seeds 0, 1, ...): short runs vary a lot")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnunet_tavr_landmark_trainers"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/landmark_trainers_cpu.txt"))
    args = parser.parse_args(argv)
    work = args.work.resolve()
    os.environ.update({"nnUNet_raw": str(work / "nnUNet_raw"), "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
                       "nnUNet_results": str(work / "nnUNet_results"), "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"})
    from nnunet_tavr.trainer_path import trainer_folder

    os.environ["nnUNet_extTrainer"] = str(trainer_folder())
    build(work, args.cases, args.sphere_mm)

    import numpy as np

    from nnunet_tavr.io import pyplot, save_figure
    from nnunet_tavr.landmarks.extract import case_points, prediction_files
    from nnunet_tavr.landmarks.reference import load_reference
    from nnunet_tavr.landmarks.report import error_summary, point_errors, summary_lines

    reference, _ = load_reference(str(work / "nnUNet_raw" / DATASET))
    lines = [f"# python benchmarks/landmark_trainers.py --cases {args.cases} --epochs {args.epochs} --iterations {args.iterations} "
             f"--sigma-mm {args.sigma_mm} --sphere-mm {args.sphere_mm} --runs {args.runs} --trainers {' '.join(args.trainers)}",
             "# cusped phantoms at 4 mm, demo plans (32^3 patch, 4 stages), the demo's schedule, fold 0, CPU; "
             "errors on the test split (world mm)"]
    errors_by, missing_by = {}, {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.trainers:
        mode = "heatmap" if "Heatmap" in name else "segmentation"
        pooled = []
        for seed in range(args.runs):
            pred, seconds = train_and_predict(work, name, args.epochs, args.iterations, args.sigma_mm, seed)
            points = {cp.case: cp for cp in (case_points(p, mode) for p in prediction_files(pred))}
            rows = point_errors(points, reference)
            pooled += rows
            lines.append(f"{name} seed {seed} ({mode}; {args.epochs} x {args.iterations} iterations, "
                         f"{seconds / 60:.1f} min of training, wall):")
            lines += summary_lines(error_summary(rows))[-1:]
            print("\n".join(lines[-2:]), flush=True)
            args.out.write_text("\n".join(lines) + "\n")  # so far: an hour of runs is not lost to a late failure
        lines.append(f"{name}, the {args.runs} runs pooled:")
        lines += summary_lines(error_summary(pooled))
        errors_by[name] = [r["error_mm"] for r in pooled if r["error_mm"] is not None]
        missing_by[name] = sum(r["error_mm"] is None for r in pooled)
    args.out.write_text("\n".join(lines) + "\n")
    plt = pyplot()
    with plt.style.context("default"):  # nnU-Net's training logger sets seaborn's large fonts globally
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.boxplot([errors_by[n] or [np.nan] for n in args.trainers], showfliers=True)
        ax.set_xticks(range(1, len(args.trainers) + 1),
                      [f"{n.replace('nnUNetTrainer', '') or 'sphere seg'}\n{missing_by[n]} of "
                       f"{missing_by[n] + len(errors_by[n])} points missing" for n in args.trainers])
        ax.set_yscale("log")
        ax.set_ylabel("hinge-point error (mm)")
        ax.axhline(4.0, color="grey", lw=0.8, ls="--")
        ax.text(0.55, 4.0, " one voxel (4 mm)", va="bottom", fontsize=8, color="grey")
        ax.set_title(f"{args.runs} runs x {args.epochs} x {args.iterations} CPU iterations, 4 mm phantoms, "
                     "test split (3 cases x 3 points)", fontsize=9)
        fig.tight_layout()
    save_figure(fig, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
