"""CLI start-up time: ``nnunet-tavr --help`` and each subcommand's ``--help`` against a bare interpreter.

Run: python benchmarks/cli_startup.py
The target is an answer in under 2 s; the baseline is ``python -c pass`` measured in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nnunet_tavr.cli import SUBCOMMANDS


def timed(cmd: list[str], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    exe = str(Path(sys.executable).with_name("nnunet-tavr"))
    base = timed([sys.executable, "-c", "pass"])
    print(f"baseline python -c pass: {base:.3f} s")
    for args in [["--help"]] + [[name, "--help"] for name in SUBCOMMANDS]:
        t = timed([exe, *args])
        print(f"nnunet-tavr {' '.join(args):<22} {t:.3f} s   ratio {t / base:.1f}x   {'OK' if t < 2 else 'SLOW'}")


if __name__ == "__main__":
    main()
