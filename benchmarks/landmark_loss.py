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

Target (issue 15): OT loss <= 2x DC_and_CE.

Usage::

    python benchmarks/landmark_loss.py [--sizes 32 64 96] [--repeats 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
import time


def timed(loss, output, target, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        output.grad = None
        t0 = time.process_time()
        loss(output, target).backward()
        best = min(best, time.process_time() - t0)
    return best


def main(argv=None) -> int:
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from nnunet_tavr.trainers.landmark_losses import HeatmapMSELoss, HeatmapOTLoss

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sinkhorn-max", type=int, default=32, help="largest patch edge timed with the Sinkhorn divergence")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"# CPU, 1 thread, batch {args.batch}, 3 landmarks (4 output channels), float32; best of {args.repeats} forward+backward")
    ok = True
    for n in args.sizes:
        shape, spacing = (n, n, n), (1.5, 1.5, 1.5)
        output = torch.randn(args.batch, 4, *shape, requires_grad=True)
        seg = torch.randint(0, 4, (args.batch, 1, *shape))
        target = torch.zeros(args.batch, 13, *shape)
        target[:, 0] = seg[:, 0].float()
        target[:, 1::4] = 1.0
        for k in range(3):
            target[:, 2 + k::4] = 0.3 + 0.2 * k
        dcce = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1, weight_dice=1,
                              ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
        base = timed(dcce, output, seg, args.repeats)
        print(f"{n}^3: DC_and_CE {base * 1000:.1f} ms")
        candidates = {
            "sliced/faces + GLiP + CE (default)": HeatmapOTLoss(3, spacing, shape),
            "sliced/faces + GLiP, no CE anchor": HeatmapOTLoss(3, spacing, shape, ce_weight=0.0),
            "sliced/faces alone": HeatmapOTLoss(3, spacing, shape, glip_weight=0.0, ce_weight=0.0),
            "sliced/axes + GLiP": HeatmapOTLoss(3, spacing, shape, directions="axes"),
            "sliced/lattice + GLiP": HeatmapOTLoss(3, spacing, shape, directions="lattice"),
            "mse (baseline)": HeatmapMSELoss(3, spacing, shape),
        }
        if n <= args.sinkhorn_max:
            candidates["sinkhorn + GLiP"] = HeatmapOTLoss(3, spacing, shape, ot="sinkhorn")
        for name, loss in candidates.items():
            t = timed(loss, output, target, 1 if "sinkhorn" in name else args.repeats)
            ratio = t / base
            flag = ""
            if "default" in name:
                flag = "  [PASS <= 2x]" if ratio <= 2.0 else "  [over the 2x target]"
                ok &= ratio <= 2.0
            print(f"  {name:<32} {t * 1000:9.1f} ms  {ratio:6.2f}x DC_and_CE{flag}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
