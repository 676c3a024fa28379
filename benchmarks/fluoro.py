"""Renderer speed: frames per second of ``nnunet-tavr fluoro`` for 512^2 frames of a 1.5 mm phantom,
and the same line-integral image from DiffDRR (Siddon and trilinear) for comparison.

Run:
    python benchmarks/fluoro.py                      # threads 1 and 2, 10 frames each, DiffDRR if installed
    python benchmarks/fluoro.py --frames 20 --threads 2 --no-diffdrr
    pip install diffdrr==0.6.1 --no-deps fastcore einops torchio kornia roma   # for the comparison

What is timed:

- **frame**: one whole frame as ``fluoro`` renders it (pose, background at half the CT voxel and
  bicubic upsampling, left ventricle and bolus, full-resolution bolus and mask around the root,
  pigtail catheter, blur, scatter, noise, 8-bit display), for freshly drawn poses; the median over
  ``--frames`` frames after one warm-up frame. The case preparation (once per case) is timed apart.
- **same image**: the background line integrals ``∫ mu dl`` of one pose, 512^2 rays through the
  whole de-enhanced CT, by (a) the project's Joseph projector at full resolution, (b) the project's
  default (half-voxel rays, upsampled), (c) DiffDRR 0.6.1's Siddon renderer (exact voxel
  intersections) and (d) its trilinear renderer (half-voxel steps), all on the same rays
  (source and pixel centres in voxel coordinates) and the same volume. Agreement: relative RMS
  difference and Pearson r against (a), on the pixels whose ray crosses the body.

The figure (``--figure``, default benchmarks/results/fluoro.png) shows the times and the images.
Times are medians of wall-clock times on a shared machine: read the ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats: int):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def diffdrr_line_integrals(mu_zyx, spacing, source_zyx, pixels_zyx, renderer: str, chunk: int = 8192, step_mm: float = 0.75):
    """DiffDRR's renderer on our rays: volume as (x, y, z), points in voxel index coordinates."""
    import torch
    from diffdrr.renderers import Siddon, Trilinear, _get_alpha_minmax

    density = torch.as_tensor(np.ascontiguousarray(mu_zyx.transpose(2, 1, 0)))
    to_index = lambda p: torch.as_tensor((np.asarray(p, float) / spacing)[..., ::-1].copy(), dtype=torch.float32)  # noqa: E731
    source = to_index(source_zyx).view(1, 1, 3)
    targets = to_index(pixels_zyx.reshape(-1, 3))[None]
    length = (targets - source).norm(dim=-1)  # index units; the renderers weight by alpha * this
    scale = float(np.linalg.norm((pixels_zyx.reshape(-1, 3)[0] - source_zyx))) / float(length[0, 0])  # mm per index unit
    out = torch.zeros(targets.shape[1])
    with torch.no_grad():
        if renderer == "siddon":
            r = Siddon(voxel_shift=0.5, mode="nearest")
            for s in range(0, targets.shape[1], chunk):
                t = targets[:, s : s + chunk]
                out[s : s + chunk] = r(density, source, t, length[:, None, s : s + chunk])[0, 0]
        else:
            r = Trilinear(voxel_shift=0.5)
            dims = torch.tensor(density.shape, dtype=torch.float32)
            lo, hi = _get_alpha_minmax(source, targets, dims, 0.5, 1e-8)
            lo, hi = lo.min(), hi.max()
            span_mm = float((hi - lo) * length.max()) * scale
            n_points = int(np.ceil(span_mm / step_mm)) + 1
            for s in range(0, targets.shape[1], chunk):
                t = targets[:, s : s + chunk]
                out[s : s + chunk] = r(density, source, t, length[:, None, s : s + chunk], n_points=n_points, alphamin=lo, alphamax=hi)[0, 0]
    # DiffDRR integrates in index units along each ray; our spacing is isotropic, so mm = index * spacing
    return (out.numpy() * float(spacing[0])).reshape(pixels_zyx.shape[:2])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10, help="frames timed per thread count (default 10)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--no-diffdrr", action="store_true")
    p.add_argument("--figure", type=Path, default=RESULTS / "fluoro.png")
    args = p.parse_args(argv)

    import torch

    from nnunet_tavr.geometry import world_to_array
    from nnunet_tavr.fluoro.anatomy import prepare_case
    from nnunet_tavr.fluoro.projector import project
    from nnunet_tavr.fluoro.render import RenderSettings, upsample_bicubic, frame_projection, render_frame, sample_frame
    from nnunet_tavr.phantom import make_subject

    load0 = os.getloadavg()
    phantom = make_subject(args.seed, shape=(200, 160, 160), spacing=1.5)
    t0 = time.perf_counter()
    anatomy = prepare_case("bench", phantom.ct, phantom.labels, phantom.geometry)
    prepare_s = time.perf_counter() - t0
    settings = RenderSettings()

    frame_rows = {}
    last = None
    for threads in args.threads:
        torch.set_num_threads(threads)
        rng = np.random.default_rng(0)
        render_frame(anatomy, sample_frame(rng, anatomy, settings), settings, rng)  # warm-up
        times = []
        for _ in range(args.frames):
            params = sample_frame(rng, anatomy, settings)
            t = time.perf_counter()
            last = render_frame(anatomy, params, settings, rng)
            times.append(time.perf_counter() - t)
        frame_rows[threads] = times

    # the same image: background line integrals of one pose
    torch.set_num_threads(min(args.threads))  # the faster setting on a shared machine
    rng = np.random.default_rng(1)
    params = sample_frame(rng, anatomy, settings)
    proj = frame_projection(anatomy, params, settings)
    g, spacing = anatomy.geometry, anatomy.spacing
    source = world_to_array(proj.source, g)
    pixels = world_to_array(proj.pixel_points(), g)
    mu = anatomy.background.data[0].numpy()
    images, times = {}, {}
    images["ours, full resolution"], times["ours, full resolution"] = timed(lambda: project(anatomy.background, source=source, pixels=pixels)[0], 3)
    h, w = proj.shape
    n = int(np.ceil(h * settings.pixel_mm / settings.background_pixel(spacing)))
    rows = (np.arange(n) + 0.5) * (h / n) - 0.5
    coarse = world_to_array(proj.pixel_points(rows, rows), g)
    images["ours, default (half voxel)"], times["ours, default (half voxel)"] = timed(
        lambda: upsample_bicubic(project(anatomy.background, source=source, pixels=coarse), (h, w))[0], 3)
    diffdrr_note = ""
    if not args.no_diffdrr:
        try:
            import diffdrr

            diffdrr_note = f"DiffDRR {diffdrr.__version__}"
            images["DiffDRR Siddon"], times["DiffDRR Siddon"] = timed(lambda: diffdrr_line_integrals(mu, spacing, source, pixels, "siddon"), 1)
            images["DiffDRR trilinear"], times["DiffDRR trilinear"] = timed(lambda: diffdrr_line_integrals(mu, spacing, source, pixels, "trilinear"), 1)
        except ImportError:
            diffdrr_note = "DiffDRR not installed: comparison skipped (pip install diffdrr==0.6.1)"
    reference = images["ours, full resolution"]
    body = reference > 0.1 * reference.max()
    load1 = os.getloadavg()

    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, CPU, load average {load0[0]:.1f} at start, {load1[0]:.1f} at end; {diffdrr_note}")
    print(f"phantom seed {args.seed}: 200 x 160 x 160 voxels of 1.5 mm; frames {h} x {w}, {settings.pixel_mm} mm at the isocentre; "
          f"case preparation {prepare_s:.2f} s (once per case)")
    print("\nwhole frames (fluoro's renderer, default settings)")
    print(f"{'torch threads':<16}{'median s/frame':>16}{'frames/s':>10}   per-frame times (s)")
    for threads, ts in frame_rows.items():
        med = statistics.median(ts)
        print(f"{threads:<16}{med:>16.3f}{1 / med:>10.2f}   " + ", ".join(f"{t:.2f}" for t in ts))
    print(f"\nsame image: background line integrals of one pose ({params.angle.label(1)}), {h * w:,} rays, torch threads {min(args.threads)}")
    base = statistics.median(times["ours, default (half voxel)"])
    print(f"{'method':<30}{'median s':>10}{'x ours':>9}{'rel. RMS diff':>15}{'Pearson r':>11}")
    for name, image in images.items():
        rel = float(np.sqrt(np.mean((image[body] - reference[body]) ** 2)) / np.sqrt(np.mean(reference[body] ** 2)))
        r = float(np.corrcoef(image[body], reference[body])[0, 1])
        t = statistics.median(times[name])
        print(f"{name:<30}{t:>10.2f}{t / base:>9.1f}{100 * rel:>14.2f}%{r:>11.5f}")

    if args.figure:
        from nnunet_tavr.io import pyplot, save_figure

        plt = pyplot()
        fig = plt.figure(figsize=(18, 8))
        ax = fig.add_subplot(2, 4, 1)
        names = list(times)
        ax.barh(names, [statistics.median(times[k]) for k in names], color=["tab:blue", "tab:green", "tab:red", "tab:orange"][: len(names)])
        ax.set_xscale("log")
        ax.set_xlabel("s per 512^2 line-integral image (log)")
        ax.set_title("same image, same rays")
        ax2 = fig.add_subplot(2, 4, 5)
        for threads, ts in frame_rows.items():
            ax2.bar(str(threads), 1 / statistics.median(ts), color="tab:green")
        ax2.axhline(2.0, color="k", ls="--", label="target 2 frames/s")
        ax2.set_xlabel("torch threads")
        ax2.set_ylabel("whole frames per second")
        ax2.legend()
        ax2.set_title("fluoro, 512^2, 1.5 mm phantom")
        shown = [("ours, full resolution", "gray_r"), ("ours, default (half voxel)", "gray_r")] + [(k, "gray_r") for k in images if k.startswith("DiffDRR")]
        for k, (name, cmap) in enumerate(shown[:4]):
            a = fig.add_subplot(2, 4, 2 + k if k < 3 else 6)
            a.imshow(images[name], cmap=cmap)
            a.set_title(name, fontsize=9)
            a.set_axis_off()
        if "DiffDRR Siddon" in images:
            a = fig.add_subplot(2, 4, 7)
            diff = images["DiffDRR Siddon"] - reference
            lim = float(np.percentile(np.abs(diff[body]), 99))
            a.imshow(diff, cmap="coolwarm", vmin=-lim, vmax=lim)
            a.set_title("DiffDRR Siddon - ours (full res.)", fontsize=9)
            a.set_axis_off()
        a = fig.add_subplot(2, 4, 8)
        a.imshow(last.image, cmap="gray", vmin=0, vmax=255)
        a.contour(last.mask, [0.5], colors="tab:blue", linewidths=0.8)
        a.set_title(f"a rendered frame ({last.params.angle.label(0)}) and its mask", fontsize=9)
        a.set_axis_off()
        fig.tight_layout()
        save_figure(fig, args.figure)
        print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
