"""The calcium rule's parameters and what it returns (:mod:`.calcium` has the rule itself)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from nnunet_tavr.label_derivation.calcium_regions import (
    ANNULUS_HALF_MM,
    LVOT_DEPTH_MM,
    LVOT_MARGIN_MM,
    REGIONS,
    VALVE_HEIGHT_MM,
    WALL_MM,
    AnnulusFrame,
)

#: Why a case is excluded from the calcium rule.
EXCLUSION_CODES = {
    "no_ct": "the case has no CT (calcium is found in the CT's intensities)",
    "ct_not_hu": "the CT is not in Hounsfield units",
    "no_regions": "the label map has none of the calcium regions",
    "no_contrast": "the lumen is not contrast-enhanced: the adaptive threshold needs a contrast CT",
    "threshold_below_lumen": "the fixed threshold lies within the lumen's intensities",
}


@dataclass(frozen=True)
class CalciumParams:
    """Parameters of the calcium rule (HU, mm, mm^3); see the module docstring."""

    offset_hu: float = 100.0
    sd_factor: float = 4.0
    threshold_hu: float | None = None
    half_maximum: bool = True
    min_volume_mm3: float = 3.0
    wall_mm: float = WALL_MM
    min_contrast_hu: float = 150.0
    annulus_half_mm: float = ANNULUS_HALF_MM
    valve_height_mm: float = VALVE_HEIGHT_MM
    lvot_depth_mm: float = LVOT_DEPTH_MM
    lvot_margin_mm: float = LVOT_MARGIN_MM

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "CalciumParams":
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown calcium parameter(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)

    def region_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in ("annulus_half_mm", "valve_height_mm", "lvot_depth_mm", "lvot_margin_mm")}

    def method(self) -> str:
        """One line saying how calcium was thresholded."""
        if self.threshold_hu is not None:
            rule = f"CT >= {self.threshold_hu:g} HU (fixed)"
        else:
            rule = f"CT >= lumen median + max({self.offset_hu:g} HU, {self.sd_factor:g} x lumen robust SD) per region"
        border = ", border at half maximum between the local background and the component's peak" if self.half_maximum else ""
        return f"{rule}{border}, within {self.wall_mm:g} mm of the region, components >= {self.min_volume_mm3:g} mm3"


@dataclass
class Component:
    """One calcium component (26-connected). ``density_factor`` is Agatston's 1-4 weight applied to
    the peak's height above the lumen (100-199 HU above -> 1, ..., >= 400 -> 4); ``score`` is
    ``volume_mm3 * density_factor``: a contrast-CT approximation, not an Agatston score."""

    id: int
    region: str | None
    voxels: int
    volume_mm3: float
    centroid_mm: list[float]
    peak_hu: float | None = None
    mean_hu: float | None = None
    lumen_hu: float | None = None
    density_factor: int | None = None
    score: float | None = None
    distance_mm: float = 0.0  #: from the region (0 inside it or its wall band)

    def to_dict(self) -> dict:
        out = asdict(self)
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


@dataclass
class CalciumResult:
    """What the calcium rule found in one case.

    ``mask`` and ``component_map`` are ``box``-shaped (bool; integer component ids matching
    ``components[i].id``); :meth:`full_mask` pastes the mask into the whole grid.
    """

    case: str | None
    spacing: tuple[float, float, float]
    params: dict
    shape: tuple[int, int, int] | None = None
    box: tuple | None = None
    mask: np.ndarray | None = None
    component_map: np.ndarray | None = None
    components: list[Component] = field(default_factory=list)
    lumen: dict[str, dict] = field(default_factory=dict)
    frame: AnnulusFrame | None = None
    source: str = "rule"
    excluded_code: str | None = None
    excluded_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.excluded_code is None

    def exclude(self, code: str, message: str) -> "CalciumResult":
        self.excluded_code, self.excluded_reason = code, f"{code}: {message}"
        return self

    @property
    def voxel_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def full_mask(self) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        if self.mask is not None:
            out[self.box] = self.mask
        return out

    def by_region(self) -> dict[str, dict]:
        """Per region: volume (mm^3), number of components, largest component (mm^3), score."""
        out = {}
        for region in REGIONS:
            comps = [c for c in self.components if c.region == region]
            scores = [c.score for c in comps if c.score is not None]
            out[region] = {
                "volume_mm3": round(sum(c.volume_mm3 for c in comps), 3),
                "components": len(comps),
                "largest_mm3": round(max((c.volume_mm3 for c in comps), default=0.0), 3),
                "score": round(sum(scores), 3) if len(scores) == len(comps) else None,
            }
        return out

    @property
    def total_mm3(self) -> float:
        return float(sum(c.volume_mm3 for c in self.components))

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "source": self.source, "excluded_code": self.excluded_code, "excluded_reason": self.excluded_reason,
            "params": dict(self.params), "lumen": self.lumen, "total_mm3": round(self.total_mm3, 3),
            "regions": self.by_region(), "components": [c.to_dict() for c in self.components],
            "annulus_frame": None if self.frame is None else self.frame.to_dict(), "warnings": list(self.warnings),
            "seconds": round(self.seconds, 4),
        }
