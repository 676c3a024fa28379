"""Compare nnU-Net trainers across folds: Dice, IoU, ASSD and HD95 per class, CIs and tests.

Reads each trainer's fold validation predictions from $nnUNet_results
(<trainer>__<plans>__<configuration>/fold_k/validation/) and compares them with the reference
segmentations in $nnUNet_preprocessed/<dataset>/gt_segmentations/; optionally also test-set
predictions (from nnUNetv2_predict, one folder per trainer, in -tr order) against labelsTs.

Writes to OUT_DIR: report.md (a table shaped like the paper's Table 3 plus ASSD/HD95 rows,
per-fold and pooled means, bootstrap CIs of each trainer's mean Dice, paired Wilcoxon tests with
Holm correction, and every gap), per_case.csv, summary.json and dice_boxplots_<split>.png.
Per-case metrics are cached in OUT_DIR/.cache, so a rerun only evaluates what changed.
Distances are in mm from the images' spacing (2-D frames: their pixel size at the isocentre).
--group-by patient makes the patient the unit (seed 002): each patient's cases are averaged first
(per_patient.csv) and CIs and tests run over patients; the report says how many patients and frames.

With --landmarks (datasets of the hinge scheme) the same predictions are also compared on their
per-case mean landmark error in mm (landmarks_report.md: bootstrap CIs, paired Wilcoxon + Holm).

Example:
  nnunet-tavr compare -d 315 -c 3d_fullres -tr nnUNetTrainer nnUNetTrainerHeatmapOT --landmarks -o cmp_hinge/
  nnunet-tavr compare -d 301 -c 3d_fullres -tr nnUNetTrainer nnUNetTrainerFocalSR -o cmp/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least, open_interval

    parser.add_argument("-d", "--dataset", required=True, help="dataset id or DatasetXXX_Name")
    parser.add_argument("-c", "--configuration", required=True, help="nnU-Net configuration, e.g. 3d_fullres or 2d")
    parser.add_argument("-tr", "--trainers", nargs="+", required=True, help="trainer class names to compare")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default: nnUNetPlans)")
    parser.add_argument("-f", "--folds", nargs="+", default=["0", "1", "2", "3", "4"], help="folds: numbers or 'all' (default: 0 1 2 3 4)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--test", nargs="+", type=Path, metavar="PRED_DIR", help="test-set prediction folders, one per trainer in -tr order")
    parser.add_argument("--test-labels", type=Path, metavar="DIR", help="test labels (default: $nnUNet_raw/<dataset>/labelsTs)")
    parser.add_argument("--no-validation", action="store_true", help="evaluate only the test set")
    parser.add_argument("-np", "--num-processes", type=at_least(1), default=min(4, os.cpu_count() or 1), help="parallel cases (default: min(4, CPUs))")
    parser.add_argument(
        "--one-empty", choices=("diagonal", "nan"), default="diagonal",
        help="ASSD/HD95 when exactly one of reference and prediction is empty: the image diagonal in mm "
        "(default) or NaN (left out of means)",
    )
    parser.add_argument(
        "--group-by", choices=("case", "patient"), default="case",
        help="statistical unit: every case (default), or every patient: a patient's cases (e.g. the frames of one CT) are "
        "averaged first, and CIs and Wilcoxon tests run on patients (patients from the dataset's tavr_splits.json / manifest.csv)",
    )
    parser.add_argument("--bootstrap", type=at_least(100), default=10_000, help="bootstrap resamples, at least 100 (default: 10000)")
    parser.add_argument("--confidence", type=open_interval(0.0, 1.0), default=0.95, help="confidence level of the CIs, between 0 and 1 (default: 0.95)")
    parser.add_argument("--alpha", type=open_interval(0.0, 1.0), default=0.05, help="significance level after Holm correction (default: 0.05)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--raw", type=Path, help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.add_argument("--preprocessed", type=Path, help="nnU-Net preprocessed folder (default: $nnUNet_preprocessed)")
    parser.add_argument("--results", type=Path, help="nnU-Net results folder (default: $nnUNet_results)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every case")
    parser.add_argument("--landmarks", action="store_true",
                        help="also compare landmark errors (datasets of the hinge scheme: per-case mean error in mm against landmarks.json; "
                        "heatmap trainers need their validation probabilities, nnUNetv2_train --npz); writes landmarks_report.md")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def check_args(args: argparse.Namespace) -> None:
    """Refuse what cannot make a meaningful comparison, before any case is read."""
    import re

    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.safepaths import check_input, check_output_dir

    for option, values in (("-tr", args.trainers), ("-f", args.folds), ("--test", args.test)):
        repeated = sorted({str(v) for v in values or [] if list(map(str, values)).count(str(v)) > 1})
        if repeated:
            raise UsageError(f"{option}: {', '.join(repeated)} given more than once")
    bad = [f for f in args.folds if not re.fullmatch(r"\d+|all", str(f))]
    if bad:
        raise UsageError(f"-f: {', '.join(bad)} is not a fold (a number or 'all')")
    if args.no_validation and not args.test:
        raise UsageError("--no-validation leaves nothing to compare: add --test PRED_DIR ...")
    if args.test and len(args.test) != len(args.trainers):
        raise UsageError(f"--test needs one prediction folder per trainer ({len(args.trainers)}), got {len(args.test)}")
    for folder in args.test or []:
        check_input(folder, "--test", "folder")
    check_input(args.test_labels, "--test-labels", "folder")
    for option, folder in (("--raw", args.raw), ("--preprocessed", args.preprocessed), ("--results", args.results)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise UsageError(f"{option} {folder} is a file, not a folder")
    inputs = [*(args.test or []), args.test_labels, args.raw, args.preprocessed, args.results]
    check_output_dir(args.output, inputs=inputs)


def main(args: argparse.Namespace) -> int:
    from nnunet_tavr.evaluation.metrics import classes_from_labels
    from nnunet_tavr.evaluation.report import records_frame, write_outputs
    from nnunet_tavr.evaluation.results import Inventory, collect_test, collect_validation, evaluate_jobs, load_dataset
    from nnunet_tavr.io import InputError

    check_args(args)
    info = load_dataset(args.dataset, args.raw, args.preprocessed, args.results)
    classes = classes_from_labels(info.labels)
    if not classes:
        raise InputError(f"dataset {info.name}: dataset.json has no foreground labels")
    inventory = Inventory()
    if not args.no_validation:
        inventory.extend(collect_validation(info, args.trainers, args.plans, args.configuration, args.folds))
    if args.test:
        inventory.extend(collect_test(info, args.trainers, args.test, args.test_labels))
    if not inventory.jobs:
        for gap in inventory.gaps:
            print(f"  {gap.trainer} {gap.split} fold {gap.fold}{' case ' + gap.case if gap.case else ''}: {gap.reason}", file=sys.stderr)
        raise InputError(f"dataset {info.name}: nothing to evaluate for {', '.join(args.trainers)} ({args.plans}, {args.configuration})")
    out = Path(args.output)
    records, failures = evaluate_jobs(
        inventory.jobs, classes, info.file_ending, one_empty=args.one_empty, num_processes=args.num_processes,
        cache_dir=None if args.no_cache else out / ".cache", progress=not args.quiet,
        ignore_value=info.ignore_value,
    )
    inventory.gaps += failures
    frame, cases = records_frame(records), None
    if args.group_by == "patient":
        from nnunet_tavr.evaluation.grouping import aggregate_by_group, load_groups

        cases, frame = frame, aggregate_by_group(frame, load_groups(info.folders.raw_dataset(info.name)))
    settings = {
        "dataset": info.name, "configuration": args.configuration, "plans": args.plans, "trainers": args.trainers,
        "folds": [str(f) for f in args.folds], "one_empty": args.one_empty, "region_based": info.is_region_based,
        "classes": {c.name: list(c.values) for c in classes}, "file_ending": info.file_ending, "group_by": args.group_by,
    }
    write_outputs(
        out, frame, args.trainers, classes, inventory.gaps, settings,
        confidence=args.confidence, n_resamples=args.bootstrap, seed=args.seed, alpha=args.alpha, cases=cases,
    )
    if getattr(args, "landmarks", False):
        from nnunet_tavr.landmarks.compare import compare_landmarks

        compare_landmarks(info, inventory.jobs, args.trainers, out, confidence=args.confidence, n_resamples=args.bootstrap,
                          seed=args.seed, alpha=args.alpha)
        print(f"landmark errors: {out / 'landmarks_report.md'}")
    n_cases = len(inventory.jobs) - len(failures)
    print(f"{n_cases} case(s) evaluated, {len(inventory.gaps)} gap(s); report: {out / 'report.md'}")
    for gap in inventory.gaps:
        print(f"  gap: {gap.trainer} {gap.split} fold {gap.fold}{' case ' + gap.case if gap.case else ''}: {gap.reason}")
    return 1 if failures else 0
