"""Statistics against scipy on fixed inputs and against hand-computed Holm adjustments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from nnunet_tavr.evaluation.stats import bootstrap_ci, holm, paired_wilcoxon

DICE_A = np.array([0.91, 0.88, 0.93, 0.85, 0.90, 0.87, 0.92, 0.89, 0.94, 0.86, 0.90, 0.91])
DICE_B = np.array([0.89, 0.87, 0.90, 0.86, 0.88, 0.84, 0.90, 0.88, 0.91, 0.83, 0.89, 0.895])


def test_bootstrap_matches_scipy_and_contains_mean():
    lo, hi = bootstrap_ci(DICE_A, n_resamples=2000, seed=7)
    ref = sps.bootstrap((DICE_A,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(7))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert lo < DICE_A.mean() < hi
    assert DICE_A.min() < lo and hi < DICE_A.max()
    # same seed, same interval; a wider confidence gives a wider interval
    assert bootstrap_ci(DICE_A, n_resamples=2000, seed=7) == (lo, hi)
    lo99, hi99 = bootstrap_ci(DICE_A, confidence=0.99, n_resamples=2000, seed=7)
    assert lo99 < lo and hi99 > hi


def test_bootstrap_degenerate_and_bad_input():
    assert all(np.isnan(bootstrap_ci([0.8])))  # n too small: no interval, not a zero-width one
    assert all(np.isnan(bootstrap_ci([0.8, 0.9])))
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(np.isnan(bootstrap_ci([])))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, np.nan])


def test_wilcoxon_matches_scipy():
    res = paired_wilcoxon(DICE_A, DICE_B)
    ref = sps.wilcoxon(DICE_A, DICE_B)
    assert res["p"] == pytest.approx(ref.pvalue)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["n"] == 12
    assert (res["wins"], res["ties"], res["losses"]) == (11, 0, 1)
    assert res["median_difference"] == pytest.approx(np.median(DICE_A - DICE_B))
    # the test is symmetric in its p-value
    assert paired_wilcoxon(DICE_B, DICE_A)["p"] == pytest.approx(res["p"])


def test_wilcoxon_identical_and_mismatched():
    res = paired_wilcoxon(DICE_A, DICE_A)
    assert res["p"] == 1.0 and res["ties"] == 12
    with pytest.raises(ValueError, match="equal length"):
        paired_wilcoxon(DICE_A, DICE_B[:-1])
    with pytest.raises(ValueError, match="NaN"):
        paired_wilcoxon([0.1, np.nan], [0.2, 0.3])


def test_holm_by_hand():
    # sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.04, 0.06, 0.06, 0.06
    p = [0.03, 0.01, 0.04, 0.02]
    assert holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # capped at 1, NaN passes through and does not count towards m
    assert holm([0.5, np.nan, 0.6]) == pytest.approx([1.0, np.nan, 1.0], nan_ok=True)
    assert holm([0.2, np.nan, 0.01]) == pytest.approx([0.2, np.nan, 0.02], nan_ok=True)
    assert holm([]).size == 0
