"""The exclusive 7-class TAVR label map, derived from coarse TotalSegmentator masks.

Overlap rule
------------
TotalSegmentator writes one file per structure, so coarse masks can overlap. Every voxel gets
exactly one label, decided by :data:`nnunet_tavr.labels.PAINT_ORDER` (later entries win):

    iliac_artery_left < iliac_artery_right < left_ventricle < aorta < aortic_root < valve < annulus

For the coarse masks this means aorta over left ventricle over the iliac arteries (right over left).
The rules see the same resolution: a voxel in both the aorta and the left-ventricle mask is aorta,
so it can become valve or aortic root but never annulus. The derived labels are subsets of their
coarse parent (valve and root of the aorta, annulus of the ventricle), which gives the paper's
precedence: annulus over left ventricle; valve over aortic root over aorta.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnunet_tavr.geometry import bounding_box, grow_box, offset_box, paste, reach_voxels, relative_box
from nnunet_tavr.labels import LABELS, PAINT_ORDER
from nnunet_tavr.label_derivation import rules
from nnunet_tavr.label_derivation.rules import RootDetails, RuleNotApplicable

#: The coarse structures the derivation reads: our label name -> TotalSegmentator mask name (the
#: same in v1 and v2; the ventricle comes from v1's ``total`` or v2's ``heartchambers_highres``).
INPUTS: dict[str, str] = {
    "aorta": "aorta",
    "left_ventricle": "heart_ventricle_left",
    "iliac_artery_left": "iliac_artery_left",
    "iliac_artery_right": "iliac_artery_right",
}
COARSE = tuple(INPUTS)
#: TotalSegmentator mask names accepted as keys of ``masks``.
TOTALSEG_NAMES = {ts_name: name for name, ts_name in INPUTS.items()}

#: Masks without which a case is excluded.
REQUIRED = ("aorta", "left_ventricle")
#: The iliac arteries, required too when a dataset is for access planning (``require_iliacs``).
ILIACS = ("iliac_artery_left", "iliac_artery_right")


def required_structures(require_iliacs: bool = False) -> tuple[str, ...]:
    """The masks a case must have: aorta and left ventricle, plus both iliac arteries if asked."""
    return REQUIRED + ILIACS if require_iliacs else REQUIRED

#: Exclusion codes and what they mean (the message in ``excluded_reason`` gives the specifics).
EXCLUSION_CODES = {
    "missing_mask": "a required coarse mask (aorta, left ventricle) was not given",
    "empty_mask": "a required coarse mask has no foreground voxel",
    "no_contact": "aorta and left ventricle are too far apart for a valve or an annulus",
    "annulus_degenerate": "the annulus has too few voxels, or collinear ones, to fit a plane",
    "aorta_not_at_annulus": "no aorta lies over the annulus plane",
    "no_area_maximum": "the smoothed cross-section curve has no local maximum",
    "no_area_minimum": "the smoothed cross-section curve has no local minimum after its first maximum",
}

# The rules assume the overlap resolution that PAINT_ORDER encodes.
assert PAINT_ORDER.index("aorta") > PAINT_ORDER.index("left_ventricle")


@dataclass
class DerivationResult:
    """What :func:`derive_tavr_labels` did for one case.

    ``excluded_reason`` is ``None`` for a derived case; otherwise ``"<code>: <message>"`` with a
    code from :data:`EXCLUSION_CODES`, and no label map was produced.
    """

    case: str | None
    spacing: tuple[float, float, float]
    params: dict
    voxel_counts: dict[str, int] = field(default_factory=dict)
    root: RootDetails | None = None
    excluded_code: str | None = None
    excluded_reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.excluded_reason is None

    def volumes_ml(self) -> dict[str, float]:
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        return {name: round(n * voxel_ml, 3) for name, n in self.voxel_counts.items()}

    def to_dict(self) -> dict:
        """JSON-friendly record (the CLI's ``--report``)."""
        return {
            "case": self.case,
            "ok": self.ok,
            "excluded_code": self.excluded_code,
            "excluded_reason": self.excluded_reason,
            "voxel_counts": dict(self.voxel_counts),
            "volumes_ml": self.volumes_ml(),
            "spacing": [float(s) for s in self.spacing],
            "params": dict(self.params),
            "root": None if self.root is None else self.root.to_dict(),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DerivationResult":
        return cls(
            case=d.get("case"),
            spacing=tuple(d["spacing"]),
            params=dict(d.get("params", {})),
            voxel_counts=dict(d.get("voxel_counts", {})),
            root=None if d.get("root") is None else RootDetails.from_dict(d["root"]),
            excluded_code=d.get("excluded_code"),
            excluded_reason=d.get("excluded_reason"),
            warnings=list(d.get("warnings", [])),
        )


def canonical_masks(masks: dict, warn=None) -> dict[str, np.ndarray]:
    """Map TotalSegmentator names to ours, drop structures the derivation does not use, make bool.

    Non-boolean arrays are accepted with ``> 0`` as foreground; values other than 0/1 are reported
    through ``warn(message)``.
    """
    out: dict[str, np.ndarray] = {}
    for key, array in masks.items():
        name = TOTALSEG_NAMES.get(key, key)
        if name not in COARSE:
            continue  # e.g. heart_myocardium: part of the layout, not of the rules
        if name in out:
            raise ValueError(f"mask {name!r} given twice (as {key!r} and under another name)")
        array = np.asarray(array)
        if array.dtype != bool:
            if warn is not None and array.size and (array.min() < 0 or array.max() > 1):
                warn(f"{key} is not binary (values {array.min()}..{array.max()}); using > 0 as foreground")
            array = array > 0
        out[name] = array
    shapes = {name: a.shape for name, a in out.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"masks differ in shape: {shapes}")
    if any(a.ndim != 3 for a in out.values()):
        raise ValueError(f"masks must be 3-D (z, y, x), got {shapes}")
    return out


def derive_tavr_labels(
    masks: dict,
    spacing,
    *,
    valve_mm: float = rules.VALVE_MM,
    annulus_mm: float = rules.ANNULUS_MM,
    step_mm: float | None = None,
    window: int = rules.WINDOW,
    max_distance_mm: float = rules.MAX_DISTANCE_MM,
    min_prominence: float = rules.MIN_PROMINENCE,
    flat_tolerance: float = rules.FLAT_TOLERANCE,
    required: tuple[str, ...] = REQUIRED,
    case: str | None = None,
    sources: dict | None = None,
    looked_for: dict | None = None,
) -> tuple[np.ndarray | None, DerivationResult]:
    """Derive the exclusive TAVR label map from coarse masks (paper section 2.1).

    Parameters
    ----------
    masks : dict of str -> (Z, Y, X) ndarray
        Coarse masks by our names (``aorta``, ``left_ventricle``, ``iliac_artery_left``,
        ``iliac_artery_right``) or TotalSegmentator's (``heart_ventricle_left`` ...). Other keys are
        ignored. Values > 0 are foreground. The arrays are not modified.
    spacing : sequence of 3 floats
        Voxel size in mm per array axis (z, y, x).
    valve_mm, annulus_mm, step_mm, window, max_distance_mm, min_prominence, flat_tolerance
        Rule parameters, see :mod:`nnunet_tavr.label_derivation.rules`.
    required : tuple of str
        Masks without which the case is excluded (the iliac arteries are optional by default:
        a missing one leaves its label absent and adds a warning).
    case : str, optional
        Case identifier, copied into the result.
    sources : dict, optional
        Structure name -> where its mask came from (a file), named in exclusion messages.
    looked_for : dict, optional
        Structure name -> where a mask that is not in ``masks`` was looked for (and how to make
        it), named in exclusion and warning messages (:attr:`nnunet_tavr.subject.Subject.looked_for`).

    Returns
    -------
    labels : (Z, Y, X) uint8 ndarray or None
        nnU-Net label values of :data:`nnunet_tavr.labels.LABELS`; ``None`` for an excluded case.
    result : DerivationResult
        Voxel counts per label, the aortic-root details, warnings, or the exclusion reason.
    """
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive mm values per array axis, got {spacing}")
    params = dict(
        valve_mm=valve_mm,
        annulus_mm=annulus_mm,
        step_mm=step_mm,
        window=window,
        max_distance_mm=max_distance_mm,
        min_prominence=min_prominence,
        flat_tolerance=flat_tolerance,
    )
    result = DerivationResult(case=case, spacing=spacing, params=params)
    masks = canonical_masks(masks, warn=result.warnings.append)

    def src(name: str) -> str:
        return f" ({sources[name]})" if sources and name in sources else ""

    def where(name: str) -> str:
        return f" ({looked_for[name]})" if looked_for and name in looked_for else ""

    def exclude(code: str, message: str):
        result.excluded_code, result.excluded_reason = code, f"{code}: {message}"
        return None, result

    boxes = {}
    for name in COARSE:
        if name not in masks:
            if name in required:
                return exclude("missing_mask", f"no {name} mask{where(name)}")
            result.warnings.append(f"no {name} mask: label {LABELS[name]} is absent{where(name)}")
            continue
        boxes[name] = bounding_box(masks[name])
        if boxes[name] is None:
            if name in required:
                return exclude("empty_mask", f"the {name} mask is empty{src(name)}")
            result.warnings.append(f"the {name} mask is empty{src(name)}: label {LABELS[name]} is absent")
    aorta, lv = masks["aorta"], masks["left_ventricle"]
    shape = aorta.shape

    # Valve and annulus only concern the contact zone: everything they need lies in the
    # ventricle's box grown by the larger threshold. The overlap rule (aorta wins) applies there.
    work = grow_box(boxes["left_ventricle"], reach_voxels(max(valve_mm, annulus_mm), spacing), shape)
    aorta_w = aorta[work]
    lv_w = lv[work] & ~aorta_w
    shared = int(np.count_nonzero(lv[work] & aorta_w))
    if shared:
        result.warnings.append(f"{shared} voxels are in both the aorta and the left-ventricle mask: they count as aorta")
    if not lv_w.any():
        return exclude("empty_mask", "the left-ventricle mask lies entirely inside the aorta mask")
    valve_box, valve = rules._within_cropped(aorta_w, lv_w, spacing, valve_mm)
    if valve_box is None:
        return exclude("no_contact", f"no aorta voxel lies within {valve_mm:g} mm of the left ventricle (no valve)")
    if annulus_mm <= valve_mm:
        # An aorta voxel within annulus_mm of the ventricle is within valve_mm of it: a valve voxel.
        # So the annulus (ventricle within annulus_mm of the aorta) only needs the valve's surroundings.
        near = grow_box(valve_box, reach_voxels(annulus_mm, spacing), lv_w.shape)
        valve_near = paste(lv_w[near].shape, relative_box(valve_box, near), valve)
        ann_box, annulus = rules._within_cropped(lv_w[near], valve_near, spacing, annulus_mm)
        ann_box = None if ann_box is None else offset_box(near, ann_box)
    else:
        ann_box, annulus = rules._within_cropped(lv_w, aorta_w, spacing, annulus_mm)
    if ann_box is None:
        hint = ""
        if annulus_mm < min(spacing):
            hint = f"; {annulus_mm:g} mm is below the voxel size {min(spacing):g} mm, so no voxel can be that close (raise annulus_mm)"
        return exclude("no_contact", f"no left-ventricle voxel lies within {annulus_mm:g} mm of the aorta (no annulus){hint}")
    annulus_idx = np.argwhere(annulus) + [w.start + b.start for w, b in zip(work, ann_box)]

    try:
        root_box, root, details = rules._root_cropped(
            aorta, annulus_idx, spacing, step_mm, window, max_distance_mm, min_prominence, flat_tolerance, annulus_mm
        )
    except RuleNotApplicable as exc:
        result.root = exc.details
        return exclude(exc.code, exc.message)
    result.root = details

    derived = {
        "aortic_root": (root_box, root),
        "valve": (offset_box(work, valve_box), valve),
        "annulus": (offset_box(work, ann_box), annulus),
    }
    labels = np.zeros(shape, np.uint8)
    counts = np.zeros(len(LABELS), np.int64)
    for name in PAINT_ORDER:
        if name in derived:
            box, sub = derived[name]
        elif boxes.get(name) is not None:
            box = boxes[name]
            sub = masks[name][box]
        else:
            continue
        view = labels[box]
        # Count as we paint (a full-volume histogram would cost more than the whole derivation).
        counts -= np.bincount(view[sub], minlength=len(LABELS))
        counts[LABELS[name]] += np.count_nonzero(sub)
        view[sub] = LABELS[name]
    counts[0] = 0
    result.voxel_counts = {name: int(counts[value]) for name, value in LABELS.items() if value > 0}
    return labels, result
