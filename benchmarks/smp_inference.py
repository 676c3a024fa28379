"""Inference time per 512^2 angiography frame of seed 002's six architectures (SMP trainers) against
nnU-Net's own 2d U-Net, in the same run.

Run:
    python benchmarks/smp_inference.py                      # CPU, torch threads 1 and 2
    python benchmarks/smp_inference.py --device cuda --threads 0
    python benchmarks/smp_inference.py --seed-encoders      # also seed 002's tuned encoders (slow on CPU)

Each network is built exactly as its trainer builds it for a 2d plan of 512^2 frames (the SMP models
inside PadToMultiple; nnU-Net's PlainConvUNet by nnU-Net's planning rules, ``plans_from_rules`` of
benchmarks/architectures.py: 8 stages, 32-512 features), in eval mode without deep supervision, and
timed on one 1 x 1 x 512 x 512 frame: median of ``--repeats`` forward passes after one warm-up, no
gradient. nnU-Net's default test-time mirroring runs 4 such passes per 2-D frame (``--disable_tta``: 1).
Figures are ratios against the U-Net measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ARCHS = ("FPN", "UnetPlusPlus", "DeepLabV3Plus", "Linknet", "MAnet", "PSPNet")
#: seed 002's Table 2 encoders per architecture
SEED_ENCODERS = {"UnetPlusPlus": "efficientnet-b4", "Linknet": "se_resnext101_32x4d", "FPN": "se_resnext101_32x4d",
                 "PSPNet": "se_resnext101_32x4d", "DeepLabV3Plus": "se_resnext101_32x4d", "MAnet": "efficientnet-b4"}


def unet_reference(size: int, pixel_mm: float):
    from architectures import plans_from_rules
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans, configuration = plans_from_rules([size, size], [pixel_mm, pixel_mm], 2)
    pm = PlansManager(plans)
    return nnUNetTrainer.build_network_architecture(pm, pm.get_configuration(configuration), 1, 2, False)


def build(name: str, encoder: str, size: int):
    from nnunet_tavr.trainers.smp_networks import build_smp

    return build_smp(name, 1, 2, (size, size), encoder_name=encoder)


def time_forward(net, size: int, repeats: int, device: str) -> list[float]:
    import torch

    net = net.to(device).eval()
    x = torch.randn(1, 1, size, size, device=device)
    times = []
    with torch.no_grad():
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            net(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if k:
                times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="frame size in pixels (default 512)")
    p.add_argument("--pixel-mm", type=float, default=0.35, help="pixel size for nnU-Net's planning rules (default 0.35)")
    p.add_argument("--encoder", default="resnet34", help="SMP encoder (default resnet34, the trainers' default)")
    p.add_argument("--seed-encoders", action="store_true", help="also time seed 002's tuned encoders")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads to measure (0: leave as is)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import torch

    from nnunet_tavr.trainers.networks import count_parameters

    nets = {"nnU-Net 2d U-Net": lambda: unet_reference(args.size, args.pixel_mm)}
    for arch in ARCHS:
        nets[f"{arch} ({args.encoder})"] = (lambda a=arch: build(a, args.encoder, args.size))
    if args.seed_encoders:
        for arch in ARCHS:
            nets[f"{arch} ({SEED_ENCODERS[arch]})"] = (lambda a=arch: build(a, SEED_ENCODERS[a], args.size))
    load0 = os.getloadavg()
    rows = {}
    for threads in args.threads:
        if threads:
            torch.set_num_threads(threads)
        for name, make in nets.items():
            torch.manual_seed(0)
            net = make()
            times = time_forward(net, args.size, args.repeats, args.device)
            rows[(threads, name)] = (count_parameters(net), statistics.median(times), times)
            del net
    load1 = os.getloadavg()
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, device {args.device}, frame 1 x 1 x {args.size} x {args.size}, "
          f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end")
    for threads in args.threads:
        base = rows[(threads, "nnU-Net 2d U-Net")][1]
        print(f"\ntorch threads {threads or torch.get_num_threads()}")
        print(f"{'network':<40}{'params':>10}{'ms/frame':>11}{'frames/s':>10}{'x U-Net':>9}   forward times (ms)")
        for name in nets:
            n, t, times = rows[(threads, name)]
            print(f"{name:<40}{n / 1e6:>8.1f} M{1000 * t:>11.0f}{1 / t:>10.2f}{t / base:>9.2f}   "
                  + ", ".join(f"{1000 * s:.0f}" for s in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
