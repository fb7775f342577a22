"""PIGG's metrics as small per-sample functions plus aggregations.

Usage: ``score(records, delta=140)`` where each record has ``gt`` [x, y], ``pred`` [x, y] or None
(eval/profiles.py ``parse_answer``: the grid point as answered, unclamped) and ``pred_pigg`` [x, y];
optionally ``width``/``height`` (pixel L2) and ``element_hit`` (True/False/None).

All distances are on the 0-1000 grid of the original screenshot unless named ``_px``.
Reported side by side:
- ``pigg``: PIGG-compatible, exactly PIGG's (its parser; an unparseable answer scored as (0, 0); no clamping,
  so an answer far off the screen enters the mean L2 at its full distance); ``pigg.off_screen`` counts them.
- ``corrected``: every sample; a parse failure and an answer off the screen (a grid coordinate < 0 or
  > 1000) are misses at the largest distance on the screen (the grid diagonal): never clamped into a hit,
  never more lenient than PIGG's; ``corrected_parsed``: samples with a point only; ``parse_failures``,
  ``off_screen`` and their rates.
Undefined values (nothing parsed, no accessibility tree, no folds) are ``None`` -> ``null`` in JSON
(NaN is not JSON) and ``n/a`` in text. Imports no torch.
"""
from __future__ import annotations

import math

import numpy as np

from data_prep.schema import GRID, on_grid
from data_prep.summary import mean_or_none

MAX_L2 = math.hypot(GRID, GRID)  # the distance of a parse failure or an off-screen answer in the corrected metrics


def l2(pred, gt) -> float:
    """L2 as PIGG computes it (numpy's norm of a row: sqrt(dx*dx + dy*dy) in float64, the same bits)."""
    dx, dy = pred[0] - gt[0], pred[1] - gt[1]
    return math.sqrt(dx * dx + dy * dy)


def corrected_l2(pred, gt) -> float:
    """The corrected metrics' distance: L2 on the grid; no point or a point off the screen: MAX_L2 (a miss)."""
    return l2(pred, gt) if pred is not None and on_grid(pred) else MAX_L2


def l2_px(pred, gt, width: int, height: int) -> float:
    return math.hypot((pred[0] - gt[0]) * width / GRID, (pred[1] - gt[1]) * height / GRID)


def is_hit(dist: float, delta: float) -> bool:
    return dist <= delta


def _median(values) -> float | None:
    return float(np.median(values)) if values else None


def aggregate(dists: list[float], delta: float) -> dict:
    """Accuracy, mean and median L2 as PIGG's ``evaluate_coordinates`` computes them (numpy's mean and median)."""
    if not dists:
        return {"n": 0, "accuracy": None, "mean_l2": None, "median_l2": None}
    d = np.asarray(dists, dtype=np.float64)
    return {"n": len(dists), "accuracy": float(np.mean(d <= delta)), "mean_l2": float(np.mean(d)),
            "median_l2": float(np.median(d))}


def score(records: list[dict], delta: float = 140) -> dict:
    n = len(records)
    pigg = [l2(r["pred_pigg"], r["gt"]) for r in records]
    parsed = [r for r in records if r["pred"] is not None]
    corrected = [corrected_l2(r["pred"], r["gt"]) for r in records]
    off = sum(not on_grid(r["pred"]) for r in parsed)
    px = [l2_px(r["pred"], r["gt"], r["width"], r["height"]) if on_grid(r["pred"]) else math.hypot(r["width"], r["height"])
          for r in parsed if r.get("width")]
    hits = [r["element_hit"] for r in records if r.get("element_hit") is not None]
    out = {
        "n": n,
        "delta": delta,
        "parse_failures": n - len(parsed),
        "parse_fail_rate": (n - len(parsed)) / n if n else None,
        "off_screen": off,
        "off_screen_rate": off / n if n else None,
        "pigg": {**aggregate(pigg, delta), "off_screen": sum(not on_grid(r["pred_pigg"]) for r in records)},
        "corrected": aggregate(corrected, delta),
        "corrected_parsed": aggregate([d for d, r in zip(corrected, records) if r["pred"] is not None], delta),
        "mean_l2_px": mean_or_none(px),
        "median_l2_px": _median(px),
        "element_hit_rate": sum(hits) / len(hits) if hits else None,
        "element_hit_n": len(hits),
    }
    return out
