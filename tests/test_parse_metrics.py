"""The corrected parser over real output styles, PIGG's quirks, and metric values by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eval.metrics import MAX_L2, aggregate, l2, overall, score, summarize_folds
from eval.parse import parse_point, parse_point_pigg, parse_referring

CASES = [
    ("```referring\nsearch\n```\n```grounding\n[512, 300]\n```", (512, 300)),
    ("```referring\nsearch\n```\n```grounding\n(512, 300)\n```", (512, 300)),
    ("```grounding\n[100, 200, 300, 400]\n```", (200, 300)),  # a box -> its centre
    ("```referring\nbutton (2, 3) at 45, 67\n```\n```grounding\n[700, 800]\n```", (700, 800)),
    ("```referring\nbutton (2, 3)\n```\n[640, 120]", (640, 120)),  # numbers in the referring are skipped
    ("```grounding\n[12.5, 30.75]\n```", (12.5, 30.75)),
    ("```grounding\n[-20, 1200]\n```", (0, 1000)),  # clamped
    ("```grounding\n[1, 2]\n```\n```grounding\n[3, 4]\n```", (1, 2)),  # first block
    ("```grounding\n```\n```grounding\n[3, 4]\n```", (3, 4)),  # an empty block is skipped
    ("```grounding\n[5, 6]", (5, 6)),  # unclosed fence
    ("The element is at [250, 750].", (250, 750)),
    ("point (250, 750)", (250, 750)),
    ("<|box_start|>(10,20)<|box_end|>", (10, 20)),
    ("<|box_start|>(10,20),(30,60)<|box_end|>", (20, 40)),
    ('{"point_2d": [321, 654], "label": "ok"}', (321, 654)),
    ('```json\n[{"bbox_2d": [100, 100, 200, 300], "label": "x"}]\n```', (150, 200)),
    ("click(start_box='(400,500)')", (400, 500)),
    ("click(start_box='[400, 500, 600, 700]')", (500, 600)),
    ("<point>123 456</point>", (123, 456)),
    ("", None),
    (None, None),
    ("I cannot find it.", None),
    ("```grounding\nnowhere\n```", None),
    ("```grounding\n[1, 2, 3]\n```", (1, 2)),
    ("random 7 tokens 9 here", None),
]


@pytest.mark.parametrize("text,want", CASES)
def test_parse_point(text, want):
    got = parse_point(text)
    assert got == (None if want is None else (float(want[0]), float(want[1])))


@pytest.mark.parametrize("text,want", [
    ("```grounding\n[512, 300]\n```", (512, 300)),
    ("```grounding\n[100, 200, 300, 400]\n```", (100, 200)),  # box -> top-left
    ("no block [250, 750]", (0, 0)),  # no grounding block -> (0, 0)
    ("```grounding\n[12.5, 30.75]\n```", (5, 30)),  # floats are not parsed: PIGG's quirk
    ("```grounding\n[5, 6]", (0, 0)),  # unclosed block
    ("```grounding\n[1500, 20]\n```", (1500, 20)),  # no clamping
    ("```grounding\n[1, 2]\n```\n```grounding\n[3, 4]\n```", (1, 2)),
])
def test_parse_point_pigg(text, want):
    assert parse_point_pigg(text) == want


def test_parse_referring():
    assert parse_referring("```referring\n 搜索 \n```\n```grounding\n[1, 2]\n```") == "搜索"
    assert parse_referring("nothing") == ""


def test_score_by_hand():
    recs = [
        {"gt": [100, 100], "pred": [100, 200], "pred_pigg": [100, 200], "width": 1000, "height": 2000},  # 100: hit
        {"gt": [500, 500], "pred": [800, 900], "pred_pigg": [800, 900], "width": 1000, "height": 2000},  # 500: miss
        {"gt": [300, 400], "pred": None, "pred_pigg": [0, 0], "width": 1000, "height": 2000},  # parse failure
        {"gt": [0, 0], "pred": [140, 0], "pred_pigg": [140, 0], "width": 1000, "height": 2000},  # 140: hit (<=)
    ]
    m = score(recs, delta=140)
    assert m["n"] == 4 and m["parse_failures"] == 1 and m["parse_fail_rate"] == 0.25
    assert m["pigg"]["accuracy"] == 0.5
    assert m["pigg"]["mean_l2"] == pytest.approx((100 + 500 + 500 + 140) / 4)
    assert m["pigg"]["median_l2"] == pytest.approx((140 + 500) / 2)
    assert m["corrected"]["mean_l2"] == pytest.approx((100 + 500 + MAX_L2 + 140) / 4)
    assert m["corrected"]["median_l2"] == pytest.approx((140 + 500) / 2)
    assert m["corrected_parsed"]["accuracy"] == pytest.approx(2 / 3)
    assert m["corrected_parsed"]["median_l2"] == pytest.approx(140)
    # pixels: dx 0, dy 100 grid -> 200 px; (300, 400) grid -> (300, 800) px -> 854.4; 140 grid -> 140 px
    assert m["median_l2_px"] == pytest.approx(200)
    assert m["mean_l2_px"] == pytest.approx((200 + math.hypot(300, 800) + 140) / 3)


def test_l2_and_empty_aggregate():
    assert l2((3, 4), (0, 0)) == 5
    assert aggregate([], 140) == {"n": 0, "accuracy": None, "mean_l2": None, "median_l2": None}


def _reject_constant(name):
    raise AssertionError(f"{name} in a JSON file (not JSON)")


def test_undefined_metrics_are_null_in_strict_json(tmp_path):
    """Nothing parsed and no element tree: metrics.json, summaries and overall.json hold null, never
    NaN, and results.txt says n/a."""
    from data_prep.io import write_json
    from eval.run import results_text

    recs = [{"gt": [500, 500], "pred": None, "pred_pigg": [0, 0], "width": 1080, "height": 2400}] * 3
    m = score(recs, 140)
    assert m["corrected_parsed"]["accuracy"] is None and m["mean_l2_px"] is None
    assert m["element_hit_rate"] is None and m["corrected"]["accuracy"] == 0.0
    s = summarize_folds([m, m], user=1)
    assert s["avg_element_hit_rate"] is None and s["avg_accuracy"] == 0.0
    o = overall([s, {**s, "user_id": 2}])
    assert o["avg_element_hit_rate"] is None and o["avg_parse_fail_rate"] == 1.0
    for name, obj in (("metrics", m), ("summary", s), ("overall", o), ("nan", {"x": [float("nan"), float("inf")]})):
        write_json(tmp_path / f"{name}.json", obj)
        back = json.loads((tmp_path / f"{name}.json").read_text(), parse_constant=_reject_constant)
        assert "NaN" not in (tmp_path / f"{name}.json").read_text()
    assert back == {"x": [None, None]}
    text = results_text(m, "t")
    assert "nan" not in text.lower() and "element hit rate: n/a (n=0)" in text
    assert "corrected (parsed) acc@140: n/a" in text


def test_element_hit_mean_skips_folds_without_trees():
    agg = {"accuracy": 0.5, "mean_l2": 1.0, "median_l2": 1.0}
    folds = [{"n": 2, "pigg": agg, "corrected": agg, "parse_fail_rate": 0.0, "element_hit_rate": h}
             for h in (0.25, None, 0.75)]
    assert summarize_folds(folds, 1)["avg_element_hit_rate"] == pytest.approx(0.5)


def test_summaries_match_numpy():
    folds = []
    for acc, mean, med in [(0.5, 100.0, 80.0), (0.25, 200.0, 150.0), (0.75, 50.0, 40.0)]:
        agg = {"accuracy": acc, "mean_l2": mean, "median_l2": med}
        folds.append({"n": 10, "pigg": agg, "corrected": agg, "parse_fail_rate": 0.1, "element_hit_rate": 0.5})
    s = summarize_folds(folds, user=7)
    assert s["user_id"] == 7 and s["n_folds"] == 3
    assert s["avg_accuracy"] == pytest.approx(np.mean([0.5, 0.25, 0.75]))
    assert s["std_accuracy"] == pytest.approx(np.std([0.5, 0.25, 0.75]))
    assert s["std_mean_l2"] == pytest.approx(np.std([100, 200, 50]))
    assert s["avg_median_l2"] == pytest.approx(np.mean([80, 150, 40]))
    o = overall([s, {**s, "user_id": 8, "avg_accuracy": 0.0}])
    assert o["n_users"] == 2 and o["avg_accuracy"] == pytest.approx(0.25)
