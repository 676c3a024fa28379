"""Benchmark ``measure_tavr`` on a TotalSegmentator-sized case (target: < 10 s on one core).

A full-resolution phantom (default 300 x 512 x 512 voxels of 1.0 x 0.47 x 0.47 mm, the size of a
TotalSegmentator CT) is written as a NIfTI segmentation, then timed in the same run:

- baseline ``read``: reading that segmentation with SimpleITK (what any tool pays first);
- baseline ``naive EDT``: one Euclidean distance transform of the whole lumen (labels 1-7) on the
  full grid (``edt``, 1 thread): the first step of a naive full-volume centreline approach;
- ``measure_tavr``: every measurement of this package.

Figures are printed as seconds and as ratios to the baselines, together with the errors against
the phantom truth.  Threads are pinned to one before numpy / scipy are imported.

usage: python benchmarks/measure.py [--shape Z Y X] [--spacing Z Y X] [--repeats N]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 0.47, 0.47))
    parser.add_argument("--rotation", type=float, nargs=3, default=(15.0, 10.0, 0.0), help="degrees about z, y, x")
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    import edt
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    from nnunet_tavr.io import read_array, write_array
    from nnunet_tavr.measurement import measure_tavr
    from nnunet_tavr.phantom import make_subject

    print(f"phantom: shape {tuple(args.shape)} ({np.prod(args.shape) / 1e6:.1f} M voxels), spacing {tuple(args.spacing)} mm, rotation {tuple(args.rotation)} deg")
    t = time.perf_counter()
    p = make_subject(args.seed, shape=tuple(args.shape), spacing=tuple(args.spacing), rotation_deg=tuple(args.rotation), noise_hu=0.0)
    print(f"  (phantom built in {time.perf_counter() - t:.1f} s; not timed)")
    with tempfile.TemporaryDirectory() as tmp:
        seg = write_array(p.labels, p.geometry, Path(tmp) / "seg.nii.gz")
        t_read, (labels, geometry) = best_of(lambda: read_array(seg), args.repeats)
    t_edt, _ = best_of(lambda: edt.edt(labels > 0, anisotropy=geometry.spacing, parallel=1), args.repeats)
    t_measure, record = best_of(lambda: measure_tavr(labels, geometry.spacing, case="benchmark"), args.repeats)

    print(f"\ntimings (best of {args.repeats}, one thread):")
    print(f"  read segmentation (SimpleITK)   {t_read:7.2f} s   1.00 x read")
    print(f"  naive full-volume EDT           {t_edt:7.2f} s   {t_edt / t_read:5.2f} x read")
    print(f"  measure_tavr                    {t_measure:7.2f} s   {t_measure / t_read:5.2f} x read   {t_measure / t_edt:5.2f} x naive EDT")
    print(f"  target < 10 s per case: {'PASS' if t_measure < 10 else 'FAIL'}")

    truth = p.truth
    rows = [
        ("annulus area (mm2)", record["annulus"].get("area"), truth["annulus_area_mm2"]),
        ("annulus perimeter (mm)", record["annulus"].get("perimeter"), truth["annulus_perimeter_mm"]),
        ("annulus min diameter (mm)", record["annulus"].get("min_diameter"), truth["annulus_min_diameter_mm"]),
        ("annulus max diameter (mm)", record["annulus"].get("max_diameter"), truth["annulus_max_diameter_mm"]),
        ("sinus diameter (mm)", record["aortic_root"].get("sinus_diameter"), truth["sinus_diameter_mm"]),
        ("STJ diameter (mm)", record["aortic_root"].get("stj_diameter"), truth["stj_diameter_mm"]),
        ("root height (mm)", record["aortic_root"].get("root_height"), truth["root_height_mm"]),
        ("ascending @40 mm (mm)", record["ascending_aorta"].get("diameter"), truth["ascending_diameter_40mm"]),
    ]
    for side in ("left", "right"):
        sten = truth["iliac"][side]["stenosis"]
        ref = sten["min_diameter_mm"] if sten else truth["iliac"][side]["diameter_mm"]
        rows.append((f"iliac {side} MLD (mm)", record[f"iliac_artery_{side}"].get("min_lumen_diameter"), ref))
    print("\naccuracy on this case (measured, truth, error):")
    for name, got, want in rows:
        got_s = "missing" if got is None else f"{got:8.2f}"
        err = "" if got is None else f"{got - want:+6.2f}"
        print(f"  {name:<28} {got_s}  {want:8.2f}  {err}")
    return 0 if t_measure < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
