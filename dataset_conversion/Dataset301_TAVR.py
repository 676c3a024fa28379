"""Dataset301_TAVR: TotalSegmentator -> nnU-Net raw dataset with the TAVR labels (nnU-Net's idiom).

    python dataset_conversion/Dataset301_TAVR.py /data/Totalsegmentator_dataset_v201 [-np 8]

is the same as ``nnunet-tavr convert /data/Totalsegmentator_dataset_v201 -d 301 -n TAVR``; every
option of that command is accepted (see ``nnunet-tavr convert --help``).
"""

from __future__ import annotations

import argparse
import sys

DATASET_ID = 301
DATASET_NAME = "TAVR"


def run(argv: list[str] | None = None) -> int:
    from nnunet_tavr.cli import run as run_command
    from nnunet_tavr.dataset_conversion import cli

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.configure_parser(parser)
    for action in parser._actions:  # -d is optional here: this script is dataset 301
        if action.dest == "dataset_id":
            action.required = False
    parser.set_defaults(dataset_id=DATASET_ID, name=DATASET_NAME)
    return run_command(cli.main, parser.parse_args(sys.argv[1:] if argv is None else argv), "convert")


if __name__ == "__main__":
    sys.exit(run())
