"""Import already-labelled data: CT + an existing label map + a label mapping -> an nnU-Net dataset.

For the paper's released pseudo-labels, a public dataset such as MM-WHS, or your own annotations:
the cases get the same discovery, manifest, checks, resume and splits as every scheme. When a
case also has TotalSegmentator masks, its label map is derived by rule too and the manifest gives
the per-class Dice of the imported against the derived labels (columns ``dice_<class>``), so
imported labels can be checked against the derivation.

Input
-----
``SOURCE`` is a folder of cases as for the TAVR scheme (``CASE/ct.nii.gz``, optionally with
``CASE/segmentations/`` or multilabel files). Each case's label map is ``LABELS_DIR/<case>.nii.gz``
(``--labels``; any image ending) or, without ``--labels``, ``CASE/<label-name>.nii.gz`` inside the
case folder (``--label-name``, default ``labels``). It must lie on the CT's grid.

The mapping (``--mapping map.json``)::

    {
      "labels": {"background": 0, "aorta": 1, "left_ventricle": 2, ...},   # the dataset's classes
      "map": {"820": "aorta", "500": "left_ventricle", "205": null},        # source value -> class
      "unmapped": "error"                                                   # or "background"
    }

``labels`` is optional (default: the TAVR label map); ``null`` maps a value to background; a value
present in a label map but not in ``map`` drops the case (code ``unmapped_label``) unless
``unmapped`` is ``"background"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nnunet_tavr import totalseg
from nnunet_tavr.dataset_conversion.scheme import CaseOutput, CaseResult, Scheme, count_labels
from nnunet_tavr.errors import InputError, MissingFile
from nnunet_tavr.io import as_label_map, read_array, read_json
from nnunet_tavr.labels import LABELS


class UnmappedLabel(InputError):
    code = "unmapped_label"


def read_mapping(path: str | Path) -> dict:
    """Read and check a mapping file; returns ``{"labels", "map", "unmapped"}`` with int keys in ``map``."""
    return check_mapping(read_json(path, "the label mapping"), str(path))


def check_mapping(raw: dict, where: str = "mapping") -> dict:
    """Validate a mapping (see the module docstring) and normalise it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("map"), dict) or not raw["map"]:
        raise InputError(f"{where}: expected an object with a non-empty \"map\" {{source value: class name or null}}")
    labels = raw.get("labels", dict(LABELS))
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise InputError(f"{where}: \"labels\" must map class names to values with \"background\": 0")
    values = list(labels.values())
    if any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255 for v in values) or len(set(values)) != len(values):
        raise InputError(f"{where}: class values must be distinct whole numbers from 0 to 255, got {labels}")
    mapping = {}
    for key, name in raw["map"].items():
        try:
            value = int(key)
        except ValueError:
            raise InputError(f"{where}: source value {key!r} is not a whole number") from None
        if name is not None and name not in labels:
            raise InputError(f"{where}: source value {key} maps to {name!r}, which is not in \"labels\" ({', '.join(labels)})")
        mapping[value] = labels[name] if name is not None else 0
    unmapped = raw.get("unmapped", "error")
    if unmapped not in ("error", "background"):
        raise InputError(f"{where}: \"unmapped\" must be \"error\" or \"background\", got {unmapped!r}")
    return {"labels": {str(k): int(v) for k, v in labels.items()}, "map": mapping, "unmapped": unmapped}


def remap(array: np.ndarray, mapping: dict[int, int], unmapped: str, case: str, path) -> np.ndarray:
    """The label map in the dataset's values (a lookup table over the values present)."""
    array = as_label_map(array, f"case {case}: {path}")
    present = np.unique(array)
    missing = [int(v) for v in present if int(v) not in mapping and v != 0]
    if missing and unmapped == "error":
        raise UnmappedLabel(f"case {case}: {path} has value(s) {missing[:10]} that the mapping does not name "
                            "(add them to \"map\", or set \"unmapped\": \"background\")")
    out = np.zeros(array.shape, np.uint8)
    for value in present:
        target = mapping.get(int(value), 0)
        if target:
            out[array == value] = target
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two masks; ``None`` when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2.0 * int(np.logical_and(a, b).sum()) / total, 4)


class ImportScheme(Scheme):
    name = "import"
    dataset_id = 302
    dataset_name = "Imported"
    description = "CT with imported label maps (nnunet-tavr convert --scheme import)"
    reference = "see the source of the label maps"
    license = "see the source of the images and labels"

    def __init__(self, mapping: dict, labels_dir: str | None = None, label_name: str = "labels", derivation=None):
        from nnunet_tavr.label_derivation.case import DerivationParams

        self.mapping = mapping  # as read_mapping / check_mapping return it
        self.labels_dir = None if labels_dir is None else str(Path(labels_dir).resolve())
        self.label_name = label_name
        self.derivation = derivation or DerivationParams()

    @property
    def compared(self) -> tuple[str, ...]:
        """Classes of the dataset that the TAVR derivation also makes (compared by Dice)."""
        return tuple(name for name in self.foreground if name in LABELS)

    @property
    def manifest_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("derivation",) + tuple(f"dice_{name}" for name in self.compared)

    def options(self) -> dict:
        return {"mapping": {"labels": self.mapping["labels"], "map": {str(k): v for k, v in sorted(self.mapping["map"].items())},
                            "unmapped": self.mapping["unmapped"]},
                "labels_dir": self.labels_dir, "label_name": self.label_name, "derivation": self.derivation.as_dict()}

    def labels(self) -> dict[str, int]:
        return dict(self.mapping["labels"])

    def label_file(self, source) -> Path:
        folder = Path(self.labels_dir) if self.labels_dir else source.path
        stem = source.case_id if self.labels_dir else self.label_name
        found = totalseg.find_image(folder, stem)
        if found is None:
            raise MissingFile(f"case {source.case_id}: no label map {folder / stem}{{{','.join(totalseg.IMAGE_ENDINGS)}}}")
        return found

    def convert_case(self, source) -> CaseResult:
        from nnunet_tavr.io import read_geometry

        ct = totalseg.find_image(source.path, totalseg.CT_STEM)
        if ct is None:
            raise MissingFile(f"case {source.case_id}: CT missing in {source.path} (expected ct{', ct'.join(totalseg.IMAGE_ENDINGS)})")
        geometry = read_geometry(ct, source.case_id)
        path = self.label_file(source)
        array, label_geometry = read_array(path, source.case_id)
        problem = geometry.mismatch(label_geometry)
        if problem:
            from nnunet_tavr.errors import GridMismatch

            raise GridMismatch(f"case {source.case_id}: {path} is not on the grid of {ct}: {problem}")
        labels = remap(array, self.mapping["map"], self.mapping["unmapped"], source.case_id, path)
        columns = self._agreement(source, labels)
        details = {"label_file": str(path), "values": sorted(int(v) for v in np.unique(array))}
        output = CaseOutput(case=source.case_id, labels=labels, geometry=geometry, image_file=ct,
                            counts=count_labels(labels, self.labels()), columns=columns)
        return CaseResult(outputs=[output], details=details, columns=columns)

    def _agreement(self, source, labels: np.ndarray) -> dict:
        """Per-class Dice of the imported labels against the TAVR derivation, where masks exist."""
        if not self.compared:
            return {"derivation": "no TAVR classes to compare"}
        from nnunet_tavr.label_derivation.case import derive_case, load_tavr_subject

        try:
            subject = load_tavr_subject(source.path, case=source.case_id, multilabel=totalseg.multilabel_files(source.path))
        except InputError as exc:
            return {"derivation": f"not derived ({exc.code})"}
        if not subject.masks:
            return {"derivation": "no TotalSegmentator masks"}
        derivation = derive_case(subject, self.derivation, cite_files=False)
        if not derivation.ok:
            return {"derivation": f"excluded ({derivation.result.excluded_code})"}
        ours = self.labels()
        return {"derivation": "derived", **{f"dice_{name}": dice(labels == ours[name], derivation.labels == LABELS[name]) for name in self.compared}}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("scheme import (existing label maps)")
        g.add_argument("--mapping", type=Path, help="label mapping JSON: {\"labels\": {...}, \"map\": {source value: class}} (required with --scheme import)")
        g.add_argument("--labels", type=Path, dest="labels_dir", help="folder of label maps named <case>.nii.gz (default: <label-name> inside each case folder)")
        g.add_argument("--label-name", default="labels", help="file stem of the label map inside each case folder (default labels)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ImportScheme":
        from nnunet_tavr.label_derivation.case import DerivationParams

        if getattr(args, "mapping", None) is None:
            raise InputError("--scheme import needs --mapping FILE.json (source label values -> class names)")
        if args.labels_dir is not None and not args.labels_dir.is_dir():
            raise MissingFile(f"--labels {args.labels_dir}: folder not found")
        given = {k: getattr(args, k) for k in ("valve_mm", "annulus_mm") if getattr(args, k, None) is not None}
        return cls(read_mapping(args.mapping), args.labels_dir, args.label_name, DerivationParams(**given))
