"""Derive valve, annulus and aortic-root labels from coarse TotalSegmentator masks (paper 2.1).

Writes the exclusive 7-class TAVR label map (0 background, 1 aorta, 2 left_ventricle,
3 aortic_root, 4 valve, 5 annulus, 6 iliac_artery_left, 7 iliac_artery_right) on the input grid.

  nnunet-tavr derive SUBJECT_DIR -o LABELS.nii.gz [--report R.json] [--qc QC.png]
  nnunet-tavr derive --aorta A --left-ventricle LV [--iliac-left IL] [--iliac-right IR] [--ct CT] -o LABELS.nii.gz
  nnunet-tavr derive --multilabel total=SEG.nii.gz --multilabel heartchambers_highres=HEART.nii.gz -o LABELS.nii.gz
  nnunet-tavr derive DATASET_DIR --batch -o OUT_DIR      (every subject; resumes; dataset curve figure)

SUBJECT_DIR is a TotalSegmentator dataset subject (ct.nii.gz + segmentations/) or output folder.
A case the rules cannot be applied to (missing or empty mask, aorta and ventricle apart, no
maximum or minimum in the area curve) is excluded: no label map, the reason in the report, exit
status 1. Bad input (unreadable file, masks on different grids) exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_EXCLUDED = 1
EXIT_INPUT_ERROR = 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", nargs="?", type=Path, help="TotalSegmentator subject folder (or, with --batch, a dataset folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="label map to write (.nii.gz); with --batch an output folder")
    parser.add_argument("--report", type=Path, help="JSON record: voxel counts, root details, or the exclusion reason")
    parser.add_argument("--qc", type=Path, help="QC figure (PNG): labels over the CT in two planes and the area curve")
    g = parser.add_argument_group("explicit masks (override what SUBJECT holds)")
    g.add_argument("--aorta", type=Path, help="aorta mask")
    g.add_argument("--left-ventricle", type=Path, help="left-ventricle mask (TotalSegmentator -ta heartchambers_highres)")
    g.add_argument("--iliac-left", type=Path, help="left iliac artery mask")
    g.add_argument("--iliac-right", type=Path, help="right iliac artery mask")
    g.add_argument("--ct", type=Path, help="the CT (reference grid and QC background)")
    g.add_argument("--multilabel", action="append", default=[], metavar="TASK=FILE",
                   help="TotalSegmentator multilabel file of TASK (total, total_v1, heartchambers_highres); repeatable")
    r = parser.add_argument_group("rule parameters (physical units; defaults = the paper on 1.5 mm)")
    r.add_argument("--valve-mm", type=float, default=4.5, help="valve: aorta within this distance of the LV (default 4.5)")
    r.add_argument("--annulus-mm", type=float, default=1.5, help="annulus: LV within this distance of the aorta (default 1.5)")
    r.add_argument("--step-mm", type=float, default=None, help="sweep step (default: in-plane voxel size)")
    r.add_argument("--window", type=int, default=5, help="moving-average window in steps (default 5)")
    r.add_argument("--max-distance-mm", type=float, default=80.0, help="sweep length from the annulus (default 80)")
    r.add_argument("--min-prominence", type=float, default=0.01, help="ignore extrema below this fraction of the peak area (default 0.01)")
    r.add_argument("--flat-tolerance", type=float, default=0.0075, help="areas within this fraction of the lowest are the bottom of the minimum (default 0.0075)")
    r.add_argument("--require-iliacs", action="store_true", help="exclude cases without both iliac arteries")
    parser.add_argument("--batch", action="store_true", help="SUBJECT is a dataset folder: derive every subject into OUTPUT/")
    parser.add_argument("--no-qc", action="store_true", help="with --batch: skip the per-case figures")
    parser.add_argument("--force", action="store_true", help="recompute outputs that exist already")


def _params(args):
    from nnunet_tavr.label_derivation.case import DerivationParams

    return DerivationParams(
        valve_mm=args.valve_mm,
        annulus_mm=args.annulus_mm,
        step_mm=args.step_mm,
        window=args.window,
        max_distance_mm=args.max_distance_mm,
        min_prominence=args.min_prominence,
        flat_tolerance=args.flat_tolerance,
    )


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _write_outputs(derivation, output, report=None, qc=None) -> None:
    """Label map (unless excluded), QC figure and JSON report of one case, each atomically."""
    from nnunet_tavr.io import write_array, write_json
    from nnunet_tavr.label_derivation.case import report_record, write_qc

    if derivation.labels is not None:
        write_array(derivation.labels, derivation.subject.geometry, output)
    elif Path(output).exists():
        Path(output).unlink()  # a stale map from an earlier run must not outlive its exclusion
    if qc is not None:
        write_qc(derivation, qc)
    if report is not None:
        write_json(report_record(derivation, output), report)


def _single(args) -> int:
    from nnunet_tavr.label_derivation.case import derive_case, load_tavr_subject

    explicit = {
        name: path
        for name, path in (
            ("aorta", args.aorta),
            ("left_ventricle", args.left_ventricle),
            ("iliac_artery_left", args.iliac_left),
            ("iliac_artery_right", args.iliac_right),
        )
        if path is not None
    }
    multilabel = []
    for item in args.multilabel:
        task, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--multilabel expects TASK=FILE, got {item!r}")
        multilabel.append((task, Path(path)))
    if args.subject is None and not explicit and not multilabel:
        raise SystemExit("give a SUBJECT_DIR, mask files (--aorta, --left-ventricle, ...) or --multilabel TASK=FILE")
    done = args.output.exists() and (args.report is None or args.report.exists()) and (args.qc is None or args.qc.exists())
    if done and not args.force:
        print(f"{args.output} exists; nothing to do (use --force to recompute)")
        return 0
    subject = load_tavr_subject(args.subject, mask_paths=explicit, multilabel=multilabel, ct_path=args.ct, warn=_warn)
    derivation = derive_case(subject, _params(args), args.require_iliacs)
    _write_outputs(derivation, args.output, args.report, args.qc)
    result = derivation.result
    for message in result.warnings:
        if message not in subject.warnings:
            _warn(message)
    if not result.ok:
        print(f"case {result.case}: excluded: {result.excluded_reason}", file=sys.stderr)
        return EXIT_EXCLUDED
    root = result.root
    print(f"case {result.case}: wrote {args.output} (root end {root.end_distance_mm:.1f} mm from the annulus; "
          + ", ".join(f"{k} {v}" for k, v in result.voxel_counts.items()) + " voxels)")
    return 0


def _batch(args) -> int:
    import json

    from tqdm import tqdm

    from nnunet_tavr.dataset_conversion.layouts import discover_cases
    from nnunet_tavr.io import InputError, write_json, write_text
    from nnunet_tavr.label_derivation.case import derive_case, load_tavr_subject
    from nnunet_tavr.label_derivation.labelmap import DerivationResult
    from nnunet_tavr.label_derivation.qc import plot_dataset_curves
    from nnunet_tavr.totalseg import multilabel_files

    if args.subject is None or not args.subject.is_dir():
        raise SystemExit(f"--batch needs a dataset folder, got {args.subject}")
    _, cases = discover_cases(args.subject)
    if not cases:
        raise SystemExit(f"no case folders (CT or segmentations/) in {args.subject}")
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    results, failed = [], []
    for source in tqdm(cases, desc="derive", unit="case"):
        case = source.case_id
        report = out / f"{case}.json"
        if report.exists() and not args.force:  # reports are written last: a report marks a finished case
            results.append(DerivationResult.from_dict(json.loads(report.read_text())))
            continue
        try:
            if source.problem:
                raise source.problem
            subject = load_tavr_subject(source.path, case=case, multilabel=multilabel_files(source.path))
        except InputError as exc:
            failed.append((case, exc))
            tqdm.write(f"error: {exc}", file=sys.stderr)
            continue
        derivation = derive_case(subject, _params(args), args.require_iliacs)
        qc = None if args.no_qc else out / "qc" / f"{case}.png"
        _write_outputs(derivation, out / f"{case}.nii.gz", report, qc)
        results.append(derivation.result)
    rows = ["case;ok;root_end_mm;excluded_reason"]
    for r in results:
        end = "" if not r.ok or r.root is None else f"{r.root.end_distance_mm:.2f}"
        rows.append(f"{r.case};{int(r.ok)};{end};{r.excluded_reason or ''}")
    rows += [f"{case};0;;input error ({exc.code}): {exc}" for case, exc in failed]
    write_text("\n".join(rows) + "\n", out / "derivation.csv")
    summary = plot_dataset_curves(out / "dataset_curves.png", results)
    summary["n_input_errors"] = len(failed)
    write_json(summary, out / "summary.json")
    n_ok = sum(r.ok for r in results)
    print(f"{n_ok} derived, {len(results) - n_ok} excluded, {len(failed)} input errors; see {out / 'derivation.csv'} and {out / 'dataset_curves.png'}")
    return 0 if not failed else EXIT_INPUT_ERROR


def main(args: argparse.Namespace) -> int:
    from nnunet_tavr.io import InputError

    try:
        return _batch(args) if args.batch else _single(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
