"""Convert TotalSegmentator (or your own CTs) into an nnU-Net raw dataset, through a dataset scheme,
with a seeded train/val/test split and a manifest of every kept and dropped case.

  nnunet-tavr convert TOTALSEG_DIR -d 301                      # TAVR labels -> $nnUNet_raw/Dataset301_TAVR
  nnunet-tavr convert TOTALSEG_DIR -d 301 --shard 3/8          # one job of a cluster array (0-based)
  nnunet-tavr convert TOTALSEG_DIR -d 301 --merge              # after all shards: dataset.json + splits
  nnunet-tavr convert -d 301 --install-splits                  # splits_final.json -> $nnUNet_preprocessed
  nnunet-tavr convert CASES --scheme import --labels LABELS_DIR --mapping map.json -d 302
                                                               # your label maps (released pseudo-labels, MM-WHS, ...)
  nnunet-tavr convert TOTALSEG_DIR --scheme heart -d 304 --crop-margin-mm 20   # seed 004's whole heart

Schemes: tavr (default; the paper's 7 classes derived by rule), import (existing label maps and a
label mapping), fluoro (angiography frames of 'nnunet-tavr fluoro', grouped by patient), hinge
(aortic-valve hinge points as labelled spheres), heart (seed 004's whole heart from TotalSegmentator
masks; docs/cardiac.md). A case is kept when its scheme can make it; dropped cases are listed in
manifest.csv with the reason. Reruns skip finished cases and redo broken ones. Test cases go to
imagesTs/labelsTs; folds 0-4 of splits_final.json are a 5-fold CV over train+val (grouped by
patient where a scheme makes several cases per patient), fold 5 is the paper's single split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from nnunet_tavr.argtypes import at_least, dataset_id, dataset_name
    from nnunet_tavr.dataset_conversion.scheme import SCHEMES, scheme_class

    parser.add_argument("source", type=Path, nargs="?", help="TotalSegmentator dataset folder (sXXXX/ + meta.csv) or a folder of CASE/ct.nii.gz + segmentations")
    parser.add_argument("-d", "--dataset-id", type=dataset_id, required=True, help="nnU-Net dataset id (1-999), e.g. 301")
    parser.add_argument("-n", "--name", type=dataset_name, default=None, help="dataset name: DatasetXXX_NAME (letters, digits, _ and -; default: the scheme's, TAVR for tavr)")
    parser.add_argument("--scheme", choices=list(SCHEMES), default="tavr", help="what the dataset is (default tavr)")
    parser.add_argument("-np", "--num-processes", type=at_least(1), default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--shard", default=None, metavar="I/N", help="convert only shard I of N (0 <= I < N, round-robin over sorted case ids); finish with --merge")
    parser.add_argument("--merge", action="store_true", help="convert nothing: write dataset.json, splits and manifest from the shards' results")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id (or made with other settings)")
    parser.add_argument("--seed", type=at_least(0), default=None, help="seed of the train/val/test split and the CV folds (default 12345)")
    parser.add_argument("--qc", action="store_true", help="also write a QC figure per case to qc/<case>.png")
    parser.add_argument("--install-splits", action="store_true", help="copy splits_final.json into $nnUNet_preprocessed/DatasetXXX_NAME (after conversion, or alone without SOURCE)")
    parser.add_argument("--raw", type=Path, default=None, help="nnU-Net raw root (default $nnUNet_raw)")
    parser.add_argument("--preprocessed", type=Path, default=None, help="nnU-Net preprocessed root (default $nnUNet_preprocessed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for name in SCHEMES:
        scheme_class(name).add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from nnunet_tavr.dataset_conversion.convert import ConversionOptions, convert_dataset
    from nnunet_tavr.dataset_conversion.finalize import install_dataset_splits
    from nnunet_tavr.dataset_conversion.layouts import parse_shard
    from nnunet_tavr.dataset_conversion.scheme import scheme_class
    from nnunet_tavr.dataset_conversion.splits import DEFAULT_SEED
    from nnunet_tavr.errors import InputError, UsageError
    from nnunet_tavr.folders import NnunetFolders
    from nnunet_tavr.safepaths import check_input, check_output_dir

    if args.source is None and not args.install_splits:
        raise UsageError("SOURCE is required (only --install-splits runs without it)")
    if args.shard and args.merge:
        raise UsageError("--shard and --merge exclude each other")
    check_input(args.source, "SOURCE", "folder")
    folders = NnunetFolders.resolve(raw=args.raw, preprocessed=args.preprocessed)
    if args.source is not None:
        check_output_dir(folders.require("raw"), inputs=[args.source], option="--raw ($nnUNet_raw)")
    if args.install_splits:
        check_output_dir(folders.require("preprocessed"), inputs=[args.source], option="--preprocessed ($nnUNet_preprocessed)")
    try:
        scheme = scheme_class(args.scheme).from_args(args)
        options = ConversionOptions(
            dataset_id=args.dataset_id, dataset_name=args.name, scheme=scheme,
            seed=DEFAULT_SEED if args.seed is None else args.seed,
        )
        if args.source is not None:
            shard = parse_shard(args.shard) if args.shard else None
            summary = convert_dataset(
                args.source, options, raw=args.raw, num_processes=args.num_processes, shard=shard,
                overwrite=args.overwrite, qc=args.qc, merge_only=args.merge, progress=not args.quiet,
            )
            print(summary.text())
            if not summary.finalized:
                return 1 if summary.failed else 0
            print(f"next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} --verify_dataset_integrity")
        if args.install_splits:
            target, replaced = install_dataset_splits(options if args.source is not None or args.name else args.dataset_id,
                                                      preprocessed=args.preprocessed, raw=args.raw)
            print(f"installed {target}" + (" (replaced a different splits_final.json)" if replaced else ""))
    except (ValueError, FileNotFoundError) as exc:  # parse_shard, splits of too few cases, a missing splits file
        if isinstance(exc, InputError):
            raise
        raise UsageError(str(exc)) from None
    return 1 if args.source is not None and summary.failed else 0
