"""QC figures for the derived labels (matplotlib, Agg backend).

- :func:`plot_case`: one PNG per case with the labels over the CT in the annulus plane and in a
  plane along the root axis (as the paper's Table 1 (b)), and the cross-section area against the
  distance from the annulus with the detected maximum and root end marked (as its Fig. 1).
- :func:`plot_dataset_curves`: the area curves of many cases on one distance axis, mean and
  spread (as Fig. 1), with the distribution of root ends.

Planes are :class:`nnunet_tavr.geometry.PlaneGrid` s sampled from the (z, y, x) arrays in the
arrays' physical frame (index * spacing, mm); labels with nearest-neighbour, the CT linearly.
Labels are drawn in the colours of :data:`nnunet_tavr.labels.COLOURS`.
"""

from __future__ import annotations

import os

import numpy as np

from nnunet_tavr.geometry import PlaneGrid, plane_frame
from nnunet_tavr.io import pyplot, save_figure
from nnunet_tavr.labels import DISPLAY_NAMES, LABELS, PAINT_ORDER, colour, label_colormap

#: The root's colour, which marks its end and the dataset curves.
ROOT_COLOUR = colour("aortic_root")


def _show(ax, ct_img, lab_img, extent, title):
    ax.set_facecolor("black")
    if ct_img is not None:
        ax.imshow(ct_img, cmap="gray", vmin=-200, vmax=600, extent=extent, origin="lower", interpolation="bilinear")
    if lab_img is not None:
        masked = np.ma.masked_equal(lab_img.astype(int), 0)
        cmap = label_colormap()
        ax.imshow(masked, cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, alpha=0.55, extent=extent, origin="lower", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("mm")
    ax.set_aspect("equal")


def plot_area_curve(ax, root, reference_end_mm: float | None = None) -> None:
    """Area against distance from the annulus: raw, smoothed, first maximum and root end."""
    d, raw, smooth = root.distances_mm, root.area_mm2, root.area_smooth_mm2
    ax.plot(d, raw, ".", color="0.55", ms=3, label="area (raw)")
    ax.plot(d, smooth, "-", color="k", lw=1.8, label=f"moving average ({root.window} steps)")
    if root.peak_distance_mm is not None:
        k = int(np.argmin(np.abs(d - root.peak_distance_mm)))
        ax.plot(d[k], smooth[k], "^", color="tab:orange", ms=9, label=f"first maximum {d[k]:.1f} mm")
    if root.end_distance_mm is not None:
        ax.axvline(root.end_distance_mm, color=ROOT_COLOUR, lw=2, label=f"root end {root.end_distance_mm:.1f} mm")
    if reference_end_mm is not None:
        ax.axvline(reference_end_mm, color="tab:green", ls="--", lw=1.5, label=f"reference {reference_end_mm:.1f} mm")
    ax.set_xlabel("distance from annulus plane (mm)")
    ax.set_ylabel("aorta cross-section (mm²)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_case(
    path: str | os.PathLike,
    spacing,
    labels: np.ndarray | None,
    result,
    ct: np.ndarray | None = None,
    reference_end_mm: float | None = None,
    res_mm: float = 0.5,
) -> None:
    """Write the QC figure of one case.

    Parameters
    ----------
    path : path
        PNG to write (atomically).
    spacing : sequence of 3 floats
        mm per array axis (z, y, x).
    labels : (Z, Y, X) uint8 ndarray or None
        Derived label map (or, for an excluded case, whatever should be shown, e.g. the coarse masks).
    result : DerivationResult
        Its ``root`` gives the planes and the curve; ``excluded_reason`` is printed when set.
    ct : (Z, Y, X) ndarray, optional
        The CT in HU, shown under the labels.
    reference_end_mm : float, optional
        A known root end (e.g. a phantom's STJ distance) to draw on the curve.
    res_mm : float
        Pixel size of the sampled planes.
    """
    plt = pyplot()
    from matplotlib.patches import Patch

    root = result.root
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    volumes = [v for v in (ct, labels) if v is not None]
    if root is not None and volumes:
        p, n = np.asarray(root.plane_point_mm, float), np.asarray(root.plane_normal, float)
        u, v = plane_frame(n, max_cos=0.95)  # u as superior as the plane allows
        ct32 = None if ct is None else ct.astype(np.float32)
        half = 30.0
        # Image rows follow the first axis, columns the second (origin="lower": rows go up).
        annulus = PlaneGrid.spanning(p, u, v, (-half, half), (-half, half), res_mm)
        # On an oblique grid the one-voxel annulus layer is a staircase that a single plane cuts
        # only in stripes: show a thin slab around the interface, the highest-precedence label per pixel.
        slab = root.slab_mm
        ct_img = None if ct is None else annulus.sample(ct32, spacing, -0.5 * slab, order=1, cval=-1024)
        lab_img = None
        if labels is not None:
            rank = np.zeros(len(LABELS), np.uint8)
            rank[[LABELS[name] for name in PAINT_ORDER]] = np.arange(1, len(PAINT_ORDER) + 1)
            stack = np.stack([annulus.sample(labels, spacing, t, order=0) for t in np.linspace(-slab, 0.5 * slab, 4)])
            lab_img = np.take_along_axis(stack, np.argmax(rank[stack], axis=0)[None], axis=0)[0]
        _show(axes[0], ct_img, lab_img, (-half, half, -half, half), f"annulus plane (slab {-slab:.1f}..{0.5 * slab:.1f} mm)")
        far = max(60.0, (root.end_distance_mm or 30.0) + 30.0)
        along = PlaneGrid.spanning(p, n, u, (-30.0, far), (-half - 10, half + 10), res_mm)
        ct_img = None if ct is None else along.sample(ct32, spacing, order=1, cval=-1024)
        lab_img = None if labels is None else along.sample(labels, spacing, order=0)
        _show(axes[1], ct_img, lab_img, (-half - 10, half + 10, -30.0, far), "along the root axis")
        axes[1].axhline(0.0, color="w", lw=0.8, ls=":")
        if root.end_distance_mm is not None:
            axes[1].axhline(root.end_distance_mm, color=ROOT_COLOUR, lw=1.2, ls="--")
        axes[1].set_ylabel("distance from annulus plane (mm)")
        plot_area_curve(axes[2], root, reference_end_mm)
    else:
        # No plane: show the axial slice through the middle of whatever is labelled.
        vol = labels if labels is not None else ct
        if vol is not None:
            z = int(np.argmax(np.count_nonzero(labels, axis=(1, 2)))) if labels is not None and labels.any() else vol.shape[0] // 2
            ext = (0, vol.shape[2] * spacing[2], 0, vol.shape[1] * spacing[1])
            _show(axes[0], None if ct is None else ct[z], None if labels is None else labels[z], ext, f"axial slice z={z}")
        if labels is not None:
            # Coronal projection of every label: shows what the scan covers (e.g. no heart).
            ext = (0, labels.shape[2] * spacing[2], 0, labels.shape[0] * spacing[0])
            _show(axes[1], None, labels.max(axis=1), ext, "coronal projection of the labels")
        else:
            axes[1].axis("off")
        axes[2].axis("off")
    present = [] if labels is None else [name for name, val in LABELS.items() if val and np.any(labels == val)]
    if present:
        axes[0].legend(handles=[Patch(color=colour(n), label=DISPLAY_NAMES[n]) for n in present], fontsize=7, loc="lower left", framealpha=0.7)
    title = f"{result.case or ''}"
    if result.excluded_reason:
        title += f"  EXCLUDED: {result.excluded_reason}"
    elif root is not None and root.end_distance_mm is not None:
        title += f"  root end {root.end_distance_mm:.1f} mm, plane fit RMS {root.fit_rms_mm:.2f} mm"
    fig.suptitle(title, fontsize=11, color="firebrick" if result.excluded_reason else "black")
    fig.tight_layout()
    save_figure(fig, path)


def dataset_curves(results, max_distance_mm: float | None = None, step_mm: float | None = None):
    """Area curves of derived cases on one distance grid.

    Returns ``(grid_mm, curves, ends_mm)``: ``curves`` is (n_cases, len(grid)) of raw areas
    (NaN beyond a case's sweep), ``ends_mm`` the root ends. Excluded cases are left out.
    """
    roots = [r.root for r in results if r.ok and r.root is not None]
    if not roots:
        return np.zeros(0), np.zeros((0, 0)), np.zeros(0)
    step = step_mm or min(r.step_mm for r in roots)
    far = max_distance_mm or max(float(r.distances_mm[-1]) for r in roots)
    grid = np.arange(0.0, far + 1e-9, step)
    curves = np.array([np.interp(grid, r.distances_mm, r.area_mm2, right=np.nan) for r in roots])
    return grid, curves, np.array([r.end_distance_mm for r in roots])


def plot_dataset_curves(path: str | os.PathLike, results, max_distance_mm: float | None = None, title: str = "") -> dict:
    """Write the dataset-level figure: mean and spread of the area curves, root-end distribution.

    Returns summary figures (n, mean/median/sd of the root end, the mean curve's extrema).
    """
    plt = pyplot()
    from scipy.signal import find_peaks

    grid, curves, ends = dataset_curves(results, max_distance_mm)
    n_excluded = sum(1 for r in results if not r.ok)
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    summary = {"n_cases": int(len(ends)), "n_excluded": int(n_excluded)}
    if len(ends):
        with np.errstate(all="ignore"):
            mean = np.nanmean(curves, axis=0)
            sd = np.nanstd(curves, axis=0)
            q10, q90 = np.nanpercentile(curves, [10, 90], axis=0)
        for c in curves[:50]:
            ax.plot(grid, c, color="0.75", lw=0.5, zorder=1)
        ax.fill_between(grid, mean - sd, mean + sd, color=ROOT_COLOUR, alpha=0.25, label="mean ± SD", zorder=2)
        ax.plot(grid, q10, ":", color=ROOT_COLOUR, lw=1, label="10th / 90th percentile")
        ax.plot(grid, q90, ":", color=ROOT_COLOUR, lw=1)
        ax.plot(grid, mean, color="k", lw=2, label=f"mean of {len(ends)} cases", zorder=3)
        finite = np.nan_to_num(mean, nan=0.0)
        peaks, _ = find_peaks(finite)
        if peaks.size:
            valleys, _ = find_peaks(-finite)
            valleys = valleys[valleys > peaks[0]]
            summary["mean_curve_peak_mm"] = float(grid[peaks[0]])
            ax.plot(grid[peaks[0]], mean[peaks[0]], "^", color="tab:orange", ms=9, label=f"first maximum {grid[peaks[0]]:.1f} mm")
            if valleys.size:
                summary["mean_curve_minimum_mm"] = float(grid[valleys[0]])
                ax.plot(grid[valleys[0]], mean[valleys[0]], "v", color=ROOT_COLOUR, ms=9, label=f"next minimum {grid[valleys[0]]:.1f} mm")
        summary.update(
            end_mean_mm=float(np.mean(ends)), end_median_mm=float(np.median(ends)), end_sd_mm=float(np.std(ends)),
        )
        axh.hist(ends, bins=np.arange(0, grid[-1] + 2.5, 2.5), color=ROOT_COLOUR, alpha=0.7)
        axh.axvline(np.median(ends), color="k", lw=1.5, label=f"median {np.median(ends):.1f} mm")
        axh.legend(fontsize=8)
    ax.set_ylabel("aorta cross-section (mm²)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"cross-section area vs. distance from the annulus ({summary['n_cases']} derived, {n_excluded} excluded)")
    axh.set_xlabel("distance from annulus plane (mm)")
    axh.set_ylabel("root ends")
    fig.tight_layout()
    save_figure(fig, path)
    return summary
