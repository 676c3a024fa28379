"""Reference landmarks (world mm) for ``nnunet-tavr landmarks --reference``.

Accepted references:

- a ``landmarks.json`` file (written by the ``hinge`` scheme, or by ``nnunet-tavr landmarks``);
- an nnU-Net raw dataset folder holding ``landmarks.json``, or its id / ``DatasetXXX_Name``
  (resolved in ``$nnUNet_raw``);
- a folder of subjects with ``truth.json`` (cusped phantoms: ``hinge_points`` by construction).
"""

from __future__ import annotations

import json
from pathlib import Path

from nnunet_tavr.errors import InputError, MissingFile

LANDMARKS_JSON = "landmarks.json"
SHORT = {"right_coronary_cusp": "RCC", "left_coronary_cusp": "LCC", "non_coronary_cusp": "NCC"}


def _from_landmarks_json(path: Path) -> dict[str, dict[str, list[float]]]:
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{path}: not JSON ({exc})") from None
    cases = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(cases, dict):
        raise InputError(f"{path}: no 'cases' object (expected the landmarks.json of the hinge scheme)")
    out = {}
    for case, points in cases.items():
        out[case] = {name: p["world_xyz_mm"] for name, p in points.items() if isinstance(p, dict) and "world_xyz_mm" in p}
    return out


def _from_truth_folders(folder: Path) -> dict[str, dict[str, list[float]]]:
    out = {}
    for truth in sorted(folder.glob("*/truth.json")):
        doc = json.loads(truth.read_text())
        hinge = doc.get("hinge_points")
        if hinge:
            out[truth.parent.name] = {SHORT.get(n, n): p["world_xyz_mm"] for n, p in hinge.items()}
    return out


def load_reference(reference: str) -> tuple[dict[str, dict[str, list[float]]], Path]:
    """``(case -> landmark -> world (x, y, z) mm, the file or folder read)``.

    Raises
    ------
    MissingFile
        Nothing usable found where ``reference`` points.
    """
    path = Path(reference)
    if path.is_file():
        return _from_landmarks_json(path), path
    if path.is_dir():
        if (path / LANDMARKS_JSON).is_file():
            return _from_landmarks_json(path / LANDMARKS_JSON), path / LANDMARKS_JSON
        found = _from_truth_folders(path)
        if found:
            return found, path
        raise MissingFile(f"--reference {path}: no {LANDMARKS_JSON} and no */truth.json with hinge_points")
    from nnunet_tavr.folders import NnunetFolders

    folders = NnunetFolders.resolve()
    try:
        dataset = Path(folders.raw or ".") / folders.find_dataset(reference)
    except InputError as exc:  # not a dataset id either
        raise MissingFile(f"--reference {reference}: not a file, a folder or a dataset in $nnUNet_raw ({exc})") from None
    if not (dataset / LANDMARKS_JSON).is_file():
        raise MissingFile(f"--reference {reference}: {dataset / LANDMARKS_JSON} not found (convert with --scheme hinge)")
    return _from_landmarks_json(dataset / LANDMARKS_JSON), dataset / LANDMARKS_JSON
