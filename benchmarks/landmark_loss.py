"""Forward + backward time of the landmark OT loss against nnU-Net's DC_and_CE on the same output.

The output is nnU-Net's for the hinge dataset: ``B x (1 + 3) x patch`` (3 landmarks + the reference
channel), float32, on the CPU with one thread (this machine has no GPU; see the docs for the GPU
note). Per loss: the best CPU time (``time.process_time``) of ``--repeats`` forward + backward passes.
Candidates, as ``HeatmapOTLoss`` options:

- ``sliced/faces`` (the default): exact sliced W2^2 over the axes and the face diagonals + GLiP +
  the channel cross-entropy anchor; also without the anchor, and the OT alone;
- ``sliced/axes``, ``sliced/lattice`` (adds the 4 body diagonals), and ``sliced/faces`` without GLiP;
- ``sinkhorn``: the debiased Sinkhorn divergence (separable log-domain kernel; smallest size only,
  it is two orders of magnitude slower on a CPU);
- ``mse``: the heatmap MSE baseline.

The outputs are random logits (standard normal, a peaked heatmap as in training) and, for the
default, flat logits (std 0.01, an untrained network): GLiP finds its few paying edges with one
comparison in the first case and needs dense finite differences in the second. ``--ds-patches``
also times one training iteration's loss under nnU-Net's deep supervision (the patch and its
halvings down to 1/16, nnU-Net's weights; the coarsest, of weight 0, is skipped), DC_and_CE in
nnU-Net's ``DeepSupervisionWrapper``, the OT loss given the lists and weights as the trainer gives
them.

Target (issue 15): OT loss <= 2x DC_and_CE.

Usage::

    python benchmarks/landmark_loss.py [--sizes 32 64 96 128] [--ds-patches 32 128] [--repeats 7]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
import time


def timed(loss, output, target, repeats: int) -> float:
    """Best CPU time of ``repeats`` forward + backward passes of one loss."""
    return interleaved({"loss": (loss, output, target)}, repeats)["loss"]


def interleaved(cases: dict, repeats: int) -> dict:
    """Best CPU time of each ``name: (loss, output(s), target(s))`` over ``repeats`` rounds, each
    round timing every case once in turn, so that a slower spell of the machine hits them alike."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for name, (loss, output, target) in cases.items():
            for o in output if isinstance(output, list) else [output]:
                o.grad = None
            t0 = time.process_time()
            loss(output, target).backward()
            best[name] = min(best[name], time.process_time() - t0)
    return best


def hinge_target(seg, fractions=(0.3, 0.5, 0.7)):
    """The hinge trainers' target: the sphere labels, then (present, f_z, f_y, f_x) per landmark."""
    import torch

    target = torch.zeros(seg.shape[0], 13, *seg.shape[2:])
    target[:, 0] = seg[:, 0].float()
    target[:, 1::4] = 1.0
    for k, f in enumerate(fractions):
        target[:, 2 + k::4] = f
    return target


def dc_and_ce():
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    return DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1, weight_dice=1,
                          ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)


def deep_supervision(patch: int, batch: int, repeats: int) -> tuple[float, float]:
    """CPU seconds of one iteration's loss over nnU-Net's deep-supervision outputs of a ``patch^3``
    patch (scales 1 .. 1/16; weights 1/2^i, the coarsest 0, normalised), DC_and_CE and the OT loss."""
    import torch
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from nnunet_tavr.trainers.landmark_losses import HeatmapOTLoss

    sizes = [patch // 2 ** i for i in range(5)]
    weights = [1 / 2 ** i for i in range(len(sizes))]
    weights[-1] = 0.0
    weights = [w / sum(weights) for w in weights]
    outputs = [torch.randn(batch, 4, n, n, n, requires_grad=True) for n in sizes]
    segs = [torch.randint(0, 4, (batch, 1, n, n, n)) for n in sizes]
    best = interleaved({"DC_and_CE": (DeepSupervisionWrapper(dc_and_ce(), weights), outputs, segs),
                        # as the trainer builds it: the loss takes the lists and weights itself (batched scales)
                        "OT": (HeatmapOTLoss(3, (1.5,) * 3, (patch,) * 3, scale_weights=weights), outputs,
                               [hinge_target(s) for s in segs])}, repeats)
    return best["DC_and_CE"], best["OT"]


def main(argv=None) -> int:
    import torch

    from nnunet_tavr.trainers.landmark_losses import HeatmapMSELoss, HeatmapOTLoss

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    parser.add_argument("--ds-patches", type=int, nargs="*", default=[32, 128], help="patch edges timed with deep supervision")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sinkhorn-max", type=int, default=0, help="largest patch edge also timed with the Sinkhorn divergence")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"# CPU, 1 thread, batch {args.batch}, 3 landmarks (4 output channels), float32; best of {args.repeats} forward+backward")
    ok = True

    def report(name, t, base, default=False):
        nonlocal ok
        ratio = t / base
        flag = ("  [PASS <= 2x]" if ratio <= 2.0 else "  [over the 2x target]") if default else ""
        ok &= ratio <= 2.0 or not default
        print(f"  {name:<40} {t * 1000:9.1f} ms  {ratio:6.2f}x DC_and_CE{flag}", flush=True)

    for n in args.sizes:
        shape, spacing = (n, n, n), (1.5, 1.5, 1.5)
        output = torch.randn(args.batch, 4, *shape, requires_grad=True)
        flat = (0.01 * torch.randn(args.batch, 4, *shape)).requires_grad_()
        seg = torch.randint(0, 4, (args.batch, 1, *shape))
        target = hinge_target(seg)
        default = HeatmapOTLoss(3, spacing, shape)
        cases = {
            "DC_and_CE": (dc_and_ce(), output, seg),
            "sliced/faces + GLiP + CE (default)": (default, output, target),
            "  the same, flat logits (untrained)": (default, flat, target),
            "sliced/faces + GLiP, no CE anchor": (HeatmapOTLoss(3, spacing, shape, ce_weight=0.0), output, target),
            "sliced/faces alone": (HeatmapOTLoss(3, spacing, shape, glip_weight=0.0, ce_weight=0.0), output, target),
            "sliced/axes + GLiP + CE": (HeatmapOTLoss(3, spacing, shape, directions="axes"), output, target),
            "sliced/lattice + GLiP + CE": (HeatmapOTLoss(3, spacing, shape, directions="lattice"), output, target),
            "mse (baseline)": (HeatmapMSELoss(3, spacing, shape), output, target),
        }
        best = interleaved(cases, args.repeats)
        if n <= args.sinkhorn_max:
            best["sinkhorn + GLiP + CE"] = timed(HeatmapOTLoss(3, spacing, shape, ot="sinkhorn"), output, target, 1)
        base = best.pop("DC_and_CE")
        print(f"{n}^3: DC_and_CE {base * 1000:.1f} ms")
        for name, t in best.items():
            report(name, t, base, "default" in name or "the same" in name)
    for n in args.ds_patches:
        base, t = deep_supervision(n, args.batch, args.repeats)
        print(f"deep supervision, {n}^3 patch ({', '.join(str(n // 2 ** i) for i in range(4))}): DC_and_CE {base * 1000:.1f} ms")
        report("default OT loss", t, base, True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
