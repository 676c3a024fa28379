"""Splits: paper proportions, seeded and order-independent, nnU-Net folds, installing into preprocessed."""

from __future__ import annotations

import json

import pytest

from nnunet_tavr.dataset_conversion.splits import (
    PAPER_PROPORTIONS,
    check_splits,
    install_splits,
    nnunet_folds,
    split_cases,
    split_sizes,
    write_splits,
)


def ids(n):
    return [f"s{i:04d}" for i in range(n)]


def test_split_sizes_reproduce_the_paper_and_always_sum():
    assert split_sizes(578) == (378, 100, 100)
    assert split_sizes(0) == (0, 0, 0)
    for n in range(1, 200):
        sizes = split_sizes(n)
        assert sum(sizes) == n
        # each set within one case of its exact share
        for size, share in zip(sizes, PAPER_PROPORTIONS):
            assert abs(size - n * share / 578) < 1.0
    with pytest.raises(ValueError):
        split_sizes(-1)


def test_split_is_seeded_and_independent_of_input_order():
    a = split_cases(ids(50), seed=7)
    b = split_cases(list(reversed(ids(50))), seed=7)
    c = split_cases(ids(50), seed=8)
    assert a == b
    assert a != c
    assert sorted(a["train"] + a["val"] + a["test"]) == ids(50)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == split_sizes(50)


def test_folds_partition_train_val_and_never_contain_test():
    split = split_cases(ids(40), seed=1)
    folds = nnunet_folds(split, seed=1)
    assert len(folds) == 6
    check_splits(split, folds)  # raises on any violation
    test = set(split["test"])
    validated = []
    for fold in folds[:5]:
        assert not (set(fold["train"]) | set(fold["val"])) & test
        validated += fold["val"]
    assert sorted(validated) == sorted(split["train"] + split["val"])
    # fold 5 is the paper's single split
    assert folds[5] == {"train": split["train"], "val": split["val"]}


def test_check_splits_catches_a_test_case_in_a_fold():
    split = split_cases(ids(20), seed=0)
    folds = nnunet_folds(split)
    folds[2]["train"].append(split["test"][0])
    with pytest.raises(ValueError, match="test"):
        check_splits(split, folds)


def test_few_cases_shrink_the_number_of_folds():
    split = split_cases(ids(4), seed=0)  # 3 train+val, 1 test... or fewer folds
    folds = nnunet_folds(split)
    n_trval = len(split["train"]) + len(split["val"])
    assert len(folds) == min(5, n_trval) + 1
    check_splits(split, folds)
    with pytest.raises(ValueError, match="at least 2"):
        nnunet_folds({"train": ["a"], "val": [], "test": []})


def test_write_and_install_splits(tmp_path):
    raw, pre = tmp_path / "raw" / "Dataset301_TAVR", tmp_path / "pre" / "Dataset301_TAVR"
    raw.mkdir(parents=True)
    record = write_splits(raw, ids(12), seed=3)
    folds = json.loads((raw / "splits_final.json").read_text())
    assert folds == record["nnunet_folds"]
    stored = json.loads((raw / "tavr_splits.json").read_text())
    assert stored["paper_fold"] == len(folds) - 1 and stored["seed"] == 3
    assert all(isinstance(c, str) for f in folds for c in f["train"] + f["val"])

    target, replaced = install_splits(raw, pre)
    assert json.loads(target.read_text()) == folds and not replaced
    # nnU-Net's own split there is replaced, and said so
    target.write_text(json.dumps([{"train": ["x"], "val": ["y"]}]))
    target, replaced = install_splits(raw, pre)
    assert replaced and json.loads(target.read_text()) == folds
    with pytest.raises(FileNotFoundError):
        install_splits(tmp_path / "nowhere", pre)


def test_grouped_split_keeps_every_patient_together():
    """Several cases per patient (e.g. angiography frames of one CT): patients, not cases, are split."""
    from nnunet_tavr.dataset_conversion.splits import check_groups

    groups = {f"p{p:02d}_f{f}": f"p{p:02d}" for p in range(12) for f in range(1 + p % 4)}
    split = split_cases(groups, seed=4, groups=groups)
    folds = nnunet_folds(split, seed=4, groups=groups)
    check_splits(split, folds)
    check_groups(split, folds, groups)
    patients = {k: {groups[c] for c in split[k]} for k in ("train", "val", "test")}
    assert sum(len(v) for v in patients.values()) == 12  # each patient in exactly one set
    for fold in folds[:-1]:
        assert not {groups[c] for c in fold["train"]} & {groups[c] for c in fold["val"]}
    # the proportions count patients: 12 patients -> 8 / 2 / 2 (paper proportions, largest remainder)
    assert [len(patients[k]) for k in ("train", "val", "test")] == list(split_sizes(12))
    # the check catches a patient split across sets
    multi = next(p for p in sorted(patients["train"]) if sum(g == p for g in groups.values()) > 1)
    broken = {**split, "test": split["test"] + [c for c in split["train"] if groups[c] == multi][:1]}
    broken["train"] = [c for c in split["train"] if c not in broken["test"]]
    with pytest.raises(ValueError, match="patient"):
        check_groups(broken, folds, groups)


def test_singleton_groups_give_the_ungrouped_split():
    cases = ids(30)
    plain, grouped = split_cases(cases, seed=9), split_cases(cases, seed=9, groups={c: c for c in cases})
    assert plain == grouped
    assert nnunet_folds(plain, seed=9) == nnunet_folds(grouped, seed=9, groups={c: c for c in cases})
