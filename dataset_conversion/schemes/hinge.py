"""The hinge-point landmark dataset (issue 15): each aortic-valve hinge point is a small labelled
sphere, so nnU-Net's planning, cropping, foreground sampling and splits work unchanged.

Each input case (a TotalSegmentator subject or output folder with the ``aortic_sinuses`` masks:
``right_coronary_cusp``, ``left_coronary_cusp``, ``non_coronary_cusp`` and, to orient the root axis,
``left_ventricular_outflow_tract``) becomes one nnU-Net case: the CT byte for byte and a label map
with a sphere of ``--sphere-mm`` radius around each hinge point derived by
:mod:`nnunet_tavr.label_derivation.hinge` (labels 1 RCC, 2 LCC, 3 NCC). The exact points go into
the case record and, for the whole dataset, ``landmarks.json`` next to ``dataset.json``::

    {"frame": "world (x, y, z) mm, SimpleITK physical frame", "landmarks": ["RCC", "LCC", "NCC"],
     "cases": {"<case>": {"RCC": {"world_xyz_mm": [..], "index_zyx": [..]}, ...}}}

Cases without the three cusp masks are dropped with the reason ``no_cusp_masks`` (or
``cusp_too_small`` / ``degenerate_cusps``) in the manifest.
"""

from __future__ import annotations

import argparse

import numpy as np

from nnunet_tavr.dataset_conversion.scheme import CaseOutput, CaseResult, Scheme
from nnunet_tavr.errors import Excluded, MissingFile
from nnunet_tavr.geometry import index_to_world
from nnunet_tavr.label_derivation.hinge import CUSPS, SHORT, HingeParams, derive_hinge_points
from nnunet_tavr.totalseg import IMAGE_ENDINGS, multilabel_files

#: TotalSegmentator's LVOT mask (task aortic_sinuses): it orients the root axis.
LVOT_NAME = "left_ventricular_outflow_tract"

#: nnU-Net labels of the landmark spheres.
LANDMARK_LABELS = {"background": 0, "RCC": 1, "LCC": 2, "NCC": 3}
#: Name of the dataset-level landmark file (next to dataset.json).
LANDMARKS_JSON = "landmarks.json"
FRAME = "world (x, y, z) mm, SimpleITK physical frame (origin + direction); index_zyx: continuous voxel indices (z, y, x)"


def paint_spheres(shape, spacing, points_mm: dict[str, np.ndarray], radius_mm: float) -> np.ndarray:
    """uint8 (z, y, x) label map: a ball of ``radius_mm`` around each point (mm in the arrays' frame),
    labelled by :data:`LANDMARK_LABELS`; where balls overlap the later landmark wins."""
    labels = np.zeros(shape, np.uint8)
    spacing = np.asarray(spacing, float)
    for name, point in points_mm.items():
        centre = np.asarray(point, float) / spacing
        reach = np.ceil(radius_mm / spacing).astype(int) + 1
        lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
        hi = np.minimum(np.floor(centre).astype(int) + reach + 2, shape)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        inside = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing)) <= radius_mm**2
        view = labels[tuple(slice(a, b) for a, b in zip(lo, hi))]
        view[inside] = LANDMARK_LABELS[name]
    return labels


class HingeScheme(Scheme):
    name = "hinge"
    dataset_id = 315
    dataset_name = "HingePoints"
    description = ("Aortic-valve hinge points (RCC, LCC, NCC nadirs) as labelled spheres, derived by rule from "
                   "TotalSegmentator's aortic_sinuses masks by nnunet-tavr; exact points in landmarks.json (world mm)")
    reference = "Ishizone et al., Aortic root landmark localization with optimal transport loss for heatmap regression"
    license = "see the source dataset (TotalSegmentator: CC BY 4.0)"
    manifest_columns = ("deepest_layer_voxels",)

    def __init__(self, sphere_mm: float = 3.0, params: HingeParams | None = None):
        self.sphere_mm = float(sphere_mm)
        self.params = params or HingeParams()

    def options(self) -> dict:
        return {"sphere_mm": self.sphere_mm, "hinge": self.params.as_dict()}

    def labels(self) -> dict[str, int]:
        return dict(LANDMARK_LABELS)

    def convert_case(self, source) -> CaseResult:
        from nnunet_tavr.subject import load_subject

        structures = {name: name for name in CUSPS} | {"lvot": LVOT_NAME}
        subject = load_subject(source.path, structures=structures, case=source.case_id, multilabel=multilabel_files(source.path))
        if subject.ct_path is None:
            raise MissingFile(f"case {source.case_id}: CT missing in {source.path} (expected ct{', ct'.join(IMAGE_ENDINGS)})")
        missing = [SHORT[n] for n in CUSPS if n not in subject.masks]
        if missing:
            where = "; ".join(f"{n}: {subject.looked_for[n]}" for n in CUSPS if n in subject.looked_for)
            return CaseResult(excluded=("no_cusp_masks", f"no {', '.join(missing)} mask ({where})"), details={"hinge": None})
        try:
            found = derive_hinge_points({n: subject.masks[n] for n in CUSPS}, subject.spacing, subject.masks.get("lvot"), self.params)
        except Excluded as exc:
            return CaseResult(excluded=(exc.code, exc.message), details={"hinge": None})
        geo = subject.geometry
        points = {SHORT[n]: found.points[n] for n in CUSPS}
        landmarks = {}
        for name, p in points.items():
            index = p / np.asarray(geo.spacing)
            landmarks[name] = {"world_xyz_mm": index_to_world(index, geo.spacing, geo.origin, geo.direction).tolist(),
                               "index_zyx": index.tolist(), "mm": p.tolist()}
        labels = paint_spheres(geo.shape, geo.spacing, points, self.sphere_mm)
        support = min(found.layer_voxels.values())  # QC: voxels behind the least supported hinge point
        details = {"hinge": found.to_dict(), "landmarks": landmarks}
        counts = {name: int(np.count_nonzero(labels == value)) for name, value in LANDMARK_LABELS.items() if value}
        return CaseResult(outputs=[CaseOutput(case=source.case_id, labels=labels, geometry=geo, image_file=subject.ct_path,
                                              counts=counts, columns={"deepest_layer_voxels": support},
                                              files={LANDMARKS_JSON: landmarks})],
                          details=details, columns={"deepest_layer_voxels": support})

    def dataset_files(self, folder, records, split_of) -> None:
        """``landmarks.json`` (every kept case's exact points, world mm, and its split) next to ``dataset.json``."""
        from nnunet_tavr.io import write_json

        cases = {}
        for record in records:
            for out in record.get("outputs", []):
                if LANDMARKS_JSON in out.get("files", {}):
                    cases[out["case"]] = {**out["files"][LANDMARKS_JSON], "split": split_of.get(out["case"])}
        write_json({"frame": FRAME, "landmarks": [n for n in LANDMARK_LABELS if n != "background"],
                    "sphere_mm": self.sphere_mm, "cases": dict(sorted(cases.items()))}, folder / LANDMARKS_JSON)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from nnunet_tavr.argtypes import float_range

        g = parser.add_argument_group("scheme hinge (aortic-valve hinge points as labelled spheres)")
        g.add_argument("--sphere-mm", type=float_range(0.5, 20.0), default=None, help="radius of each landmark sphere in mm (default 3)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "HingeScheme":
        sphere = getattr(args, "sphere_mm", None)
        return cls(sphere_mm=3.0 if sphere is None else sphere)
