"""The three aortic-valve hinge points: their names, and reading them from JSON.

The hinge points are the nadirs of the right, left and non-coronary cusps (``RCC``, ``LCC``,
``NCC``). ``measure`` puts the annulus plane through them and reports calcium per cusp, ``fluoro``
and the C-arm views (:func:`nnunet_tavr.carm.cusp_views`) use them too; all read them here.

Accepted JSON, for one case or many::

    {"RCC": {"world_xyz_mm": [x, y, z]}, "LCC": {...}, "NCC": {...}}      # landmarks, truth.json
    {"cases": {"CASE": {"RCC": ..., ...}, ...}}                           # landmarks.json of many cases
    {"hinge_points": {...}}  {"landmarks": {...}}  {"cusps": {...}}       # nested under one key
    {"right": [x, y, z], "left": [...], "non": [...]}                      # plain lists
    {"frame": "zyx_mm", "rcc": [z, y, x], ...}                             # the arrays' frame

Names are matched without case: ``RCC`` / ``right`` / ``right_coronary_cusp`` (likewise ``LCC``
and ``NCC``). A point is a list of three numbers or an object holding one under
``world_xyz_mm``, ``lps_mm``, ``value``, ``point`` or ``mm``. Coordinates are world (x, y, z) mm
(LPS for DICOM-derived images) unless ``"frame": "zyx_mm"`` says the arrays' frame ((z, y, x) mm,
``index * spacing``), which needs the image geometry. A folder holds one ``<case>.json`` per case.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_tavr.errors import InputError, MissingFile
from nnunet_tavr.geometry import array_to_world, world_to_array

#: The cusps, in the order right, left, non-coronary.
NAMES: tuple[str, ...] = ("RCC", "LCC", "NCC")
ALIASES: dict[str, tuple[str, ...]] = {
    "RCC": ("rcc", "right", "r", "right_coronary", "right_coronary_cusp", "right_cusp"),
    "LCC": ("lcc", "left", "l", "left_coronary", "left_coronary_cusp", "left_cusp"),
    "NCC": ("ncc", "non", "n", "non_coronary", "non_coronary_cusp", "noncoronary", "non_cusp"),
}
ARRAY_FRAMES = ("zyx_mm", "zyx", "array", "arrays")
_NESTED = ("hinge_points", "landmarks", "cusps", "points")
_VALUE_KEYS = ("world_xyz_mm", "lps_mm", "value", "point", "mm")


def canonical(name: str) -> str | None:
    """``RCC``, ``LCC`` or ``NCC`` for any accepted spelling of a cusp's name, else ``None``."""
    lower = str(name).lower()
    return next((short for short, aliases in ALIASES.items() if lower == short.lower() or lower in aliases), None)


def _point(value, where: str) -> np.ndarray:
    if isinstance(value, dict):
        for key in _VALUE_KEYS:
            if value.get(key) is not None:
                return _point(value[key], where)
        raise InputError(f"{where}: no {' / '.join(_VALUE_KEYS)} in {value}")
    try:
        point = np.asarray(value, float)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {value!r} is not a point (three numbers)") from None
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InputError(f"{where}: {value!r} is not a point (three finite numbers)")
    return point


def parse(data, geometry=None, where: str = "hinge points", case: str | None = None) -> dict[str, np.ndarray] | None:
    """``{"RCC", "LCC", "NCC"}`` -> world (x, y, z) mm from one of the accepted shapes.

    ``None`` when ``data`` holds no hinge point (or, with ``case``, none for that case).

    Raises
    ------
    InputError
        Some but not all three points, a value that is not a point, or points in the arrays'
        frame without a geometry.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object")
    if isinstance(data.get("cases"), dict):
        if case is None or case not in data["cases"]:
            return None
        return parse(data["cases"][case], geometry, f"{where}: case {case}")
    frame = str(data.get("frame", "world")).lower()
    for key in _NESTED:
        if isinstance(data.get(key), dict):
            return parse({"frame": frame, **data[key]}, geometry, where, case)
    points = {}
    for key, value in data.items():
        short = canonical(key)
        if short is not None:
            points[short] = _point(value, f"{where}: {key}")
    if not points:
        return None
    if set(points) != set(NAMES):
        raise InputError(f"{where}: has {', '.join(sorted(points))}; all three of {', '.join(NAMES)} are needed")
    if frame in ARRAY_FRAMES:
        if geometry is None:
            raise InputError(f"{where}: points in the arrays' frame need the image geometry")
        points = to_world(points, geometry)
    return {name: points[name] for name in NAMES}


def read(source, case: str, geometry=None) -> dict[str, np.ndarray] | None:
    """The hinge points of ``case`` (world mm) from a JSON file (one case, or many under
    ``cases``) or a folder of ``<case>.json``; ``None`` when the source has none for the case."""
    if source is None:
        return None
    source = Path(source)
    path = source / f"{case}.json" if source.is_dir() else source
    if source.is_dir() and not path.is_file():
        return None
    where = f"case {case}: {path}"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFile(f"{where}: hinge-point file not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: not a JSON file of hinge points: {exc}") from None
    return parse(data, geometry, where, case)


def to_world(points: dict[str, np.ndarray], geometry) -> dict[str, np.ndarray]:
    """Points of the arrays' frame ((z, y, x) mm) -> world (x, y, z) mm."""
    return {name: array_to_world(np.asarray(p, float), geometry) for name, p in points.items()}


def to_array_frame(points: dict[str, np.ndarray], geometry) -> dict[str, np.ndarray]:
    """World (x, y, z) mm -> the arrays' frame ((z, y, x) mm), where every measurement is made."""
    return {name: world_to_array(np.asarray(p, float), geometry) for name, p in points.items()}
