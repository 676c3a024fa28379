"""Landmark error of each hinge-point trainer after a short CPU training on cusped phantoms.

Builds the ``hinge`` dataset from cusped phantoms (4 mm grid, spheres of 4 mm), plans it with
nnU-Net, writes the tiny plans, then for each trainer (``nnUNetTrainerHeatmapOT``,
``nnUNetTrainerHeatmapMSE`` and nnU-Net's own ``nnUNetTrainer`` on the spheres) trains fold 0 for
``--epochs`` x ``--iterations`` on the CPU (nnU-Net's training loop, in-process), predicts the
test cases with nnU-Net's predictor (probabilities saved, no test-time mirroring) and reads the
points as ``nnunet-tavr landmarks`` does. Errors are against the dataset's ``landmarks.json``
(world mm). Writes the table to ``--out`` and a box plot next to it.

This is a smoke-scale run (minutes on two shared cores, not the seed's 3D U-Net training), so the
errors show that each trainer learns and how far a short run gets, not the methods' accuracy; the
seed's < 2 mm median needs a GPU training, which this task had none for.

Usage::

    python benchmarks/landmark_trainers.py [--cases 20] [--epochs 10] [--iterations 15] [--work DIR]
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


def build(work: Path, cases: int) -> None:
    import subprocess

    from nnunet_tavr.phantom import write_dataset
    from nnunet_tavr.tiny_plans import write_tiny_plans

    bin_dir = Path(sys.executable).parent
    if not (work / "nnUNet_preprocessed" / DATASET / "nnUNetTinyPlans.json").is_file():
        write_dataset(work / "phantoms", cases, seed=316, shape=(75, 60, 60), spacing=4.0, aortic_sinuses=True)
        subprocess.run([bin_dir / "nnunet-tavr", "convert", work / "phantoms", "--scheme", "hinge", "--sphere-mm", "4",
                        "-d", str(DATASET_ID), "-n", "HingeBench", "--quiet"], check=True)
        subprocess.run([bin_dir / "nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
                       check=True, capture_output=True, env={**os.environ, "nnUNet_n_proc_DA": "1"})
        write_tiny_plans(work / "nnUNet_preprocessed" / DATASET, configurations=("3d_fullres",))
        subprocess.run([bin_dir / "nnunet-tavr", "convert", "-d", str(DATASET_ID), "-n", "HingeBench", "--install-splits"], check=True)


def train_and_predict(work: Path, name: str, epochs: int, iterations: int) -> tuple[Path, float]:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_tavr.trainers.schedules import ShortSchedule

    base = recursive_find_trainer_class_by_name(name)
    cls = type(f"{name}_bench", (ShortSchedule, base), {"num_epochs": epochs, "num_iterations_per_epoch": iterations,
                                                          "num_val_iterations_per_epoch": 2})
    folder = work / "nnUNet_preprocessed" / DATASET
    plans = json.loads((folder / "nnUNetTinyPlans.json").read_text())
    plans["continue_training"] = False  # nnU-Net's run_training.py sets this; a fresh start here
    ds = json.loads((folder / "dataset.json").read_text())
    torch.manual_seed(0)
    trainer = cls(plans, "3d_fullres", 0, ds, device=torch.device("cpu"))
    t0 = time.process_time()
    trainer.run_training()
    seconds = time.process_time() - t0
    trainer.set_deep_supervision_enabled(False)  # as nnU-Net's own validation does before predicting
    trainer.network.eval()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device("cpu"),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                    [trainer.network.state_dict()], ds,
                                    type(trainer).__name__, None)
    out = work / "predictions" / name
    predictor.predict_from_files(str(work / "nnUNet_raw" / DATASET / "imagesTs"), str(out), save_probabilities=True,
                                 overwrite=True, num_processes_preprocessing=1, num_processes_segmentation_export=1)
    return out, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnunet_tavr_landmark_trainers"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/landmark_trainers_cpu.txt"))
    args = parser.parse_args(argv)
    work = args.work.resolve()
    os.environ.update({"nnUNet_raw": str(work / "nnUNet_raw"), "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
                       "nnUNet_results": str(work / "nnUNet_results"), "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"})
    from nnunet_tavr.trainer_path import trainer_folder

    os.environ["nnUNet_extTrainer"] = str(trainer_folder())
    build(work, args.cases)

    import numpy as np

    from nnunet_tavr.io import pyplot, save_figure
    from nnunet_tavr.landmarks.extract import case_points, prediction_files
    from nnunet_tavr.landmarks.reference import load_reference
    from nnunet_tavr.landmarks.report import error_summary, point_errors, summary_lines

    reference, _ = load_reference(str(work / "nnUNet_raw" / DATASET))
    lines = [f"# python benchmarks/landmark_trainers.py --cases {args.cases} --epochs {args.epochs} --iterations {args.iterations}",
             "# cusped phantoms at 4 mm, tiny plans (32^3 patch, 3 stages), fold 0, CPU; errors on the test split (world mm)"]
    errors_by = {}
    for name in args.trainers:
        pred, seconds = train_and_predict(work, name, args.epochs, args.iterations)
        mode = "heatmap" if "Heatmap" in name else "segmentation"
        points = {cp.case: cp for cp in (case_points(p, mode) for p in prediction_files(pred))}
        rows = point_errors(points, reference)
        summary = error_summary(rows)
        errors_by[name] = [r["error_mm"] for r in rows if r["error_mm"] is not None]
        lines.append(f"{name} ({mode}; {args.epochs} x {args.iterations} iterations, {seconds:.0f} s CPU training):")
        lines += summary_lines(summary)
        print("\n".join(lines[-5:]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.boxplot([errors_by[n] or [np.nan] for n in args.trainers], showfliers=True)
    ax.set_xticks(range(1, len(args.trainers) + 1), [n.replace("nnUNetTrainer", "") or "sphere seg" for n in args.trainers])
    ax.set_ylabel("hinge-point error (mm)")
    ax.axhline(2.0, color="grey", lw=0.8, ls="--")
    ax.set_title(f"short CPU training ({args.epochs} x {args.iterations} it.), test split", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
