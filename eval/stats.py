"""Is a difference between two methods more than noise? Paired statistics on per-sample values.

Usage: ``paired_bootstrap(a, b)`` -> {"diff", "lo", "hi", "n"}; ``wilcoxon_p(a, b)`` -> p or None

``a`` and ``b`` are per-sample values of two methods on the same samples, in the same order (a hit as
1/0, or an L2 distance). The bootstrap resamples sample indices (pairs stay together) and gives the
95 % percentile interval of mean(b) - mean(a); the Wilcoxon signed-rank test (scipy's, two-sided;
zero differences dropped) gives a p-value for paired distances. For an overall figure, resample users
instead: pass one value per user. Imports no torch.
"""
from __future__ import annotations

import math

import numpy as np


def paired_bootstrap(a, b, n_resamples: int = 10000, seed: int = 0, stat=np.mean, level: float = 0.95) -> dict:
    """{"diff": stat(b) - stat(a), "lo": ..., "hi": ...}: the percentile interval over resampled indices."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    n = len(a)
    if n == 0:
        return {"diff": None, "lo": None, "hi": None, "n": 0}
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    if stat is np.mean:  # vectorised
        diffs = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    else:
        diffs = np.array([stat(b[i]) - stat(a[i]) for i in idx])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return {"diff": float(stat(b) - stat(a)), "lo": float(lo), "hi": float(hi), "n": n}


def wilcoxon_p(a, b) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the pairs (b - a); None when every difference is zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not np.any(d != 0):
        return None
    p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def excludes_zero(ci: dict) -> bool:
    return ci["lo"] is not None and (ci["lo"] > 0 or ci["hi"] < 0)
