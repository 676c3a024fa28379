"""Throughput of ``nnunet-tavr convert`` on TotalSegmentator-sized phantoms.

Measures, in one run:

- cases per minute with 1 and with 2 worker processes (the 2-process figure as a ratio to 1);
- where a case's time goes: reading the masks (+ CT header), deriving the labels, writing
  (verified byte copy of the CT + writing the uint8 label map), i.e. the share of NIfTI IO;
- the CT copy against the obvious alternative, re-encoding the CT with SimpleITK (read + write).

Usage::

    python benchmarks/convert.py [--cases 6] [--shape 450 330 330] [--spacing 1.5] [--data DIR]

``--data`` keeps the generated phantoms between runs (they take ~10 s each to make).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _run(source: Path, raw: Path, processes: int):
    from nnunet_tavr.dataset_conversion.convert import ConversionOptions, convert_dataset

    shutil.rmtree(raw, ignore_errors=True)
    t0 = time.perf_counter()
    summary = convert_dataset(source, ConversionOptions(301), raw=raw, num_processes=processes, progress=False)
    return time.perf_counter() - t0, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=(450, 330, 330))
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--data", type=Path, default=None, help="phantom folder to (re)use")
    args = parser.parse_args(argv)

    import numpy as np
    import SimpleITK as sitk

    from nnunet_tavr.dataset_conversion.convert import _copy_image
    from nnunet_tavr.phantom import write_dataset

    work = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        data = args.data or work / "totalseg"
        t0 = time.perf_counter()
        write_dataset(data, args.cases, seed=0, shape=tuple(args.shape), spacing=args.spacing, progress=False)
        print(f"phantoms: {args.cases} x {tuple(args.shape)} voxels at {args.spacing} mm ({time.perf_counter() - t0:.1f} s to prepare)")
        ct_mb = np.mean([(data / f"s{i:04d}" / "ct.nii.gz").stat().st_size for i in range(args.cases)]) / 1e6
        print(f"ct.nii.gz: {ct_mb:.1f} MB on average; cpu cores: {os.cpu_count()} (shared machine: timings are noisy)")

        results = {}
        for processes in (1, 2):
            seconds, summary = _run(data, work / f"raw{processes}", processes)
            results[processes] = (seconds, summary)
            kept = [r for r in summary.records if r["kept"]]
            timing = {k: sum(r["timing"].get(k, 0.0) for r in kept) for k in ("read", "derive", "write")}
            per_case = sum(r["seconds"] for r in kept)
            print(f"\n{processes} process(es): {len(summary.records)} cases ({len(kept)} kept) in {seconds:.1f} s "
                  f"-> {60 * len(summary.records) / seconds:.1f} cases/min (includes pool start-up and finalize)")
            print(f"  per case (worker time, mean): {per_case / len(kept):.2f} s = read {timing['read'] / len(kept):.2f} + "
                  f"derive {timing['derive'] / len(kept):.2f} + write {timing['write'] / len(kept):.2f} s")
            io = (timing["read"] + timing["write"]) / per_case
            print(f"  NIfTI reading/writing: {100 * io:.0f}% of worker time (read {100 * timing['read'] / per_case:.0f}%, "
                  f"write {100 * timing['write'] / per_case:.0f}%), derivation {100 * timing['derive'] / per_case:.0f}%")
        speedup = results[1][0] / results[2][0]
        print(f"\n2 processes vs 1: {speedup:.2f}x the throughput (ideal on 2 idle cores: 2x)")

        # The CT is copied byte for byte (gzip stream verified) instead of re-encoded.
        ct = data / "s0000" / "ct.nii.gz"
        t0 = time.perf_counter()
        _copy_image(ct, work / "copy" / "ct.nii.gz", "s0000")
        t_copy = time.perf_counter() - t0
        t0 = time.perf_counter()
        image = sitk.ReadImage(str(ct))
        sitk.WriteImage(image, str(work / "reencoded.nii.gz"), useCompression=True)
        t_sitk = time.perf_counter() - t0
        print(f"CT to imagesTr: verified byte copy {t_copy:.2f} s vs SimpleITK read+write {t_sitk:.2f} s ({t_sitk / t_copy:.1f}x slower)")

        same = sorted(p.name for p in (work / "raw1" / "Dataset301_TAVR" / "labelsTr").iterdir()) == sorted(
            p.name for p in (work / "raw2" / "Dataset301_TAVR" / "labelsTr").iterdir()
        )
        print(f"1- and 2-process runs produce the same files: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
