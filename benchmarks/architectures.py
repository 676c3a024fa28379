"""nnU-Net's planned U-Net vs MONAI VNet vs SwinUNETR on the same plan: parameters, time and peak
memory of one training step (forward + backward) per patch.

Run:
    python benchmarks/architectures.py                                  # CPU, a representative CT plan
    python benchmarks/architectures.py --device cuda --batch 2 --patch 128 128 128
    python benchmarks/architectures.py --plans $nnUNet_preprocessed/Dataset301_TAVR/nnUNetPlans.json

With ``--plans`` the U-Net is exactly the one nnU-Net planned for that configuration; otherwise it is
built by nnU-Net's own planning rules (``get_pool_and_conv_props``; 32 base features, at most 320,
two convolutions per stage) for ``--patch`` and ``--spacing``.  VNet and SwinUNETR are built by the
trainers' ``build_network_architecture`` from the same plan, so their internal padding to multiples
of 16 / 32 is included in what is measured.  Figures are ratios against the U-Net measured in the
same run.  Time: median of ``--repeats`` steps after one warm-up step.  Memory: on CUDA the peak
allocated by torch during the step, with nnU-Net's autocast (mixed precision); on CPU the growth of
the process's peak resident memory during the step, each network measured in a fresh process so the
high-water marks do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

ARCHS = ("unet", "vnet", "swinunetr")
LABEL = {"unet": "nnU-Net U-Net", "vnet": "VNet (MONAI)", "swinunetr": "SwinUNETR (MONAI)"}


def plans_from_rules(patch_size, spacing, num_classes=8):
    """A minimal nnU-Net plans dict whose 3d_fullres U-Net follows nnU-Net's default planner."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    dims = len(patch_size)
    _, strides, kernels, patch, _ = get_pool_and_conv_props(list(spacing), list(patch_size), 4, 999999)
    n = len(strides)
    conv = "torch.nn.modules.conv.Conv3d" if dims == 3 else "torch.nn.modules.conv.Conv2d"
    norm = "torch.nn.modules.instancenorm.InstanceNorm3d" if dims == 3 else "torch.nn.modules.instancenorm.InstanceNorm2d"
    max_features = 320 if dims == 3 else 512
    config = {
        "data_identifier": "bench", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [int(p) for p in patch], "median_image_size_in_voxels": [int(p) for p in patch],
        "spacing": list(spacing), "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities":
        "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {}, "batch_dice": False,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n, "features_per_stage": [min(max_features, 32 * 2 ** i) for i in range(n)],
                "conv_op": conv, "kernel_sizes": kernels, "strides": strides, "n_conv_per_stage": [2] * n,
                "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True, "norm_op": norm,
                "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
    }
    name = "3d_fullres" if dims == 3 else "2d"
    plans = {"dataset_name": "bench", "plans_name": "bench", "original_median_spacing_after_transp": list(spacing),
             "original_median_shape_after_transp": [int(p) for p in patch], "image_reader_writer": "SimpleITKIO",
             "transpose_forward": list(range(3)), "transpose_backward": list(range(3)),
             "configurations": {name: config}, "experiment_planner_used": "rules", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {}}
    return plans, name


def build(arch, plans, configuration, num_classes):
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_tavr.trainers.variants.architecture_trainers import nnUNetTrainerSwinUNETR, nnUNetTrainerVNet

    pm = PlansManager(plans)
    cm = pm.get_configuration(configuration)
    cls = {"unet": nnUNetTrainer, "vnet": nnUNetTrainerVNet, "swinunetr": nnUNetTrainerSwinUNETR}[arch]
    # training as each trainer trains: the U-Net with deep supervision, VNet/SwinUNETR single output
    net = cls.build_network_architecture(pm, cm, 1, num_classes, arch == "unet")
    return net, list(cm.patch_size), torch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(arch, plans, configuration, num_classes, batch, repeats, device, threads):
    """Parameters, median step time (s) and peak step memory (bytes) of one network."""
    net, patch, torch = build(arch, plans, configuration, num_classes)
    torch.set_num_threads(threads)
    dev = torch.device(device)
    net = net.to(dev).train()
    x = torch.randn(batch, 1, *patch, device=dev)
    n_params = sum(p.numel() for p in net.parameters())
    cuda = dev.type == "cuda"

    def step():
        net.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, enabled=cuda):
            out = net(x)
            outs = out if isinstance(out, (list, tuple)) else [out]
            loss = sum(o.float().mean() for o in outs)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()

    rss_before = _rss_bytes()
    step()  # warm-up (allocator, cuDNN autotuning, lazy init)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # ru_maxrss is in KiB on Linux; the high-water mark of this fresh process minus its size before the first step
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    return {"arch": arch, "params": n_params, "time_s": statistics.median(times), "times": times,
            "peak_bytes": peak, "patch": patch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plans", help="an nnU-Net plans .json (default: nnU-Net's planning rules for --patch/--spacing)")
    p.add_argument("--configuration", default=None, help="configuration of --plans (default 3d_fullres)")
    p.add_argument("--patch", type=int, nargs="+", default=[80, 96, 96],
                   help="patch size (z y x) for the rule-built plan (default 80 96 96: z not a multiple of 32)")
    p.add_argument("--spacing", type=float, nargs="+", default=None, help="spacing in mm (default isotropic 1.5)")
    p.add_argument("--classes", type=int, default=8, help="segmentation heads (default 8: background + 7 TAVR)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.plans:
        with open(args.plans) as f:
            plans = json.load(f)
        configuration = args.configuration or "3d_fullres"
    else:
        spacing = args.spacing or [1.5] * len(args.patch)
        plans, configuration = plans_from_rules(args.patch, spacing, args.classes)

    if args.worker:  # one network in this process; print JSON for the parent
        print(json.dumps(measure(args.worker, plans, configuration, args.classes, args.batch, args.repeats,
                                 args.device, args.threads)))
        return 0

    results = {}
    for arch in args.archs:
        cmd = [sys.executable, __file__, "--worker", arch, "--configuration", configuration, "--classes",
               str(args.classes), "--batch", str(args.batch), "--repeats", str(args.repeats), "--device",
               args.device, "--threads", str(args.threads)]
        cmd += ["--plans", args.plans] if args.plans else ["--patch", *map(str, args.patch)] + (
            ["--spacing", *map(str, args.spacing)] if args.spacing else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{arch}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[arch] = json.loads(proc.stdout.strip().splitlines()[-1])

    from nnunet_tavr.trainers.networks import SWINUNETR_DIVISOR, VNET_DIVISOR, padded_shape

    patch = next(iter(results.values()))["patch"]
    load = os.getloadavg()
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, device {args.device}, torch threads {args.threads}, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"plan: {args.plans or 'nnU-Net planning rules'} / {configuration}, patch {patch}, batch {args.batch}, "
          f"{args.classes} classes; one training step = forward + backward"
          f"{' with autocast (mixed precision)' if args.device.startswith('cuda') else ' in float32'}")
    print(f"padded inside the network: VNet {list(padded_shape(patch, VNET_DIVISOR))}, "
          f"SwinUNETR {list(padded_shape(patch, SWINUNETR_DIVISOR, 2))}")
    base = results.get("unet")
    print(f"{'network':<20}{'params':>12}{'step time':>12}{'peak mem':>12}{'time/U-Net':>12}{'mem/U-Net':>12}")
    for arch, r in results.items():
        rt = f"{r['time_s'] / base['time_s']:.2f}x" if base else "-"
        rm = f"{r['peak_bytes'] / base['peak_bytes']:.2f}x" if base and base["peak_bytes"] > 0 else "-"
        print(f"{LABEL[arch]:<20}{r['params'] / 1e6:>10.1f} M{r['time_s']:>10.2f} s{r['peak_bytes'] / 2**30:>8.2f} GiB"
              f"{rt:>12}{rm:>12}")
    print("step times (s): " + "; ".join(f"{a} " + ", ".join(f"{t:.2f}" for t in r["times"]) for a, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
