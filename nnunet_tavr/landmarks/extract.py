"""Landmark points from nnU-Net predictions (world mm, sub-voxel).

Two readings of one prediction, chosen by the trainer that made it:

- **heatmap** (``nnUNetTrainerHeatmapOT`` / ``...MSE``): nnU-Net saved the channel softmax
  ``P_c`` (``--save_probabilities``, the ``.npz``). Landmark ``l``'s heatmap logit is recovered
  exactly as ``log P_l - log P_0`` (the trainers define it as ``z_l - z_0``); its spatial softmax is
  the predicted distribution. The point is its **peak plus local refinement**: the
  distribution-weighted centroid of the voxels within ``refine_mm`` of the peak (a soft-argmax
  restricted to the peak, so a second mode elsewhere cannot pull it). The peak is the voxel
  holding the most mass nearby (the distribution smoothed by a Gaussian of ``refine_mm / 2``), not
  the single most probable voxel: one spurious bright voxel (a regression heatmap's artefact at the
  volume's corner, say) cannot outweigh a mode. Voxels where ``P_0`` underflowed to 0 (a saturated
  peak, in float16 exports) share the top weight.
- **segmentation** (nnU-Net's own trainer on the sphere labels): the centre of mass of the largest
  connected component of each predicted label (a missing label gives no point).

Points are returned in the arrays' frame (``index * spacing``, mm, (z, y, x)) and converted to
world coordinates with the prediction's own geometry (SimpleITK origin and direction).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from nnunet_tavr.errors import InputError, MissingFile
from nnunet_tavr.geometry import index_to_world

#: Landmark names by label value (the ``hinge`` scheme's labels).
DEFAULT_NAMES = {1: "RCC", 2: "LCC", 3: "NCC"}
MODES = ("auto", "heatmap", "segmentation")


@dataclass
class CasePoints:
    """One case's predicted points: name -> world (x, y, z) mm, or None when the prediction has none."""

    case: str
    method: str
    world: dict[str, list[float] | None]
    index: dict[str, list[float] | None] = field(default_factory=dict)
    peak: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"method": self.method, **{n: ({"world_xyz_mm": w, "index_zyx": self.index.get(n)} if w is not None else None)
                                          for n, w in self.world.items()}}


def heatmap_points(probabilities: np.ndarray, spacing, refine_mm: float = 4.0) -> dict[int, tuple[np.ndarray, float]]:
    """Label value -> (index (z, y, x) continuous, peak share) from channel probabilities ``(C, *S)``.

    ``peak share`` is the mass of the distribution within ``refine_mm`` of its peak (1 = all of it),
    a confidence of the point. ``spacing`` is mm per axis, ``refine_mm`` the refinement radius (mm).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    spacing = np.asarray(spacing, float)
    tiny = np.finfo(np.float64).tiny
    log0 = np.log(np.maximum(probs[0], tiny))
    out = {}
    for value in range(1, probs.shape[0]):
        p = probs[value]
        logit = np.where(p > 0, np.log(np.maximum(p, tiny)) - log0, -np.inf)
        saturated = (probs[0] <= 0) & (p > 0)
        finite = np.isfinite(logit)
        if not finite.any() and not saturated.any():
            continue
        top = logit[finite].max() if finite.any() else 0.0
        logit[saturated] = top
        w = np.exp(logit - top)
        w /= w.sum()
        # the most mass nearby, not the brightest voxel (see the module's docstring)
        smooth = gaussian_filter(w, sigma=refine_mm / 2 / spacing, mode="constant", truncate=3.0)
        peak = np.unravel_index(int(np.argmax(smooth)), w.shape)
        idx, mass = _local_centroid(w, np.asarray(peak, float), spacing, refine_mm)
        out[value] = (idx, mass)
    return out


def _local_centroid(w: np.ndarray, start: np.ndarray, spacing: np.ndarray, radius_mm: float, iterations: int = 3):
    """Weighted centroid (continuous index) of ``w`` within ``radius_mm`` of a point, re-centred on
    its own result ``iterations`` times: a ball centred on the peak voxel rather than on the
    point would cut the distribution asymmetrically and pull the centroid toward that voxel."""
    centre, mass = start, 0.0
    reach = np.ceil(radius_mm / spacing).astype(int) + 1
    for _ in range(iterations):
        lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
        hi = np.minimum(np.floor(centre).astype(int) + reach + 2, w.shape)
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        near = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing)) <= radius_mm**2
        local = w[tuple(slice(a, b) for a, b in zip(lo, hi))] * near
        mass = float(local.sum())
        if mass <= 0:
            break
        centre = np.array([float((local * g).sum() / mass) for g in grids])
    return centre, mass


def segmentation_points(seg: np.ndarray, values) -> dict[int, np.ndarray]:
    """Label value -> centre of mass (continuous index (z, y, x)) of its largest component."""
    import cc3d

    out = {}
    for value in values:
        mask = np.asarray(seg) == value
        if not mask.any():
            continue
        comp, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
        if n > 1:
            counts = np.bincount(comp.ravel())
            counts[0] = 0
            mask = comp == int(np.argmax(counts))
        out[int(value)] = np.argwhere(mask).mean(axis=0)
    return out


def trainer_of(pred_dir: Path) -> str | None:
    """The trainer that made a prediction folder: from nnUNetv2_predict's
    ``predict_from_raw_data_args.json``, or the ``Trainer__Plans__conf`` folder above a
    ``fold_k/validation`` folder."""
    args = pred_dir / "predict_from_raw_data_args.json"
    if args.is_file():
        try:
            model = json.loads(args.read_text()).get("model_training_output_dir") or ""
        except ValueError:
            model = ""
        if "__" in Path(model).name:
            return Path(model).name.split("__")[0]
    for parent in [pred_dir, *pred_dir.parents][:3]:
        if parent.name.count("__") >= 2:
            return parent.name.split("__")[0]
    return None


def resolve_mode(mode: str, pred_dir: Path, trainer: str | None = None) -> str:
    """``heatmap`` / ``segmentation`` for ``auto``: heatmap when the trainer's name (given, or found
    by :func:`trainer_of`) says so.

    Raises
    ------
    UsageError
        ``auto`` and the trainer is unknown (nnUNetv2_predict does not record it in its folder).
    """
    from nnunet_tavr.errors import UsageError

    if mode != "auto":
        return mode
    trainer = trainer or trainer_of(pred_dir)
    if trainer is None:
        raise UsageError(f"cannot tell which trainer made {pred_dir} (nnUNetv2_predict does not record it): "
                         "pass --trainer NAME (the -tr of nnUNetv2_predict) or --mode heatmap / --mode segmentation")
    return "heatmap" if "Heatmap" in trainer else "segmentation"


def case_points(seg_path: Path, mode: str, names: dict[int, str] = DEFAULT_NAMES, refine_mm: float = 4.0) -> CasePoints:
    """The points of one predicted case (``CASE.nii.gz``, with ``CASE.npz`` for heatmaps)."""
    from nnunet_tavr.io import read_array, read_geometry

    case = seg_path.name.split(".")[0]
    geometry = read_geometry(seg_path, case)
    if mode == "heatmap":
        npz = seg_path.with_name(case + ".npz")
        if not npz.is_file():
            raise MissingFile(f"case {case}: {npz} not found: heatmap predictions need nnUNetv2_predict --save_probabilities "
                              "(or nnUNetv2_train --npz for validation folders)")
        with np.load(npz) as data:
            if "probabilities" not in data:
                raise InputError(f"case {case}: {npz} has no 'probabilities' array")
            probs = data["probabilities"]
        if tuple(probs.shape[1:]) != tuple(geometry.shape):
            raise InputError(f"case {case}: probabilities {tuple(probs.shape[1:])} do not match {seg_path.name} {tuple(geometry.shape)}")
        points = heatmap_points(probs, geometry.spacing, refine_mm)
        found = {v: idx for v, (idx, _) in points.items()}
        peak = {names[v]: share for v, (_, share) in points.items() if v in names}
    else:
        seg, _ = read_array(seg_path, case)
        found, peak = segmentation_points(seg, names), {}
    world, index = {}, {}
    for value, name in names.items():
        idx = found.get(value)
        index[name] = None if idx is None else [float(v) for v in idx]
        world[name] = None if idx is None else index_to_world(idx, geometry.spacing, geometry.origin, geometry.direction).tolist()
    return CasePoints(case=case, method=mode, world=world, index=index, peak=peak)


def prediction_files(pred_dir: Path, ending: str = ".nii.gz") -> list[Path]:
    """The predicted cases of a folder (``CASE<ending>``), sorted."""
    files = sorted(p for p in Path(pred_dir).glob(f"*{ending}") if not p.name.startswith("."))
    if not files:
        raise MissingFile(f"no predictions (*{ending}) in {pred_dir}")
    return files
