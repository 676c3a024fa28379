# The ``nnunet-tavr phantom`` subcommand. Its help text is this module's docstring, which is the
# package docstring's user-facing part (what is written, and in which frame), without the notes for
# developers (package structure, adding a structure).

from __future__ import annotations

import argparse
from pathlib import Path

import nnunet_tavr.phantom as _package
from nnunet_tavr.phantom.writer import write_dataset

__doc__ = _package.__doc__.split("\nPackage structure\n")[0]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="output folder (TotalSegmentator dataset layout)")
    parser.add_argument("-n", "--num-subjects", type=int, default=8, help="number of subjects (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=(200, 160, 160), help="voxels per subject (default 200 160 160)")
    parser.add_argument("--spacing", type=float, nargs="+", default=[1.5], metavar="MM", help="voxel size in mm: one value, or three (z y x) (default 1.5)")
    parser.add_argument("--no-heart", type=int, nargs="*", default=[], metavar="I", help="subject indices without heart (chest-less scans)")
    parser.add_argument("--no-iliacs", type=int, nargs="*", default=[], metavar="I", help="subject indices without iliac arteries")


def main(args: argparse.Namespace) -> int:
    if len(args.spacing) not in (1, 3):
        raise SystemExit("--spacing takes one value or three (z y x)")
    spacing = args.spacing[0] if len(args.spacing) == 1 else tuple(args.spacing)
    ids = write_dataset(args.out_dir, args.num_subjects, args.seed, tuple(args.shape), spacing, args.no_heart, args.no_iliacs)
    print(f"wrote {len(ids)} subjects to {args.out_dir} (TotalSegmentator layout, truth.json per subject)")
    print(f"next: nnunet-tavr derive {args.out_dir / ids[0]} -o labels.nii.gz   or   nnunet-tavr convert {args.out_dir} -d 301")
    return 0
