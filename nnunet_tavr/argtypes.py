"""argparse ``type=`` validators: every numeric option is checked where it is parsed.

Nonsense (``--confidence 2``, ``--height nan``, ``-np 0``) is refused by argparse with the
option's name and the allowed range, before any work is done; nothing is computed from it.

    parser.add_argument("--valve-mm", type=positive_float, default=4.5)
    parser.add_argument("--confidence", type=open_interval(0.0, 1.0), default=0.95)
    parser.add_argument("-np", type=at_least(1), default=1)
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(text: str, kind: type):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _named(check: Callable, name: str) -> Callable:
    check.__name__ = name  # argparse names the type in its messages ("invalid <name> value")
    return check


def finite_float(text: str) -> float:
    """Any finite number."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """A whole number >= ``minimum``."""

    def check(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
        return value

    return _named(check, f"integer >= {minimum}")


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``[low, high]``."""

    def check(text: str) -> int:
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be from {low} to {high}")
        return value

    return _named(check, f"integer in [{low}, {high}]")


def float_range(low: float, high: float) -> Callable[[str], float]:
    """A finite number in the closed interval ``[low, high]``."""

    def check(text: str) -> float:
        value = _number(text, float)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be from {low:g} to {high:g}")
        return value

    return _named(check, f"number in [{low:g}, {high:g}]")


def open_interval(low: float, high: float) -> Callable[[str], float]:
    """A finite number strictly between ``low`` and ``high`` (e.g. a confidence level)."""

    def check(text: str) -> float:
        value = _number(text, float)
        if not low < value < high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be strictly between {low:g} and {high:g}")
        return value

    return _named(check, f"number in ({low:g}, {high:g})")


def dataset_id(text: str) -> int:
    """An nnU-Net dataset id (1-999)."""
    from nnunet_tavr.errors import InputError
    from nnunet_tavr.folders import check_dataset_id

    try:
        return check_dataset_id(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def dataset_name(text: str) -> str:
    """A dataset name that can name a folder (no path separators, no "..")."""
    from nnunet_tavr.errors import InputError
    from nnunet_tavr.folders import check_dataset_name

    try:
        return check_dataset_name(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def unique(parser: argparse.ArgumentParser, values, option: str):
    """``values`` if no value repeats; otherwise ``parser.error`` naming the option and the repeat."""
    seen, repeated = set(), []
    for v in values or []:
        (repeated.append(v) if v in seen else seen.add(v))
    if repeated:
        parser.error(f"argument {option}: {', '.join(map(str, dict.fromkeys(repeated)))} given more than once")
    return values
