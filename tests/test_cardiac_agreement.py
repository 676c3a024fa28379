"""Agreement statistics against values computed by hand on small tables, the known-agreement case,
and "n too small" instead of a degenerate interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnunet_tavr.cardiac.agreement import bland_altman, median_iqr, pearson

#: Table quantiles (95 %): standard normal and Student t with 4 degrees of freedom.
Z95, T95_4 = 1.959964, 2.776445

#: Five cases: reference and prediction volumes (ml). d = pred - ref = [2, -1, 3, 1, 5]:
#: mean 2, deviations [0, -3, 1, -1, 3], sum of squares 20, s = sqrt(20 / 4) = sqrt(5).
REF = [10.0, 20.0, 30.0, 40.0, 50.0]
PRED = [12.0, 19.0, 33.0, 41.0, 55.0]


def test_bland_altman_by_hand():
    ba = bland_altman(REF, PRED)
    s = math.sqrt(5.0)
    assert ba.n == 5 and not ba.notes
    assert ba.bias == pytest.approx(2.0)
    assert ba.sd == pytest.approx(s)
    assert ba.lower == pytest.approx(2.0 - Z95 * s, abs=1e-5)  # -2.382606
    assert ba.upper == pytest.approx(2.0 + Z95 * s, abs=1e-5)  # 6.382606
    # CI of the bias: 2 +- t * s / sqrt(5) = 2 +- 2.776445
    assert ba.bias_ci == pytest.approx((2.0 - T95_4, 2.0 + T95_4), abs=1e-5)
    # CI of each limit: limit +- t * s * sqrt(1/5 + z^2 / 8) = limit +- 2.776445 * 1.844157
    se = s * math.sqrt(1 / 5 + Z95**2 / 8)
    assert se == pytest.approx(1.844157, abs=1e-5)
    assert ba.lower_ci == pytest.approx((ba.lower - T95_4 * se, ba.lower + T95_4 * se), abs=1e-5)
    assert ba.upper_ci == pytest.approx((ba.upper - T95_4 * se, ba.upper + T95_4 * se), abs=1e-5)
    assert ba.upper_ci[1] == pytest.approx(11.502773, abs=1e-4)


def test_bland_altman_confidence_level():
    """90 %: z = 1.644854, t(4) = 2.131847."""
    ba = bland_altman(REF, PRED, confidence=0.90)
    s = math.sqrt(5.0)
    assert ba.upper == pytest.approx(2.0 + 1.644854 * s, abs=1e-5)
    assert ba.bias_ci == pytest.approx((2.0 - 2.131847, 2.0 + 2.131847), abs=1e-5)


def test_pearson_by_hand():
    """x - mean = [-20, -10, 0, 10, 20], y - mean = [-20, -13, 1, 9, 23]: sum xy = 1080,
    sum xx = 1000, sum yy = 1180, r = 1080 / sqrt(1000 * 1180) = 0.994220; Fisher CI
    tanh(atanh(r) -+ 1.959964 / sqrt(2))."""
    corr = pearson(REF, PRED)
    r = 1080 / math.sqrt(1000 * 1180)
    assert corr.r == pytest.approx(r, abs=1e-9)
    assert r == pytest.approx(0.994220, abs=1e-6)
    half = Z95 / math.sqrt(2.0)
    assert corr.ci == pytest.approx((math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)), abs=1e-6)
    assert corr.ci[0] == pytest.approx(0.91136, abs=1e-4)
    # the same interval as scipy's own Fisher-z interval, and scipy's p
    from scipy import stats

    result = stats.pearsonr(REF, PRED)
    ci = result.confidence_interval(0.95)
    assert corr.ci == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert corr.p == pytest.approx(result.pvalue)


def test_identical_volumes_agree_perfectly():
    volumes = [55.0, 61.2, 70.4, 48.9, 66.0, 59.3]
    ba, corr = bland_altman(volumes, volumes), pearson(volumes, volumes)
    assert ba.bias == 0.0 and ba.sd == 0.0 and ba.lower == 0.0 and ba.upper == 0.0
    assert ba.bias_ci == (0.0, 0.0) and ba.lower_ci == (0.0, 0.0) and ba.upper_ci == (0.0, 0.0)
    assert corr.r == pytest.approx(1.0) and corr.ci == pytest.approx((1.0, 1.0)) and corr.p < 1e-6


def test_a_constant_offset_is_a_bias_with_zero_width_limits():
    ref = np.array([10.0, 14.0, 19.0, 25.0])
    ba, corr = bland_altman(ref, ref - 3.0), pearson(ref, ref - 3.0)
    assert ba.bias == pytest.approx(-3.0) and ba.lower == pytest.approx(-3.0) and ba.upper == pytest.approx(-3.0)
    assert corr.r == pytest.approx(1.0)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_cases_say_so(n):
    ba = bland_altman(REF[:n], PRED[:n])
    corr = pearson(REF[:n], PRED[:n])
    assert ba.lower is None and ba.upper is None and ba.lower_ci is None and ba.bias_ci is None
    assert any("n too small" in note for note in ba.notes)
    assert corr.r is None and any("n too small" in note for note in corr.notes)
    if n >= 1:
        assert ba.bias == pytest.approx(np.mean(np.subtract(PRED[:n], REF[:n])))


def test_three_cases_give_r_but_no_interval():
    corr = pearson(REF[:3], PRED[:3])
    assert corr.r is not None and corr.ci is None and "n too small" in corr.notes[0]
    assert bland_altman(REF[:3], PRED[:3]).upper_ci is not None


def test_no_variation_has_no_correlation():
    corr = pearson([5.0, 5.0, 5.0, 5.0], [4.0, 6.0, 5.0, 5.5])
    assert corr.r is None and "no variation" in corr.notes[0]


def test_median_and_quartiles_by_hand():
    assert median_iqr([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, 1.75, 3.25))
    assert median_iqr([7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(v) for v in median_iqr([]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="equal length"):
        bland_altman([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        pearson([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="confidence"):
        bland_altman(REF, PRED, confidence=1.0)
