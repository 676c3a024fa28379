"""Figures of the whole-heart analysis and dataset (matplotlib, Agg backend, atomic PNG writes).

- :func:`plot_agreement`: one quantity (a volume or the LV mass): scatter of prediction against
  reference with the identity and the least-squares line (panel A, the seed's Figure 3 A) and the
  Bland-Altman plot, difference against mean with the bias and the limits of agreement and their
  CIs as bands (panel B);
- :func:`plot_dice`: per-structure Dice box plots (the seed's Figure 2);
- :func:`plot_volume_distribution`: the volume of every structure over a dataset's cases;
- :func:`plot_case_overlay`: a case's label map over its CT in three orthogonal planes.

Classes are drawn in the colours of :data:`nnunet_tavr.labels.COLOURS`.
"""

from __future__ import annotations

import os

import numpy as np

from nnunet_tavr.cardiac.structures import abbreviation, display_name
from nnunet_tavr.io import pyplot, save_figure
from nnunet_tavr.labels import colour, label_colormap


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plot_agreement(path: str | os.PathLike, title: str, unit: str, reference, prediction, ba, corr, colour_name: str) -> None:
    """Scatter (A) and Bland-Altman (B) of one quantity; ``ba`` / ``corr`` are
    :class:`~nnunet_tavr.cardiac.agreement.BlandAltman` / :class:`~nnunet_tavr.cardiac.agreement.Correlation`."""
    plt = pyplot()
    ref, pred = np.asarray(reference, float), np.asarray(prediction, float)
    rgb = colour(colour_name)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.6))
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax_a.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.5", lw=1, label="identity")
    ax_a.scatter(ref, pred, color=rgb, edgecolor="k", s=36, zorder=3)
    if ref.size >= 2 and np.ptp(ref) > 0:
        slope, intercept = np.polyfit(ref, pred, 1)
        xs = np.array([lo - pad, hi + pad])
        ax_a.plot(xs, slope * xs + intercept, "-", color="k", lw=1.2, label=f"fit: y = {slope:.2f} x + {intercept:.1f}")
    r_text = corr.notes[0] if corr.r is None else (
        f"r = {corr.r:.3f}" + ("" if corr.ci is None else f" [{corr.ci[0]:.3f}, {corr.ci[1]:.3f}]") + f", p = {corr.p:.2g}")
    ax_a.set_title(f"A  {title}: {r_text}", fontsize=9)
    ax_a.set_xlabel(f"reference ({unit})")
    ax_a.set_ylabel(f"prediction ({unit})")
    ax_a.legend(fontsize=8, loc="upper left")
    ax_a.grid(alpha=0.3)

    mean, diff = (ref + pred) / 2, pred - ref
    ax_b.scatter(mean, diff, color=rgb, edgecolor="k", s=36, zorder=3)
    ax_b.axhline(0.0, color="0.6", lw=0.8)
    level = int(round(100 * ba.confidence))
    if ba.bias is not None:
        ax_b.axhline(ba.bias, color="k", lw=1.4, label=f"bias {_fmt(ba.bias)}")
    for value, ci, name in ((ba.bias, ba.bias_ci, None), (ba.lower, ba.lower_ci, "lower"), (ba.upper, ba.upper_ci, "upper")):
        if name is not None and value is not None:
            ax_b.axhline(value, color="tab:red", ls="--", lw=1.2, label=f"{name} limit {_fmt(value)}")
        if ci is not None:
            ax_b.axhspan(ci[0], ci[1], color="tab:red" if name else "0.3", alpha=0.12, lw=0)
    if np.ptp(np.append(diff, 0.0)) < 1e-9:  # perfect agreement: show a readable zero line
        scale = max(0.01 * float(np.abs(mean).max(initial=0.0)), 1e-3)
        ax_b.set_ylim(-scale, scale)
    note = "" if not ba.notes else f" ({ba.notes[0]})"
    ax_b.set_title(f"B  Bland-Altman, {level} % limits and CIs (bands){note}", fontsize=9)
    ax_b.set_xlabel(f"mean of reference and prediction ({unit})")
    ax_b.set_ylabel(f"prediction - reference ({unit})")
    ax_b.legend(fontsize=8, loc="best")
    ax_b.grid(alpha=0.3)
    fig.suptitle(f"{title}, n = {ref.size}", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def plot_dice(path: str | os.PathLike, dice: dict[str, list[float]], overall: list[float]) -> None:
    """Box plots of the per-case Dice of every class and of the per-case mean ("overall")."""
    plt = pyplot()
    names = ["overall", *dice]
    data = [np.asarray([v for v in overall if np.isfinite(v)])] + [np.asarray([v for v in dice[n] if np.isfinite(v)]) for n in dice]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(names), 4.2))
    box = ax.boxplot([d if d.size else [np.nan] for d in data], patch_artist=True, widths=0.6)
    for patch, name in zip(box["boxes"], names):
        patch.set_facecolor((*colour(name), 0.7) if name != "overall" else (0.8, 0.8, 0.8, 0.7))
    for i, d in enumerate(data, 1):
        ax.scatter(np.full(d.size, i) + np.linspace(-0.12, 0.12, d.size), d, s=10, color="k", zorder=3)
    ax.set_xticks(range(1, len(names) + 1), ["Overall" if n == "overall" else abbreviation(n) for n in names])
    ax.set_ylabel("Dice")
    ax.set_ylim(0.0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Dice per structure (per-case values, box: median and IQR)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_volume_distribution(path: str | os.PathLike, volumes: list[dict], structures, title: str) -> None:
    """Volume (ml) of each structure over cases: one box per structure, every case a dot."""
    plt = pyplot()
    names = [s for s in structures if any(s in v for v in volumes)]
    data = [np.asarray([v[s] for v in volumes if s in v], float) for s in names]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(names), 4.2))
    box = ax.boxplot(data, patch_artist=True, widths=0.6)
    for patch, name in zip(box["boxes"], names):
        patch.set_facecolor((*colour(name), 0.7))
    for i, d in enumerate(data, 1):
        ax.scatter(np.full(d.size, i) + np.linspace(-0.12, 0.12, d.size), d, s=10, color="k", zorder=3)
    ax.set_xticks(range(1, len(names) + 1), [abbreviation(n) for n in names])
    ax.set_ylabel("volume (ml)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_case_overlay(path: str | os.PathLike, ct: np.ndarray | None, labels: np.ndarray, values: dict[str, int], spacing,
                      title: str = "") -> None:
    """Axial, coronal and sagittal planes through the centre of the labelled voxels, labels over
    the CT (window -200..600 HU), with a legend of the classes present."""
    plt = pyplot()
    spacing = np.asarray(spacing, float)
    present = np.argwhere(labels > 0)
    centre = present.mean(axis=0).round().astype(int) if present.size else np.asarray(labels.shape) // 2
    cmap = label_colormap(values)
    fig, axes = plt.subplots(1, 3, figsize=(14, 5))
    views = (("axial", 0, (1, 2)), ("coronal", 1, (0, 2)), ("sagittal", 2, (0, 1)))
    for ax, (name, axis, (rows, cols)) in zip(axes, views):
        index = [slice(None)] * 3
        index[axis] = int(centre[axis])
        lab = labels[tuple(index)]
        extent = (0, lab.shape[1] * spacing[cols], 0, lab.shape[0] * spacing[rows])
        origin = "upper" if axis == 0 else "lower"  # axial: anterior up; others: superior up
        ax.set_facecolor("black")
        if ct is not None:
            ax.imshow(ct[tuple(index)], cmap="gray", vmin=-200, vmax=600, extent=extent, origin=origin)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, alpha=0.5, extent=extent,
                  origin=origin, interpolation="nearest")
        ax.set_title(f"{name} {index[axis]}", fontsize=9)
        ax.set_xlabel("mm")
    shown = [n for n, v in values.items() if v > 0 and (labels == v).any()]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour(n)) for n in shown]
    fig.legend(handles, [f"{abbreviation(n)}: {display_name(n)}" for n in shown], loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(fig, path)
