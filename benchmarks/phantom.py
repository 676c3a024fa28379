"""Phantom generation speed: one 1.5 mm, 200x160x160 subject, against writing it as NIfTI.

Run: python benchmarks/phantom.py [--repeats 5]
The target is "well under a second" per subject; the ratio to the cost of writing the same subject
(CT + 5 masks, gzip) shows that generation is not the bottleneck of any pipeline that stores it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from nnunet_tavr.phantom import make_subject, write_subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 160, 160))
    args = parser.parse_args()
    make_subject(0, shape=tuple(args.shape))  # warm-up (imports, caches)
    gen, io = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.repeats):
            t0 = time.perf_counter()
            ph = make_subject(seed, shape=tuple(args.shape))
            t1 = time.perf_counter()
            write_subject(ph, f"{tmp}/s{seed:04d}")
            t2 = time.perf_counter()
            gen.append(t1 - t0)
            io.append(t2 - t1)
    g, w = float(np.median(gen)), float(np.median(io))
    print(f"shape {tuple(args.shape)} at 1.5 mm, {args.repeats} subjects (median)")
    print(f"generate: {g:.3f} s/subject   write NIfTI (baseline): {w:.3f} s/subject   ratio generate/write: {g / w:.2f}x")


if __name__ == "__main__":
    main()
