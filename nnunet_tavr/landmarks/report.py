"""Landmark errors (mm), their summary, the JSON / CSV outputs and the per-case figure."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

#: The clinical tolerance reported as a share (inter-observer variability of hinge points ~2 mm).
TOLERANCE_MM = 2.0


def point_errors(predicted: dict, reference: dict) -> list[dict]:
    """One row per (case, landmark) of the reference: ``error_mm`` (Euclidean, world mm) or
    ``None`` when the prediction has no point for it (``missing``); cases without a prediction are
    left out (the caller lists them)."""
    rows = []
    for case in sorted(set(predicted) & set(reference)):
        for name, ref in reference[case].items():
            pred = predicted[case].world.get(name)
            err = None if pred is None else float(np.linalg.norm(np.asarray(pred) - np.asarray(ref)))
            rows.append({"case": case, "landmark": name, "error_mm": err, "missing": pred is None})
    return rows


def summarise(values) -> dict:
    """median, IQR, mean, max (mm) and the share under :data:`TOLERANCE_MM` of a list of errors."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "median_mm": float(np.median(v)), "iqr_mm": [float(np.percentile(v, 25)), float(np.percentile(v, 75))],
            "mean_mm": float(v.mean()), "max_mm": float(v.max()), f"share_under_{TOLERANCE_MM:g}mm": float(np.mean(v < TOLERANCE_MM))}


def error_summary(rows: list[dict]) -> dict:
    """Per landmark and over all points; ``missing`` counts predicted cases without the point."""
    names = sorted({r["landmark"] for r in rows})
    out = {name: {**summarise(r["error_mm"] for r in rows if r["landmark"] == name),
                  "missing": sum(r["missing"] for r in rows if r["landmark"] == name)} for name in names}
    out["all"] = {**summarise(r["error_mm"] for r in rows), "missing": sum(r["missing"] for r in rows)}
    return out


def points_csv(points: dict, errors: list[dict] | None) -> str:
    """case, landmark, x, y, z (world mm), method and, with a reference, error_mm."""
    err = {(r["case"], r["landmark"]): r["error_mm"] for r in errors or []}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "landmark", "x_mm", "y_mm", "z_mm", "method"] + (["error_mm"] if errors is not None else []))
    for case, cp in sorted(points.items()):
        for name, world in cp.world.items():
            xyz = [""] * 3 if world is None else [f"{c:.3f}" for c in world]
            extra = [] if errors is None else [("" if err.get((case, name)) is None else f"{err[(case, name)]:.3f}")]
            w.writerow([case, name, *xyz, cp.method, *extra])
    return buf.getvalue()


def summary_lines(summary: dict) -> list[str]:
    key = f"share_under_{TOLERANCE_MM:g}mm"
    lines = []
    for name, s in summary.items():
        if not s.get("n"):
            lines.append(f"  {name:<4} no points ({s.get('missing', 0)} missing)")
            continue
        lines.append(f"  {name:<4} n={s['n']:<3} median {s['median_mm']:.2f} mm  IQR {s['iqr_mm'][0]:.2f}-{s['iqr_mm'][1]:.2f} mm  "
                     f"max {s['max_mm']:.2f} mm  < {TOLERANCE_MM:g} mm: {s[key]:.0%}  missing {s['missing']}")
    return lines


def _world_to_mm(world, geometry) -> np.ndarray:
    from nnunet_tavr.geometry import world_to_index

    return world_to_index(np.asarray(world, float), geometry.spacing, geometry.origin, geometry.direction) * np.asarray(geometry.spacing)


def case_figure(path: Path, case: str, volume: np.ndarray, geometry, predicted: dict, reference: dict | None,
                title: str = "", half_width_mm: float = 35.0) -> Path | None:
    """The points on the annulus-plane reslice (the plane through the three reference points, else
    the predicted ones) and on two orthogonal reslices through its centre; predicted points are crosses, reference points
    circles, coloured per landmark (:data:`nnunet_tavr.labels.COLOURS`). ``volume`` is the CT (or
    any image on the prediction's grid). Returns ``None`` when fewer than three points exist."""
    from nnunet_tavr.geometry import DegeneratePlane, PlaneGrid, plane_frame, plane_through
    from nnunet_tavr.io import pyplot, save_figure
    from nnunet_tavr.labels import colour

    pred = {n: _world_to_mm(w, geometry) for n, w in predicted.items() if w is not None}
    ref = {n: _world_to_mm(w, geometry) for n, w in (reference or {}).items() if w is not None}
    plane_points = ref if len(ref) == 3 else pred  # the reference's annulus plane when there is one
    if len(plane_points) != 3:
        return None
    try:
        centre, normal = plane_through(*plane_points.values())
    except DegeneratePlane:
        return None
    e1, e2 = plane_frame(normal)
    pixel = float(min(geometry.spacing)) / 2
    views = [("annulus plane (through the points)", e1, e2), ("orthogonal 1 (normal up)", e1, normal), ("orthogonal 2 (normal up)", e2, normal)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (label, a, b) in zip(axes, views):
        grid = PlaneGrid.square(centre, a, b, half_width_mm, pixel)
        image = grid.sample(volume, geometry.spacing, order=1)
        u0, u1, v0, v1 = grid.extent()
        ax.imshow(image.T, cmap="gray", origin="lower", extent=(u0, u1, v0, v1))
        for points, marker in ((ref, "o"), (pred, "x")):
            for name, p in points.items():
                rel = p - centre
                style = {"facecolors": "none", "edgecolors": colour(name)} if marker == "o" else {"c": [colour(name)]}
                ax.scatter([rel @ a], [rel @ b], marker=marker, s=60, linewidths=1.8, label=f"{name} {'ref' if marker == 'o' else 'pred'}", **style)
        ax.set_xlim(u0, u1)
        ax.set_ylim(v0, v1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("mm")
    axes[0].legend(fontsize=7, loc="lower right")
    outside = [n for n, p in pred.items() if np.max(np.abs([(p - centre) @ v for v in (e1, e2, normal)])) > half_width_mm]
    if outside:
        title += f"; outside the views: predicted {', '.join(outside)}"
    fig.suptitle(f"{case}: hinge points {title}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
