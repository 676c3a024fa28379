"""Cost of the skeleton recall trainers, as ratios against nnU-Net measured in the same run.

1. Data augmentation: batches/s of nnU-Net's own data loader + training transforms
   (``nnUNetDataLoader`` + ``nnUNetTrainer.get_training_transforms``, single-threaded augmenter, a
   TotalSegmentator-sized 3d_fullres plan: 1.5 mm phantoms, 128^3 patches, batch 2, 5 deep-supervision
   outputs) without and with the skeleton targets (exact thinning and the default 2x-pooled one).
   Target: >= 0.9x.
2. Loss: forward + backward time of L_FocalSK* (focal + focal skeleton recall, deep supervision)
   vs. nnU-Net's DC_and_CE_loss (deep supervision) on the same logits. Target: <= 1.5x.

Runs are interleaved (plain, skeleton, plain, ...) and the median per variant is reported, so load
from other processes hits all variants alike.

    python benchmarks/trainers.py                      # CPU defaults
    python benchmarks/trainers.py --device cuda --loss-patch 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch


class PhantomDataset:
    """nnU-Net dataset interface (``identifiers``, ``load_case``) over in-memory phantoms, with the
    foreground locations nnU-Net's preprocessor would store."""

    def __init__(self, n: int, shape=(200, 160, 160), spacing=1.5):
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

        from nnunet_tavr.phantom import make_subject

        self.cases = {}
        for i in range(n):
            ph = make_subject(i, shape=shape, spacing=spacing)
            data = ((ph.ct.astype(np.float32) - 100.0) / 300.0)[None]
            seg = ph.labels.astype(np.int8)[None]
            locations = DefaultPreprocessor._sample_foreground_locations(seg, list(range(1, 8)), seed=i)
            self.cases[f"case{i}"] = (data, seg, {"class_locations": locations})
        self.identifiers = list(self.cases)

    def load_case(self, identifier):
        data, seg, props = self.cases[identifier]
        return data, seg, None, props


def make_loader(dataset, transforms, patch, batch_size):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunet_tavr.labels import LABELS

    rot = (-30.0 / 360 * 2 * np.pi, 30.0 / 360 * 2 * np.pi)  # nnU-Net's 3D isotropic setting
    initial = get_patch_size(patch, rot, rot, rot, (0.85, 1.25))
    return nnUNetDataLoader(dataset, batch_size, initial, patch, LabelManager(dict(LABELS), None),
                            oversample_foreground_percent=0.33, transforms=transforms), rot


def augmentation_benchmark(args) -> list[str]:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_tavr.trainers.skeletons import SkeletonTargetTransform

    patch = [args.patch] * 3
    ds_scales = [[1.0] * 3] + [[0.5 ** i] * 3 for i in range(1, 5)]
    dataset = PhantomDataset(args.cases)
    variants = {"nnU-Net": None, "skeletons exact": 1, "skeletons 2x-pooled (default)": 2, "skeletons 3x-pooled": 3}
    loaders = {}
    for name, coarsen in variants.items():
        _, rot = make_loader(dataset, None, patch, args.batch)
        transforms = nnUNetTrainer.get_training_transforms(patch, rot, ds_scales, (0, 1, 2), False)
        if coarsen is not None:
            at = len(transforms.transforms) - 1  # before DownsampleSegForDSTransform, as the trainers do
            transforms.transforms.insert(at, SkeletonTargetTransform(coarsen=coarsen))
        loaders[name] = make_loader(dataset, transforms, patch, args.batch)[0]
    times = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, loader in loaders.items():
            np.random.seed(r)
            torch.manual_seed(r)
            start = time.perf_counter()
            for _ in range(args.batches):
                next(loader)
            times[name].append((time.perf_counter() - start) / args.batches)
    base = statistics.median(times["nnU-Net"])
    lines = [f"data augmentation, {args.batch} x {args.patch}^3 patches, 1.5 mm phantoms "
             f"({args.rounds} interleaved rounds x {args.batches} batches, median):"]
    for name in variants:
        t = statistics.median(times[name])
        lines.append(f"  {name:<30} {1 / t:6.2f} batches/s  {t * 1000:7.1f} ms/batch  ratio {base / t:5.2f}x")
    return lines


def loss_benchmark(args) -> list[str]:
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from nnunet_tavr.phantom import make_subject
    from nnunet_tavr.trainers.losses import FocalLoss, SegAndSkeletonLoss, SkeletonRecallLoss
    from nnunet_tavr.trainers.skeletons import skeleton_targets

    device = torch.device(args.device)
    p = args.loss_patch
    labels = make_subject(1).labels
    z0 = (labels.shape[0] - p) // 2
    seg = np.stack([labels[z0:z0 + p, 16:16 + p, 16:16 + p]] * args.batch).astype(np.int16)
    skel = np.stack([skeleton_targets(s) for s in seg])
    scales = [0.5 ** i for i in range(5)]
    weights = np.array([1 / 2 ** i for i in range(5)])
    weights[-1] = 0
    weights /= weights.sum()

    def pyramid(arr):
        t = torch.from_numpy(arr)[:, None].float()
        return [torch.nn.functional.interpolate(t, scale_factor=s, mode="nearest-exact").to(device) if s < 1
                else t.to(device) for s in scales]

    seg_t, skel_t = pyramid(seg), pyramid(skel)
    both = [torch.cat([a, b], 1) for a, b in zip(seg_t, skel_t)]
    torch.manual_seed(0)
    logits = [torch.randn(args.batch, 8, *s.shape[2:], device=device) for s in seg_t]
    dc_ce = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False},
                                                  {}, weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss),
                                   weights)
    focal_sk = DeepSupervisionWrapper(SegAndSkeletonLoss(FocalLoss(2.0), SkeletonRecallLoss(2.0)), weights)
    cases = {"nnU-Net DC_and_CE": (dc_ce, seg_t), "FocalSK* (focal + focal SR)": (focal_sk, both),
             "SR + DiceCE": (DeepSupervisionWrapper(SegAndSkeletonLoss(dc_ce.loss, SkeletonRecallLoss(0.0)), weights), both)}

    def once(loss, target):
        xs = [x.detach().requires_grad_(True) for x in logits]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss(xs, target).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times = {name: [] for name in cases}
    for name, (loss, target) in cases.items():
        once(loss, target)  # warm-up
    for _ in range(args.loss_repeats):
        for name, (loss, target) in cases.items():
            times[name].append(once(loss, target))
    base = statistics.median(times["nnU-Net DC_and_CE"])
    lines = [f"loss forward+backward on {device}, logits {args.batch} x 8 x {p}^3 + 4 deep-supervision outputs "
             f"({args.loss_repeats} interleaved repeats, median):"]
    for name in cases:
        t = statistics.median(times[name])
        lines.append(f"  {name:<30} {t * 1000:8.1f} ms  ratio {t / base:5.2f}x")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="phantom cases in the data set")
    parser.add_argument("--patch", type=int, default=128, help="augmentation patch edge (voxels)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of the loss benchmark")
    parser.add_argument("--loss-patch", type=int, default=64)
    parser.add_argument("--loss-repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (nnU-Net's DA workers use 1)")
    parser.add_argument("--skip-augmentation", action="store_true")
    parser.add_argument("--skip-loss", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"$ python benchmarks/trainers.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, {args.threads} torch thread(s)")
    if not args.skip_augmentation:
        print("\n".join(augmentation_benchmark(args)), flush=True)
    if not args.skip_loss:
        print("\n".join(loss_benchmark(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
