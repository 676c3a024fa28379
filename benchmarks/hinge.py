"""Accuracy of the hinge-point rule (:mod:`nnunet_tavr.label_derivation.hinge`) on held-out phantoms.

Cusped phantoms (``make_subject(aortic_sinuses=True)``) with seeds never used to tune the rule
(1000+; the rule was tuned on 101-104) on four grids: isotropic 1.5 mm (TotalSegmentator's grid),
anisotropic 2.5 x 1.2 x 1.2 mm, rotated (20, -15, 10) deg on 2.0 x 1.6 x 1.6 mm, and the coarse
3 mm grid of the CPU tests (reported, not part of the 1.5 mm target: a cusp's deepest layer there is
one or two voxels). Per grid: the error (mm) of every derived hinge point against construction
(median, max), the angle between the plane through the derived points and the constructed annulus
plane, and whether the TAVR derivation still ends the root at the STJ on cusped phantoms.

Target (issue 15): every derived point within 1.5 mm on the 1.5 mm, anisotropic and rotated grids.

Usage::

    python benchmarks/hinge.py [--seeds 12] [--out benchmarks/results/hinge.txt]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

GRIDS = {
    "1.5 mm": dict(shape=(200, 160, 160), spacing=1.5),
    "2.5 x 1.2 x 1.2 mm": dict(shape=(120, 200, 200), spacing=(2.5, 1.2, 1.2)),
    "rotated (20, -15, 10) deg, 2.0 x 1.6 x 1.6 mm": dict(shape=(150, 150, 150), spacing=(2.0, 1.6, 1.6), rotation_deg=(20.0, -15.0, 10.0)),
    "3 mm (CPU tests; informative)": dict(shape=(100, 80, 80), spacing=3.0),
}
TARGET_MM = 1.5


def run(seeds: int, first_seed: int = 1000) -> tuple[list[str], bool]:
    from nnunet_tavr.geometry import angle_deg
    from nnunet_tavr.label_derivation import derive_tavr_labels
    from nnunet_tavr.label_derivation.hinge import CUSPS, derive_hinge_points
    from nnunet_tavr.phantom import make_subject

    lines, ok = [], True
    for g, (label, grid) in enumerate(GRIDS.items()):
        errors, angles, root_err, excluded, seconds = [], [], [], 0, []
        for i in range(seeds):
            ph = make_subject(seed=first_seed + 100 * g + i, aortic_sinuses=True, **grid)
            t0 = time.process_time()
            res = derive_hinge_points({n: ph.masks[n] for n in CUSPS}, ph.spacing, ph.masks["left_ventricular_outflow_tract"])
            seconds.append(time.process_time() - t0)
            errors += [float(np.linalg.norm(res.points[n] - ph.truth["hinge_points"][n]["mm"])) for n in CUSPS]
            angles.append(angle_deg(res.plane_normal, ph.truth["annulus_normal"], oriented=False))
            # the TAVR rules at the paper's voxel counts (3 and 1 voxels) of the grid's coarsest axis
            coarse = max(ph.spacing)
            labels, result = derive_tavr_labels(ph.masks, ph.spacing, valve_mm=max(4.5, 3 * coarse), annulus_mm=max(1.5, coarse))
            if result.ok and result.root is not None:
                root_err.append(abs(result.root.end_distance_mm - ph.truth["stj_distance_mm"]))
            else:
                excluded += 1
                print(f"  seed {first_seed + 100 * g + i}: TAVR derivation excluded: {result.excluded_reason}")
        e = np.asarray(errors)
        informative = "informative" in label
        passed = bool(e.max() <= TARGET_MM)
        ok &= passed or informative
        lines.append(f"{label}: {seeds} phantoms x 3 hinge points: error median {np.median(e):.2f} mm, IQR {np.percentile(e, 25):.2f}-"
                     f"{np.percentile(e, 75):.2f} mm, max {e.max():.2f} mm, share <= {TARGET_MM} mm {np.mean(e <= TARGET_MM):.0%} "
                     f"[{'PASS' if passed else ('n/a' if informative else 'FAIL')}]; hinge plane vs constructed annulus plane: "
                     f"median {np.median(angles):.2f} deg, max {max(angles):.2f} deg; rule {np.median(seconds) * 1000:.0f} ms CPU/case; "
                     f"TAVR root end - STJ on cusped phantoms: max |error| {max(root_err) if root_err else float('nan'):.2f} mm, {excluded} excluded")
        print(lines[-1], flush=True)
    return lines, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--out", default=None, help="also write the lines to this file")
    args = parser.parse_args(argv)
    lines, ok = run(args.seeds)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text("# python benchmarks/hinge.py --seeds %d\n" % args.seeds + "\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
