"""Chamber volumes, LV mass and their agreement with references, on a folder of segmentations
(seed 004's protocol).

  nnunet-tavr cardiac PREDICTIONS -o OUT                               # volumes (ml) and LV mass (g) per case
  nnunet-tavr cardiac PREDICTIONS --reference labelsTs -o OUT          # + Dice, Bland-Altman, Pearson, report
  nnunet-tavr cardiac TOTALSEG_CASES -o OUT                            # TotalSegmentator masks via the heart scheme

SEGMENTATIONS and --reference are folders of label maps (CASE.nii.gz; an nnUNetv2_predict output
folder, labelsTs) or of TotalSegmentator cases (CASE/segmentations/...). Cases are matched by id.
Classes come from --labels (a dataset.json or {"name": value}), else the dataset.json in (or above)
the folders, else the heart scheme's. LV mass = volume of the myocardium class x --density (g/ml,
default 1.05, the seed's). With references: per-structure Dice median and IQR; for every volume and
for LV mass the Bland-Altman bias and limits of agreement of prediction - reference with their CIs,
Pearson's r with its CI, the Wilcoxon signed-rank p; one figure per quantity; OUT/report.md.
Statistics that need more cases print "n too small". Exit status 1 when cases were left out
(unreadable, off the reference's grid, without a partner).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import open_interval, positive_float
    from nnunet_tavr.cardiac.structures import MYOCARDIAL_DENSITY_G_PER_ML, MYOCARDIUM

    parser.add_argument("segmentations", type=Path, help="folder of segmentations (predictions, or references alone)")
    parser.add_argument("-r", "--reference", type=Path, default=None, help="folder of reference segmentations (same case ids)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (CSV, JSON, figures, report.md)")
    parser.add_argument("--labels", type=Path, default=None, help="dataset.json or {\"name\": value} JSON naming the classes")
    parser.add_argument("--density", type=positive_float, default=MYOCARDIAL_DENSITY_G_PER_ML,
                        help=f"myocardial density in g/ml for LV mass (default {MYOCARDIAL_DENSITY_G_PER_ML})")
    parser.add_argument("--myocardium", default=MYOCARDIUM, help=f"class whose volume gives the LV mass (default {MYOCARDIUM})")
    parser.add_argument("--confidence", type=open_interval(0.0, 1.0), default=0.95,
                        help="level of the limits of agreement and of every CI (default 0.95)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve_classes(args, segmentation, reference) -> tuple[dict[str, int], str]:
    """The classes to measure and where they came from (see the module docstring)."""
    from nnunet_tavr.cardiac.volumes import find_classes, read_classes
    from nnunet_tavr.dataset_conversion.schemes.heart import HeartScheme

    if args.labels is not None:
        return read_classes(args.labels), str(args.labels)
    fixed = segmentation.classes or (reference.classes if reference is not None else None)
    if fixed is not None:
        return fixed, "the heart scheme (TotalSegmentator cases)"
    classes, path = find_classes(segmentation.folder, None if reference is None else reference.folder)
    if classes is not None:
        return classes, str(path)
    return {k: v for k, v in HeartScheme().labels().items() if v}, "the heart scheme's default (no dataset.json found)"


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nnunet_tavr.cardiac.report import write_outputs
    from nnunet_tavr.cardiac.volumes import evaluate_case, open_folder
    from nnunet_tavr.errors import EXIT_EXCLUDED, EXIT_OK, InputError, UsageError
    from nnunet_tavr.safepaths import check_input, check_output_dir

    check_input(args.segmentations, "SEGMENTATIONS", "folder")
    check_input(args.reference, "--reference", "folder")
    check_output_dir(args.output, inputs=[args.segmentations, args.reference], option="-o")
    segmentation = open_folder(args.segmentations)
    reference = open_folder(args.reference) if args.reference is not None else None
    classes, classes_from = resolve_classes(args, segmentation, reference)
    if args.myocardium not in classes:
        print(f"note: no class {args.myocardium!r}: no LV mass (classes: {', '.join(classes)}; see --myocardium)")

    problems: dict[str, list[str]] = {"without reference": [], "reference without segmentation": [], "failed": []}
    cases = sorted(segmentation.cases)
    if reference is not None:
        problems["without reference"] = [c for c in cases if c not in reference.cases]
        problems["reference without segmentation"] = sorted(set(reference.cases) - set(cases))
        if not set(cases) & set(reference.cases):
            raise UsageError(f"no case of {args.segmentations} has a reference in {args.reference} (case ids differ?)")
    records = []
    for case in tqdm(cases, desc="cardiac", unit="case", disable=args.quiet):
        ref = reference if reference is not None and case in reference.cases else None
        try:
            records.append(evaluate_case(case, segmentation, ref, classes, args.density, args.myocardium))
        except InputError as exc:
            problems["failed"].append(str(exc))
    if not records:
        raise InputError(f"no case could be read: {problems['failed'][0] if problems['failed'] else 'none found'}")
    settings = {"segmentations": str(args.segmentations), "references": None if reference is None else str(args.reference),
                "layout": segmentation.layout, "classes_from": classes_from, "density": args.density,
                "myocardium": args.myocardium, "confidence": args.confidence}
    write_outputs(args.output, records, classes, settings, problems)
    paired = sum("dice" in r for r in records)
    print(f"{len(records)} case(s)" + (f", {paired} with a reference" if reference is not None else "") + f" -> {args.output / 'report.md'}")
    for kind, items in problems.items():
        if items:
            print(f"  {kind}: {len(items)}  [{'; '.join(items[:3])}{'; ...' if len(items) > 3 else ''}]")
    return EXIT_EXCLUDED if any(problems.values()) else EXIT_OK
