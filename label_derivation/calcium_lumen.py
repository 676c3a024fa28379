"""The contrast lumen of a case and the calcium thresholds it sets (see :mod:`.calcium`, steps 2-3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnunet_tavr.label_derivation.calcium_regions import REGIONS

#: Lumen groups: the regions whose lumen sets the threshold of each region.
LUMEN_GROUPS: dict[str, tuple[str, ...]] = {
    "root": ("valve", "annulus", "lvot", "aortic_root"),
    "aorta": ("aorta",),
    "iliac_artery_left": ("iliac_artery_left",),
    "iliac_artery_right": ("iliac_artery_right",),
}
GROUP_OF: dict[str, str] = {region: group for group, members in LUMEN_GROUPS.items() for region in members}
#: Fewer lumen voxels than this give no usable statistics (the group borrows the pooled lumen).
MIN_LUMEN_VOXELS = 50
#: A CT without any value below this is not in Hounsfield units (air -1000 HU, fat -100 HU).
HU_AIR_CHECK = -200.0


@dataclass
class Lumen:
    """The contrast lumen of one group: robust statistics (HU) and the voxels they stand on."""

    median_hu: float
    sd_hu: float
    voxels: int
    source: str  #: "interior" (six neighbours in the region), "whole" or "pooled"


def hu_problem(ct: np.ndarray) -> str | None:
    """Why ``ct`` is not a CT in Hounsfield units, or ``None``: a CT has air or fat somewhere
    (below -200 HU); raw scanner values and normalised intensities have no such value."""
    sample = ct[::4, ::4, ::4] if min(ct.shape) >= 8 else ct
    low = float(sample.min())
    if low < HU_AIR_CHECK or float(ct.min()) < HU_AIR_CHECK:
        return None
    high = float(sample.max())
    return (f"no value below {HU_AIR_CHECK:g} HU (range {low:g} .. {high:g}): air (-1000 HU) and fat (-100 HU) are "
            "missing, so the intensities are not Hounsfield units (raw scanner values without the rescale "
            "slope/intercept, or normalised intensities)")


def _interior(regions: np.ndarray) -> np.ndarray:
    """Region voxels whose six face neighbours are in the same region (a one-voxel erosion of
    every region at once; the array border counts as outside)."""
    inner = regions > 0
    inner[[0, -1], :, :] = False
    inner[:, [0, -1], :] = False
    inner[:, :, [0, -1]] = False
    core = (slice(1, -1),) * 3
    r = regions[core]
    keep = inner[core]
    for axis in range(3):
        for step in (-1, 1):
            shifted = [slice(1, -1)] * 3
            shifted[axis] = slice(1 + step, regions.shape[axis] - 1 + step)
            keep &= regions[tuple(shifted)] == r
    inner[core] = keep
    return inner


def lumen_statistics(ct: np.ndarray, regions: np.ndarray, spacing) -> dict[str, Lumen | None]:
    """The lumen of every group of :data:`LUMEN_GROUPS` (``ct`` and ``regions`` of one box).

    Statistics are taken on a grid of about 2 mm (every k-th voxel) from the groups' interior
    voxels, falling back to all their voxels and then to the pooled lumen of every group.
    """
    stride = tuple(max(1, int(2.0 // s)) for s in np.asarray(spacing, float))
    reg = regions[:: stride[0], :: stride[1], :: stride[2]]
    values = ct[:: stride[0], :: stride[1], :: stride[2]]
    interior = _interior(reg)
    group_lut = np.zeros(len(REGIONS) + 1, np.uint8)
    names = list(LUMEN_GROUPS)
    for g, members in enumerate(LUMEN_GROUPS.values(), start=1):
        for region in members:
            group_lut[REGIONS.index(region) + 1] = g
    groups = group_lut[reg]
    out: dict[str, Lumen | None] = {}
    pooled = []
    for g, name in enumerate(names, start=1):
        member = groups == g
        for source, sel in (("interior", member & interior), ("whole", member)):
            v = values[sel]
            if v.size >= MIN_LUMEN_VOXELS:
                out[name] = _robust(v, source)
                pooled.append(v)
                break
        else:
            out[name] = None
    if pooled:
        everything = np.concatenate(pooled)
        for name in names:
            if out[name] is None and np.any(groups == names.index(name) + 1):
                out[name] = _robust(everything, "pooled")
    return out


def _robust(values: np.ndarray, source: str) -> Lumen:
    v = values.astype(np.float32, copy=False)
    if v.size > 400_000:  # the median of a regular subsample: same to ~1 HU, much faster
        v = v[:: v.size // 200_000]
    median = float(np.median(v))
    mad = float(np.median(np.abs(v - median)))
    return Lumen(median, 1.4826 * mad, int(values.size), source)


def thresholds(lumen: dict[str, Lumen | None], params) -> tuple[dict[str, dict], dict[str, str]]:
    """Per region: its lumen and threshold (HU); and the regions that cannot be assessed, with why
    (code ``no_contrast`` or ``threshold_below_lumen``; a region absent from the case is left out).
    ``params``: a :class:`~nnunet_tavr.label_derivation.calcium_record.CalciumParams`."""
    info, problems = {}, {}
    for region in REGIONS:
        group = GROUP_OF[region]
        lm = lumen.get(group)
        if lm is None:
            continue
        entry = {"group": group, "lumen_median_hu": round(lm.median_hu, 1), "lumen_sd_hu": round(lm.sd_hu, 1),
                 "lumen_voxels": lm.voxels, "lumen_source": lm.source}
        if params.threshold_hu is not None:
            t = float(params.threshold_hu)
            if t <= lm.median_hu + 3.0 * lm.sd_hu:
                problems[region] = (f"threshold_below_lumen: the fixed threshold {t:g} HU is within the {group} lumen "
                                    f"({lm.median_hu:.0f} +- {lm.sd_hu:.0f} HU): the lumen itself would count as calcium")
        else:
            t = lm.median_hu + max(params.offset_hu, params.sd_factor * lm.sd_hu)
            if lm.median_hu < params.min_contrast_hu:
                problems[region] = (f"no_contrast: the {group} lumen has a median of {lm.median_hu:.0f} HU (< {params.min_contrast_hu:g} HU): "
                                    "not contrast-enhanced; the adaptive threshold needs a contrast CT (give a fixed "
                                    "threshold, e.g. 130 HU, for a non-contrast scan)")
        entry["threshold_hu"] = round(t, 1)
        entry["assessed"] = region not in problems
        if region in problems:
            entry["reason"] = problems[region]
        info[region] = entry
    return info, problems


def density_factor(peak_hu: float, lumen_hu: float) -> int:
    """Agatston's density weight (1-4 in 100-HU steps) of a peak's height above the lumen."""
    return int(np.clip(np.floor((peak_hu - lumen_hu) / 100.0), 1, 4))
