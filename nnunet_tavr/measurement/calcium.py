"""Calcium burden for TAVR planning: per region, per cusp, and around the annulus.

The ``calcium`` section of a measurement record (:func:`measure_calcium`) holds, for each region of
:mod:`nnunet_tavr.label_derivation.calcium_regions` (valve, annulus, LVOT, aortic root, rest of the
aorta, each iliac artery):

- ``<region>_volume`` (mm^3), ``<region>_components`` (26-connected), ``<region>_largest`` (mm^3);
- ``<region>_score``: the sum over components of volume x density factor, the factor being
  Agatston's 1-4 weight of the component's peak *height above the lumen* (100-199 HU -> 1, 200-299
  -> 2, 300-399 -> 3, >= 400 -> 4). It is a **contrast-CT approximation, not an Agatston score**
  (Agatston is defined on non-contrast CT, 3 mm slices, per-slice areas above 130 HU); it needs
  the CT;
- per cusp (RCC, LCC, NCC), when cusp masks or hinge points are given: the calcium of the valve
  and of the annulus + LVOT on each cusp's side (each voxel goes to the cusp whose direction
  around the annulus axis is nearest, :func:`cusp_of_azimuths`);
- the annular and LVOT calcium around the annulus in 12 sectors of 30 degrees (volume per sector,
  the circumferential extent, the sector with most), which relates to paravalvular leak.

The calcium comes from the segmentation's calcium label (8) when it has one, otherwise from the
rule applied to the CT (:func:`nnunet_tavr.label_derivation.calcium.derive_calcium`); the section
says which. Azimuths are measured around the annulus normal (ventricle -> aorta) from ``e1`` (the
projection of the array's -y axis onto the annulus plane: anterior in the usual LPS orientation)
toward ``e2 = normal x e1``.
"""

from __future__ import annotations

import numpy as np

from nnunet_tavr.label_derivation.calcium import CalciumParams, CalciumResult, derive_calcium, describe_mask
from nnunet_tavr.label_derivation.calcium_regions import REGION_NAMES, REGIONS, AnnulusFrame, annulus_frame
from nnunet_tavr.labels import CALCIUM_LABEL
from nnunet_tavr.measurement.record import Section
from nnunet_tavr.totalseg import CUSPS

#: Sectors around the annulus (degrees each: 360 / SECTORS).
SECTORS = 12
#: Short cusp names, in the order of :data:`nnunet_tavr.totalseg.CUSPS`.
CUSP_KEYS = ("rcc", "lcc", "ncc")
SCORE_UNIT = "mm3 x density factor"
SCORE_METHOD = ("sum of component volume x Agatston's 1-4 density factor of the peak's height above the lumen median "
                "(100-HU steps): a contrast-CT approximation, not an Agatston score")
SOURCES = ("auto", "labels", "rule", "off")


def calcium_source(labels: np.ndarray, ct, source: str = "auto") -> tuple[str | None, str]:
    """Where the calcium comes from: ``("labels" | "rule" | None, why)``."""
    if source not in SOURCES:
        raise ValueError(f"calcium source must be one of {SOURCES}, got {source!r}")
    has_label = bool(np.any(labels == CALCIUM_LABEL))
    if source == "off":
        return None, "not asked for"
    if source == "labels" or (source == "auto" and has_label):
        return "labels", f"the segmentation's calcium label ({CALCIUM_LABEL})"
    if ct is None:
        return None, f"no calcium label ({CALCIUM_LABEL}) in the segmentation and no CT (--ct) to find calcium by rule"
    return "rule", "found by rule in the CT (contrast-adaptive threshold; the segmentation has no calcium label)"


def measure_calcium(labels, anatomy, spacing, ct=None, plane=None, source: str = "auto",
                    params: CalciumParams | None = None, cusps=None, hinge_points=None, case: str | None = None):
    """The ``calcium`` section of one case, and the calcium it describes.

    Parameters
    ----------
    labels : (z, y, x) int array
        The segmentation (7 classes, or 8 with calcium).
    anatomy : (z, y, x) int array
        ``labels`` with its calcium voxels given to the structure they lie on
        (:func:`~nnunet_tavr.label_derivation.calcium.anatomy_view`).
    ct : (z, y, x) array in HU, optional
        Needed for the rule and for the density-weighted scores.
    plane : dict, optional
        The annulus plane (``centre``, ``normal``) from :func:`~nnunet_tavr.measurement.annulus.measure_annulus`.
    source : "auto", "labels", "rule" or "off"
    cusps : dict, optional
        Cusp masks by name (TotalSegmentator's ``right_coronary_cusp``, ``left_coronary_cusp``,
        ``non_coronary_cusp``, or ``rcc``/``lcc``/``ncc``), bool (z, y, x) on the same grid.
    hinge_points : dict or (3, 3) array, optional
        The three hinge points (mm, (z, y, x) in the arrays' frame), by cusp name or in the order
        RCC, LCC, NCC. Used when ``cusps`` is not given.

    Returns
    -------
    (Section, CalciumResult or None)
    """
    spacing = np.asarray(spacing, float)
    params = params or CalciumParams()
    how, why = calcium_source(labels, ct, source)
    if how is None:
        return Section.absent("calcium", why), None
    frame = None
    if plane is not None:
        frame = annulus_frame(anatomy, spacing, centre=plane["centre"], normal=plane["normal"])
    if how == "labels":
        result = describe_mask(labels == CALCIUM_LABEL, anatomy, spacing, ct, params, frame, case)
    else:
        result = derive_calcium(ct, anatomy, spacing, params, frame=frame, case=case)
        if not result.ok:
            return Section.absent("calcium", f"calcium not derived: {result.excluded_reason}"), result
    return calcium_section(result, why, ct is not None, cusps, hinge_points), result


def calcium_section(result: CalciumResult, why: str, with_ct: bool, cusps=None, hinge_points=None) -> Section:
    """The record's section from a :class:`CalciumResult` (see the module docstring)."""
    section = Section("calcium")
    section.notes.append(f"calcium: {why}")
    if result.source == "rule":
        section.notes.append(f"rule: {CalciumParams.from_dict(result.params).method()}")
    section.notes += result.warnings
    voxel = result.voxel_mm3
    section.add("total_volume", result.total_mm3, "mm3", f"calcium voxels x {voxel:.4g} mm3")
    section.add("total_components", len(result.components), "1", "26-connected components")
    for region, entry in result.by_region().items():
        method = f"calcium components assigned to the {REGION_NAMES[region]} region (most of their voxels)"
        section.add(f"{region}_volume", entry["volume_mm3"], "mm3", method)
        section.add(f"{region}_components", entry["components"], "1", method)
        section.add(f"{region}_largest", entry["largest_mm3"], "mm3", "largest component of the region")
        if entry["score"] is not None and with_ct:
            section.add(f"{region}_score", entry["score"], SCORE_UNIT, SCORE_METHOD)
        else:
            section.add_missing(f"{region}_score", "needs the CT (--ct) and the region's lumen" if entry["components"] else "no calcium")
    outside = [c for c in result.components if c.region is None]
    if outside:
        section.add("outside_regions_volume", sum(c.volume_mm3 for c in outside), "mm3",
                    f"calcium label farther than {result.params['wall_mm']:g} mm from every region (not counted above)")
    points, regions_of = calcium_points(result)
    _sectors(section, result, points, regions_of)
    _cusps(section, result, points, regions_of, cusps, hinge_points)
    section.geometry["components"] = [c.to_dict() for c in result.components]
    section.geometry["lumen"] = result.lumen
    if result.frame is not None:
        section.geometry["annulus_frame"] = result.frame.to_dict()
    return section


def calcium_points(result: CalciumResult) -> tuple[np.ndarray, np.ndarray]:
    """mm points (n, 3) of every calcium voxel and the region name of its component."""
    if result.mask is None or not result.mask.any():
        return np.zeros((0, 3)), np.zeros(0, object)
    idx = np.argwhere(result.mask)
    points = (idx + [s.start for s in result.box]) * np.asarray(result.spacing, float)
    region_of = {c.id: c.region for c in result.components}
    ids = result.component_map[tuple(idx.T)]
    return points, np.array([region_of.get(int(i)) for i in ids], object)


def _sectors(section: Section, result: CalciumResult, points, regions_of) -> None:
    """Annular + LVOT calcium by 30-degree sector around the annulus axis."""
    keys = ("annulus_lvot_sector_volumes", "annulus_lvot_extent", "annulus_lvot_max_sector")
    if result.frame is None:
        for key in keys:
            section.add_missing(key, "no annulus plane (no annulus in the segmentation)")
        return
    sel = np.isin(regions_of.astype(str), ("annulus", "lvot"))
    _, _, azimuth = result.frame.local(points[sel]) if sel.any() else (None, None, np.zeros(0))
    volumes = sector_volumes(azimuth, result.voxel_mm3)
    width = 360 // SECTORS
    method = (f"annulus + LVOT calcium voxels by azimuth around the annulus normal, {SECTORS} sectors of {width} deg "
              "from e1 (anterior for LPS images) toward e2 = normal x e1")
    section.add(keys[0], volumes, "mm3", method)
    section.add(keys[1], float(np.count_nonzero(volumes > 0) * width), "deg", f"sectors holding annulus/LVOT calcium x {width} deg")
    if volumes.any():
        section.add(keys[2], float(np.argmax(volumes) * width + width / 2), "deg", "centre of the sector with most annulus/LVOT calcium")
    else:
        section.add_missing(keys[2], "no annulus or LVOT calcium")
    section.geometry["sector_edges_deg"] = [k * width for k in range(SECTORS + 1)]


def sector_volumes(azimuth_deg, voxel_mm3: float, sectors: int = SECTORS) -> np.ndarray:
    """Volume (mm^3) of the voxels at ``azimuth_deg`` in each of ``sectors`` equal sectors from 0."""
    k = (np.asarray(azimuth_deg, float) % 360.0) // (360.0 / sectors)
    return np.bincount(k.astype(int), minlength=sectors)[:sectors] * float(voxel_mm3)


# ----------------------------------------------------------------------------------------------
# cusps


def cusp_azimuths(frame: AnnulusFrame, spacing=None, cusps: dict | None = None, hinge_points=None) -> dict[str, float] | None:
    """The direction (azimuth, degrees around the annulus axis) of each cusp, from cusp masks (the
    circular mean of their voxels' azimuths) or from hinge points; ``None`` when neither is given.

    ``cusps`` keys may be TotalSegmentator's names or ``rcc``/``lcc``/``ncc``; ``hinge_points`` a
    dict of the same keys or a (3, 3) array in the order RCC, LCC, NCC (mm, (z, y, x)).
    """
    out: dict[str, float] = {}
    if cusps:
        spacing = np.asarray(spacing, float)
        for key, mask in cusps.items():
            name = _cusp_key(key)
            idx = np.argwhere(np.asarray(mask) > 0)
            if len(idx) == 0:
                continue
            _, _, az = frame.local(idx * spacing)
            rad = np.radians(az)
            out[name] = round(float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean()))), 6) % 360.0
        return out or None
    if hinge_points is not None:
        items = hinge_points.items() if isinstance(hinge_points, dict) else zip(CUSP_KEYS, np.asarray(hinge_points, float))
        for key, point in items:
            _, _, az = frame.local(np.asarray(point, float)[None])
            out[_cusp_key(key)] = float(az[0])
        return out or None
    return None


def _cusp_key(name: str) -> str:
    name = str(name).lower()
    if name in CUSP_KEYS:
        return name
    if name in CUSPS:
        return CUSP_KEYS[CUSPS.index(name)]
    raise ValueError(f"unknown cusp {name!r}: use {', '.join(CUSP_KEYS)} or {', '.join(CUSPS)}")


def cusp_of_azimuths(azimuth_deg, cusp_az: dict[str, float]) -> np.ndarray:
    """The cusp (key) whose direction is nearest to each azimuth (circular distance): the sector
    of a cusp reaches half-way to its neighbours, i.e. to the commissures between them."""
    names = list(cusp_az)
    ref = np.array([cusp_az[n] for n in names])
    diff = np.abs((np.asarray(azimuth_deg, float)[:, None] - ref[None, :] + 180.0) % 360.0 - 180.0)
    return np.array(names, object)[np.argmin(diff, axis=1)] if len(names) else np.zeros(len(diff), object)


def _cusps(section: Section, result: CalciumResult, points, regions_of, cusps, hinge_points) -> None:
    if cusps is None and hinge_points is None:
        section.add_missing("per_cusp", "no cusp masks or hinge points given")
        return
    if result.frame is None:
        section.add_missing("per_cusp", "no annulus plane (no annulus in the segmentation)")
        return
    cusp_az = cusp_azimuths(result.frame, result.spacing, cusps, hinge_points)
    if not cusp_az:
        section.add_missing("per_cusp", "the cusp masks are empty")
        return
    source = "cusp masks (circular mean azimuth of each)" if cusps else "hinge points"
    _, _, az = result.frame.local(points) if len(points) else (None, None, np.zeros(0))
    of = cusp_of_azimuths(az, cusp_az) if len(points) else np.zeros(0, object)
    regions = regions_of.astype(str)
    for key in CUSP_KEYS:
        if key not in cusp_az:
            section.add_missing(f"cusp_{key}_valve_volume", f"no {key.upper()} in the cusp input")
            continue
        method = f"calcium voxels nearest in azimuth to the {key.upper()} direction from the {source}"
        for part, names in (("valve", ("valve",)), ("annulus_lvot", ("annulus", "lvot"))):
            n = int(np.count_nonzero((of == key) & np.isin(regions, names)))
            section.add(f"cusp_{key}_{part}_volume", n * result.voxel_mm3, "mm3", method)
    section.geometry["cusp_azimuths_deg"] = cusp_az


# ----------------------------------------------------------------------------------------------
# figure


def draw_calcium(fig, spec, record) -> None:
    """The calcium row of the measurement figure: the valve complex seen along the annulus axis
    (components as discs, area ~ volume, coloured by region), the annular/LVOT sectors (polar) and
    the volume per region."""
    from nnunet_tavr.labels import colour

    section = record["calcium"]
    sub = spec.subgridspec(1, 3, width_ratios=[1, 0.8, 1.2], wspace=0.35)
    ax_plane, ax_polar = fig.add_subplot(sub[0, 0]), fig.add_subplot(sub[0, 1], projection="polar")
    ax_bar = fig.add_subplot(sub[0, 2])
    comps = section.geometry.get("components", [])
    region_colour = {r: colour("left_ventricle" if r == "lvot" else r) for r in REGIONS}
    frame = section.geometry.get("annulus_frame")
    ax_plane.set_title("Valve complex calcium (along the annulus axis)", fontsize=9)
    if frame is not None:
        centre, e1, e2 = (np.asarray(frame[k]) for k in ("centre_mm", "e1", "e2"))
        t = np.linspace(0, 2 * np.pi, 200)
        r = frame["radius_mm"]
        ax_plane.plot(r * np.sin(t), r * np.cos(t), color="0.5", lw=1, label=f"annulus radius {r:.1f} mm")
        for c in comps:
            if c["region"] in ("valve", "annulus", "lvot"):
                rel = np.asarray(c["centroid_mm"]) - centre
                ax_plane.scatter(rel @ e2, rel @ e1, s=8 + 3 * c["volume_mm3"], color=region_colour[c["region"]], alpha=0.8, edgecolor="k", lw=0.5)
        for name in ("valve", "annulus", "lvot"):
            ax_plane.scatter([], [], color=region_colour[name], label=REGION_NAMES[name])
        ax_plane.set_aspect("equal")
        ax_plane.set_xlabel("e2 (mm)")
        ax_plane.set_ylabel("e1 (mm, anterior up)")
        ax_plane.legend(fontsize=6, loc="lower left")
    else:
        ax_plane.text(0.5, 0.5, "no annulus plane", ha="center", va="center", transform=ax_plane.transAxes)
    volumes = section.get("annulus_lvot_sector_volumes")
    ax_polar.set_title("Annulus + LVOT calcium by sector (mm3)", fontsize=9)
    if volumes is not None:
        width = 2 * np.pi / SECTORS
        ax_polar.bar(np.arange(SECTORS) * width + width / 2, volumes, width=width * 0.9, color=colour("calcium"), edgecolor="k", lw=0.5)
        ax_polar.set_theta_zero_location("N")  # e1 up and e2 to the right, as in the plane panel
        ax_polar.set_theta_direction(-1)
        ax_polar.set_ylim(0, max(float(np.max(volumes)), 1.0))
        if not np.any(volumes):
            ax_polar.text(0.5, 0.5, "none", ha="center", va="center", transform=ax_polar.transAxes)
        ax_polar.tick_params(labelsize=6)
    names = [REGION_NAMES[r] for r in REGIONS]
    vols = [section.get(f"{r}_volume") or 0.0 for r in REGIONS]
    bars = ax_bar.barh(names, vols, color=[region_colour[r] for r in REGIONS], edgecolor="k", lw=0.5)
    for bar, region in zip(bars, REGIONS):
        score = section.get(f"{region}_score")
        n = section.get(f"{region}_components") or 0
        label = f" {n} comp." + ("" if score is None else f", score {score:.0f}")
        ax_bar.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=6)
    ax_bar.invert_yaxis()
    ax_bar.set_xlabel("calcium volume (mm3); score: contrast-CT approximation, not Agatston", fontsize=7)
    ax_bar.tick_params(labelsize=7)
    ax_bar.set_title(f"Calcium per region: total {section.get('total_volume'):.0f} mm3", fontsize=9)
