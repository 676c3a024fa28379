"""The calcium rule: speed beside the derivation's own time, and accuracy against phantoms' calcium
known by construction (issue 18).

Speed: a TotalSegmentator-sized case (a calcium phantom's 300 x 240 x 240 mm anatomy centred in a
450 x 330 x 330 grid at 1.5 mm, 49 M voxels) on one core (thread pools pinned to 1); CPU times
(``time.process_time``) of ``derive_tavr_labels`` (the TAVR derivation every case goes through)
and ``derive_calcium`` on its output, best of ``--repeats``, and their ratio; a naive calcium rule
(full-volume Euclidean distance transform to widen the regions, then the threshold) as a baseline.
Target: <= 0.5 s per case for the calcium rule.

Accuracy: held-out seeds (from 1000; the tests and the development used seeds below 200) on three
grids (1.5 mm isotropic; 2.0 x 1.2 x 1.2 mm; 2.5 x 0.8 x 0.8 mm rotated), each subject with its own
lumen intensity (200-550 HU, iliacs dimmer). Judged (``nnunet_tavr.evaluation.calcium``): calcium
voxel Dice for deposits >= 3 mm (smallest extent: a ball's diameter, a plaque's thickness), total volume against the exact volume, every found nodule's region,
and calcium-free subjects (the calcium contrast without nodules). The same subjects are also run
with fixed thresholds (850 HU, common in TAVR work, and 500 HU) to show what a fixed threshold
misses. Targets: Dice >= 0.8, volume within 15 %, all nodules assigned to their region, no calcium
in calcium-free subjects.

Usage::

    python benchmarks/calcium.py [--repeats 3] [--seeds 12] [--free 4] [--no-naive] [--no-accuracy]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy loads

import argparse
import sys
import time

import numpy as np

MASKS = ("aorta", "heart_ventricle_left", "iliac_artery_left", "iliac_artery_right")
GRIDS = {
    "1.5 mm": {},
    "2.0 x 1.2 x 1.2 mm": {"spacing": (2.0, 1.2, 1.2), "shape": (150, 200, 200)},
    "2.5 x 0.8 x 0.8 mm, rotated (10, -15, 20) deg": {"spacing": (2.5, 0.8, 0.8), "shape": (120, 300, 300), "rotation_deg": (10.0, -15.0, 20.0)},
}
FIXED = (850.0, 500.0)


def ts_sized_case(seed: int = 0):
    """A calcium phantom centred in a 450 x 330 x 330 grid at 1.5 mm (air around it)."""
    from nnunet_tavr.phantom import make_subject

    ph = make_subject(seed, calcium=True)
    target = (450, 330, 330)
    pad = [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(ph.ct.shape, target)]
    return {name: np.pad(ph.masks[name], pad) for name in MASKS}, np.pad(ph.ct, pad, constant_values=-1024), ph.spacing


def naive_calcium(ct, labels, spacing, wall_mm=3.0, offset_hu=100.0):
    """Baseline: widen every region with a full-volume distance transform, one global lumen
    threshold, components above 3 mm3 (no region split, no half maximum)."""
    import cc3d
    from scipy import ndimage

    anatomy = np.isin(labels, (1, 3, 4, 5, 6, 7))
    near = ndimage.distance_transform_edt(~anatomy, sampling=spacing) <= wall_mm
    lumen = ct[ndimage.binary_erosion(anatomy)]
    threshold = float(np.median(lumen)) + offset_hu
    calcium = near & (ct >= threshold)
    return cc3d.dust(calcium, threshold=int(np.ceil(3.0 / np.prod(spacing))), connectivity=26)


def best_cpu(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        c0 = time.process_time()
        out = fn()
        times.append(time.process_time() - c0)
    return min(times), times, out


def speed(repeats: int, naive: bool) -> None:
    from nnunet_tavr.label_derivation import derive_tavr_labels
    from nnunet_tavr.label_derivation.calcium import calcium_of_derivation

    masks, ct, spacing = ts_sized_case()
    shape = ct.shape
    print(f"case: {shape[2]} x {shape[1]} x {shape[0]} voxels (x y z) at {spacing[0]} mm, {np.prod(shape) / 1e6:.0f} M voxels")
    labels, result = derive_tavr_labels(masks, spacing)  # warm-up (imports)
    calcium_of_derivation(ct, labels, spacing, result.root)
    t_derive, all_derive, _ = best_cpu(lambda: derive_tavr_labels(masks, spacing), repeats)
    t_calcium, all_calcium, calc = best_cpu(lambda: calcium_of_derivation(ct, labels, spacing, result.root), repeats)
    print(f"derive_tavr_labels: {t_derive:.3f} s CPU (best of {repeats}: {', '.join(f'{t:.3f}' for t in all_derive)})")
    print(f"derive_calcium:     {t_calcium:.3f} s CPU (best of {repeats}: {', '.join(f'{t:.3f}' for t in all_calcium)}); "
          f"{len(calc.components)} components, {calc.total_mm3:.0f} mm3; target <= 0.5 s: {'met' if t_calcium <= 0.5 else 'MISSED'}")
    print(f"calcium / derivation CPU time: {t_calcium / t_derive:.2f}x")
    if naive:
        t_naive, _, _ = best_cpu(lambda: naive_calcium(ct, labels, np.asarray(spacing)), 1)
        print(f"naive calcium (full-volume EDT, one global threshold): {t_naive:.2f} s CPU; speed-up {t_naive / t_calcium:.0f}x")


def run_grid(name, kw, seeds, free, fixed=FIXED):
    from nnunet_tavr.evaluation.calcium import calcium_agreement
    from nnunet_tavr.label_derivation import derive_tavr_labels
    from nnunet_tavr.label_derivation.calcium import CalciumParams, calcium_of_derivation
    from nnunet_tavr.phantom import make_subject

    rows, fixed_rows, free_components, lumens, seconds, excluded = [], {t: [] for t in fixed}, [], [], [], 0
    for i, seed in enumerate(seeds):
        calcium_free = i < free
        ph = make_subject(seed, calcium=True, calcium_nodules=0 if calcium_free else None, **kw)
        labels, derived = derive_tavr_labels(ph.masks, ph.spacing)
        if labels is None:
            excluded += 1
            continue
        lumens.append(ph.truth["calcium"]["lumen_hu"]["aorta"])
        res = calcium_of_derivation(ph.ct, labels, ph.spacing, derived.root)
        seconds.append(res.seconds)
        if calcium_free:
            free_components.append(len(res.components))
            continue
        nodules = ph.truth["calcium"]["nodules"]
        rows.append(calcium_agreement(ph.calcium, nodules, res))
        for t in fixed:
            fres = calcium_of_derivation(ph.ct, labels, ph.spacing, derived.root, CalciumParams(threshold_hu=t))
            fixed_rows[t].append(None if not fres.ok else calcium_agreement(ph.calcium, nodules, fres))
    report(name, rows, free_components, lumens, seconds, excluded)
    for t in fixed:
        ok = [r for r in fixed_rows[t] if r is not None]
        not_assessed = len(fixed_rows[t]) - len(ok)
        if ok:
            dice = np.array([r["dice"] for r in ok])
            err = np.array([r["volume_error"] for r in ok]) * 100
            big = sum(r["n_big"] for r in ok)
            print(f"    fixed {t:g} HU: {len(ok)} subjects ({not_assessed} refused: threshold within the lumen); Dice mean {dice.mean():.3f}, "
                  f"min {dice.min():.3f}; deposits >= 3 mm found {sum(r['big_found'] for r in ok)}/{big}; "
                  f"volume error mean {err.mean():+.1f} %, max |{np.abs(err).max():.1f}| %")
        else:
            print(f"    fixed {t:g} HU: refused in every subject (threshold within the lumen)")


def report(name, rows, free_components, lumens, seconds, excluded) -> None:
    dice = np.array([r["dice"] for r in rows])
    err = np.array([r["volume_error"] for r in rows]) * 100
    nodules = [n for r in rows for n in r["nodules"]]
    big = [n for n in nodules if n["size_mm"] >= 3.0]
    big_dice = np.array([n["dice"] for n in big])
    found = [n for n in nodules if n["found"]]
    assigned = sum(1 for n in found if n["assigned"] == n["region"])
    small = [n for n in nodules if n["size_mm"] < 3.0]
    false = sum(len(r["false_components"]) for r in rows)
    print(f"{name}: {len(rows)} subjects with calcium + {len(free_components)} calcium-free ({excluded} excluded by the derivation); "
          f"lumen {min(lumens):.0f}-{max(lumens):.0f} HU")
    print(f"    Dice, calcium of deposits >= 3 mm (smallest extent): mean {dice.mean():.3f}, min {dice.min():.3f} (target >= 0.8); per nodule: "
          f"median {np.median(big_dice):.3f}, 10th percentile {np.percentile(big_dice, 10):.3f}")
    print(f"    total volume vs exact: mean error {err.mean():+.1f} %, max |error| {np.abs(err).max():.1f} % (target within 15 %)")
    print(f"    deposits >= 3 mm found: {sum(n['found'] for n in big)}/{len(big)}; smaller or thinner (nodules of 1-3 mm, plaques < 3 mm thick) found: "
          f"{sum(n['found'] for n in small)}/{len(small)}; found nodules assigned to their region: {assigned}/{len(found)}")
    regions = sorted({r for row in rows for r in row["by_region"]})
    per_region = []
    for region in regions:
        t = sum(row["by_region"].get(region, {}).get("true_mm3", 0.0) for row in rows)
        f = sum(row["by_region"].get(region, {}).get("found_mm3", 0.0) for row in rows)
        if t:
            per_region.append(f"{region} {100 * (f - t) / t:+.1f} %")
    print("    volume error per region (pooled): " + ", ".join(per_region))
    print(f"    false components (touching no nodule): {false}; calcium-free subjects: "
          f"{sum(free_components)} components in {len(free_components)} (target 0); rule time mean {np.mean(seconds):.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=12, help="subjects with calcium per grid")
    parser.add_argument("--free", type=int, default=4, help="calcium-free subjects per grid (in addition)")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args()
    speed(args.repeats, not args.no_naive)
    if not args.no_accuracy:
        for k, (name, kw) in enumerate(GRIDS.items()):
            first = args.first_seed + 1000 * k
            run_grid(name, kw, list(range(first, first + args.free + args.seeds)), args.free)
    return 0


if __name__ == "__main__":
    sys.exit(main())
