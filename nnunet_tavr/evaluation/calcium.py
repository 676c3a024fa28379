"""Calcium found (by the rule or a model) against calcium known by construction (phantoms).

:func:`calcium_agreement` compares a :class:`~nnunet_tavr.label_derivation.calcium.CalciumResult`
with a phantom's true calcium voxels (``Phantom.calcium``: nodule ids) and its nodule list
(``truth["calcium"]["nodules"]``):

- **Dice** of the calcium voxels of the nodules of at least ``min_size_mm`` against the found
  calcium, leaving out found components that touch only smaller nodules (those are judged by
  detection alone). A nodule's size is its smallest extent (``min_extent_mm``: a ball's diameter,
  a plaque's thickness; a 3 mm deposit is 3 mm in every direction), else its volume-equivalent
  diameter;
- per nodule: found or not, its own Dice (against the components that touch it), and whether the
  component holding most of it is assigned to the nodule's region;
- the **volume** found against the exact volume of every nodule (``volume_mm3``), in total and per
  region;
- false components: found components that touch no nodule's true voxels and lie farther than its
  largest semi-axis plus one voxel from every nodule's centre (a nodule smaller than a voxel can
  have no true voxel and still be seen).
"""

from __future__ import annotations

import numpy as np


def size_mm(nodule: dict) -> float:
    """A nodule's size for judging: its smallest extent, else its equivalent diameter (mm)."""
    return float(nodule.get("min_extent_mm", nodule["diameter_mm"]))


def calcium_agreement(truth_ids: np.ndarray, nodules: list[dict], result, min_size_mm: float = 3.0) -> dict:
    """Agreement of ``result`` with the truth (see the module docstring); plain numbers and lists."""
    mask = result.full_mask()
    cmap = np.zeros(mask.shape, np.int32)
    if result.component_map is not None:
        cmap[result.box] = result.component_map
    big = [n for n in nodules if size_mm(n) >= min_size_mm]
    big_ids = [n["id"] for n in big]
    truth_big = np.isin(truth_ids, big_ids)
    touching_big = set(np.unique(cmap[truth_big]).tolist()) - {0}
    touching_small = set(np.unique(cmap[(truth_ids > 0) & ~truth_big]).tolist()) - {0}
    judged = mask & ~np.isin(cmap, list(touching_small - touching_big))
    inter = int(np.count_nonzero(judged & truth_big))
    denominator = int(np.count_nonzero(judged)) + int(np.count_nonzero(truth_big))
    by_id = {c.id: c for c in result.components}
    per_nodule = []
    for n in nodules:
        own = truth_ids == n["id"]
        hit = np.bincount(cmap[own].ravel(), minlength=1)
        hit[0] = 0
        found = bool(hit.any())
        entry = {"id": n["id"], "region": n["region"], "kind": n.get("kind"), "size_mm": size_mm(n), "found": found,
                 "assigned": None, "dice": 0.0, "volume_mm3": n["volume_mm3"], "found_mm3": 0.0}
        if found:
            comps = np.flatnonzero(hit)
            found_mask = np.isin(cmap, comps)
            entry["dice"] = 2 * int(np.count_nonzero(found_mask & own)) / (int(np.count_nonzero(found_mask)) + int(np.count_nonzero(own)))
            entry["assigned"] = by_id[int(np.argmax(hit))].region
            entry["found_mm3"] = float(sum(by_id[int(c)].volume_mm3 for c in comps))
        per_nodule.append(entry)
    true_total = float(sum(n["volume_mm3"] for n in nodules))
    found_total = float(result.total_mm3)
    touching = set(np.unique(cmap[truth_ids > 0]).tolist())
    reach = max(result.spacing)
    false = [c.id for c in result.components if c.id not in touching and not _near_a_nodule(c.centroid_mm, nodules, reach)]
    regions = sorted({n["region"] for n in nodules} | {c.region for c in result.components if c.region})
    return {
        "dice": (2 * inter / denominator) if denominator else None,
        "n_nodules": len(nodules), "n_big": len(big),
        "big_found": sum(1 for e in per_nodule if e["found"] and e["size_mm"] >= min_size_mm),
        "found": sum(1 for e in per_nodule if e["found"]),
        "assigned_ok": sum(1 for e in per_nodule if e["found"] and e["assigned"] == e["region"]),
        "true_mm3": true_total, "found_mm3": found_total,
        "volume_error": (found_total - true_total) / true_total if true_total else None,
        "by_region": {r: {"true_mm3": float(sum(n["volume_mm3"] for n in nodules if n["region"] == r)),
                          "found_mm3": float(sum(c.volume_mm3 for c in result.components if c.region == r))} for r in regions},
        "false_components": false,
        "nodules": per_nodule,
    }


def _near_a_nodule(point_mm, nodules: list[dict], reach_mm: float) -> bool:
    point = np.asarray(point_mm, float)
    return any(np.linalg.norm(point - np.asarray(n["centre_mm"])) <= max(n["semi_axes_mm"]) + reach_mm for n in nodules)
