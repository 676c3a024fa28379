"""Run ``nnunet-tavr demo`` for several seeds and tabulate what its summary reports.

Each run goes to ``ROOT/<mode>/seed<k>``; a run whose ``report.json`` exists is read, not rerun
(delete the folder to rerun it). Prints, per run, the total minutes, each trainer's test-set mean /
aorta / left-ventricle Dice (%) and the three headline measurements' errors against the phantom's
truth (mm), then the mean and range over the runs, and whether each run meets the targets of the
mode (issue 14: they are set for the first trainer, nnUNetTrainerFocalSR).
Run it on an idle machine: the minutes are wall-clock.

    python benchmarks/demo.py --root /tmp/demo_runs --seeds 0 1 2            # default demo
    python benchmarks/demo.py --root /tmp/demo_runs --seeds 0 1 2 --quick    # CI's smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: (minutes at most, mean Dice at least, aorta and LV Dice at least, |measurement error| at most)
TARGETS = {"default": (15.0, 75.0, 90.0, 2.0), "quick": (5.0, 50.0, None, None)}


def run(root: Path, seed: int, quick: bool, device: str) -> dict:
    out = root / ("quick" if quick else "default") / f"seed{seed}"
    report = out / "report.json"
    if not report.is_file():
        cmd = [sys.executable, "-m", "nnunet_tavr.cli", "demo", "-o", str(out), "--seed", str(seed), "--device", device]
        subprocess.run(cmd + (["--quick"] if quick else []), check=True)
    return json.loads(report.read_text())


def rows(seed: int, record: dict, targets) -> list[str]:
    summary = record["summary"]
    minutes, mean_min, organ_min, error_max = targets
    errors = {k: m["error_mm"] for k, m in summary["measurements"].items()}
    lines = []
    for trainer, d in summary["test_dice"].items():
        dice = [100 * d["mean"], 100 * d["aorta"], 100 * d["left_ventricle"]]
        checks = [summary["total_minutes"] <= minutes, dice[0] >= mean_min]
        if organ_min is not None:
            checks.append(min(dice[1:]) >= organ_min)
        first = trainer == next(iter(summary["test_dice"]))  # the targets are the paper's trainer's
        if error_max is not None:
            checks.append(all(e is not None and abs(e) <= error_max for e in errors.values()))
        shown = "  ".join("missing" if e is None else f"{e:+5.1f}" for e in errors.values()) if first else ""
        verdict = ("meets" if all(checks) else "MISSES") if first else "(no target)"
        lines.append(f"{seed:>4}  {summary['total_minutes']:6.1f}  {trainer:<28} {dice[0]:5.1f} {dice[1]:5.1f} {dice[2]:5.1f}"
                     f"   {shown:<24} {verdict}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    mode = "quick" if args.quick else "default"
    targets = TARGETS[mode]
    records = {seed: run(args.root, seed, args.quick, args.device) for seed in args.seeds}
    names = list(next(iter(records.values()))["summary"]["measurements"])
    print(f"nnunet-tavr demo ({mode}); targets: <= {targets[0]} min, test mean Dice >= {targets[1]}"
          + (f", aorta and LV >= {targets[2]}, |error| <= {targets[3]} mm for {', '.join(names)}" if targets[2] else ""))
    print(f"seed  minutes  {'trainer':<28} mean aorta    LV   errors (mm) of the first trainer's case")
    for seed, record in records.items():
        print("\n".join(rows(seed, record, targets)))
    minutes = [r["summary"]["total_minutes"] for r in records.values()]
    print(f"minutes: mean {sum(minutes) / len(minutes):.1f}, range {min(minutes):.1f}-{max(minutes):.1f}")
    for trainer in next(iter(records.values()))["summary"]["test_dice"]:
        means = [100 * r["summary"]["test_dice"][trainer]["mean"] for r in records.values()]
        print(f"{trainer}: test mean Dice mean {sum(means) / len(means):.1f}, range {min(means):.1f}-{max(means):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
