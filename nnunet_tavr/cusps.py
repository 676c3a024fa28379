"""Reading the three cusp hinge points (nadirs) of a case from JSON.

The C-arm views (:func:`nnunet_tavr.carm.cusp_views`) need the nadirs of the right, left and
non-coronary cusps as world (LPS) points in mm. Whatever tool found them, a small JSON file gives
them; accepted shapes::

    {"right": [x, y, z], "left": [x, y, z], "non": [x, y, z]}                   # LPS mm (default)
    {"frame": "zyx_mm", "rcc": [z, y, x], "lcc": [...], "ncc": [...]}          # the arrays' frame
    {"hinge_points": {"right_coronary_cusp": {"value": [x, y, z]}, ...}}       # nested, with values

Keys are matched without case: ``right`` / ``rcc`` / ``right_coronary`` / ``right_coronary_cusp``
(likewise ``left`` / ``lcc`` and ``non`` / ``ncc`` / ``non_coronary``); a value is a list of three
numbers or an object with ``value``, ``lps_mm`` or ``point`` holding one. ``"frame": "zyx_mm"``
(or ``"array"``) means the arrays' physical frame ((z, y, x) mm, ``index * spacing``), converted
with the image's origin and direction; anything else, or no ``frame``, means LPS.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_tavr.errors import InputError, MissingFile

ALIASES = {
    "right": ("right", "rcc", "r", "right_coronary", "right_coronary_cusp", "right_cusp"),
    "left": ("left", "lcc", "l", "left_coronary", "left_coronary_cusp", "left_cusp"),
    "non": ("non", "ncc", "n", "non_coronary", "non_coronary_cusp", "noncoronary", "non_cusp"),
}
ARRAY_FRAMES = ("zyx_mm", "zyx", "array", "arrays")


def _point(value, where: str) -> np.ndarray:
    if isinstance(value, dict):
        for key in ("value", "lps_mm", "point", "mm"):
            if key in value:
                return _point(value[key], where)
        raise InputError(f"{where}: no 'value' / 'lps_mm' / 'point' in {value}")
    try:
        point = np.asarray(value, float)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {value!r} is not a point (three numbers)") from None
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InputError(f"{where}: {value!r} is not a point (three finite numbers)")
    return point


def parse_cusp_points(data: dict, geometry=None, where: str = "hinge points") -> dict[str, np.ndarray]:
    """``{"right", "left", "non"}`` -> LPS points (mm) from one of the accepted shapes."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object")
    frame = str(data.get("frame", "lps")).lower()
    for nested in ("hinge_points", "cusps", "points", "landmarks"):
        if isinstance(data.get(nested), dict):
            inner = dict(data[nested])
            inner.setdefault("frame", frame)
            return parse_cusp_points(inner, geometry, where)
    lower = {str(k).lower(): v for k, v in data.items()}
    points = {}
    for name, aliases in ALIASES.items():
        found = [a for a in aliases if a in lower]
        if not found:
            raise InputError(f"{where}: no {name} cusp point (one of {', '.join(aliases[:4])}, ...)")
        points[name] = _point(lower[found[0]], f"{where}: {found[0]}")
    if frame in ARRAY_FRAMES:
        if geometry is None:
            raise InputError(f"{where}: points in the arrays' frame need the image geometry")
        from nnunet_tavr.carm import array_to_world

        points = {k: array_to_world(v, geometry) for k, v in points.items()}
    return points


def read_cusp_points(path, geometry=None, case: str | None = None) -> dict[str, np.ndarray]:
    """Read a hinge-point JSON file (see the module docstring)."""
    path = Path(path)
    where = f"case {case}: {path}" if case else str(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFile(f"{where}: hinge-point file not found") from None
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None
    return parse_cusp_points(data, geometry, where)


def find_cusp_points(source, case: str, geometry=None) -> dict[str, np.ndarray] | None:
    """The hinge points of ``case`` from ``source``: a folder of ``<case>.json`` files, or one JSON
    file mapping case ids to point sets (or holding one point set). ``None`` when the case has none."""
    if source is None:
        return None
    source = Path(source)
    if source.is_dir():
        path = source / f"{case}.json"
        return read_cusp_points(path, geometry, case) if path.is_file() else None
    try:
        data = json.loads(source.read_text())
    except ValueError as exc:
        raise InputError(f"{source}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and case in data:
        return parse_cusp_points(data[case], geometry, f"case {case}: {source}")
    names = {a for aliases in ALIASES.values() for a in aliases} | {"hinge_points", "cusps", "points", "landmarks", "frame"}
    if isinstance(data, dict) and data and not any(str(k).lower() in names for k in data):
        return None  # a mapping of other cases
    return parse_cusp_points(data, geometry, f"case {case}: {source}")
