"""The TAVR dataset (paper section 2.1): 7 classes derived by rule from TotalSegmentator masks.

Each input case (a TotalSegmentator dataset subject, or a folder with a CT and TotalSegmentator
masks or multilabel files) becomes one nnU-Net case: the CT byte for byte and the label map of
:mod:`nnunet_tavr.labels`. A case the rules cannot be applied to is dropped with the reason
(:data:`nnunet_tavr.label_derivation.labelmap.EXCLUSION_CODES`).
"""

from __future__ import annotations

import argparse

from nnunet_tavr.dataset_conversion.scheme import CaseOutput, CaseResult, Scheme
from nnunet_tavr.errors import MissingFile
from nnunet_tavr.label_derivation.case import DerivationParams, derive_case, load_tavr_subject, write_qc
from nnunet_tavr.labels import LABELS
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

    def __init__(self, params: DerivationParams | None = None, require_iliacs: bool = False):
        self.params = params or DerivationParams()
        self.require_iliacs = bool(require_iliacs)

    def options(self) -> dict:
        return {"require_iliacs": self.require_iliacs, "derivation": self.params.as_dict()}

    def labels(self) -> dict[str, int]:
        return dict(LABELS)

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
        out.outputs.append(CaseOutput(
            case=source.case_id, labels=derivation.labels, geometry=subject.geometry, image_file=subject.ct_path,
            counts=dict(result.voxel_counts), columns={"root_end_mm": root_end},
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TavrScheme":
        given = {k: getattr(args, k) for k in ("valve_mm", "annulus_mm") if getattr(args, k, None) is not None}
        return cls(DerivationParams(**given), require_iliacs=getattr(args, "require_iliacs", False))
