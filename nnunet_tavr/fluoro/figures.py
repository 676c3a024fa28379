"""Figures of the C-arm view: the S-curve with its recommended views, a case's frames with their
masks, and the conventions figure of ``docs/fluoroscopy.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunet_tavr.carm import Angulation, s_curve
from nnunet_tavr.io import pyplot, save_figure
from nnunet_tavr.labels import colour

#: Marker styles of named views on the S-curve plot.
VIEW_STYLE = {"three_cusp": ("o", "tab:red", "three-cusp"), "cusp_overlap": ("s", "tab:purple", "cusp-overlap"),
              "reference": ("*", "tab:orange", "reference"), "nearest_ap": ("D", "tab:green", "nearest to AP")}


def s_curve_axes(ax, normal_lps, views: dict[str, Angulation] | None = None, frames=(), title: str = "S-curve (annulus plane edge-on)") -> None:
    """Plot the S-curve of ``normal_lps`` on LAO/RAO x CRA/CAU axes, with named views and frame angulations."""
    a = np.linspace(-90, 90, 361)
    b = s_curve(normal_lps, a)
    ax.plot(a, b, color="k", lw=1.5, label="coplanar angulations")
    ax.fill_between(a, b - 5, b + 5, color="0.85", label="within 5 degrees")
    if frames:
        fa = np.array([[f.primary, f.secondary] for f in frames])
        ax.scatter(fa[:, 0], fa[:, 1], s=12, color="tab:blue", alpha=0.7, label=f"frames ({len(frames)})", zorder=3)
    for key, view in (views or {}).items():
        marker, col, name = VIEW_STYLE.get(key, ("^", "tab:gray", key))
        ax.plot([view.primary], [view.secondary], marker, color=col, ms=10, mec="k", zorder=4, label=f"{name}: {view.label(0)}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlim(-90, 90)
    ax.set_ylim(-60, 60)
    ax.set_xlabel("primary angle (degrees): RAO < 0 < LAO")
    ax.set_ylabel("secondary angle (degrees): CAU < 0 < CRA")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def case_preview(path, case: str, images, masks, angles, normal_lps, views: dict[str, Angulation], pixel_mm: float, max_frames: int = 6) -> Path:
    """Frames with their mask outlines, and the S-curve with the frames' angulations."""
    plt = pyplot()
    shown = min(len(images), max_frames)
    cols = 4
    rows = int(np.ceil((shown + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for k in range(shown):
        ax = axes.flat[k]
        image, mask = images[k], masks[k]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        if mask.any():
            ax.contour(mask, [0.5], colors=[colour("aortic_root")], linewidths=1.0)
        ax.set_title(f"{case}_f{k:03d}: {angles[k].label(0)}", fontsize=8)
        ax.set_axis_off()
    bar_px = 20.0 / pixel_mm
    if shown:
        ax = axes.flat[0]
        h = images[0].shape[0]
        ax.plot([10, 10 + bar_px], [h - 15, h - 15], color="yellow", lw=2)
        ax.text(10, h - 22, "20 mm at isocentre", color="yellow", fontsize=7)
    s_curve_axes(axes.flat[shown], normal_lps, views, angles)
    for ax in list(axes.flat)[shown + 1:]:
        ax.set_axis_off()
    fig.suptitle(f"{case}: rendered frames (outline: projected aortic-root mask)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _c_arm(ax, angle: Angulation, plane: str, colour_: str, sid: float = 400.0, sdd: float = 560.0) -> None:
    """One C-arm pose drawn in a 2-D anatomical view: ``plane`` "axial" (x, -y) or "sagittal" (-y, z);
    distances shortened for the drawing."""
    from nnunet_tavr.carm import Projection

    p = Projection.at(angle, [0, 0, 0], sdd=sdd, pixel_mm=1.0, shape=(300, 300), sid=sid)
    c, r, d = p.axes
    pick = (lambda v: np.array([v[0], -v[1]])) if plane == "axial" else (lambda v: np.array([-v[1], v[2]]))
    s, det = pick(p.source), pick(p.detector_centre)
    across = pick(c if plane == "axial" else r)
    ax.annotate("", xy=det, xytext=s, arrowprops=dict(arrowstyle="->", color=colour_, lw=1.2))
    ax.plot(*np.stack([det - 110 * across, det + 110 * across]).T, color=colour_, lw=4)
    ax.plot(*s, "o", color=colour_)
    ax.text(*(det + 75 * pick(d)), angle.label(0), color=colour_, ha="center", va="center", fontsize=10, fontweight="bold")


def conventions_figure(path) -> Path:
    """The conventions of :mod:`nnunet_tavr.carm` in three 2-D views and an S-curve: C-arm poses
    seen from the feet (AP, LAO 30, RAO 30) and from the patient's left (CRA 30, CAU 30) with the
    source (dot), the X-ray direction d (arrow) and the detector (bar); the AP image's axes; and the
    S-curve of a typical annulus."""
    from matplotlib.patches import Ellipse

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 5.2), gridspec_kw={"width_ratios": [1, 1, 0.8, 1.1]})
    ax = axes[0]
    ax.add_patch(Ellipse((0, 0), 340, 240, fc="0.92", ec="k"))
    ax.text(0, 60, "anterior (-y)", ha="center", fontsize=8)
    ax.text(0, -80, "posterior (+y)", ha="center", fontsize=8)
    ax.text(95, -10, "left\n(+x)", ha="center", va="center", fontsize=8)
    ax.text(-95, -10, "right\n(-x)", ha="center", va="center", fontsize=8)
    for angle, col in ((Angulation(0, 0), "k"), (Angulation(30, 0), "tab:red"), (Angulation(-30, 0), "tab:blue")):
        _c_arm(ax, angle, "axial", col)
    ax.set_title("seen from the feet (axial): primary angle\nLAO > 0: detector to the patient's left", fontsize=10)
    ax2 = axes[1]
    ax2.add_patch(Ellipse((0, 0), 240, 500, fc="0.92", ec="k"))
    ax2.text(0, 200, "head\n(+z)", ha="center", fontsize=8)
    ax2.text(62, -60, "anterior\n(-y)", ha="center", fontsize=8)
    ax2.text(-62, -60, "posterior\n(+y)", ha="center", fontsize=8)
    for angle, col in ((Angulation(0, 0), "k"), (Angulation(0, 30), "tab:red"), (Angulation(0, -30), "tab:blue")):
        _c_arm(ax2, angle, "sagittal", col)
    ax2.set_title("seen from the patient's left (sagittal): secondary\nCRA > 0: detector towards the head", fontsize=10)
    for a in (ax, ax2):
        a.set_xlim(-560, 560)
        a.set_ylim(-560, 560)
        a.set_aspect("equal")
        a.set_xticks([])
        a.set_yticks([])
    ax3 = axes[2]
    ax3.add_patch(plt.Rectangle((0, 0), 1, 1, fc="0.15"))
    ax3.annotate("", xy=(0.95, 0.08), xytext=(0.05, 0.08), arrowprops=dict(arrowstyle="->", color="tab:green", lw=2))
    ax3.text(0.5, 0.12, "columns: c = (cos a, sin a, 0)\nAP: patient's left ->", color="tab:green", ha="center", fontsize=9)
    ax3.annotate("", xy=(0.08, 0.05), xytext=(0.08, 0.95), arrowprops=dict(arrowstyle="->", color="tab:purple", lw=2))
    ax3.text(0.13, 0.6, "rows: r = (sin a sin b,\n -cos a sin b, -cos b)\nAP: head at the top", color="tab:purple", fontsize=9)
    ax3.text(0.5, 0.88, "the detector image, seen from the\ndetector looking back at the source", color="w", ha="center", fontsize=9)
    ax3.set_xlim(0, 1)
    ax3.set_ylim(0, 1)
    ax3.set_aspect("equal")
    ax3.set_axis_off()
    ax3.set_title("image axes (a = primary, b = secondary)", fontsize=10)
    normal = np.array([-0.35, -0.55, 0.76])  # a typical annulus normal: right, anterior, superior
    s_curve_axes(axes[3], normal, {"nearest_ap": Angulation(0, float(s_curve(normal, 0)))},
                 title="S-curve of the annulus normal n = (-0.35, -0.55, 0.76) (LPS)")
    fig.suptitle("C-arm conventions: patient LPS frame; d = (sin a cos b, -cos a cos b, sin b) from the source through "
                 "the isocentre to the detector", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
