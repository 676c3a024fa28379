"""Seconds per case of ``nnUNetv2_predict`` on the whole-heart dataset, beside seed 004's 13.4 s.

Builds the cardiac dataset the way a user would (``nnunet-tavr phantom --heart-chambers`` at
1.5 mm -> ``convert --scheme heart --crop-margin-mm`` (the heart's region, as the seed's
320 x 320 x 320 ROI around the aortic valve) -> ``nnUNetv2_plan_and_preprocess``), makes a model
folder for each plan (nnU-Net's own 3d_fullres plan, and the project's tiny CPU plan) with an
untrained ``nnUNetTrainer`` checkpoint -- a network's run time does not depend on its weights, so
no training is needed to time it -- and runs the real ``nnUNetv2_predict`` on 1 and on N cases:

- seconds per case = (T_N - T_1) / (N - 1): the marginal cost of a case, start-up excluded;
- T_1: one case from a cold start (Python, torch and the model loaded), what a single call costs.

Wall time and the CPU time of the child processes are both printed (on a shared machine wall time
grows with the other tenants' load; CPU time does not). nnU-Net's sliding window with
``--disable_tta`` (one pass per tile); ``--tta`` adds nnU-Net's default mirroring (8 passes).

    python benchmarks/cardiac_predict.py                         # CPU, 4 cases
    python benchmarks/cardiac_predict.py --device cuda --cases 8 --tta
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Seed 004: median seconds per case (range), a 2 GHz workstation with 2 GB of RAM.
SEED_SECONDS = (13.4, 11.9, 14.9)
DATASET_ID, DATASET = 304, "Dataset304_Heart"


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """Run a console script; (wall seconds, CPU seconds of the children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([_bin(cmd[0]), *cmd[1:]], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def build_dataset(root: Path, env: dict, args) -> dict:
    """Phantoms -> heart dataset -> nnU-Net's plans and preprocessing (+ the tiny plans)."""
    from nnunet_tavr.tiny_plans import write_tiny_plans

    run(["nnunet-tavr", "phantom", str(root / "ts"), "-n", str(args.cases), "--heart-chambers",
         "--spacing", str(args.spacing)], env)
    run(["nnunet-tavr", "convert", str(root / "ts"), "--scheme", "heart", "-d", str(DATASET_ID), "--quiet",
         "--crop-margin-mm", str(args.crop_mm)], env)
    run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
        {**env, "nnUNet_n_proc_DA": "1"})
    write_tiny_plans(root / "preprocessed" / DATASET, configurations=("3d_fullres",))
    plans = json.loads((root / "preprocessed" / DATASET / "nnUNetPlans.json").read_text())
    return plans["configurations"]["3d_fullres"]


def untrained_model(root: Path, plans_name: str, device: str) -> str:
    """A model folder of ``nnUNetTrainer`` with freshly initialised weights (fold 0)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    pre = root / "preprocessed" / DATASET
    plans = json.loads((pre / f"{plans_name}.json").read_text())
    dataset_json = json.loads((pre / "dataset.json").read_text())
    trainer = nnUNetTrainer({**plans, "continue_training": False}, "3d_fullres", 0, dataset_json, device=torch.device(device))
    trainer.initialize()
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the mirroring axes used by --tta
    folder = root / "results" / DATASET / f"nnUNetTrainer__{plans_name}__3d_fullres"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    shutil.copy(pre / f"{plans_name}.json", folder / "plans.json")
    shutil.copy(pre / "dataset.json", folder / "dataset.json")
    trainer.save_checkpoint(str(folder / "fold_0" / "checkpoint_final.pth"))
    return plans_name


def time_predict(root: Path, env: dict, plans_name: str, n: int, args) -> dict:
    images = sorted((root / "raw" / DATASET / "imagesTr").glob("*.nii.gz")) + sorted((root / "raw" / DATASET / "imagesTs").glob("*.nii.gz"))
    out = {}
    for count in (1, n):
        folder = root / f"in_{plans_name}_{count}"
        folder.mkdir(exist_ok=True)
        for path in images[:count]:
            (folder / path.name).symlink_to(path)
        cmd = ["nnUNetv2_predict", "-i", str(folder), "-o", str(root / f"out_{plans_name}_{count}"), "-d", str(DATASET_ID),
               "-c", "3d_fullres", "-f", "0", "-p", plans_name, "-tr", "nnUNetTrainer", "-device", args.device,
               "-npp", str(args.workers), "-nps", str(args.workers)]
        if not args.tta:
            cmd.append("--disable_tta")
        out[count] = run(cmd, env)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4, help="phantom cases (N >= 2)")
    parser.add_argument("--spacing", type=float, default=1.5, help="phantom voxel size (mm)")
    parser.add_argument("--crop-mm", type=float, default=20.0, help="margin of the crop around the heart chambers (mm)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tta", action="store_true", help="nnU-Net's test-time mirroring (default: --disable_tta)")
    parser.add_argument("--workers", type=int, default=1, help="nnUNetv2_predict -npp / -nps")
    parser.add_argument("--plans", nargs="+", default=["nnUNetPlans", "nnUNetTinyPlans"])
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it")
    args = parser.parse_args(argv)
    if args.cases < 2:
        parser.error("--cases must be at least 2")
    print(f"$ python benchmarks/cardiac_predict.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f}")
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="nnunet_tavr_cardiac_")
    root = args.keep or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_def_n_proc": str(args.workers)}
    os.environ.update({k: env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})  # before nnunetv2 is imported
    config = build_dataset(root, env, args)
    print(f"{args.cases} heart phantoms at {args.spacing} mm, cropped to the chambers + {args.crop_mm:g} mm; "
          f"nnU-Net's 3d_fullres plan: patch {config['patch_size']}, {config['architecture']['arch_kwargs']['n_stages']} stages, "
          f"median image {config['median_image_size_in_voxels']} voxels")
    tta = "with mirroring (TTA)" if args.tta else "--disable_tta"
    seed, lo, hi = SEED_SECONDS
    print(f"nnUNetv2_predict {tta}, -npp/-nps {args.workers}; seed 004: {seed} s per case (range {lo}-{hi}) on a 2 GHz CPU")
    print(f"  {'plan':<16} {'s/case wall':>12} {'(x seed)':>9} {'s/case CPU':>11} {'(x seed)':>9}   1 case cold: wall / CPU")
    for plans_name in args.plans:
        untrained_model(root, plans_name, args.device)
        t = time_predict(root, env, plans_name, args.cases, args)
        (w1, c1), (wn, cn) = t[1], t[args.cases]
        per_wall, per_cpu = (wn - w1) / (args.cases - 1), (cn - c1) / (args.cases - 1)
        print(f"  {plans_name:<16} {per_wall:12.1f} {per_wall / seed:8.2f}x {per_cpu:11.1f} {per_cpu / seed:8.2f}x   "
              f"{w1:8.1f} s / {c1:5.1f} s", flush=True)
    print("CPU time adds up every thread (torch uses all cores), so on an idle machine the wall time per case lies "
          "between CPU / cores and CPU")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
