"""Measure TAVR planning anatomy in a 7-class segmentation (derived labels or nnUNetv2_predict output).

Annulus (best-fit plane: area, perimeter, area- and perimeter-derived, minimal and maximal
diameters, eccentricity), aortic root (sinus of Valsalva and sinotubular junction diameters, root
height), ascending aorta diameter at a height above the annulus, minimal lumen diameter, its
position and the centreline length of each iliac artery, and the volume of every label. Calcium
(volume, components, largest component and a density-weighted score per region; the annular/LVOT
calcium by sector) from the segmentation's calcium label 8, or found by rule in the CT (--ct).

With hinge points (``--hinge-points JSON`` or ``--cusps DIR``) the annulus is measured in the plane
through the three hinge points (the clinical virtual basal ring), with the angle between that plane
and the least-squares plane of the annulus label and a hinge_points section (per-cusp positions);
without them in the label's own plane. ``annulus.plane_used`` says which.

Writes OUT_DIR/measurements.json (every value with unit and method; missing structures with the
reason) and OUT_DIR/measurements.png; the annulus plane's C-arm S-curve (and, with --hinge-points,
the three-cusp and cusp-overlap views) is the carm_views section, drawn in OUT_DIR/s_curve.png.  SEG may also be a folder of segmentations (e.g. an
nnUNetv2_predict output folder): then each case goes to OUT_DIR/CASE/ and a table of all cases to
OUT_DIR/measurements.csv; cases already measured are skipped (use --force to redo them).

example:
  nnunet-tavr measure pred/case_001.nii.gz --ct imagesTs/case_001_0000.nii.gz -o measurements/case_001
  nnunet-tavr measure pred/ --ct imagesTs/ -o measurements/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_tavr.totalseg import IMAGE_ENDINGS, find_image, image_stem, list_images

#: The ascending-aorta height is measured along the centreline; beyond 150 mm it has left the aorta.
HEIGHT_RANGE_MM = (5.0, 150.0)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import float_range

    parser.add_argument("seg", type=Path, help="7-class TAVR segmentation, or a folder of them")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--ct", type=Path, help="CT of the case (shown under the annulus contour); a folder when SEG is a folder (CASE_0000.nii.gz or CASE.nii.gz)")
    parser.add_argument("--height", type=float_range(*HEIGHT_RANGE_MM), default=40.0, metavar="MM",
                        help=f"height above the annulus (centreline arc length, {HEIGHT_RANGE_MM[0]:g}-{HEIGHT_RANGE_MM[1]:g} mm) of the ascending-aorta diameter (default 40)")
    parser.add_argument("--hinge-points", type=Path, metavar="JSON", help="hinge points (RCC, LCC, NCC; world mm): a landmarks.json of 'nnunet-tavr landmarks' or of the hinge scheme, or a phantom truth.json; the annulus is then measured in their plane")
    parser.add_argument("--cusps", type=Path, metavar="DIR", help="TotalSegmentator aortic_sinuses masks of the case (a folder of CASE subfolders when SEG is a folder): hinge points derived from them")
    parser.add_argument("--calcium", choices=("auto", "labels", "rule", "off"), default="auto",
                        help="calcium section: 'labels' = the segmentation's calcium label 8, 'rule' = found in the CT (--ct) "
                             "by the contrast-adaptive rule, 'auto' (default) = the label if present, else the rule when --ct is given")
    parser.add_argument("--calcium-threshold", type=float_range(-1000.0, 3000.0), default=None, metavar="HU",
                        help="with the rule: a fixed threshold in HU instead of lumen median + max(100 HU, 4 SD)")
    parser.add_argument("--no-figure", action="store_true", help="write measurements.json only")
    parser.add_argument("--force", action="store_true", help="measure again cases whose measurements.json exists")


def case_name(path: Path) -> str:
    return image_stem(path)


def find_ct(ct: Path | None, case: str) -> Path | None:
    """The CT of ``case`` in folder ``ct`` (nnU-Net's CASE_0000 naming first), or ``ct`` itself."""
    if ct is None or ct.is_file():
        return ct
    return find_image(ct, f"{case}_0000") or find_image(ct, case)


def case_hinge_points(case: str, geometry, hinge_json: Path | None, cusps: Path | None, many: bool):
    """``(points, source)`` of a case from ``--hinge-points`` or ``--cusps``, or ``(None, reason)``."""
    from nnunet_tavr import hinge_points
    from nnunet_tavr.measurement.hinge import derive_from_cusps

    if hinge_json is not None:
        points = hinge_points.read(hinge_json, case, geometry)
        if points is None:
            return None, f"no hinge points for case {case} in {hinge_json}"
        return hinge_points.to_array_frame(points, geometry), f"given: {hinge_json}"
    if cusps is not None:
        folder = cusps / case if many else cusps
        if not folder.is_dir():
            return None, f"no cusp masks folder {folder}"
        from nnunet_tavr.errors import Excluded

        try:
            return derive_from_cusps(folder, case, geometry), f"derived from the cusp masks in {folder}"
        except Excluded as exc:  # no usable cusp masks: the label's plane, and the record says why
            return None, f"hinge points not derived from {folder}: {exc.code}: {exc.message}"
    return None, "no hinge points given"


def measure_file(seg: Path, out_dir: Path, ct: Path | None = None, height_mm: float = 40.0, figure: bool = True,
                 hinge_json: Path | None = None, cusps: Path | None = None, many: bool = False,
                 calcium: str = "auto", calcium_params=None):
    """Measure one segmentation file; write ``measurements.json`` (and ``.png``) into ``out_dir``."""
    import numpy as np

    from nnunet_tavr.io import InputError, as_label_map, read_array, write_json
    from nnunet_tavr.labels import LABELS_WITH_CALCIUM as LABELS
    from nnunet_tavr.measurement.tavr import measure_tavr

    case = case_name(seg)
    labels, geometry = read_array(seg, case)
    if labels.ndim != 3:
        raise InputError(f"case {case}: {seg} is not a 3d image (shape {labels.shape})")
    labels = as_label_map(labels, f"case {case}: {seg}")
    values = np.unique(labels)
    bad = values[(values < 0) | (values > max(LABELS.values()))]
    if bad.size:
        raise InputError(f"case {case}: {seg} has values {bad[:5].tolist()} outside the TAVR label map 0..{max(LABELS.values())}")
    ct_array = None
    if ct is not None:
        ct_array, ct_geometry = read_array(ct, case)
        problem = geometry.mismatch(ct_geometry)
        if problem:
            raise InputError(f"case {case}: CT {ct} does not match the segmentation {seg}: {problem}")
    if calcium == "rule" and ct_array is None:
        raise InputError(f"case {case}: --calcium rule needs the CT (--ct)")
    hinge, source = case_hinge_points(case, geometry, hinge_json, cusps, many)
    record = measure_tavr(labels, geometry.spacing, case=case, ascending_height_mm=height_mm, ct=ct_array,
                          calcium=calcium, calcium_params=calcium_params, hinge_points=hinge, hinge_source=source)
    if hinge is None and (hinge_json is not None or cusps is not None):
        record.sections["annulus"].notes.append(f"annulus plane: least-squares plane of the label ({source})")
    from nnunet_tavr.measurement.views import measure_views, plot_views

    record.add(measure_views(record["annulus"], geometry, hinge_points_world(hinge, geometry)))
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = record.to_json()
    payload["source"] = {"segmentation": str(seg), "ct": None if ct is None else str(ct), "origin": list(geometry.origin), "direction": list(geometry.direction)}
    if figure:
        from nnunet_tavr.measurement.figure import plot_record

        from nnunet_tavr.label_derivation.calcium import anatomy_view

        plot_record(record, anatomy_view(labels), out_dir / "measurements.png", ct_array)
        plot_views(record["carm_views"], out_dir / "s_curve.png", case)
    write_json(payload, out_dir / "measurements.json")  # last: marks the case done
    return record


def main(args: argparse.Namespace) -> int:
    import traceback

    from tqdm import tqdm

    from nnunet_tavr.errors import InputError, UsageError
    from nnunet_tavr.io import write_text
    from nnunet_tavr.safepaths import check_input, check_output_dir, contained

    seg: Path = check_input(args.seg, "SEG", "any")
    check_input(args.ct, "--ct", "any")
    check_input(args.hinge_points, "--hinge-points", "file")
    check_input(args.cusps, "--cusps", "folder")
    if args.hinge_points is not None and args.cusps is not None:
        raise UsageError("--hinge-points and --cusps both give hinge points: use one")
    if seg.is_dir():
        files = list_images(seg)
        if not files:
            raise InputError(f"no segmentations ({', '.join(IMAGE_ENDINGS)}) in {seg}")
        if args.ct is not None and not args.ct.is_dir():
            raise UsageError(f"SEG is a folder, so --ct must be a folder too: {args.ct}")
    else:
        files = [seg]
    check_output_dir(args.out, inputs=[seg, args.ct, args.cusps])
    calcium_params = None
    if args.calcium_threshold is not None:
        from nnunet_tavr.label_derivation.calcium import CalciumParams

        calcium_params = CalciumParams(threshold_hu=args.calcium_threshold)

    rows, failed = [], []
    for path in tqdm(files, desc="measure", unit="case", disable=len(files) == 1):
        case = case_name(path)
        try:
            out_dir = contained(args.out, case) if seg.is_dir() else args.out
            done = out_dir / "measurements.json"
            if done.is_file() and not args.force and done.stat().st_mtime >= path.stat().st_mtime:
                rows.append(_row_from_json(done, case))
                continue
            ct = find_ct(args.ct, case)
            if args.ct is not None and ct is None:
                tqdm.write(f"warning: case {case}: no CT in {args.ct}; figure shows the labels")
            record = measure_file(path, out_dir, ct, args.height, not args.no_figure, args.hinge_points, args.cusps, seg.is_dir(),
                                  args.calcium, calcium_params)
        except InputError as exc:
            if len(files) == 1:
                raise
            tqdm.write(f"error: {exc}", file=sys.stderr)
            failed.append({"case": case, "error": f"{exc.code}: {exc}"})
            continue
        except Exception as exc:  # a bug: keep going with the other cases, but show where it happened
            if len(files) == 1:
                raise
            tqdm.write(f"error: case {case}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}", file=sys.stderr)
            failed.append({"case": case, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append(record.summary_row())
        if len(files) == 1:
            _print_summary(record, out_dir)
    if seg.is_dir():
        import pandas as pd

        write_text(pd.DataFrame(rows + failed).to_csv(index=False), args.out / "measurements.csv")
        print(f"measured {len(rows)} case(s)" + (f", {len(failed)} failed" if failed else "") + f" -> {args.out / 'measurements.csv'}")
    if failed:
        print(f"{len(failed)} case(s) failed: {', '.join(f['case'] for f in failed)} (reasons in measurements.csv)", file=sys.stderr)
        return 1
    return 0


def _row_from_json(path: Path, case: str) -> dict:
    import json

    from nnunet_tavr.measurement.record import MeasurementRecord

    return {**MeasurementRecord.from_json(json.loads(path.read_text())).summary_row(), "case": case}


def _print_summary(record, out_dir: Path) -> None:
    for name, section in record.sections.items():
        if name == "volumes":
            continue
        if not section.ok:
            print(f"{name}: missing ({section.missing})")
            continue
        parts = [f"{k} {v.value:.1f} {v.unit}" for k, v in section.values.items() if hasattr(v, "unit") and isinstance(v.value, float) and v.unit != "1"]
        print(f"{name}: " + ", ".join(parts))
    print(f"wrote {out_dir / 'measurements.json'}" + ("" if not (out_dir / "measurements.png").is_file() else f" and {out_dir / 'measurements.png'}"))


def hinge_points_world(points: dict | None, geometry) -> dict | None:
    """Hinge points of the arrays' frame as world (LPS) points, for the C-arm views."""
    if points is None:
        return None
    from nnunet_tavr.hinge_points import to_world

    return to_world(points, geometry)
