"""Hinge points for ``measure``: the clinical annulus plane (the "virtual basal ring" through the
nadirs of the three cusps) and the per-cusp hinge-point positions.

A case's hinge points come from one of

- ``--hinge-points JSON``: a ``landmarks.json`` (``nnunet-tavr landmarks`` output: predicted; the
  ``hinge`` scheme's: derived), a phantom ``truth.json`` (``hinge_points``), or any shape
  :mod:`nnunet_tavr.hinge_points` reads; world coordinates are mapped onto the segmentation's grid
  with its origin and direction;
- ``--cusps DIR``: TotalSegmentator's ``aortic_sinuses`` masks of the case, from which
  :mod:`nnunet_tavr.label_derivation.hinge` derives them.

Points are in the arrays' frame (``index * spacing``, mm, (z, y, x)) like every measurement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_tavr.errors import GridMismatch, InputError
from nnunet_tavr.geometry import DegeneratePlane, plane_through, signed_distance
from nnunet_tavr.hinge_points import NAMES, canonical
from nnunet_tavr.measurement.record import Section

PLANE_METHOD = "plane through the three hinge points (RCC, LCC, NCC nadirs): the virtual basal ring"


def derive_from_cusps(folder: Path, case: str, geometry) -> dict[str, np.ndarray]:
    """Hinge points (mm, arrays' frame) derived from the cusp masks in ``folder`` (on the grid of
    the segmentation).

    Raises
    ------
    InputError
        Masks on another grid; :class:`~nnunet_tavr.errors.Excluded` when the rule does not apply.
    """
    from nnunet_tavr.label_derivation.hinge import CUSPS, derive_hinge_points
    from nnunet_tavr.subject import load_subject
    from nnunet_tavr.totalseg import multilabel_files

    structures = {n: n for n in CUSPS} | {"lvot": "left_ventricular_outflow_tract"}
    subject = load_subject(folder, structures=structures, case=case, multilabel=multilabel_files(folder))
    problem = geometry.mismatch(subject.geometry)
    if problem:
        raise GridMismatch(f"case {case}: cusp masks in {folder} are not on the segmentation's grid: {problem}")
    found = derive_hinge_points({n: subject.masks.get(n) for n in CUSPS}, geometry.spacing, subject.masks.get("lvot"))
    return {canonical(n): p for n, p in found.points.items()}


def hinge_plane(points: dict[str, np.ndarray]) -> dict:
    """``centre``, ``normal`` (unit; its sign is set by the annulus measurement) and ``method``."""
    try:
        centre, normal = plane_through(*(points[n] for n in NAMES))
    except DegeneratePlane as exc:
        raise InputError(f"hinge points do not span a plane: {exc}") from None
    return {"centre": centre, "normal": normal, "method": PLANE_METHOD}


def hinge_section(points: dict[str, np.ndarray], annulus: Section, source: str) -> Section:
    """Per-cusp hinge-point positions (mm) and their distances to the annulus contour's plane."""
    section = Section("hinge_points")
    section.add("source", source, "", "where the hinge points came from")
    centre, normal = annulus.get("centre"), annulus.get("normal")
    for name in NAMES:
        section.add(name, np.asarray(points[name], float), "mm", f"{name} hinge point (nadir), (z, y, x) in index * spacing")
        if centre is not None and normal is not None:
            d = float(signed_distance(np.asarray(points[name], float), centre, normal))
            section.add(f"{name}_height", d, "mm", f"{name} above the measured annulus plane along its normal (into the aorta)")
    spread = [float(np.linalg.norm(points[a] - points[b])) for a, b in (("RCC", "LCC"), ("LCC", "NCC"), ("NCC", "RCC"))]
    section.add("inter_hinge_distances", spread, "mm", "RCC-LCC, LCC-NCC, NCC-RCC distances")
    return section
