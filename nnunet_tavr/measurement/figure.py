"""One-page PNG of a measurement record (matplotlib, Agg backend).

Panels: the annulus plane (CT, or the label map, resampled in the fitted plane) with the contour
and the maximal / minimal diameters; the root diameter profile along the centreline with sinus,
STJ and the ascending-aorta height marked; the iliac diameter profiles with the MLD marked; and a
table of the headline numbers, with every missing structure and its reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_tavr.io import pyplot, save_figure
from nnunet_tavr.labels import DISPLAY_NAMES, FOREGROUND
from nnunet_tavr.measurement.record import MeasurementRecord, Quantity


def _missing_panel(ax, what: str, reason: str) -> None:
    """An empty panel that says what is missing and why."""
    ax.text(0.5, 0.5, f"{what} missing:\n{reason}", ha="center", va="center", wrap=True, fontsize=8, transform=ax.transAxes)
    ax.set_axis_off()


def _annulus_panel(ax, record: MeasurementRecord, labels, ct, spacing) -> None:
    from nnunet_tavr.geometry import PlaneGrid, box_around, box_start
    from nnunet_tavr.labels import label_colormap

    section = record["annulus"]
    ax.set_title("Annulus plane")
    if not section.ok:
        _missing_panel(ax, "annulus", section.missing)
        return
    g = section.geometry
    contour = np.asarray(g["contour_uv_mm"])
    half = float(np.abs(contour).max()) + 10.0
    origin = np.asarray(g["plane_origin_mm"])
    grid = PlaneGrid.square(origin, np.asarray(g["e1"]), np.asarray(g["e2"]), half, 0.25)
    u0, u1, v0, v1 = grid.extent()
    extent = [v0, v1, u1, u0]  # columns: v (e2), rows: u (e1)
    ct_box = None if ct is None else box_around(origin, 1.5 * half, spacing, np.shape(ct))
    if ct_box is not None:
        # Crop first: converting a whole full-resolution CT to float would cost ~1 GB.
        crop = np.asarray(ct)[ct_box].astype(np.float32)
        img = grid.sample(crop, spacing, origin_index=box_start(ct_box), order=1, cval=-1024)
        ax.imshow(img, cmap="gray", vmin=-200, vmax=600, extent=extent)
    else:
        # One voxel above the interface, so the aortic side (valve / root) shows.
        img = grid.sample(labels, spacing, max(spacing), order=0)
        cmap = label_colormap()
        ax.set_facecolor("black")  # the background value is transparent
        ax.imshow(img, cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, extent=extent, interpolation="nearest")
    closed = np.vstack([contour, contour[:1]])
    ax.plot(closed[:, 1], closed[:, 0], color="yellow", lw=1.5, label="annulus contour")
    for key, colour, name in (("max_diameter_uv_mm", "red", "max"), ("min_diameter_uv_mm", "cyan", "min")):
        ends = np.asarray(g[key])
        ax.plot(ends[:, 1], ends[:, 0], color=colour, lw=1.5, label=f"{name} {section.get(name + '_diameter'):.1f} mm")
    c = np.asarray(g["centre_uv_mm"])
    ax.plot([c[1]], [c[0]], "+", color="white")
    ax.set_xlabel("mm (in plane)")
    ax.set_ylabel("mm (in plane)")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.7)


def _root_panel(ax, record: MeasurementRecord) -> None:
    root, ascending = record["aortic_root"], record["ascending_aorta"]
    ax.set_title("Aortic root and ascending aorta")
    if not root.ok:
        _missing_panel(ax, "root", root.missing)
        return
    g = root.geometry
    arc = np.asarray(g["arc_mm"], float)
    ax.fill_between(arc, np.asarray(g["min_diameter_mm"], float), np.asarray(g["max_diameter_mm"], float), color="0.85", label="min-max calliper")
    ax.plot(arc, np.asarray(g["diameter_mm"], float), color="k", lw=1.5, label="area-derived diameter")
    if root.get("sinus_diameter") is not None:
        ax.plot([root.get("sinus_distance")], [root.get("sinus_diameter")], "v", color="tab:red", ms=9, label=f"sinus {root.get('sinus_diameter'):.1f} mm")
    if root.get("stj_diameter") is not None:
        ax.plot([root.get("stj_distance")], [root.get("stj_diameter")], "^", color="tab:blue", ms=9, label=f"STJ {root.get('stj_diameter'):.1f} mm, height {root.get('root_height'):.1f} mm")
        ax.axvline(root.get("stj_distance"), color="tab:blue", ls=":", lw=1)
    if ascending.ok:
        ax.plot([ascending.get("height")], [ascending.get("diameter")], "o", color="tab:green", ms=8, label=f"ascending @ {ascending.get('height'):g} mm: {ascending.get('diameter'):.1f} mm")
    ax.set_xlabel("arc length from the annulus centre (mm)")
    ax.set_ylabel("diameter (mm)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _iliac_panel(ax, record: MeasurementRecord) -> None:
    ax.set_title("Iliac arteries: lumen diameter along the centreline")
    any_ok = False
    for name, colour in (("iliac_artery_left", "tab:cyan"), ("iliac_artery_right", "tab:green")):
        s = record[name]
        if not s.ok:
            ax.plot([], [], " ", label=f"{DISPLAY_NAMES[name]}: missing ({s.missing})")
            continue
        any_ok = True
        g = s.geometry
        arc = np.asarray(g["arc_mm"], float)
        dia = np.array([np.nan if v is None else v for v in g["diameter_mm"]], float)
        ax.plot(arc, dia, color=colour, lw=1.5, label=f"{DISPLAY_NAMES[name]} (median {s.get('median_diameter'):.1f} mm)")
        ax.plot([s.get("min_lumen_position")], [s.get("min_lumen_diameter")], "v", color=colour, mec="k", ms=9, label=f"MLD {s.get('min_lumen_diameter'):.1f} mm at {s.get('min_lumen_position'):.0f} mm")
        m = float(g["end_margin_mm"])
        ax.axvspan(0, m, color=colour, alpha=0.08)
        ax.axvspan(arc[-1] - m, arc[-1], color=colour, alpha=0.08)
    ax.set_xlabel("arc length from the proximal end (mm); shaded: ends left out of the MLD search")
    ax.set_ylabel("diameter (mm)")
    if any_ok:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _table_panel(ax, record: MeasurementRecord) -> None:
    ax.set_axis_off()
    rows = [("Annulus", "annulus", [("area", "area"), ("perimeter", "perimeter"), ("D area", "area_diameter"), ("D perimeter", "perimeter_diameter"), ("D min", "min_diameter"), ("D max", "max_diameter"), ("eccentricity", "eccentricity_index")]),
            ("Aortic root", "aortic_root", [("sinus D", "sinus_diameter"), ("STJ D", "stj_diameter"), ("root height", "root_height")]),
            ("Ascending aorta", "ascending_aorta", [("D", "diameter"), ("at height", "height")]),
            ("I. A. left", "iliac_artery_left", [("MLD", "min_lumen_diameter"), ("at", "min_lumen_position"), ("length", "centreline_length")]),
            ("I. A. right", "iliac_artery_right", [("MLD", "min_lumen_diameter"), ("at", "min_lumen_position"), ("length", "centreline_length")]),
            ("Volumes", "volumes", [(DISPLAY_NAMES[n], n) for n in FOREGROUND])]
    lines = [f"case {record.case}   spacing {', '.join(f'{s:g}' for s in record.spacing)} mm", ""]
    for title, key, items in rows:
        section = record[key]
        lines.append(title)
        if not section.ok:
            lines.append(f"   missing: {section.missing}")
            continue
        for label, name in items:
            entry = section.values.get(name)
            if isinstance(entry, Quantity):
                lines.append(f"   {label:<14} {entry.value:9.2f} {'' if entry.unit == '1' else entry.unit}")
            elif entry is not None:
                lines.append(f"   {label:<14} missing: {entry.reason}")
    import textwrap

    wrapped = [w for line in lines for w in (textwrap.wrap(line, 58, subsequent_indent="      ") or [""])]
    ax.text(0.0, 1.0, "\n".join(wrapped), va="top", ha="left", family="monospace", fontsize=7, transform=ax.transAxes)


def plot_record(record: MeasurementRecord, labels: np.ndarray, path: str | Path, ct: np.ndarray | None = None) -> Path:
    """Write the one-page figure of ``record`` to ``path`` (PNG, atomic)."""
    plt = pyplot()
    calcium = "calcium" in record.sections and record["calcium"].ok
    fig = plt.figure(figsize=(16, 13.5 if calcium else 9.5))
    gs = fig.add_gridspec(3 if calcium else 2, 3, width_ratios=[1, 1.3, 1.05], hspace=0.3, wspace=0.28)
    _annulus_panel(fig.add_subplot(gs[0, 0]), record, labels, ct, record.spacing)
    _root_panel(fig.add_subplot(gs[0, 1]), record)
    _iliac_panel(fig.add_subplot(gs[1, 0:2]), record)
    _table_panel(fig.add_subplot(gs[:2, 2]), record)
    if calcium:  # the calcium row: nnunet_tavr.measurement.calcium draws it
        from nnunet_tavr.measurement.calcium import draw_calcium

        draw_calcium(fig, gs[2, :], record)
    fig.suptitle(f"TAVR measurements: {record.case}", fontsize=13)
    path = Path(path)
    return save_figure(fig, path)
