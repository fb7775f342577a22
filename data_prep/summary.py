"""Per-user and overall summaries of fold metrics: PIGG's ``user_{id}_summary.json`` and the over-users mean.

Usage: ``summarize_folds([metrics.json of each fold], user)``, ``overall([summaries])``

Below training and eval alike: the training stages (swift_configs/person.py, tokens.py) write them once a
user's folds are done, the report reads them; eval/metrics.py makes the per-fold metrics they summarise.
Undefined values stay ``None`` (``null`` in JSON). Imports no torch.
"""
from __future__ import annotations

import numpy as np

from .provenance import ProvenanceError


def mean_or_none(values) -> float | None:
    """numpy's mean (PIGG averages over folds and users with np.mean: the same bits), None for no values."""
    return float(np.mean(values)) if len(values) else None


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """np.mean and np.std (population, ddof=0), as PIGG's summaries, of the defined values."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def same_build(items: list[dict], what: str) -> str | None:
    """The one data build that every item (fold metrics or summaries) was scored on; ProvenanceError where they
    come from different builds (a summary never mixes them). Items that predate the record say None."""
    builds = {(m.get("provenance") or {}).get("build") for m in items} - {None}
    if len(builds) > 1:
        raise ProvenanceError(f"{what}: its inputs were scored on {len(builds)} different builds of the data "
                              f"({sorted(b[:12] for b in builds)}): re-run the stale ones (--fresh) before summarising")
    return next(iter(builds), None)


def summarize_folds(fold_metrics: list[dict], user: int) -> dict:
    """PIGG's user_{id}_summary.json keys (PIGG-compatible numbers) plus the corrected ones."""
    out = {"user_id": user, "n_folds": len(fold_metrics), "n_samples": sum(m["n"] for m in fold_metrics),
           "provenance": {"build": same_build(fold_metrics, f"user {user}'s folds")}}
    for src, prefix in (("pigg", ""), ("corrected", "corrected_")):
        for key, name in (("accuracy", "accuracy"), ("mean_l2", "mean_l2"), ("median_l2", "median_l2")):
            m, s = _mean_std([f[src][key] for f in fold_metrics])
            out[f"{prefix}avg_{name}"], out[f"{prefix}std_{name}"] = m, s
    out["avg_parse_fail_rate"] = _mean_std([f["parse_fail_rate"] for f in fold_metrics])[0]
    out["avg_off_screen_rate"] = _mean_std([f.get("off_screen_rate") for f in fold_metrics])[0]
    out["avg_element_hit_rate"] = _mean_std([f["element_hit_rate"] for f in fold_metrics])[0]
    return out


def overall(summaries: list[dict]) -> dict:
    """Unweighted mean over users, as PIGG reports."""
    keys = [k for k in summaries[0] if k.startswith(("avg_", "corrected_avg_"))] if summaries else []
    out = {"n_users": len(summaries), "users": [s["user_id"] for s in summaries],
           "provenance": {"build": same_build(summaries, "the users' summaries")}}
    for k in keys:
        out[k] = mean_or_none([s[k] for s in summaries if s[k] is not None])
    return out
