# The ``nnunet-tavr phantom`` subcommand. Its help text is this module's docstring, which is the
# package docstring's user-facing part (what is written, and in which frame), without the notes for
# developers (package structure, adding a structure).

from __future__ import annotations

import argparse
from pathlib import Path

import nnunet_tavr.phantom as _package
from nnunet_tavr.phantom.writer import write_dataset

__doc__ = _package.__doc__.split("\nPackage structure\n")[0]


#: The largest subject written (voxels): a 600 x 512 x 512 grid, about 2.4 GB of masks and CT in memory.
MAX_VOXELS = 160_000_000


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least, float_range

    parser.add_argument("out_dir", type=Path, help="output folder (TotalSegmentator dataset layout)")
    parser.add_argument("-n", "--num-subjects", type=at_least(1), default=8, help="number of subjects (default 8)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="random seed; same seed, same data (default 0)")
    parser.add_argument("--shape", type=at_least(16), nargs=3, metavar=("Z", "Y", "X"), default=(200, 160, 160), help="voxels per subject (default 200 160 160)")
    parser.add_argument("--spacing", type=float_range(0.3, 10.0), nargs="+", default=[1.5], metavar="MM", help="voxel size in mm, 0.3-10: one value, or three (z y x) (default 1.5)")
    parser.add_argument("--no-heart", type=at_least(0), nargs="*", default=[], metavar="I", help="subject indices without heart (chest-less scans)")
    parser.add_argument("--cusps", action="store_true", help="three aortic cusps (RCC, LCC, NCC) with hinge points and commissures in truth.json")
    parser.add_argument("--aortic-sinuses", action="store_true", help="also write TotalSegmentator's aortic_sinuses masks (cusps + LVOT); implies --cusps")
    parser.add_argument("--no-iliacs", type=at_least(0), nargs="*", default=[], metavar="I", help="subject indices without iliac arteries")
    parser.add_argument("--calcium", action="store_true", help="calcified nodules and plaques (valve, annulus, LVOT, root, aorta, iliacs) and a contrast lumen of 200-550 HU; true voxels in calcium_truth.nii.gz, nodules in truth.json")
    parser.add_argument("--calcium-free", type=at_least(0), nargs="*", default=[], metavar="I", help="with --calcium: subject indices with the calcium contrast but no nodule")
    parser.add_argument("--heart-chambers", action="store_true", help="the whole heart: RV, atria, LA appendage, pulmonary artery and veins, SVC, papillary muscles, true volumes and LV mass in truth.json")
    parser.add_argument("--heartchambers-highres", action="store_true", help="also write TotalSegmentator's heartchambers_highres multilabel file; implies --heart-chambers")


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from nnunet_tavr.errors import UsageError
    from nnunet_tavr.safepaths import check_output_dir

    if len(args.spacing) not in (1, 3):
        raise UsageError("--spacing takes one value or three (z y x)")
    outside = sorted(i for i in set(args.no_heart) | set(args.no_iliacs) | set(args.calcium_free) if i >= args.num_subjects)
    if outside:
        raise UsageError(f"--no-heart / --no-iliacs / --calcium-free: subject index {outside[0]} does not exist (-n {args.num_subjects} gives 0-{args.num_subjects - 1})")
    if args.calcium_free and not args.calcium:
        raise UsageError("--calcium-free needs --calcium")
    if int(np.prod(args.shape, dtype=np.int64)) > MAX_VOXELS:
        raise UsageError(f"--shape {' '.join(map(str, args.shape))} has {int(np.prod(args.shape, dtype=np.int64)):,} voxels; at most {MAX_VOXELS:,}")
    check_output_dir(args.out_dir, option="out_dir")
    spacing = args.spacing[0] if len(args.spacing) == 1 else tuple(args.spacing)
    ids = write_dataset(args.out_dir, args.num_subjects, args.seed, tuple(args.shape), spacing, args.no_heart, args.no_iliacs,
                        calcium=args.calcium, calcium_free=args.calcium_free,
                        cusps=args.cusps, aortic_sinuses=args.aortic_sinuses,
                        heart_chambers=args.heart_chambers, heartchambers_highres=args.heartchambers_highres)
    print(f"wrote {len(ids)} subjects to {args.out_dir} (TotalSegmentator layout, truth.json per subject)")
    if args.heart_chambers or args.heartchambers_highres:
        print(f"next: nnunet-tavr convert {args.out_dir} --scheme heart -d 304   or   nnunet-tavr cardiac {args.out_dir} -o volumes/")
    else:
        calcium = " --calcium" if args.calcium else ""
        print(f"next: nnunet-tavr derive {args.out_dir / ids[0]} -o labels.nii.gz{calcium}   or   nnunet-tavr convert {args.out_dir} -d 301{calcium}")
    return 0
