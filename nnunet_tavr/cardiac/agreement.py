"""Agreement of paired measurements (a prediction against a reference): Bland-Altman bias and limits
of agreement with their confidence intervals, Pearson's r with its confidence interval, medians
and interquartile ranges. Pure functions on 1-d arrays (one value per case, same order).

Definitions (``d = prediction - reference``, ``n`` pairs, ``s`` the standard deviation of ``d``
with ``n - 1`` degrees of freedom, ``z`` the standard normal quantile of ``(1 + confidence) / 2``,
``t`` the Student-t quantile with ``n - 1`` degrees of freedom at the same level):

- bias ``= mean(d)``; its CI ``bias +- t s / sqrt(n)``;
- limits of agreement ``= bias -+ z s`` (1.96 s at 95 %); their CIs ``limit +- t SE`` with
  ``SE = s sqrt(1/n + z^2 / (2 (n - 1)))`` (Bland & Altman 1986, section 5; about ``sqrt(3 s^2/n)``
  at 95 %, their 1999 approximation);
- Pearson's r (:func:`scipy.stats.pearsonr`, two-sided p) and its CI by Fisher's z:
  ``tanh(atanh(r) +- z / sqrt(n - 3))``;
- median and interquartile range: :func:`numpy.percentile` (linear interpolation).

Too few pairs give no number, but a note saying so (:data:`MIN_PAIRS`): limits of agreement and
every CI need ``n >= 3`` (a standard deviation with at least two degrees of freedom), Pearson's r
needs ``n >= 3`` and its CI ``n >= 4``. Seed 004 reports ``reference - prediction``: flip the sign
of the bias and limits to compare.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

#: The fewest pairs for each statistic.
MIN_PAIRS = {"bias": 1, "limits": 3, "pearson": 3, "pearson_ci": 4}


def _pairs(reference: Sequence[float], prediction: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    ref, pred = np.asarray(reference, float), np.asarray(prediction, float)
    if ref.shape != pred.shape or ref.ndim != 1:
        raise ValueError(f"paired values must be 1-d and of equal length, got {ref.shape} and {pred.shape}")
    if np.isnan(ref).any() or np.isnan(pred).any():
        raise ValueError("paired values contain NaN; keep only the cases both have")
    return ref, pred


def too_small(n: int, what: str) -> str:
    """The note printed instead of a statistic that needs more pairs."""
    return f"n too small (n={n}; {what} needs n >= {MIN_PAIRS[what]})"


@dataclass(frozen=True)
class BlandAltman:
    """Bias and limits of agreement of ``prediction - reference`` (units of the input).

    Statistics that need more pairs are ``None`` and :attr:`notes` says why.
    """

    n: int
    confidence: float
    bias: float | None
    sd: float | None = None
    lower: float | None = None
    upper: float | None = None
    bias_ci: tuple[float, float] | None = None
    lower_ci: tuple[float, float] | None = None
    upper_ci: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def bland_altman(reference: Sequence[float], prediction: Sequence[float], confidence: float = 0.95) -> BlandAltman:
    """Bland-Altman analysis of paired values (see the module docstring for the definitions).

    Parameters
    ----------
    reference, prediction : sequence of float
        One value per case, same order (e.g. volumes in ml).
    confidence : float
        Level of the limits of agreement and of every CI, in (0, 1).
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ref, pred = _pairs(reference, prediction)
    d = pred - ref
    n = int(d.size)
    if n < MIN_PAIRS["bias"]:
        return BlandAltman(n, confidence, None, notes=[too_small(n, "bias")])
    bias = float(d.mean())
    if n < MIN_PAIRS["limits"]:
        return BlandAltman(n, confidence, bias, notes=[too_small(n, "limits")])
    s = float(d.std(ddof=1))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    lower, upper = bias - z * s, bias + z * s
    half_bias = t * s / math.sqrt(n)
    half_limit = t * s * math.sqrt(1.0 / n + z * z / (2.0 * (n - 1)))
    return BlandAltman(
        n, confidence, bias, s, lower, upper,
        bias_ci=(bias - half_bias, bias + half_bias),
        lower_ci=(lower - half_limit, lower + half_limit),
        upper_ci=(upper - half_limit, upper + half_limit),
    )


@dataclass(frozen=True)
class Correlation:
    """Pearson's r of reference and prediction, its two-sided p and Fisher CI (``None`` with a note
    when it cannot be computed)."""

    n: int
    confidence: float
    r: float | None
    p: float | None = None
    ci: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def pearson(reference: Sequence[float], prediction: Sequence[float], confidence: float = 0.95) -> Correlation:
    """Pearson's correlation with its Fisher-z confidence interval (see the module docstring).

    Perfect correlation (``|r| = 1``) has the degenerate but exact interval ``(r, r)``; values
    without spread (all equal in either series) have no r.
    """
    from scipy import stats

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ref, pred = _pairs(reference, prediction)
    n = int(ref.size)
    if n < MIN_PAIRS["pearson"]:
        return Correlation(n, confidence, None, notes=[too_small(n, "pearson")])
    if np.ptp(ref) == 0 or np.ptp(pred) == 0:
        return Correlation(n, confidence, None, notes=["undefined: no variation across cases"])
    result = stats.pearsonr(ref, pred)
    r = float(np.clip(result.statistic, -1.0, 1.0))
    p = float(result.pvalue)
    if n < MIN_PAIRS["pearson_ci"]:
        return Correlation(n, confidence, r, p, notes=[too_small(n, "pearson_ci")])
    if abs(r) >= 1.0 - 1e-12:
        return Correlation(n, confidence, r, p, ci=(r, r))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    centre, half = math.atanh(r), z / math.sqrt(n - 3)
    return Correlation(n, confidence, r, p, ci=(math.tanh(centre - half), math.tanh(centre + half)))


def median_iqr(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, first quartile, third quartile)`` of the non-NaN values (NaN when there are none)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return (float(med), float(q1), float(q3))
