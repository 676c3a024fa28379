"""Hinge points (RCC, LCC, NCC) in world mm from nnU-Net predictions, and their errors.

Reads a folder written by ``nnUNetv2_predict ... --save_probabilities`` (or a trainer's
``fold_k/validation`` folder trained with ``--npz``) and turns each case into three points:

- heatmap trainers (``nnUNetTrainerHeatmapOT`` / ``...MSE``, found from the folder's
  ``predict_from_raw_data_args.json`` or its ``Trainer__Plans__conf`` parent): the peak of each
  landmark's spatial distribution plus local refinement (distribution-weighted centroid within
  ``--refine-mm``), read from the saved probabilities;
- nnU-Net's segmentation of the spheres: the centre of mass of each predicted label.

Writes OUT/landmarks.json (world (x, y, z) mm and continuous (z, y, x) indices per case) and
OUT/landmarks.csv. With ``--reference`` (a landmarks.json, a dataset folder / id converted with
``--scheme hinge``, or a folder of cusped phantoms with truth.json) it also writes OUT/errors.json
and prints per-landmark errors (median, IQR, max in mm, share under 2 mm), and draws
OUT/figures/CASE.png: the points on the annulus-plane reslice and two orthogonal views.

Example:
  nnUNetv2_predict -i imagesTs -o pred -d 315 -c 3d_fullres -tr nnUNetTrainerHeatmapOT --save_probabilities
  nnunet-tavr landmarks pred -o pred_points -tr nnUNetTrainerHeatmapOT --reference 315
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least, float_range
    from nnunet_tavr.landmarks.extract import MODES

    parser.add_argument("pred_dir", type=Path, help="nnU-Net prediction folder (CASE.nii.gz, CASE.npz)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--reference", default=None, help="landmarks.json, dataset folder or id (scheme hinge), or a folder of phantoms with truth.json")
    parser.add_argument("-tr", "--trainer", default=None, help="the trainer that made the predictions (-tr of nnUNetv2_predict); decides --mode auto")
    parser.add_argument("--mode", choices=MODES, default="auto", help="how to read the predictions (default auto: heatmap for nnUNetTrainerHeatmap*, else segmentation; "
                        "the trainer comes from -tr or a Trainer__Plans__conf folder above PRED_DIR)")
    parser.add_argument("--refine-mm", type=float_range(0.5, 50.0), default=4.0, help="radius of the local refinement around a heatmap's peak in mm (default 4)")
    parser.add_argument("--images", type=Path, default=None, help="folder with the CTs (CASE_0000.nii.gz) for the figures (default: the reference dataset's imagesTr/imagesTs)")
    parser.add_argument("--figures", type=at_least(0), default=4, help="cases drawn (default 4; 0 = none)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _image_for(case: str, folders: list[Path]):
    for folder in folders:
        for path in (folder / f"{case}_0000.nii.gz", folder / "imagesTr" / f"{case}_0000.nii.gz",
                     folder / "imagesTs" / f"{case}_0000.nii.gz", folder / case / "ct.nii.gz"):
            if path.is_file():
                return path
    return None


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nnunet_tavr.errors import InputError
    from nnunet_tavr.io import read_array, write_json, write_text
    from nnunet_tavr.landmarks.extract import case_points, prediction_files, resolve_mode, trainer_of
    from nnunet_tavr.landmarks.report import case_figure, error_summary, point_errors, points_csv, summary_lines
    from nnunet_tavr.safepaths import check_input, check_output_dir

    check_input(args.pred_dir, "pred_dir", "folder")
    check_input(args.images, "--images", "folder")
    check_output_dir(args.output, inputs=[args.pred_dir, args.images])
    reference, ref_path = (None, None)
    if args.reference is not None:
        from nnunet_tavr.landmarks.reference import load_reference

        reference, ref_path = load_reference(args.reference)
    mode = resolve_mode(args.mode, args.pred_dir, args.trainer)
    files = prediction_files(args.pred_dir)
    points, failed = {}, {}
    for path in tqdm(files, desc="landmarks", unit="case", disable=args.quiet):
        try:
            cp = case_points(path, mode, refine_mm=args.refine_mm)
            points[cp.case] = cp
        except InputError as exc:
            failed[path.name.split(".")[0]] = str(exc)
    out = Path(args.output)
    doc = {"frame": "world (x, y, z) mm, SimpleITK physical frame; index_zyx: continuous voxel indices (z, y, x)",
           "method": mode, "trainer": args.trainer or trainer_of(args.pred_dir), "refine_mm": args.refine_mm, "source": str(args.pred_dir),
           "cases": {c: p.to_dict() for c, p in sorted(points.items())}, "failed": failed}
    write_json(doc, out / "landmarks.json")
    rows = None
    code = 1 if failed else 0
    print(f"{len(points)} case(s) read as {mode} ({doc['trainer'] or 'trainer unknown'}), {len(failed)} failed -> {out / 'landmarks.json'}")
    for case, why in failed.items():
        print(f"  failed: {case}: {why}", file=sys.stderr)
    if reference is not None:
        rows = point_errors(points, reference)
        summary = error_summary(rows)
        unmatched = sorted(set(points) - set(reference))
        write_json({"reference": str(ref_path), "summary": summary, "points": rows, "cases_without_reference": unmatched},
                   out / "errors.json")
        print(f"errors against {ref_path} ({len({r['case'] for r in rows})} case(s); world mm):")
        print("\n".join(summary_lines(summary)))
        if unmatched:
            print(f"  {len(unmatched)} predicted case(s) have no reference: {', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}")
        if summary["all"].get("missing"):
            code = 1
    write_text(points_csv(points, rows), out / "landmarks.csv")
    image_dirs = [p for p in (args.images, ref_path.parent if ref_path is not None and ref_path.is_file() else ref_path) if p is not None]
    drawn = 0
    for case in sorted(points)[: args.figures]:
        image_path = _image_for(case, image_dirs)
        seg_path = next(p for p in files if p.name.split(".")[0] == case)
        volume, geometry = read_array(image_path if image_path is not None else seg_path, case)
        title = "on the CT" if image_path is not None else "(no CT found: drawn on the predicted labels)"
        if case_figure(out / "figures" / f"{case}.png", case, volume, geometry, points[case].world,
                       (reference or {}).get(case), title=title) is not None:
            drawn += 1
    if drawn:
        print(f"{drawn} figure(s) in {out / 'figures'}")
    return code
