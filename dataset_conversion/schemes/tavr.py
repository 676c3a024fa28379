"""The TAVR dataset (paper section 2.1): 7 classes derived by rule from TotalSegmentator masks.

Each input case (a TotalSegmentator dataset subject, or a folder with a CT and TotalSegmentator
masks or multilabel files) becomes one nnU-Net case: the CT byte for byte and the label map of
:mod:`nnunet_tavr.labels`. A case the rules cannot be applied to is dropped with the reason
(:data:`nnunet_tavr.label_derivation.labelmap.EXCLUSION_CODES`).

With ``--calcium`` the dataset has an 8th class, ``calcium`` (label 8): a *pseudo-label* found by
rule in the CT (:mod:`nnunet_tavr.label_derivation.calcium`: voxels above a contrast-adaptive
threshold in the valve, annulus, LVOT, root, aorta and iliac regions), painted over the anatomy. A
case whose CT is not in HU or not contrast-enhanced is then dropped with that reason
(:data:`nnunet_tavr.label_derivation.calcium.EXCLUSION_CODES`).
"""

from __future__ import annotations

import argparse

from nnunet_tavr.dataset_conversion.scheme import CaseOutput, CaseResult, Scheme
from nnunet_tavr.errors import MissingFile
from nnunet_tavr.label_derivation.case import DerivationParams, derive_case, load_tavr_subject, write_qc
from nnunet_tavr.argtypes import float_range
from nnunet_tavr.label_derivation.calcium import CalciumParams, calcium_of_derivation, paint_calcium
from nnunet_tavr.labels import LABELS, LABELS_WITH_CALCIUM
from nnunet_tavr.totalseg import IMAGE_ENDINGS, multilabel_files


class TavrScheme(Scheme):
    name = "tavr"
    dataset_id = 301
    dataset_name = "TAVR"
    description = ("TAVR anatomy (aorta, left ventricle, aortic root, valve, annulus, iliac arteries) derived from "
                   "TotalSegmentator masks by nnunet-tavr (rule-based valve/annulus/aortic-root pseudo-labels)")
    reference = "Semantic Segmentation for Preoperative Planning in Transcatheter Aortic Valve Replacement"
    license = "see the source dataset (TotalSegmentator: CC BY 4.0)"
    manifest_columns = ("root_end_mm",)

    def __init__(self, params: DerivationParams | None = None, require_iliacs: bool = False, calcium: CalciumParams | None = None):
        self.params = params or DerivationParams()
        self.require_iliacs = bool(require_iliacs)
        self.calcium = calcium
        if calcium is not None:  # only then, so that the 7-class dataset stays what it was
            self.manifest_columns = self.manifest_columns + CALCIUM_COLUMNS
            self.description = self.description + CALCIUM_DESCRIPTION

    def options(self) -> dict:
        options = {"require_iliacs": self.require_iliacs, "derivation": self.params.as_dict()}
        if self.calcium is not None:
            options["calcium"] = self.calcium.as_dict()
        return options

    def labels(self) -> dict[str, int]:
        return dict(LABELS if self.calcium is None else LABELS_WITH_CALCIUM)

    def convert_case(self, source) -> CaseResult:
        subject = load_tavr_subject(source.path, case=source.case_id, multilabel=multilabel_files(source.path))
        if subject.ct_path is None:
            raise MissingFile(f"case {source.case_id}: CT missing in {source.path} (expected ct{', ct'.join(IMAGE_ENDINGS)})")
        derivation = derive_case(subject, self.params, self.require_iliacs, cite_files=False)
        result = derivation.result
        details = result.to_dict()
        root_end = (details.get("root") or {}).get("end_distance_mm")
        out = CaseResult(details=details, columns={"root_end_mm": root_end}, write_qc=lambda path: write_qc(derivation, path))
        if not result.ok:
            out.excluded = (result.excluded_code, result.excluded_reason)
            return out
        labels, counts, columns = derivation.labels, dict(result.voxel_counts), {"root_end_mm": root_end}
        if self.calcium is not None:
            calcium = calcium_of_derivation(subject.read_ct(), labels, subject.spacing, result.root, self.calcium, source.case_id)
            details["calcium"] = calcium.to_dict()
            columns.update(_calcium_columns(calcium))
            out.columns.update(columns)
            if not calcium.ok:
                out.excluded = (calcium.excluded_code, calcium.excluded_reason)
                return out
            labels = paint_calcium(labels, calcium, counts)
        out.outputs.append(CaseOutput(
            case=source.case_id, labels=labels, geometry=subject.geometry, image_file=subject.ct_path,
            counts=counts, columns=columns,
        ))
        return out

    def dataset_figures(self, folder, records) -> None:
        """The aortic cross-section area curve of the kept cases (paper Fig. 1)."""
        from nnunet_tavr.label_derivation.labelmap import DerivationResult
        from nnunet_tavr.label_derivation.qc import plot_dataset_curves

        results = [DerivationResult.from_dict(r["details"]) for r in records if r.get("details")]
        if results:
            plot_dataset_curves(folder / "qc" / "area_curve.png", results, title=f"{folder.name}: {len(results)} kept cases")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        from nnunet_tavr.argtypes import positive_float

        g = parser.add_argument_group("scheme tavr (the default)")
        g.add_argument("--require-iliacs", action="store_true", help="drop cases whose iliac arteries are absent (default: keep them with empty iliac labels)")
        g.add_argument("--valve-mm", type=positive_float, default=None, help=f"valve rule distance in mm (default {DerivationParams.valve_mm})")
        g.add_argument("--annulus-mm", type=positive_float, default=None, help=f"annulus rule distance in mm (default {DerivationParams.annulus_mm})")
        g.add_argument("--calcium", action="store_true",
                       help="add label 8 'calcium', a rule-based pseudo-label from the CT (contrast-adaptive threshold in the "
                            "valve, annulus, LVOT, root, aorta and iliac regions; docs/calcium.md)")
        g.add_argument("--calcium-threshold", type=float_range(-1000.0, 3000.0), default=None, metavar="HU",
                       help="with --calcium: a fixed threshold in HU instead of lumen median + max(100 HU, 4 SD)")
        g.add_argument("--calcium-min-mm3", type=float_range(0.0, 1000.0), default=None, metavar="MM3",
                       help=f"with --calcium: smallest calcium component kept (default {CalciumParams.min_volume_mm3:g} mm3)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TavrScheme":
        from nnunet_tavr.errors import UsageError

        given = {k: getattr(args, k) for k in ("valve_mm", "annulus_mm") if getattr(args, k, None) is not None}
        calcium = None
        extra = {k: getattr(args, a) for k, a in (("threshold_hu", "calcium_threshold"), ("min_volume_mm3", "calcium_min_mm3"))
                 if getattr(args, a, None) is not None}
        if getattr(args, "calcium", False):
            calcium = CalciumParams(**extra)
        elif extra:
            raise UsageError("--calcium-threshold / --calcium-min-mm3 need --calcium")
        return cls(DerivationParams(**given), require_iliacs=getattr(args, "require_iliacs", False), calcium=calcium)


#: Manifest columns of a dataset with calcium.
CALCIUM_COLUMNS = ("calcium_mm3", "calcium_components", "calcium_root_lumen_hu", "calcium_root_threshold_hu")
CALCIUM_DESCRIPTION = ("; calcium (label 8): a rule-based pseudo-label from the CT (voxels above a contrast-adaptive "
                       "threshold near the valve, annulus, LVOT, aortic root, aorta and iliac arteries), not an expert annotation")


def _calcium_columns(calcium) -> dict:
    root = calcium.lumen.get("aortic_root") or calcium.lumen.get("aorta") or {}
    return {"calcium_mm3": round(calcium.total_mm3, 2) if calcium.ok else None,
            "calcium_components": len(calcium.components) if calcium.ok else None,
            "calcium_root_lumen_hu": root.get("lumen_median_hu"), "calcium_root_threshold_hu": root.get("threshold_hu")}
