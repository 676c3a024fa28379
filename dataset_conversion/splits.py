"""Seeded train / validation / test splits and nnU-Net's ``splits_final.json``.

The paper splits its 578 kept CTs into 378 training, 100 validation and 100 test cases. We keep
those proportions for any number of kept cases and write:

- ``splits_final.json`` (nnU-Net's format: a list of ``{"train": [...], "val": [...]}``) with
  **six folds**:

  * folds 0-4: nnU-Net's own seeded 5-fold cross-validation
    (``nnunetv2.utilities.crossval_split.generate_crossval_split``) over training + validation cases;
  * fold 5: the paper's single split, ``train`` = the training set, ``val`` = the validation set
    (``nnUNetv2_train 301 3d_fullres 5`` trains exactly the paper's protocol).

  Test cases are never in any fold; they live in ``imagesTs`` / ``labelsTs``.
- ``tavr_splits.json``: the project's record of how the split was made (seed, proportions, the
  three sets, and the groups when there are any).

**Groups.** When several cases come from one patient (e.g. the angiography frames of one CT),
``groups`` maps each case to its patient and everything above is done on patients: a patient's
cases are all in training, all in validation or all in the test set, and all in one fold's
validation set. Without groups every case is its own patient, which gives exactly the ungrouped
split.

nnU-Net reads ``splits_final.json`` from ``$nnUNet_preprocessed/DatasetXXX_Name/``;
:func:`install_splits` copies it there (``nnUNetv2_plan_and_preprocess`` also copies it from the raw
folder when the preprocessed folder has none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nnunet_tavr.io import write_json

#: The paper's train / validation / test sizes (of 578 kept CTs).
PAPER_PROPORTIONS: tuple[int, int, int] = (378, 100, 100)
#: Number of cross-validation folds (nnU-Net's default).
NUM_FOLDS = 5
#: Default seed of the train/val/test assignment.
DEFAULT_SEED = 12345


def split_sizes(n: int, proportions: tuple[int, ...] = PAPER_PROPORTIONS) -> tuple[int, ...]:
    """Sizes of the sets for ``n`` cases, proportional to ``proportions`` (largest remainder).

    The sizes always sum to ``n``; ties in the remainders go to the earlier set (training first).
    For the paper's 578 cases this returns exactly (378, 100, 100).
    """
    if n < 0:
        raise ValueError(f"number of cases must be >= 0, got {n}")
    weights = np.asarray(proportions, dtype=float)
    if weights.ndim != 1 or weights.size == 0 or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"proportions must be non-negative with a positive sum, got {proportions}")
    exact = n * weights / weights.sum()
    sizes = np.floor(exact).astype(int)
    # Stable sort by remainder, descending: equal remainders keep the set order.
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: n - sizes.sum()]] += 1
    return tuple(int(s) for s in sizes)


def _members(groups: dict[str, str] | None, case_ids) -> dict[str, list[str]]:
    """Group -> its cases (sorted); without ``groups`` every case is its own group."""
    out: dict[str, list[str]] = {}
    for case in sorted(set(map(str, case_ids))):
        out.setdefault(str(groups[case]) if groups else case, []).append(case)
    return out


def _expand(group_ids, members: dict[str, list[str]]) -> list[str]:
    return sorted(c for g in group_ids for c in members[str(g)])


def split_cases(case_ids, seed: int = DEFAULT_SEED, proportions: tuple[int, int, int] = PAPER_PROPORTIONS,
                groups: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Assign cases to ``train`` / ``val`` / ``test`` at random (seeded), in the given proportions.

    With ``groups`` (case -> patient), patients are assigned and proportions count patients. The
    result depends only on the *set* of case ids (and groups) and the seed (ids are sorted first),
    never on the order in which cases were converted. Each returned list is sorted.
    """
    members = _members(groups, case_ids)
    ids = sorted(members)
    n_train, n_val, n_test = split_sizes(len(ids), proportions)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    return {
        "train": _expand(shuffled[:n_train], members),
        "val": _expand(shuffled[n_train : n_train + n_val], members),
        "test": _expand(shuffled[n_train + n_val :], members),
    }


def nnunet_folds(split: dict[str, list[str]], seed: int = DEFAULT_SEED, num_folds: int = NUM_FOLDS,
                 groups: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """``splits_final.json`` content: ``num_folds`` CV folds over train + val, then the paper's split.

    Uses nnU-Net's own ``generate_crossval_split`` (on patients when ``groups`` are given). With
    fewer train + val patients than folds, the number of CV folds shrinks to the number of patients
    (each validated once); fewer than 2 is an error.
    """
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    members = _members(groups, split["train"] + split["val"])
    trval = sorted(members)
    if len(trval) < 2:
        raise ValueError(f"cross-validation needs at least 2 training + validation patients, got {len(trval)}")
    folds = generate_crossval_split(trval, seed=seed, n_splits=min(num_folds, len(trval)))
    folds = [{"train": _expand(f["train"], members), "val": _expand(f["val"], members)} for f in folds]
    folds.append({"train": sorted(split["train"]), "val": sorted(split["val"])})
    return folds


def check_splits(split: dict[str, list[str]], folds: list[dict[str, list[str]]]) -> None:
    """Raise ``ValueError`` unless the sets are disjoint, every CV fold partitions train + val, and no
    test case is in any fold."""
    train, val, test = (set(split[k]) for k in ("train", "val", "test"))
    if train & val or train & test or val & test:
        raise ValueError("train, val and test sets overlap")
    trval = train | val
    for i, fold in enumerate(folds):
        tr, va = set(fold["train"]), set(fold["val"])
        if (tr | va) & test:
            raise ValueError(f"fold {i} contains test cases: {sorted((tr | va) & test)[:5]}")
        if tr & va:
            raise ValueError(f"fold {i}: train and val overlap")
        if tr | va != trval:
            raise ValueError(f"fold {i} does not cover exactly the training + validation cases")
    cv = folds[:-1]
    validated = [c for f in cv for c in f["val"]]
    if sorted(validated) != sorted(trval):
        raise ValueError("the cross-validation folds do not validate every training + validation case exactly once")


def check_groups(split: dict[str, list[str]], folds: list[dict[str, list[str]]], groups: dict[str, str]) -> None:
    """Raise ``ValueError`` if a patient's cases are in two of train / val / test, or in the
    training and the validation side of one fold."""
    def patients(cases):
        return {groups[c] for c in cases}

    train, val, test = (patients(split[k]) for k in ("train", "val", "test"))
    for a, b, names in ((train, val, "train and val"), (train, test, "train and test"), (val, test, "val and test")):
        if a & b:
            raise ValueError(f"patient(s) {sorted(a & b)[:5]} are in both {names}")
    for i, fold in enumerate(folds):
        shared = patients(fold["train"]) & patients(fold["val"])
        if shared:
            raise ValueError(f"fold {i}: patient(s) {sorted(shared)[:5]} are in both train and val")


def write_splits(dataset_dir: str | os.PathLike, case_ids, seed: int = DEFAULT_SEED, proportions=PAPER_PROPORTIONS,
                 groups: dict[str, str] | None = None) -> dict:
    """Split ``case_ids`` and write ``splits_final.json`` and ``tavr_splits.json`` into ``dataset_dir``.

    ``groups`` (case -> patient) keeps a patient's cases together (see the module docstring); it is
    stored in the record. Returns the ``tavr_splits.json`` record (``train``, ``val``, ``test``,
    ``folds``, seed, ...).
    """
    dataset_dir = Path(dataset_dir)
    split = split_cases(case_ids, seed, proportions, groups)
    folds = nnunet_folds(split, seed, groups=groups)
    check_splits(split, folds)
    if groups:
        check_groups(split, folds, groups)
    record = {
        "seed": int(seed),
        "proportions": {"train": proportions[0], "val": proportions[1], "test": proportions[2]},
        "counts": {k: len(v) for k, v in split.items()},
        # Which entries of splits_final.json are what (the paper's split is the last one).
        "cv_folds": list(range(len(folds) - 1)),
        "paper_fold": len(folds) - 1,
        **split,
    }
    if groups:
        record["groups"] = {c: str(groups[c]) for c in sorted(groups)}
    write_json(folds, dataset_dir / "splits_final.json")
    write_json(record, dataset_dir / "tavr_splits.json")
    return {**record, "nnunet_folds": folds}


def install_splits(raw_dataset_dir: str | os.PathLike, preprocessed_dataset_dir: str | os.PathLike) -> tuple[Path, bool]:
    """Copy ``splits_final.json`` from the raw dataset folder into the preprocessed one (atomically).

    Returns the target path and whether an existing, *different* file was replaced (nnU-Net writes
    its own random 5-fold split there on the first training if none is present).
    """
    source = Path(raw_dataset_dir) / "splits_final.json"
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: run 'nnunet-tavr convert' first")
    folds = json.loads(source.read_text())
    target = Path(preprocessed_dataset_dir) / "splits_final.json"
    replaced = target.is_file() and json.loads(target.read_text()) != folds
    write_json(folds, target)
    return target, replaced
