"""Render angiography frames of the aortic root from CT with TAVR labels, as a C-arm acquires them
during TAVR: cone-beam projections around the case's coplanar view, a contrast bolus in the root
and ascending aorta, a pigtail catheter in the non-coronary sinus, quantum noise, blur, scatter and
varying contrast; each frame with its aortic-root mask and its pixel size at the isocentre (mm).

CASES is an nnU-Net raw dataset with TAVR labels (nnunet-tavr convert -d 301), a folder of case
folders (TotalSegmentator layout, phantoms; labels derived on the fly, or --labels DIR from
'nnunet-tavr derive --batch'), or one case folder.

Writes OUT/<case>/images/*.nii.gz, masks/*.nii.gz, preview.png and frames.json (poses, projection
matrices, drawn parameters), and OUT/fluoro.csv. Reruns skip finished cases; a changed input or
setting redoes the case. Next: nnunet-tavr convert OUT --scheme fluoro -d 316

example:
  nnunet-tavr phantom phantoms/ -n 8
  nnunet-tavr fluoro phantoms/ -o frames/ --frames 24
  nnunet-tavr fluoro $nnUNet_raw/Dataset301_TAVR -o frames/ --hinge-points hinges/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Largest detector matrix (pixels per side).
MAX_MATRIX = 2048


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least, float_range, int_range, positive_float
    from nnunet_tavr.fluoro.anatomy import Settings as A
    from nnunet_tavr.fluoro.render import RenderSettings as R

    parser.add_argument("cases", type=Path, metavar="CASES", help="nnU-Net raw TAVR dataset, folder of case folders, or one case folder")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("--frames", type=int_range(1, 10_000), default=24, help="frames per case (default 24)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="random seed; a case's frames depend only on it and the case id (default 0)")
    parser.add_argument("--labels", type=Path, metavar="DIR", help="TAVR label maps <case>.nii.gz for a folder of cases (default: derive them)")
    parser.add_argument("--hinge-points", type=Path, metavar="PATH", help="cusp hinge points (LPS mm): a folder of <case>.json or one JSON file; "
                        "frames are then sampled around the three-cusp view and the pigtail sits at the non-coronary nadir")
    parser.add_argument("--case", nargs="+", dest="only", metavar="ID", help="render only these cases")
    g = parser.add_argument_group("C-arm")
    g.add_argument("--matrix", type=int_range(32, MAX_MATRIX), default=R.shape[0], help=f"detector pixels per side (default {R.shape[0]})")
    g.add_argument("--pixel-mm", type=float_range(0.05, 5.0), default=R.pixel_mm, help=f"pixel size at the isocentre, mm (default {R.pixel_mm})")
    g.add_argument("--sdd", type=float_range(500.0, 2000.0), nargs=2, default=list(R.sdd_mm), metavar=("MIN", "MAX"), help="source-detector distance range, mm (default 1000 1200)")
    g.add_argument("--sid", type=float_range(300.0, 1500.0), default=R.sid_mm, help=f"source-isocentre distance, mm (default {R.sid_mm:g})")
    g.add_argument("--spread", type=float_range(0.0, 90.0), default=R.primary_spread_deg, help=f"primary angle = reference view +- this, degrees (default {R.primary_spread_deg:g})")
    g.add_argument("--off-curve", type=float_range(0.0, 30.0), default=R.off_curve_deg, help=f"SD of the secondary angle around the S-curve, degrees (default {R.off_curve_deg:g})")
    g.add_argument("--pan-mm", type=float_range(0.0, 100.0), default=R.pan_mm, help=f"isocentre shift in the detector plane, up to this, mm (default {R.pan_mm:g})")
    g.add_argument("--background-pixel-mm", type=positive_float, default=None, help="pixel of the background projection (default: half the CT voxel)")
    a = parser.add_argument_group("anatomy and degradations")
    a.add_argument("--ascending-mm", type=float_range(0.0, 100.0), default=A.ascending_mm, help=f"ascending aorta in the mask, mm along the vessel above the root (default {A.ascending_mm:g})")
    a.add_argument("--bolus-mm", type=float_range(1.0, 150.0), default=A.bolus_mm, help=f"contrast bolus length along the vessel from the root, mm (default {A.bolus_mm:g})")
    a.add_argument("--bolus-hu", type=float_range(0.0, 20000.0), nargs=2, default=list(R.bolus_hu), metavar=("MIN", "MAX"), help="bolus contrast, HU-equivalent range (default 1000 3500)")
    a.add_argument("--photons", type=float_range(10.0, 1e9), nargs=2, default=list(R.photons), metavar=("MIN", "MAX"), help="photons per pixel (log-uniform; default 2e4 2e5)")
    a.add_argument("--blur-mm", type=float_range(0.0, 10.0), nargs=2, default=list(R.blur_mm), metavar=("MIN", "MAX"), help="Gaussian blur sigma at the isocentre (default 0.2 0.8)")
    a.add_argument("--no-catheter", action="store_true", help="no pigtail catheter")
    d = parser.add_argument_group("label derivation (folders of cases without --labels)")
    d.add_argument("--valve-mm", type=positive_float, default=None, help="valve rule distance, mm (default: derive's)")
    d.add_argument("--annulus-mm", type=positive_float, default=None, help="annulus rule distance, mm (default: derive's)")
    parser.add_argument("--threads", type=at_least(1), default=1,
                        help="torch threads (default 1: on a shared machine two threads were 4x slower, benchmarks/fluoro.py; "
                             "more may help on an idle workstation)")
    parser.add_argument("--no-preview", action="store_true", help="no preview.png per case")
    parser.add_argument("--force", action="store_true", help="render again cases that are done")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def settings_from_args(args):
    """``(RenderSettings, anatomy Settings)`` from the parsed options."""
    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.fluoro.anatomy import Settings
    from nnunet_tavr.fluoro.render import RenderSettings

    for option in ("sdd", "bolus_hu", "photons", "blur_mm"):
        low, high = getattr(args, option)
        if low > high:
            raise UsageError(f"--{option.replace('_', '-')}: MIN {low:g} is larger than MAX {high:g}")
    if args.sdd[0] <= args.sid:
        raise UsageError(f"--sdd {args.sdd[0]:g} must exceed --sid {args.sid:g}: the detector lies beyond the isocentre")
    render = RenderSettings(shape=(args.matrix, args.matrix), pixel_mm=args.pixel_mm, sid_mm=args.sid, sdd_mm=tuple(args.sdd),
                            primary_spread_deg=args.spread, off_curve_deg=args.off_curve, pan_mm=args.pan_mm,
                            bolus_hu=tuple(args.bolus_hu), photons=tuple(args.photons), blur_mm=tuple(args.blur_mm),
                            catheter=not args.no_catheter, background_pixel_mm=args.background_pixel_mm)
    return render, Settings(ascending_mm=args.ascending_mm, bolus_mm=args.bolus_mm)


def main(args: argparse.Namespace) -> int:
    from nnunet_tavr.errors import InputError
    from nnunet_tavr.fluoro.cases import discover
    from nnunet_tavr.label_derivation.case import DerivationParams
    from nnunet_tavr.safepaths import check_input, check_output_dir

    check_input(args.cases, "CASES", "folder")
    check_input(args.labels, "--labels", "folder")
    check_input(args.hinge_points, "--hinge-points", "any")
    out = check_output_dir(args.output, inputs=[args.cases, args.labels, args.hinge_points])
    render, anatomy = settings_from_args(args)
    layout, cases = discover(args.cases, args.labels)
    if args.only:
        unknown = sorted(set(args.only) - {c.case for c in cases})
        if unknown:
            raise InputError(f"--case: {', '.join(unknown)} not in {args.cases}")
        cases = [c for c in cases if c.case in set(args.only)]
    given = {k: getattr(args, k) for k in ("valve_mm", "annulus_mm") if getattr(args, k) is not None}
    derivation = DerivationParams(**given) if layout == "cases" and args.labels is None else None
    out.mkdir(parents=True, exist_ok=True)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _render_all(args, cases, out, render, anatomy, derivation, layout)
    finally:
        torch.set_num_threads(threads)  # callers in the same process keep theirs


def _render_all(args, cases, out, render, anatomy, derivation, layout) -> int:
    from tqdm import tqdm

    from nnunet_tavr.errors import InputError
    from nnunet_tavr.fluoro.run import render_case
    from nnunet_tavr.io import write_text

    rows, failed = ["case;patient;status;frames;reason;seconds"], []
    counts = {"rendered": 0, "resumed": 0, "excluded": 0, "failed": 0}
    for case in tqdm(cases, desc="fluoro", unit="case", disable=args.quiet):
        try:
            record = render_case(case, out, render, anatomy, args.seed, args.frames, derivation, args.hinge_points,
                                 preview=not args.no_preview, force=args.force)
        except InputError as exc:
            tqdm.write(f"error: {exc}", file=sys.stderr)
            failed.append(case.case)
            counts["failed"] += 1
            rows.append(f"{case.case};{case.patient};failed;0;{exc.code}: {exc};")
            continue
        status = record["status"]
        counts["resumed" if record.get("resumed") else status] += 1
        rows.append(f"{case.case};{case.patient};{status};{len(record['frames'])};{record.get('reason') or ''};{record.get('seconds', '')}")
    write_text("\n".join(rows) + "\n", out / "fluoro.csv")
    print(f"{len(cases)} case(s) ({layout}): {counts['rendered']} rendered, {counts['resumed']} already done, "
          f"{counts['excluded']} excluded, {counts['failed']} failed; {out / 'fluoro.csv'}")
    print(f"next: nnunet-tavr convert {out} --scheme fluoro -d 316")
    return 1 if counts["excluded"] or counts["failed"] else 0
