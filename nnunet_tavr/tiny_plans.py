"""A tiny nnU-Net plans variant for CPU smoke runs, demos and tests.

nnU-Net's default 3d_fullres plan (96³ patches, 5+ stages, 32-320 features) takes ~40 s per training
iteration on two CPU cores. This module derives a *plans variant* from the plans nnU-Net made:
same preprocessing (the same ``data_identifier``, so nothing is preprocessed twice), same spacing,
normalisation and resampling, but a small patch, few stages and few features. The result is an
ordinary nnU-Net plans file: ``nnUNetv2_train DATASET 3d_fullres 0 -p nnUNetTinyPlans`` and
``nnUNetv2_predict ... -p nnUNetTinyPlans`` use it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from nnunet_tavr.io import write_json

TINY_PLANS = "nnUNetTinyPlans"


def tiny_configuration(configuration: dict, patch_size: int | tuple[int, ...] = 32, features: tuple[int, ...] = (8, 16, 32),
                       batch_size: int = 2) -> dict:
    """Return a copy of one plans configuration with a tiny U-Net.

    Parameters
    ----------
    configuration : dict
        A configuration of an nnU-Net plans file (``plans["configurations"]["3d_fullres"]``).
    patch_size : int or tuple of int
        Patch size in voxels: an edge length (cubic or square patch) or one size per axis (in the
        configuration's axis order; a 2-D configuration takes the last two). Every size must be
        divisible by ``2 ** (len(features) - 1)``.
    features : tuple of int
        Feature maps per stage; its length is the number of stages.
    batch_size : int
        Patches per training iteration.
    """
    n_stages = len(features)
    dims = len(configuration["patch_size"])
    sizes = [int(patch_size)] * dims if isinstance(patch_size, int) else [int(p) for p in patch_size][-dims:]
    if len(sizes) != dims or any(p % 2 ** (n_stages - 1) for p in sizes):
        raise ValueError(f"patch_size {patch_size} must give {dims} sizes divisible by 2**{n_stages - 1}")
    config = json.loads(json.dumps(configuration))  # deep copy of plain JSON
    config["patch_size"] = sizes
    config["batch_size"] = batch_size
    kwargs = config["architecture"]["arch_kwargs"]
    kwargs.update(
        n_stages=n_stages,
        features_per_stage=list(features),
        kernel_sizes=[[3] * dims for _ in range(n_stages)],
        strides=[[1] * dims] + [[2] * dims for _ in range(n_stages - 1)],
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    return config


def write_tiny_plans(
    preprocessed_dataset_dir: str | Path,
    source_plans: str = "nnUNetPlans",
    target_plans: str = TINY_PLANS,
    configurations: tuple[str, ...] = ("3d_fullres", "2d"),
    patch_size: int | tuple[int, ...] = 32,
    features: tuple[int, ...] = (8, 16, 32),
    batch_size: int = 2,
) -> Path:
    """Write ``<target_plans>.json`` next to nnU-Net's plans in ``$nnUNet_preprocessed/DatasetXXX_Name``.

    Only the listed configurations that exist in the source plans are kept; their preprocessed data
    are shared with the source plans.
    """
    folder = Path(preprocessed_dataset_dir)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: run nnUNetv2_plan_and_preprocess first")
    plans = json.loads(source.read_text())
    plans["plans_name"] = target_plans
    plans["configurations"] = {
        name: tiny_configuration(cfg, patch_size, features, batch_size)
        for name, cfg in plans["configurations"].items()
        if name in configurations and "patch_size" in cfg
    }
    if not plans["configurations"]:
        raise ValueError(f"none of {configurations} is in {source}")
    return write_json(plans, folder / f"{target_plans}.json")
