"""Time per case of Dice, IoU, ASSD and HD95 on a TotalSegmentator-sized 7-class case.

Compares, in the same run and on the same case:

- ``case_metrics`` (nnunet_tavr.evaluation.metrics: one pass for the flat indices of every label,
  then overlaps, surfaces and KD-tree surface distances on those index lists);
- a naive full-volume baseline: per class, full-volume masks, full-volume surfaces and
  ``scipy.ndimage.distance_transform_edt`` over the whole image;
- optionally MONAI's ``compute_average_surface_distance`` + ``compute_hausdorff_distance`` per
  class (``--monai``).

It also times reading the two compressed NIfTI files of the case with SimpleITK (what ``compare``
does per case before the metrics), and checks that all methods give the same numbers.

    .venv/bin/python benchmarks/metrics.py                # 450 x 330 x 330 at 1.5 mm
    .venv/bin/python benchmarks/metrics.py --shape 200 160 160 --monai
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def naive_case_metrics(reference, prediction, classes, spacing):
    """Reference implementation: every operation on the full volume, one class at a time."""
    from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

    structure = generate_binary_structure(3, 1)
    out = []
    for c in classes:
        ref = np.isin(reference, c.values)
        pred = np.isin(prediction, c.values)
        tp = np.count_nonzero(ref & pred)
        fp = np.count_nonzero(pred & ~ref)
        fn = np.count_nonzero(ref & ~pred)
        rec = {"class": c.name, "Dice": 2 * tp / (2 * tp + fp + fn), "IoU": tp / (tp + fp + fn)}
        ref_s = ref & ~binary_erosion(ref, structure, border_value=0)
        pred_s = pred & ~binary_erosion(pred, structure, border_value=0)
        d_pr = distance_transform_edt(~ref_s, sampling=spacing)[pred_s]
        d_rp = distance_transform_edt(~pred_s, sampling=spacing)[ref_s]
        rec["ASSD"] = (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size)
        rec["HD95"] = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
        out.append(rec)
    return out


def monai_case_metrics(reference, prediction, classes, spacing):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    out = []
    for c in classes:
        ref = torch.from_numpy(np.isin(reference, c.values)[None, None])
        pred = torch.from_numpy(np.isin(prediction, c.values)[None, None])
        assd = compute_average_surface_distance(pred, ref, symmetric=True, spacing=spacing).item()
        hd95 = compute_hausdorff_distance(pred, ref, percentile=95, spacing=spacing).item()
        out.append({"class": c.name, "ASSD": assd, "HD95": hd95})
    return out


def make_case(shape, spacing, seed=0):
    """A phantom reference and an imperfect prediction of it (shifted, one class dilated, a false blob)."""
    from scipy.ndimage import binary_dilation

    from nnunet_tavr.phantom import make_subject

    reference = make_subject(seed, shape=tuple(shape), spacing=spacing).labels
    prediction = np.roll(reference, 1, axis=2)  # every structure one voxel off along x
    valve = binary_dilation(prediction == 4, iterations=1) & (prediction == 0)
    prediction[valve] = 4
    z, y, x = (int(s * f) for s, f in zip(shape, (0.15, 0.8, 0.2)))
    prediction[z : z + 6, y : y + 6, x : x + 6] = 1  # a false aorta island far from the aorta
    return reference, prediction


def best_of(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> None:
    import warnings

    from nnunet_tavr.evaluation.metrics import case_metrics, classes_from_labels
    from nnunet_tavr.io import Geometry, read_array, write_array
    from nnunet_tavr.labels import LABELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[450, 330, 330], help="(z, y, x) voxels")
    parser.add_argument("--spacing", type=float, default=1.5, help="isotropic voxel size in mm")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the fast method (best is kept)")
    parser.add_argument("--monai", action="store_true", help="also time MONAI's surface-distance metrics")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)

    spacing = (args.spacing,) * 3
    classes = classes_from_labels(LABELS)
    t = time.perf_counter()
    reference, prediction = make_case(args.shape, args.spacing)
    print(f"case: {tuple(args.shape)} voxels at {args.spacing} mm, {len(classes)} classes "
          f"({reference.size / 1e6:.1f} M voxels; phantom made in {time.perf_counter() - t:.1f} s)")
    print("voxels per class (reference):", {c.name: int(np.isin(reference, c.values).sum()) for c in classes})

    with tempfile.TemporaryDirectory() as tmp:
        geo = Geometry(tuple(reference.shape), spacing, (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
        write_array(reference, geo, Path(tmp) / "ref.nii.gz")
        write_array(prediction, geo, Path(tmp) / "pred.nii.gz")
        t_io, _ = best_of(lambda: (read_array(Path(tmp) / "ref.nii.gz"), read_array(Path(tmp) / "pred.nii.gz")), 1)

    # warm-up on a tiny case so that no method is charged for importing scipy's modules
    tiny = np.zeros((4, 4, 4), np.uint8)
    tiny[1:3, 1:3, 1:3] = 1
    case_metrics(tiny, tiny, classes, spacing)
    naive_case_metrics(tiny, tiny, classes[:1], spacing)
    t_fast, fast = best_of(lambda: case_metrics(reference, prediction, classes, spacing), args.repeats)
    t_naive, naive = best_of(lambda: naive_case_metrics(reference, prediction, classes, spacing), 1)
    worst = max(abs(f[m] - n[m]) for f, n in zip(fast, naive) for m in ("Dice", "IoU", "ASSD", "HD95"))

    print(f"read 2 NIfTI files (SimpleITK)      : {t_io:7.2f} s")
    print(f"case_metrics (index lists + KD-tree): {t_fast:7.2f} s per case (best of {args.repeats})")
    print(f"naive full volume (scipy EDT)       : {t_naive:7.2f} s per case")
    print(f"speed-up vs naive                   : {t_naive / t_fast:7.1f} x")
    print(f"largest |difference| vs naive       : {worst:.2e} (Dice/IoU fractions, ASSD/HD95 mm)")
    # The case that defeats bounding-box crops: a stray voxel of every class in two opposite
    # corners of the image (a network's false islands far away do the same).
    spread = prediction.copy()
    for c in classes:
        spread[0, 0, c.values[0] - 1] = c.values[0]
        spread[-1, -1, -c.values[0]] = c.values[0]
    t_worst, _ = best_of(lambda: case_metrics(reference, spread, classes, spacing), 1)
    print(f"same, + stray voxels in both corners: {t_worst:6.2f} s per case ({t_naive / t_worst:.1f} x faster than naive)")
    if args.monai:
        t_monai, monai = best_of(lambda: monai_case_metrics(reference, prediction, classes, spacing), 1)
        worst_m = max(abs(f[m] - n[m]) for f, n in zip(fast, monai) for m in ("ASSD", "HD95"))
        print(f"MONAI ASSD + HD95 per class         : {t_monai:7.2f} s per case ({t_monai / t_fast:.1f} x case_metrics)")
        print(f"largest |difference| vs MONAI       : {worst_m:.2e} mm")
    print("per class (case_metrics):")
    for rec in fast:
        print(f"  {rec['class']:<20} Dice {rec['Dice']:.4f}  IoU {rec['IoU']:.4f}  ASSD {rec['ASSD']:6.3f} mm  HD95 {rec['HD95']:7.3f} mm")


if __name__ == "__main__":
    main()
