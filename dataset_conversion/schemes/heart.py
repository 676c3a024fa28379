"""The whole-heart dataset of seed 004: its cardiovascular structures from TotalSegmentator masks.

Each input case (a TotalSegmentator dataset subject, or a folder with a CT and TotalSegmentator
masks or multilabel files) becomes one nnU-Net case: the CT (byte for byte, or cropped to the heart
with ``--crop-margin-mm``) and a label map of the seed's structures. Classes and sources
(:mod:`nnunet_tavr.cardiac.structures`; values are consecutive in this order over the classes the
dataset has):

====  ============================  ========================================================
abbr  class                         TotalSegmentator masks (union)
====  ============================  ========================================================
PV    ``pulmonary_veins``           ``pulmonary_vein`` (v2 ``total``)
LA    ``left_atrium``               ``heart_atrium_left`` (v1 ``total`` / ``heartchambers_highres``)
                                    + ``atrial_appendage_left`` (v2 ``total``): the seed's LA
                                    includes the appendage
LVC   ``left_ventricle_cavity``     ``heart_ventricle_left``
LVM   ``left_ventricle_myocardium`` ``heart_myocardium``
Ao    ``aorta``                     ``aorta``
CS    ``coronary_sinus``            none in TotalSegmentator: only with ``--coronary-sinus-mask NAME``
SVC   ``superior_vena_cava``        ``superior_vena_cava`` (v2 ``total``)
RA    ``right_atrium``              ``heart_atrium_right``
RVC   ``right_ventricle_cavity``    ``heart_ventricle_right``
PA    ``pulmonary_artery``          ``pulmonary_artery`` (v1 ``total`` / ``heartchambers_highres``)
====  ============================  ========================================================

Where masks overlap (they come from different TotalSegmentator tasks), :data:`PAINT_ORDER`
decides (later wins) and the manifest counts the contested voxels (``overlap_voxels``).

A case is dropped, with its reason in the manifest, when a required mask is not there
(``missing_mask``), when every heart structure is empty (``no_heart``: a scan without the chest)
or when some required structure is empty (``empty_mask``).
"""

from __future__ import annotations

import argparse

import numpy as np

from nnunet_tavr.cardiac.structures import BY_NAME, CORONARY_SINUS, STRUCTURES
from nnunet_tavr.dataset_conversion.scheme import CaseOutput, CaseResult, Scheme, count_labels
from nnunet_tavr.errors import MissingFile, UsageError
from nnunet_tavr.totalseg import CT_STEM, IMAGE_ENDINGS, multilabel_files

#: Exclusive label map: where masks overlap, later classes win. Chambers win over the vessels
#: entering them (the ``total`` task's vessel masks run into the chambers at the ostia), the
#: myocardium over the cavities (papillary muscles, trabeculae), the aorta over the ventricle (as
#: in the TAVR label map), and the coronary sinus, thin and supplied on purpose, last.
PAINT_ORDER: tuple[str, ...] = (
    "pulmonary_veins", "superior_vena_cava", "pulmonary_artery", "right_atrium", "left_atrium",
    "right_ventricle_cavity", "left_ventricle_cavity", "left_ventricle_myocardium", "aorta", CORONARY_SINUS,
)
#: The classes of the default dataset: every seed structure with a TotalSegmentator source.
DEFAULT_STRUCTURES: tuple[str, ...] = tuple(s.name for s in STRUCTURES if s.totalseg)
#: Structures that make a case a scan of the heart (all empty: ``no_heart``).
CHAMBERS = ("left_atrium", "left_ventricle_cavity", "left_ventricle_myocardium", "right_atrium", "right_ventricle_cavity")
#: Why a case is dropped.
EXCLUSION_CODES = {
    "missing_mask": "a required TotalSegmentator mask is not there (the detail says where it was looked for)",
    "no_heart": "every heart structure is empty: the scan does not show the heart",
    "empty_mask": "a required structure is empty",
}
assert set(PAINT_ORDER) == {s.name for s in STRUCTURES}


class HeartScheme(Scheme):
    name = "heart"
    dataset_id = 304
    dataset_name = "Heart"
    description = ("Whole heart (seed 004's structures: pulmonary veins, left atrium with appendage, LV cavity and "
                   "myocardium, aorta, superior vena cava, right atrium, RV cavity, pulmonary artery) from "
                   "TotalSegmentator masks by nnunet-tavr")
    reference = "Deep-learning-based whole heart segmentation of pre-TAVI ECG-gated CT (seed 004)"
    license = "see the source dataset (TotalSegmentator: CC BY 4.0)"

    def __init__(self, structures: tuple[str, ...] = DEFAULT_STRUCTURES, coronary_sinus_mask: str | None = None,
                 appendage: bool = True, crop_margin_mm: float | None = None):
        unknown = [s for s in structures if s not in BY_NAME or not BY_NAME[s].totalseg]
        if unknown:
            raise UsageError(f"--structures: {', '.join(unknown)} is not a structure with a TotalSegmentator source "
                             f"(choose from {', '.join(DEFAULT_STRUCTURES)}; the coronary sinus needs --coronary-sinus-mask)")
        chosen = set(structures) | ({CORONARY_SINUS} if coronary_sinus_mask else set())
        self.structures = tuple(s.name for s in STRUCTURES if s.name in chosen)  # the seed's order
        self.coronary_sinus_mask = coronary_sinus_mask
        self.appendage = bool(appendage)
        self.crop_margin_mm = None if crop_margin_mm is None else float(crop_margin_mm)

    @property
    def manifest_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("overlap_voxels", "crop") + tuple(f"ml_{name}" for name in self.structures)

    def options(self) -> dict:
        return {"structures": list(self.structures), "coronary_sinus_mask": self.coronary_sinus_mask,
                "appendage": self.appendage, "crop_margin_mm": self.crop_margin_mm}

    def labels(self) -> dict[str, int]:
        return {"background": 0, **{name: i for i, name in enumerate(self.structures, 1)}}

    def sources(self) -> dict[str, tuple[str, ...]]:
        """Class -> the masks whose union it is (TotalSegmentator names, or the user's CS mask)."""
        out = {}
        for name in self.structures:
            if name == CORONARY_SINUS:
                out[name] = (self.coronary_sinus_mask,)
            elif name == "left_atrium" and not self.appendage:
                out[name] = ("heart_atrium_left",)
            else:
                out[name] = BY_NAME[name].totalseg
        return out

    def convert_case(self, source) -> CaseResult:
        from nnunet_tavr.subject import load_subject

        sources = self.sources()
        masks_wanted = {mask: mask for masks in sources.values() for mask in masks}
        subject = load_subject(source.path, structures=masks_wanted, case=source.case_id, multilabel=multilabel_files(source.path))
        if subject.ct_path is None:
            raise MissingFile(f"case {source.case_id}: CT missing in {source.path} (expected {CT_STEM}{', ct'.join(IMAGE_ENDINGS)})")
        result = CaseResult(details={"mask_files": {k: str(v) for k, v in subject.mask_paths.items()}})
        if subject.looked_for:
            missing = sorted(subject.looked_for)
            result.excluded = ("missing_mask", f"case {source.case_id}: no {', '.join(missing)}: " + "; ".join(
                f"{m}: {subject.looked_for[m]}" for m in missing[:3]))
            return result
        classes = {name: np.logical_or.reduce([subject.masks[m] for m in masks]) for name, masks in sources.items()}
        empty = [name for name, mask in classes.items() if not mask.any()]
        if all(name in empty for name in CHAMBERS if name in classes) and any(name in classes for name in CHAMBERS):
            result.excluded = ("no_heart", f"case {source.case_id}: every heart chamber mask is empty (a scan without the heart?)")
            return result
        if empty:
            result.excluded = ("empty_mask", f"case {source.case_id}: {', '.join(empty)} empty in "
                               + ", ".join(sorted({str(subject.mask_paths[m]) for n in empty for m in sources[n]})))
            return result
        labels, overlap = paint_labels(classes, self.labels())
        geometry, image, crop = subject.geometry, None, None
        if self.crop_margin_mm is not None:
            box = heart_box(classes, subject.spacing, self.crop_margin_mm)
            labels, geometry = labels[box], crop_geometry(subject.geometry, box)
            image = subject.read_ct()[box]
            crop = [[s.start, s.stop] for s in box]
        counts = count_labels(labels, self.labels())
        voxel_ml = float(np.prod(subject.spacing)) / 1000.0
        columns = {"overlap_voxels": overlap, "crop": "" if crop is None else "x".join(str(s[1] - s[0]) for s in crop),
                   **{f"ml_{name}": round(counts[name] * voxel_ml, 3) for name in self.structures}}
        result.details.update(crop=crop, volumes_ml={name: round(n * voxel_ml, 3) for name, n in counts.items()})
        result.columns = columns
        result.outputs.append(CaseOutput(case=source.case_id, labels=labels, geometry=geometry,
                                         image_file=subject.ct_path if image is None else None, image=image,
                                         counts=counts, columns=columns))
        result.write_qc = lambda path: _case_figure(path, subject, labels, image, self.labels())
        return result

    def dataset_figures(self, folder, records) -> None:
        """The volume of every structure over the kept cases (``qc/volumes.png``)."""
        from nnunet_tavr.cardiac.figures import plot_volume_distribution

        volumes = [r["details"]["volumes_ml"] for r in records if (r.get("details") or {}).get("volumes_ml")]
        if volumes:
            plot_volume_distribution(folder / "qc" / "volumes.png", volumes, self.structures,
                                     title=f"{folder.name}: {len(volumes)} kept cases")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from nnunet_tavr.argtypes import float_range

        g = parser.add_argument_group("scheme heart (seed 004's whole heart)")
        g.add_argument("--structures", nargs="+", default=None, metavar="NAME",
                       help=f"the classes of the dataset (default: all of {', '.join(DEFAULT_STRUCTURES)})")
        g.add_argument("--coronary-sinus-mask", default=None, metavar="NAME",
                       help="file stem of a coronary-sinus mask in each case's mask folder (TotalSegmentator has none): "
                            "adds the class coronary_sinus")
        g.add_argument("--no-appendage", action="store_true",
                       help="left atrium without the appendage (TotalSegmentator v1 masks have none; the seed's LA includes it)")
        g.add_argument("--crop-margin-mm", type=float_range(0.0, 200.0), default=None, metavar="MM",
                       help="crop each case to the heart chambers' bounding box grown by MM (default: the whole CT)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "HeartScheme":
        structures = tuple(args.structures) if getattr(args, "structures", None) else DEFAULT_STRUCTURES
        return cls(structures, getattr(args, "coronary_sinus_mask", None), not getattr(args, "no_appendage", False),
                   getattr(args, "crop_margin_mm", None))


def paint_labels(classes: dict[str, np.ndarray], values: dict[str, int]) -> tuple[np.ndarray, int]:
    """The exclusive label map (uint8) in :data:`PAINT_ORDER`, and the number of voxels claimed by
    more than one class."""
    shape = next(iter(classes.values())).shape
    labels = np.zeros(shape, np.uint8)
    claims = np.zeros(shape, np.uint8)
    for name in PAINT_ORDER:
        if name in classes:
            labels[classes[name]] = values[name]
            claims += classes[name]
    return labels, int((claims > 1).sum())


def heart_box(classes: dict[str, np.ndarray], spacing, margin_mm: float):
    """Bounding box (slices) of the heart chambers, grown by ``margin_mm`` (clipped to the image)."""
    from nnunet_tavr.geometry import bounding_box, grow_box_mm

    chambers = np.logical_or.reduce([classes[n] for n in CHAMBERS if n in classes] or list(classes.values()))
    return grow_box_mm(bounding_box(chambers), margin_mm, spacing, chambers.shape)


def crop_geometry(geometry, box):
    """The grid of the crop ``box`` of ``geometry``: same spacing and direction, origin moved to
    the crop's first voxel."""
    from nnunet_tavr.io import Geometry

    start_xyz = np.array([s.start for s in box][::-1], float) * np.array(geometry.spacing[::-1])
    direction = np.asarray(geometry.direction, float).reshape(3, 3)
    origin = np.asarray(geometry.origin, float) + direction @ start_xyz
    return Geometry(shape=tuple(s.stop - s.start for s in box), spacing=geometry.spacing,
                    origin=tuple(float(o) for o in origin), direction=geometry.direction)


def _case_figure(path, subject, labels, image, values) -> None:
    from nnunet_tavr.cardiac.figures import plot_case_overlay

    ct = image if image is not None else subject.read_ct()
    plot_case_overlay(path, ct, labels, values, subject.spacing, title=subject.case)
