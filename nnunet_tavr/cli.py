"""The ``nnunet-tavr`` command line.

Each subcommand lives in the module that owns its work; that module exposes
``configure_parser(parser)`` and ``main(args) -> int``.  Modules are imported only when their
subcommand runs, so ``nnunet-tavr --help`` stays fast (no torch, no nnU-Net import).

Errors: one handler here turns the project's error classes (:mod:`nnunet_tavr.errors`) and the
operating system's file errors into one line, ``error: <what, which file, what to do>``, with exit
status 2 (bad input or usage); a subcommand returns 1 when it ran but cases were excluded or
failed, 0 otherwise. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nnunet_tavr import __version__

#: subcommand -> (module, one-line help).  Order is the pipeline's order.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("nnunet_tavr.phantom.cli", "write synthetic TotalSegmentator-like subjects with known ground truth"),
    "derive": ("nnunet_tavr.label_derivation.cli", "derive valve / annulus / aortic-root labels from coarse masks"),
    "convert": ("nnunet_tavr.dataset_conversion.cli", "convert TotalSegmentator (or own CTs) to an nnU-Net raw dataset"),
    "fluoro": ("nnunet_tavr.fluoro.cli", "render angiography frames of the aortic root (C-arm views) from TAVR cases"),
    "trainer-path": ("nnunet_tavr.trainer_path", "print the folder to put in $nnUNet_extTrainer"),
    "compare": ("nnunet_tavr.evaluation.cli", "compare trainers across folds (Dice, IoU, ASSD, HD95, CIs, tests)"),
    "measure": ("nnunet_tavr.measurement.cli", "TAVR measurements (annulus, root, aorta, iliac access) from a segmentation"),
    "landmarks": ("nnunet_tavr.landmarks.cli", "hinge points (world mm) from nnU-Net predictions; errors against a reference"),
    "cardiac": ("nnunet_tavr.cardiac.cli", "chamber volumes, LV mass and their agreement (Dice, Bland-Altman, r) on heart segmentations"),
    "demo": ("nnunet_tavr.demo", "run the whole pipeline on built-in phantom data"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<13} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="nnunet-tavr",
        description="nnU-Net v2 extension for TAVR planning on CT.\n\ncommands:\n" + "\n".join(lines),
        epilog="Run 'nnunet-tavr COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nnunet-tavr {__version__}")
    parser.add_argument("command", choices=list(SUBCOMMANDS), metavar="COMMAND", help=argparse.SUPPRESS)
    return parser


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    """Return the argument parser of one subcommand and the module that runs it."""
    module_name, help_ = SUBCOMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"nnunet-tavr {command}",
        description=(module.__doc__ or help_).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.configure_parser(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        # Lets argparse print the usage, --help, --version, or the "invalid choice" error.
        _top_parser().parse_args(argv[:1] or ["--help"])
        return 2
    parser, module = build_parser(argv[0])
    args = parser.parse_args(argv[1:])
    return run(module.main, args, argv[0])


def run(command, args, name: str) -> int:
    """Run one subcommand's ``main(args)`` with the project's error handling (see the module docstring)."""
    from nnunet_tavr.errors import EXIT_INPUT, InputError, Refused

    try:
        return int(command(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (InputError, Refused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        if exc.filename is None:
            raise
        what = exc.strerror or type(exc).__name__
        print(f"error: nnunet-tavr {name}: {exc.filename}: {what}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
