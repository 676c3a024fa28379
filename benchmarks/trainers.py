"""Cost of the skeleton recall trainers, as ratios against nnU-Net measured in the same run.

1. Data augmentation: batches/s of nnU-Net's own data loader + training transforms
   (``nnUNetDataLoader`` + ``nnUNetTrainer.get_training_transforms``, single-threaded augmenter, a
   TotalSegmentator-sized 3d_fullres plan: 1.5 mm phantoms, 128^3 patches, batch 2, 5 deep-supervision
   outputs) without and with the skeleton targets: thinned per augmented patch (exact, the default
   2x-pooled, 3x-pooled), and, for comparison, precomputed once per case and carried through the
   augmentation as a segmentation channel. Target: >= 0.9x.
2. Loss: forward + backward time of L_FocalSK* (focal + focal skeleton recall, deep supervision)
   vs. nnU-Net's DC_and_CE_loss (deep supervision) on the same logits. Target: <= 1.5x.

Variants are interleaved (plain, skeleton, plain, ...), so a slow spell of the machine hits all of
them alike; augmentation is timed in CPU time over the same patches for every variant (ratio of
totals, with a paired bootstrap CI over batches), the loss by the median of repeated runs.

    python benchmarks/trainers.py                      # CPU defaults
    python benchmarks/trainers.py --device cuda --loss-patch 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch


def write_phantom_dataset(folder: str, n: int, patch, shape=(200, 160, 160), spacing=1.5):
    """Phantoms as nnU-Net's preprocessor writes them (blosc2 data + segmentation, chunked for the
    patch size, foreground locations in the properties), read back by nnU-Net's own dataset class."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2, comp_blosc2_params

    from nnunet_tavr.phantom import make_subject

    for i in range(n):
        ph = make_subject(i, shape=shape, spacing=spacing)
        data = ((ph.ct.astype(np.float32) - 100.0) / 300.0)[None]
        seg = ph.labels.astype(np.int16)[None]
        props = {"class_locations": DefaultPreprocessor._sample_foreground_locations(seg, list(range(1, 8)), seed=i)}
        blocks, chunks = comp_blosc2_params(data.shape, tuple(patch), data.itemsize)
        blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(patch), seg.itemsize)
        nnUNetDatasetBlosc2.save_case(data, seg, props, os.path.join(folder, f"case{i}"), chunks=chunks,
                                      blocks=blocks, chunks_seg=chunks_seg, blocks_seg=blocks_seg)
    return nnUNetDatasetBlosc2(folder)


class InMemory:
    """The same cases decompressed into memory once: augmentation cost without nnU-Net's file reads."""

    def __init__(self, dataset):
        self.identifiers = dataset.identifiers
        self.cases = {}
        for i in self.identifiers:
            data, seg, _, props = dataset.load_case(i)
            self.cases[i] = (np.asarray(data[:]), np.asarray(seg[:]), None, props)

    def load_case(self, identifier):
        return self.cases[identifier]


class PrecomputedSkeletons:
    """The rejected alternative to per-patch thinning: each case's exact skeleton computed once and
    carried through the augmentation as a second segmentation channel (in the loader's
    previous-stage slot), resampled by nearest neighbour in the spatial transform. The skeletons are
    held in memory, so this is an upper bound on its speed: a real cache would be read from disk."""

    def __init__(self, dataset):
        from nnunet_tavr.trainers.skeletons import skeleton_targets

        self.dataset, self.identifiers = dataset, dataset.identifiers
        self.skeletons = {i: skeleton_targets(np.asarray(dataset.load_case(i)[1][0])) for i in self.identifiers}

    def load_case(self, identifier):
        data, seg, _, props = self.dataset.load_case(identifier)
        return data, seg, self.skeletons[identifier], props

    @staticmethod
    def transforms(transforms):
        from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

        class NearestForSkeleton(SpatialTransform):
            def _apply_to_segmentation(self, segmentation, **params):
                labels = super()._apply_to_segmentation(segmentation[:1], **params)
                self.mode_seg = "nearest"
                try:
                    return torch.cat((labels, super()._apply_to_segmentation(segmentation[1:], **params)))
                finally:
                    self.mode_seg = "bilinear"

        for t in transforms.transforms:
            if type(t) is SpatialTransform:
                t.__class__ = NearestForSkeleton
        return transforms


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
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_tavr.trainers.skeletons import SkeletonTargetTransform

    patch = [args.patch] * 3
    ds_scales = [[1.0] * 3] + [[0.5 ** i] * 3 for i in range(1, 5)]
    tmp = tempfile.TemporaryDirectory(prefix="nnunet_tavr_bench_")
    dataset = write_phantom_dataset(tmp.name, args.cases, patch)
    if args.in_memory:
        dataset = InMemory(dataset)
    variants = {"nnU-Net": None, "skeletons exact": 1, "skeletons 2x-pooled (default)": 2,
                "skeletons 3x-pooled": 3, "precomputed per case": "precomputed"}
    loaders = {}
    for name, coarsen in variants.items():
        _, rot = make_loader(dataset, None, patch, args.batch)
        transforms = nnUNetTrainer.get_training_transforms(patch, rot, ds_scales, (0, 1, 2), False)
        data = dataset
        if coarsen == "precomputed":
            data, transforms = PrecomputedSkeletons(dataset), PrecomputedSkeletons.transforms(transforms)
        elif coarsen is not None:
            at = len(transforms.transforms) - 1  # before DownsampleSegForDSTransform, as the trainers do
            transforms.transforms.insert(at, SkeletonTargetTransform(coarsen=coarsen))
        loaders[name] = make_loader(data, transforms, patch, args.batch)[0]
        if coarsen is None:
            spatial = next(t for t in transforms.transforms if isinstance(t, SpatialTransform))
            spatial.get_parameters = _recording(spatial.get_parameters, deformed := [])
    # Batch b of every variant is drawn with the same seeds, so all variants augment the same
    # patches; variants alternate batch by batch, so a slow spell of the machine hits all alike.
    # CPU time of this process (the augmentation is single-threaded) is robust to other tenants.
    times = {name: [] for name in variants}
    walls = {name: [] for name in variants}
    for b in range(args.batches):
        for name, loader in loaders.items():
            np.random.seed(b)
            torch.manual_seed(b)
            start, wall = time.process_time(), time.perf_counter()
            next(loader)
            times[name].append(time.process_time() - start)
            walls[name].append(time.perf_counter() - wall)
    tmp.cleanup()
    base = np.array(times["nnU-Net"])
    rng = np.random.default_rng(0)
    resamples = rng.integers(0, len(base), (2000, len(base)))  # paired bootstrap over batches
    source = "held in memory" if args.in_memory else "read by nnU-Net's blosc2 dataset"
    lines = [f"data augmentation, {args.batch} x {args.patch}^3 patches, 1.5 mm phantoms {source} "
             f"({args.batches} batches per variant, the same patches for all):",
             f"  {'':<30} {'CPU ms/batch':>12}  {'throughput vs nnU-Net (CPU time, 95% CI)':>41}  {'(wall time)':>11}"]
    for name in variants:
        t = np.array(times[name])
        ci = np.percentile(base[resamples].sum(1) / t[resamples].sum(1), [2.5, 97.5])
        wall_ratio = sum(walls["nnU-Net"]) / sum(walls[name])
        lines.append(f"  {name:<30} {t.mean() * 1000:12.1f}  {base.sum() / t.sum():27.2f}x  [{ci[0]:.2f}, {ci[1]:.2f}]"
                     f"  {wall_ratio:10.2f}x")
    lines.append(f"  {np.mean(deformed):.0%} of the {len(deformed)} patches were rotated and/or scaled (nnU-Net's "
                 f"p_rotation = p_scaling = 0.2: 36% expected); the others are only cropped, which makes the "
                 f"skeletons' share of the cost larger")
    return lines


def _recording(get_parameters, deformed: list):
    """Wrap SpatialTransform.get_parameters to record whether each patch gets a sampling grid."""

    def wrapped(**data_dict):
        params = get_parameters(**data_dict)
        deformed.append(params["grid"] is not None)
        return params

    return wrapped


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
    names = list(cases)
    for _ in range(3):  # warm-up: the allocator's first page faults would go to whoever runs first
        for name in names:
            once(*cases[name])
    for r in range(args.loss_repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who runs first
            times[name].append(once(*cases[name]))
    base = statistics.median(times["nnU-Net DC_and_CE"])
    lines = [f"loss forward+backward on {device}, logits {args.batch} x 8 x {p}^3 + 4 deep-supervision outputs "
             f"({args.loss_repeats} interleaved repeats, rotating order, median):"]
    for name in cases:
        t = statistics.median(times[name])
        lines.append(f"  {name:<30} {t * 1000:8.1f} ms  ratio {t / base:5.2f}x")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="phantom cases in the data set")
    parser.add_argument("--patch", type=int, default=128, help="augmentation patch edge (voxels)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=60, help="augmented batches per variant")
    parser.add_argument("--in-memory", action="store_true",
                        help="augment cases held in memory (leaves nnU-Net's file reads out of the baseline)")
    parser.add_argument("--device", default="cpu", help="device of the loss benchmark")
    parser.add_argument("--loss-patch", type=int, default=64)
    parser.add_argument("--loss-repeats", type=int, default=30)
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
