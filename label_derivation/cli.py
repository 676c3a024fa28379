"""Derive valve, annulus and aortic-root labels from coarse TotalSegmentator masks (paper 2.1).

Writes the exclusive 7-class TAVR label map (0 background, 1 aorta, 2 left_ventricle,
3 aortic_root, 4 valve, 5 annulus, 6 iliac_artery_left, 7 iliac_artery_right) on the input grid;
with --calcium also 8 calcium, a pseudo-label found in the CT (docs/calcium.md).

  nnunet-tavr derive SUBJECT_DIR -o LABELS.nii.gz [--report R.json] [--qc QC.png]
  nnunet-tavr derive --aorta A --left-ventricle LV [--iliac-left IL] [--iliac-right IR] [--ct CT] -o LABELS.nii.gz
  nnunet-tavr derive --multilabel total=SEG.nii.gz --multilabel heartchambers_highres=HEART.nii.gz -o LABELS.nii.gz
  nnunet-tavr derive DATASET_DIR --batch -o OUT_DIR      (every subject; resumes; dataset curve figure)

SUBJECT_DIR is a TotalSegmentator dataset subject (ct.nii.gz + segmentations/) or output folder.
Exit status: 0 derived; 1 excluded (a case the rules cannot be applied to: missing or empty mask,
aorta and ventricle apart, no maximum or minimum in the area curve; no label map, the reason in
the report); 2 bad input or usage (unreadable file, masks on different grids, an output that is an
input, a nonsense option), nothing written. With --batch: 0, or 1 when some cases had bad input
(listed in OUT_DIR/derivation.csv; the other cases are derived).

Inputs are never written: an output equal to an input (or a link to one), or inside the subject
folder, is refused. With --report, a rerun with the same inputs and settings is up to date and
writes nothing (--force recomputes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_tavr.errors import EXIT_EXCLUDED
from nnunet_tavr.errors import EXIT_INPUT as EXIT_INPUT_ERROR


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least, float_range, positive_float
    from nnunet_tavr.label_derivation.case import DerivationParams as P

    parser.add_argument("subject", nargs="?", type=Path, help="TotalSegmentator subject folder (or, with --batch, a dataset folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="label map to write (.nii.gz, .nii, .nrrd or .mha); with --batch an output folder")
    parser.add_argument("--report", type=Path, help="JSON record: voxel counts, root details, or the exclusion reason; a rerun with the same inputs and report resumes")
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
    r.add_argument("--valve-mm", type=positive_float, default=P.valve_mm, help=f"valve: aorta within this distance of the LV (default {P.valve_mm})")
    r.add_argument("--annulus-mm", type=positive_float, default=P.annulus_mm, help=f"annulus: LV within this distance of the aorta (default {P.annulus_mm})")
    r.add_argument("--step-mm", type=positive_float, default=P.step_mm, help="sweep step (default: in-plane voxel size)")
    r.add_argument("--window", type=at_least(1), default=P.window, help=f"moving-average window in steps (default {P.window})")
    r.add_argument("--max-distance-mm", type=positive_float, default=P.max_distance_mm, help=f"sweep length from the annulus (default {P.max_distance_mm:g})")
    r.add_argument("--min-prominence", type=float_range(0.0, 1.0), default=P.min_prominence, help=f"ignore extrema below this fraction of the peak area (default {P.min_prominence})")
    r.add_argument("--flat-tolerance", type=float_range(0.0, 1.0), default=P.flat_tolerance, help=f"areas within this fraction of the lowest are the bottom of the minimum (default {P.flat_tolerance})")
    r.add_argument("--require-iliacs", action="store_true", help="exclude cases without both iliac arteries")
    c = parser.add_argument_group("calcium (label 8, a pseudo-label found in the CT; docs/calcium.md)")
    c.add_argument("--calcium", action="store_true", help="add label 8 'calcium': voxels above a contrast-adaptive threshold in the valve, annulus, LVOT, root, aorta and iliac regions (needs the CT)")
    c.add_argument("--calcium-threshold", type=float_range(-1000.0, 3000.0), default=None, metavar="HU", help="a fixed threshold in HU instead of lumen median + max(100 HU, 4 SD)")
    c.add_argument("--calcium-min-mm3", type=float_range(0.0, 1000.0), default=None, metavar="MM3", help="smallest calcium component kept (default 3 mm3)")
    parser.add_argument("--batch", action="store_true", help="SUBJECT is a dataset folder: derive every subject into OUTPUT/")
    parser.add_argument("--no-qc", action="store_true", help="with --batch: skip the per-case figures")
    parser.add_argument("--force", action="store_true", help="recompute outputs that exist already")


def _params(args):
    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.label_derivation.case import DerivationParams

    if args.step_mm is not None and args.max_distance_mm <= args.step_mm:
        raise UsageError(f"--max-distance-mm {args.max_distance_mm:g} must be larger than --step-mm {args.step_mm:g}")
    return DerivationParams(
        valve_mm=args.valve_mm,
        annulus_mm=args.annulus_mm,
        step_mm=args.step_mm,
        window=args.window,
        max_distance_mm=args.max_distance_mm,
        min_prominence=args.min_prominence,
        flat_tolerance=args.flat_tolerance,
    )


def _calcium(args):
    """The calcium rule's parameters, or ``None`` without ``--calcium``."""
    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.label_derivation.calcium import CalciumParams

    given = {k: getattr(args, a) for k, a in (("threshold_hu", "calcium_threshold"), ("min_volume_mm3", "calcium_min_mm3"))
             if getattr(args, a, None) is not None}
    if not args.calcium:
        if given:
            raise UsageError("--calcium-threshold / --calcium-min-mm3 need --calcium")
        return None
    return CalciumParams(**given)


def _with_calcium(derivation, calcium_params):
    """The label map to write: the derivation's, with calcium painted when asked (``None`` when the
    case is excluded, by the derivation or by the calcium rule, whose reason then stands in the
    derivation's record)."""
    from nnunet_tavr.label_derivation.calcium import calcium_of_derivation, paint_calcium

    if calcium_params is None or derivation.labels is None:
        return derivation.labels, None
    subject, result = derivation.subject, derivation.result
    calcium = calcium_of_derivation(subject.read_ct(), derivation.labels, subject.spacing, result.root, calcium_params, subject.case)
    if not calcium.ok:
        result.excluded_code, result.excluded_reason = calcium.excluded_code, calcium.excluded_reason
        return None, calcium
    result.warnings += calcium.warnings
    return paint_calcium(derivation.labels, calcium, result.voxel_counts), calcium


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _fingerprint(derivation_inputs: list[Path], params, require_iliacs: bool, calcium=None) -> dict:
    """What decides a case's outputs: its input files (size, mtime) and the rule settings."""
    files = {}
    for path in derivation_inputs:
        st = Path(path).stat()
        files[str(path)] = [int(st.st_size), int(st.st_mtime_ns)]
    out = {"files": files, "params": params.as_dict(), "require_iliacs": bool(require_iliacs)}
    if calcium is not None:
        out["calcium"] = calcium.as_dict()
    return out


def _previous_report(report: Path | None) -> dict | None:
    import json

    if report is None or not report.is_file():
        return None
    try:
        return json.loads(report.read_text())
    except (OSError, ValueError):
        return None


def _write_outputs(derivation, output, report=None, qc=None, fingerprint=None, previous=None, calcium_params=None) -> None:
    """Label map (unless excluded), QC figure and JSON report of one case, each atomically.

    An excluded case removes a label map at ``output`` only if ``previous`` (the report of an
    earlier run) records it as that run's output: a run only deletes files it wrote. With
    ``calcium_params`` the map written has the calcium label (the QC figure shows the anatomy).
    """
    from nnunet_tavr.io import write_array, write_json
    from nnunet_tavr.label_derivation.case import report_record, write_qc

    labels, calcium = _with_calcium(derivation, calcium_params)
    if labels is not None:
        write_array(labels, derivation.subject.geometry, output)
    elif Path(output).exists():
        if previous is not None and previous.get("output") == str(output):
            Path(output).unlink()  # our stale map from an earlier run must not outlive its exclusion
        else:
            _warn(f"{output} exists and was not written by this derivation: left as it is")
    if qc is not None:
        write_qc(derivation, qc)
    if report is not None:
        record = report_record(derivation, output)
        record["fingerprint"] = fingerprint
        if calcium is not None:
            record["calcium"] = calcium.to_dict()
            if labels is None:
                record["output"] = None
        if labels is not None:
            record["output_size"] = Path(output).stat().st_size
        write_json(record, report)


def _up_to_date(previous: dict | None, fingerprint: dict, output: Path, qc: Path | None) -> bool:
    """A report of an earlier run with the same inputs and settings, whose outputs are all there."""
    if previous is None or previous.get("fingerprint") != fingerprint:
        return False
    if qc is not None and not qc.is_file():
        return False
    if previous.get("ok"):
        return output.is_file() and output.stat().st_size == previous.get("output_size")
    return True


def _inputs(args) -> tuple[dict, list]:
    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.safepaths import check_input

    explicit = {
        name: check_input(path, option)
        for name, path, option in (
            ("aorta", args.aorta, "--aorta"),
            ("left_ventricle", args.left_ventricle, "--left-ventricle"),
            ("iliac_artery_left", args.iliac_left, "--iliac-left"),
            ("iliac_artery_right", args.iliac_right, "--iliac-right"),
        )
        if path is not None
    }
    multilabel = []
    for item in args.multilabel:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise UsageError(f"--multilabel expects TASK=FILE, got {item!r}")
        multilabel.append((task, check_input(Path(path), "--multilabel")))
    return explicit, multilabel


def _single(args) -> int:
    import numpy as np

    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.label_derivation.case import derive_case, load_tavr_subject
    from nnunet_tavr.safepaths import check_input, check_output_file
    from nnunet_tavr.totalseg import IMAGE_ENDINGS

    explicit, multilabel = _inputs(args)
    check_input(args.subject, "SUBJECT", "folder")
    check_input(args.ct, "--ct")
    if args.subject is None and not explicit and not multilabel:
        raise UsageError("give a SUBJECT_DIR, mask files (--aorta, --left-ventricle, ...) or --multilabel TASK=FILE")
    inputs = [args.subject, args.ct, *explicit.values(), *(path for _, path in multilabel)]
    outputs = [(args.output, "-o", tuple(e for e in IMAGE_ENDINGS if e != ".mhd")), (args.report, "--report", (".json",)), (args.qc, "--qc", (".png",))]
    given = [(path, option, endings) for path, option, endings in outputs if path is not None]
    for path, option, endings in given:
        check_output_file(path, inputs=inputs, endings=endings, option=option)
    for i, (a, oa, _) in enumerate(given):
        for b, ob, _ in given[i + 1:]:
            if Path(a).resolve() == Path(b).resolve():
                raise UsageError(f"{oa} and {ob} are the same file {a}")
    params, calcium = _params(args), _calcium(args)
    subject = load_tavr_subject(args.subject, mask_paths=explicit, multilabel=multilabel, ct_path=args.ct, warn=_warn)
    if calcium is not None and subject.ct_path is None:
        raise UsageError(f"case {subject.case}: --calcium finds calcium in the CT: give it (SUBJECT/ct.nii.gz or --ct)")
    read = [*subject.mask_paths.values(), *([subject.ct_path] if subject.ct_path else [])]
    for path, option, endings in given:  # now that every file read is known (links and hard links included)
        check_output_file(path, inputs=read, endings=endings, option=option)
    fingerprint = _fingerprint(sorted(set(read)), params, args.require_iliacs, calcium)
    previous = _previous_report(args.report)
    if not args.force and _up_to_date(previous, fingerprint, args.output, args.qc):
        print(f"case {subject.case}: {args.report} records this derivation with the same inputs and settings; up to date (--force recomputes)")
        return 0 if previous.get("ok") else EXIT_EXCLUDED
    derivation = derive_case(subject, params, args.require_iliacs)
    _write_outputs(derivation, args.output, args.report, args.qc, fingerprint, previous, calcium)
    result = derivation.result
    for message in result.warnings:
        if message not in subject.warnings:
            _warn(message)
    if not result.ok:
        print(f"case {result.case}: excluded: {result.excluded_reason}", file=sys.stderr)
        return EXIT_EXCLUDED
    root = result.root
    print(f"case {result.case}: wrote {args.output} (root end {root.end_distance_mm:.1f} mm from the annulus; "
          + ", ".join(f"{k} {v}" for k, v in result.voxel_counts.items()) + " voxels)"
          + ("" if calcium is None else f"; calcium {result.voxel_counts.get('calcium', 0) * float(np.prod(subject.spacing)):.0f} mm3 (a pseudo-label)"))
    return 0


def _batch(args) -> int:
    from tqdm import tqdm

    from nnunet_tavr.dataset_conversion.layouts import discover_cases
    from nnunet_tavr.errors import InputError, UsageError
    from nnunet_tavr.io import write_json, write_text
    from nnunet_tavr.label_derivation.case import derive_case, load_tavr_subject
    from nnunet_tavr.label_derivation.labelmap import DerivationResult
    from nnunet_tavr.label_derivation.qc import plot_dataset_curves
    from nnunet_tavr.safepaths import check_input, check_output_dir, check_output_file, contained
    from nnunet_tavr.totalseg import multilabel_files

    if args.subject is None:
        raise UsageError("--batch needs a dataset folder (SUBJECT)")
    if args.aorta or args.left_ventricle or args.iliac_left or args.iliac_right or args.ct or args.multilabel or args.report or args.qc:
        raise UsageError("--batch reads every case from the dataset folder: explicit masks, --ct, --multilabel, --report and --qc are for one case")
    check_input(args.subject, "SUBJECT", "folder")
    out = check_output_dir(args.output, inputs=[args.subject])
    params, calcium = _params(args), _calcium(args)
    _, cases = discover_cases(args.subject)
    if not cases:
        raise InputError(f"no case folders (CT or segmentations/) in {args.subject}")
    out.mkdir(parents=True, exist_ok=True)
    results, failed = [], []
    for source in tqdm(cases, desc="derive", unit="case"):
        case = source.case_id
        try:
            if source.problem:
                raise source.problem
            report, labels = contained(out, f"{case}.json"), contained(out, f"{case}.nii.gz")
            previous = _previous_report(report)
            subject = load_tavr_subject(source.path, case=case, multilabel=multilabel_files(source.path))
            read = [*subject.mask_paths.values(), *([subject.ct_path] if subject.ct_path else [])]
            fingerprint = _fingerprint(sorted(set(read)), params, args.require_iliacs, calcium)
            qc = None if args.no_qc else contained(out, "qc", f"{case}.png")
            for path in (labels, report, qc):
                if path is not None:
                    check_output_file(path, inputs=read, option="-o")
            if not args.force and _up_to_date(previous, fingerprint, labels, qc):
                results.append(DerivationResult.from_dict(previous))
                continue
        except InputError as exc:
            failed.append((case, exc))
            tqdm.write(f"error: {exc}", file=sys.stderr)
            continue
        derivation = derive_case(subject, params, args.require_iliacs)
        _write_outputs(derivation, labels, report, qc, fingerprint, previous, calcium)
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
    return EXIT_EXCLUDED if failed else 0


def main(args: argparse.Namespace) -> int:
    return _batch(args) if args.batch else _single(args)
