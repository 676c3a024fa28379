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


def conventions_figure(path) -> Path:
    """The conventions of :mod:`nnunet_tavr.carm`: the patient's LPS axes, the AP, LAO 30 and CRA 30
    C-arm poses (source, isocentre, detector and its image axes) and an S-curve."""
    from nnunet_tavr.carm import Projection

    plt = pyplot()
    fig = plt.figure(figsize=(15, 5.2))
    views = [("AP (0, 0)", Angulation(0, 0)), ("LAO 30", Angulation(30, 0)), ("CRA 30", Angulation(0, 30))]
    for k, (name, angle) in enumerate(views):
        ax = fig.add_subplot(1, 4, k + 1, projection="3d")
        p = Projection.at(angle, [0, 0, 0], sdd=1100, pixel_mm=1.0, shape=(300, 300), sid=785)
        c, r, d = p.axes
        s, det = p.source, p.detector_centre
        ax.plot(*zip(s, det), color="tab:orange", lw=1)
        ax.scatter(*s, color="tab:orange", s=40)
        ax.text(*s, "source", fontsize=7)
        corners = np.array([det + a * 150 * c + b * 150 * r for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))])
        ax.plot(*corners.T, color="tab:blue")
        ax.quiver(*det, *(150 * c), color="tab:green")
        ax.quiver(*det, *(150 * r), color="tab:purple")
        ax.text(*(det + 160 * c), "columns", color="tab:green", fontsize=7)
        ax.text(*(det + 160 * r), "rows", color="tab:purple", fontsize=7)
        for axis, label, col in ((np.eye(3)[0], "L (+x)", "k"), (np.eye(3)[1], "P (+y)", "k"), (np.eye(3)[2], "S (+z)", "k")):
            ax.quiver(0, 0, 0, *(250 * axis), color=col, lw=1)
            ax.text(*(270 * axis), label, fontsize=7)
        ax.set_xlim(-800, 800)
        ax.set_ylim(-800, 800)
        ax.set_zlim(-800, 800)
        ax.view_init(elev=18, azim=-60)
        ax.set_xlabel("x (L)")
        ax.set_ylabel("y (P)")
        ax.set_zlabel("z (S)")
        ax.set_title(f"{name}: d = ({d[0]:.2f}, {d[1]:.2f}, {d[2]:.2f})", fontsize=9)
    ax = fig.add_subplot(1, 4, 4)
    normal = np.array([-0.35, -0.55, 0.76])  # a typical annulus normal: right, anterior, superior
    s_curve_axes(ax, normal, {"nearest_ap": Angulation(0, float(s_curve(normal, 0)))}, title="S-curve of n = (-0.35, -0.55, 0.76) (LPS)")
    fig.suptitle("C-arm conventions (patient LPS; d = source -> detector; LAO and CRA positive, detector side)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
