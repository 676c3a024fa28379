"""Statistics for comparing trainers on per-case scores: bootstrap CIs, paired Wilcoxon, Holm.

Pure functions on 1-d arrays of per-case values (one value per case, e.g. a case's mean Dice over
classes). Every random draw takes an explicit ``seed``, so reports are reproducible.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

#: Fewer cases than this make no interval and no test: shown as "n too small", never as a
#: zero-width interval or a p-value (two resampled cases give three possible means).
MIN_CASES = 3
TOO_FEW = "n too small"


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of ``values`` (cases resampled with replacement).

    Thin wrapper of :func:`scipy.stats.bootstrap`. NaNs are not allowed (drop them first, and
    report how many you dropped). With fewer than :data:`MIN_CASES` values there is no interval
    (NaN, NaN: the report says "n too small"); when all values are equal, the interval is that value.

    Parameters
    ----------
    values : sequence of float
        Per-case values.
    confidence : float
        Confidence level, e.g. 0.95.
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the resampling.
    method : {"percentile", "BCa", "basic"}
        scipy's interval method.

    Returns
    -------
    (float, float)
        Lower and upper bound.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-d, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("values contain NaN; drop them (and report it) before bootstrapping")
    if values.size < MIN_CASES:
        return (np.nan, np.nan)
    if np.all(values == values[0]):  # no spread: nothing to resample
        return (float(values[0]), float(values[0]))
    result = bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method=method,
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided paired Wilcoxon signed-rank test of ``a`` against ``b`` (same cases, same order).

    Uses :func:`scipy.stats.wilcoxon` with its defaults (``zero_method="wilcox"``: zero
    differences are dropped; exact distribution for small samples without ties). When every
    difference is zero there is no evidence of a difference and the p-value is 1. With fewer than
    :data:`MIN_CASES` pairs there is no test: ``p`` is NaN and ``note`` says "n too small".

    Returns
    -------
    dict
        ``n`` (pairs), ``statistic``, ``p``, ``median_difference`` (median of ``a - b``),
        ``wins`` / ``ties`` / ``losses`` (cases where ``a`` is larger / equal / smaller).
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-d and of equal length, got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired samples contain NaN; keep only the cases both have")
    diff = a - b
    out = {
        "n": int(diff.size),
        "median_difference": float(np.median(diff)) if diff.size else np.nan,
        "wins": int((diff > 0).sum()),
        "ties": int((diff == 0).sum()),
        "losses": int((diff < 0).sum()),
    }
    if diff.size < MIN_CASES:
        return {**out, "statistic": np.nan, "p": np.nan, "note": TOO_FEW}
    if np.all(diff == 0):
        return {**out, "statistic": 0.0, "p": 1.0}
    with warnings.catch_warnings():
        # scipy warns that small samples use the exact distribution or that ties exist; the
        # p-value it returns is still the right one to report.
        warnings.simplefilter("ignore", UserWarning)
        result = wilcoxon(a, b, alternative="two-sided")
    return {**out, "statistic": float(result.statistic), "p": float(result.pvalue)}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down; controls the family-wise error rate).

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), the running maximum is
    taken so that adjusted p-values keep the order of the raw ones, and results are capped at 1.
    NaN p-values (tests that could not run) are left NaN and do not count towards ``m``.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted
