"""Speed and memory of ``derive_tavr_labels`` against a naive implementation, in one run.

Speed: a TotalSegmentator-sized case (330 x 330 x 450 voxels at 1.5 mm: a phantom's anatomy inside
TotalSegmentator's field of view) is derived by

- ``derive_tavr_labels`` (distance transforms only around the contact zone, one connected-component
  pass for the whole sweep), and
- a naive implementation of the same rules: a full-volume Euclidean distance transform per rule
  (``scipy.ndimage.distance_transform_edt``) and a loop over the sweep planes, each intersecting
  the whole volume, labelling the slab's components and keeping those touching the part kept so far.

Both run on one core (thread pools pinned to 1); the figure is the ratio of their CPU times
(``time.process_time``: on a shared machine wall time also counts other people's work; wall
times are printed too). Their outputs are compared label by label.

Memory: a 512 x 512 x 800 case (the phantom resampled to 0.375 x 0.47 x 0.47 mm) is derived in a
fresh process; its peak resident memory (``ru_maxrss``, input masks included) is reported.

Targets (issue 3): compute <= 1 s per case on one core, >= 10x faster than naive, < 1.5 GB peak.

Usage::

    python benchmarks/derive.py [--repeats 3] [--no-naive] [--no-memory] [--accuracy-seeds N]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy loads

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MASKS = ("aorta", "heart_ventricle_left", "iliac_artery_left", "iliac_artery_right")


def ts_sized_case(seed: int = 0):
    """The phantom's 300 x 240 x 240 mm anatomy centred in a 450 x 330 x 330 grid at 1.5 mm."""
    from nnunet_tavr.phantom import make_subject

    ph = make_subject(seed)
    target = (450, 330, 330)
    pad = [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(ph.ct.shape, target)]
    return {name: np.pad(ph.masks[name], pad) for name in MASKS}, ph.spacing, ph.truth


# ----------------------------------------------------------------------------------------------
# the naive baseline


def naive_derive(masks, spacing, valve_mm=4.5, annulus_mm=1.5, window=5, max_distance_mm=80.0):
    """The same rules without cropping or vectorised sweeping (baseline only)."""
    from scipy import ndimage

    from nnunet_tavr.geometry import fit_plane
    from nnunet_tavr.label_derivation.rules import find_root_end
    from nnunet_tavr.labels import LABELS, PAINT_ORDER

    spacing = np.asarray(spacing, float)
    aorta = masks["aorta"]
    lv = masks["heart_ventricle_left"] & ~aorta
    valve = aorta & (ndimage.distance_transform_edt(~lv, sampling=spacing) <= valve_mm + 1e-4)
    annulus = lv & (ndimage.distance_transform_edt(~aorta, sampling=spacing) <= annulus_mm + 1e-4)

    ann_idx = np.argwhere(annulus)
    plane = fit_plane(ann_idx * spacing)
    centre, normal = plane.centre, plane.normal
    rel = ann_idx * spacing - centre
    r_ann = max(float(np.sqrt(np.max(np.sum(rel**2, 1) - (rel @ normal) ** 2))), 2 * spacing.max())
    # Signed distance and radial distance of every voxel of the volume.
    grids = np.ogrid[tuple(slice(0, n) for n in aorta.shape)]
    s = sum((g * sp - c) * nc for g, sp, c, nc in zip(grids, spacing, centre, normal)).astype(np.float32)
    sq = sum(((g * sp - c) ** 2) for g, sp, c in zip(grids, spacing, centre)).astype(np.float32)
    radial2 = sq - s**2
    near = aorta & (radial2 <= r_ann**2) & (np.abs(s) <= r_ann)
    if s[near].mean() < 0:
        normal, s = -normal, -s
    # Interface shift as in the fast rule: midway to the aorta's contact layer.
    layer = aorta & (ndimage.distance_transform_edt(~annulus, sampling=spacing) <= annulus_mm + 1e-4)
    shift = 0.5 * float(s[layer].mean())
    s -= shift
    centre = centre + shift * normal

    step = float(min(spacing[1:]))
    slab = max(step, float(np.sum(np.abs(normal) * spacing)))
    distances = np.arange(int(np.floor(max_distance_mm / step)) + 1) * step
    seeds = aorta & (radial2 <= r_ann**2) & (s <= slab)
    kept = np.zeros(aorta.shape, bool)
    structure = np.ones((3, 3, 3), bool)
    last = distances[-1] + slab / 2 + step
    edges = np.append(np.arange(-0.5, np.floor(last / step + 0.5) + 0.5) * step, np.inf)
    for k in range(len(edges) - 1):  # one plane (slab) at a time, over the whole volume
        in_slab = aorta & (s >= edges[k]) & (s < edges[k + 1]) & (s < last)
        comps, n = ndimage.label(in_slab, structure=structure)
        if n == 0:
            continue
        touching = ndimage.binary_dilation(kept, structure=structure) | seeds
        keep_ids = np.unique(comps[touching & in_slab])
        kept |= np.isin(comps, keep_ids[keep_ids > 0])
    area = np.array([np.count_nonzero(kept & (s >= d - slab / 2) & (s < d + slab / 2)) for d in distances]) * np.prod(spacing) / slab
    _, end = find_root_end(distances, area, window)
    root = kept & (s <= end + 1e-4)

    labels = np.zeros(aorta.shape, np.uint8)
    parts = {
        "aorta": aorta,
        "left_ventricle": masks["heart_ventricle_left"],
        "iliac_artery_left": masks["iliac_artery_left"],
        "iliac_artery_right": masks["iliac_artery_right"],
        "aortic_root": root,
        "valve": valve,
        "annulus": annulus,
    }
    for name in PAINT_ORDER:
        labels[parts[name]] = LABELS[name]
    return labels, end


# ----------------------------------------------------------------------------------------------
# memory on a 512 x 512 x 800 case, in a fresh process


def write_large_case(folder: Path) -> tuple[float, ...]:
    from nnunet_tavr.phantom import make_subject

    ph = make_subject(1)
    target = (800, 512, 512)
    index = np.ix_(*[(np.arange(t) * s) // t for s, t in zip(ph.ct.shape, target)])
    spacing = tuple(float(sp * s / t) for sp, s, t in zip(ph.spacing, ph.ct.shape, target))
    for name in MASKS:
        np.save(folder / f"{name}.npy", np.packbits(ph.masks[name][index]))
    (folder / "meta.json").write_text(json.dumps({"shape": target, "spacing": spacing}))
    return spacing


def _rss_mib(field: str) -> float:
    """Resident memory of this process from /proc (VmRSS: now, VmHWM: peak), in MiB.

    ``getrusage``'s ``ru_maxrss`` is not used: Linux carries the parent's peak across fork + exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def memory_child(folder: Path) -> None:
    """Load the large case, derive it once, print JSON with timings and peak RSS (MiB)."""
    from nnunet_tavr.label_derivation import derive_tavr_labels

    meta = json.loads((folder / "meta.json").read_text())
    shape = tuple(meta["shape"])
    masks = {name: np.unpackbits(np.load(folder / f"{name}.npy"), count=int(np.prod(shape))).view(bool).reshape(shape) for name in MASKS}
    rss_inputs = _rss_mib("VmRSS")
    _reset_peak()  # the peak from here on is the derivation's (with the inputs resident)
    t0 = time.process_time()
    labels, result = derive_tavr_labels(masks, meta["spacing"])
    seconds = time.process_time() - t0
    peak = _rss_mib("VmHWM")
    print(json.dumps({
        "ok": result.ok,
        "reason": result.excluded_reason,
        "seconds": seconds,
        "rss_before_derive_mib": rss_inputs,
        "peak_rss_mib": peak,
        "input_masks_mib": sum(m.nbytes for m in masks.values()) / 2**20,
        "end_mm": None if result.root is None else result.root.end_distance_mm,
    }))


# ----------------------------------------------------------------------------------------------


def accuracy(n: int, first_seed: int = 200) -> None:
    """Root end against the phantoms' sinotubular junction (seeds from 200: not used to tune the rule)."""
    from nnunet_tavr.label_derivation import derive_tavr_labels
    from nnunet_tavr.labels import LABELS
    from nnunet_tavr.phantom import AORTA_PARTS, make_subject

    configs = {
        "1.5 mm": {},
        "rotated (20, -15, 10) deg": {"rotation_deg": (20.0, -15.0, 10.0)},
        "2.5 x 1.2 x 1.2 mm": {"spacing": (2.5, 1.2, 1.2), "shape": (120, 200, 200)},
    }
    for name, kw in configs.items():
        errors, in_descending, excluded = [], 0, 0
        for seed in range(first_seed, first_seed + n):
            ph = make_subject(seed, **kw)
            labels, result = derive_tavr_labels(ph.masks, ph.spacing)
            if not result.ok:
                excluded += 1
                continue
            errors.append(result.root.end_distance_mm - ph.truth["stj_distance_mm"])
            in_descending += int(np.count_nonzero((labels == LABELS["aortic_root"]) & (ph.aorta_part == AORTA_PARTS["descending"])))
        e = np.asarray(errors)
        print(f"accuracy {name}: {n} phantoms, {excluded} excluded; root end - STJ: mean {e.mean():+.2f} mm, "
              f"SD {e.std():.2f} mm, max |error| {np.abs(e).max():.2f} mm; root voxels in the descending aorta: {in_descending}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--accuracy-seeds", type=int, default=0, help="also check the root end on N phantoms per grid")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return 0

    from nnunet_tavr.label_derivation import derive_tavr_labels
    from nnunet_tavr.labels import LABELS

    masks, spacing, truth = ts_sized_case()
    shape = masks["aorta"].shape
    print(f"case: {shape[2]} x {shape[1]} x {shape[0]} voxels (x y z) at {spacing[0]} mm, {np.prod(shape) / 1e6:.0f} M voxels")
    labels, result = derive_tavr_labels(masks, spacing)  # warm-up (imports)
    cpu, wall = [], []
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        labels, result = derive_tavr_labels(masks, spacing)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    fast = min(cpu)
    print(f"derive_tavr_labels: {fast:.3f} s CPU (best of {args.repeats}: {', '.join(f'{t:.3f}' for t in cpu)}; "
          f"wall {', '.join(f'{t:.3f}' for t in wall)})  root end {result.root.end_distance_mm:.2f} mm (phantom STJ {truth['stj_distance_mm']:.2f} mm)")
    if not args.no_naive:
        c0, t0 = time.process_time(), time.perf_counter()
        naive_labels, naive_end = naive_derive(masks, spacing)
        slow, slow_wall = time.process_time() - c0, time.perf_counter() - t0
        print(f"naive (full-volume EDT per rule, plane loop): {slow:.1f} s CPU ({slow_wall:.1f} s wall), root end {naive_end:.2f} mm")
        print(f"speed-up (CPU time): {slow / fast:.0f}x")
        agree = []
        for name, value in LABELS.items():
            if value:
                a, b = labels == value, naive_labels == value
                agree.append(f"{name} {2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1):.4f}")
        print("agreement with naive (Dice): " + ", ".join(agree))
    if not args.no_memory:
        with tempfile.TemporaryDirectory() as tmp:
            sp = write_large_case(Path(tmp))
            proc = subprocess.run([sys.executable, __file__, "--memory-child", tmp], capture_output=True, text=True, check=True)
            m = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"512 x 512 x 800 case ({sp[2]:.3f} x {sp[1]:.3f} x {sp[0]:.3f} mm): {m['seconds']:.2f} s CPU, "
              f"peak RSS during derivation {m['peak_rss_mib']:.0f} MiB (whole process, incl. the {m['input_masks_mib']:.0f} MiB of input masks; "
              f"{m['rss_before_derive_mib']:.0f} MiB before it), root end {m['end_mm']:.2f} mm, derived: {m['ok']} {m['reason'] or ''}")
    if args.accuracy_seeds:
        accuracy(args.accuracy_seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
