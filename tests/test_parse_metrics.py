"""The corrected parser over real output styles, PIGG's quirks, and metric values by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pathlib import Path

from data_prep.family import get as get_family
from data_prep.summary import overall, summarize_folds
from eval.metrics import MAX_L2, aggregate, l2, score
from eval.parse import parse_point, parse_point_pigg, parse_referring
from eval.profiles import PROFILES, parse_answer, read_point

VECTORS = json.loads((Path(__file__).with_name("parse_vectors.json")).read_text(encoding="utf-8"))
PIGG_VECTORS = [v for v in VECTORS if v.get("reader") == "pigg"]
VECTORS = [v for v in VECTORS if "profile" in v]

CASES = [
    ("```referring\nsearch\n```\n```grounding\n[512, 300]\n```", (512, 300)),
    ("```referring\nsearch\n```\n```grounding\n(512, 300)\n```", (512, 300)),
    ("```grounding\n[100, 200, 300, 400]\n```", (200, 300)),  # a box -> its centre
    ("```referring\nbutton (2, 3) at 45, 67\n```\n```grounding\n[700, 800]\n```", (700, 800)),
    ("```referring\nbutton (2, 3)\n```\n[640, 120]", (640, 120)),  # numbers in the referring are skipped
    ("```grounding\n[12.5, 30.75]\n```", (12.5, 30.75)),
    ("```grounding\n[-20, 1200]\n```", (-20, 1200)),  # as written: off the screen (scored a miss)
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


@pytest.mark.parametrize("v", VECTORS, ids=[f"{i}-{v['profile']}" for i, v in enumerate(VECTORS)])
def test_answers_are_read_as_their_makers_read_them(v):
    """tests/parse_vectors.json: each form a model emits, the point its maker's own code reads (``follows``),
    in the model's coordinates, unclamped; None: the answer holds no click."""
    got = read_point(PROFILES[v["profile"]], v["text"], v.get("long_press", False))
    assert got == (None if v["point"] is None else tuple(map(float, v["point"]))), v.get("why", v["follows"])


@pytest.mark.parametrize("width,height", [(1080, 2400), (1080, 2340), (1440, 3200), (720, 1600)])
def test_parse_answer_puts_a_pixel_answer_on_the_grid_unclamped(width, height):
    """The one entry: a UI-TARS answer at a quarter of the resized screenshot is (250, 750) on the grid of the
    original at every phone size and budget; one past the image stays past 1000; no click -> None."""
    fam = get_family("qwen2_5_vl")
    for budget in (256, 980):
        w2, h2 = fam.resized(width, height, budget)
        text = f"Thought: there.\nAction: click(point='<point>{w2 / 4} {h2 * 3 / 4}</point>')"
        assert parse_answer("ui_tars", text, width, height, budget) == pytest.approx((250.0, 750.0))
        x, y = parse_answer("ui_tars", f"Action: click(point='<point>{w2 / 2} {h2 * 2}</point>')", width, height, budget)
        assert x == pytest.approx(500.0) and y == pytest.approx(2000.0)
        assert parse_answer("ui_tars", "Action: press_back()", width, height, budget) is None
    assert parse_answer("harness", "```grounding\n[10, 1500]\n```", width, height, 980) == (10.0, 1500.0)
    assert parse_answer("qwen3_vl_native", '{"point_2d": [300, 400]}', width, height, 980) == (300.0, 400.0)
    with pytest.raises(ValueError, match="is for model.family qwen2_5_vl"):
        parse_answer("ui_tars", "x", width, height, 980, family="qwen3_vl")


def test_off_screen_answers_are_misses_never_more_lenient_than_pigg():
    """The Qwen2.5-VL demo's degenerate answer [15, 333366]: clamped it would sit on the bottom edge, a hit
    for a target there. It is a miss at MAX_L2 in the corrected metrics, counted as off_screen; PIGG's own
    numbers keep its full distance."""
    recs = [{"gt": [15, 990], "pred": [15.0, 333366.0], "pred_pigg": [15, 333366]},
            {"gt": [500, 500], "pred": [510.0, 500.0], "pred_pigg": [510, 500]},
            {"gt": [500, 500], "pred": None, "pred_pigg": [0, 0]},
            {"gt": [0, 0], "pred": [-0.5, 0.0], "pred_pigg": [0, 0]}]  # just past the left edge
    m = score(recs, delta=140)
    assert m["off_screen"] == 2 and m["off_screen_rate"] == 0.5 and m["parse_failures"] == 1
    assert m["corrected"]["accuracy"] == 0.25 and m["corrected"]["accuracy"] <= m["pigg"]["accuracy"] == 0.5
    assert m["corrected"]["mean_l2"] == pytest.approx((3 * MAX_L2 + 10) / 4)
    assert m["corrected_parsed"]["n"] == 3 and m["corrected_parsed"]["accuracy"] == pytest.approx(1 / 3)
    assert m["pigg"]["mean_l2"] == pytest.approx((333366 - 990 + 10 + l2([0, 0], [500, 500]) + 0) / 4)
    assert m["pigg"]["off_screen"] == 1
    s = summarize_folds([m, m], user=3)
    assert s["avg_off_screen_rate"] == 0.5


@pytest.mark.parametrize("v", PIGG_VECTORS, ids=[f"pigg-{i}" for i in range(len(PIGG_VECTORS))])
def test_parse_point_pigg_reads_as_piggs_own_scorer(v):
    """tests/parse_vectors.json ``reader: pigg``: the point PIGG's parse_inference(text, is_gt=False) returns for each
    answer form (``follows``: its file and commit), including the forms where a simpler reading differs."""
    assert parse_point_pigg(v["text"]) == tuple(v["point"]), v["why"]


def test_pigg_metrics_are_numpys_bit_for_bit():
    """PIGG's evaluate_coordinates: distances by np.linalg.norm, accuracy, mean and median by numpy; and its
    per-user and over-user summaries by np.mean / np.std. The harness's PIGG-compatible numbers are the same
    floats (==, not approx) on awkward values (a 1/3-style mean, floats, a far-off answer)."""
    rng = np.random.default_rng(0)
    folds = []
    for n in (7, 10, 13):
        gt = rng.integers(0, 1001, size=(n, 2))
        pred = rng.integers(-50, 3000, size=(n, 2)).astype(float) + rng.random((n, 2))
        recs = [{"gt": list(map(int, g)), "pred": None, "pred_pigg": list(p)} for g, p in zip(gt, pred)]
        m = score(recs, delta=140)["pigg"]
        d = np.linalg.norm(np.array(pred) - np.array(gt), axis=1)
        assert m["accuracy"] == np.mean(d <= 140) and m["mean_l2"] == np.mean(d) and m["median_l2"] == np.median(d)
        folds.append({"n": n, "pigg": m, "corrected": m, "parse_fail_rate": 0.0, "element_hit_rate": None})
    s = summarize_folds(folds, user=1)
    for key in ("accuracy", "mean_l2", "median_l2"):
        vals = [f["pigg"][key] for f in folds]
        assert s[f"avg_{key}"] == np.mean(vals) and s[f"std_{key}"] == np.std(vals)
    s2 = {**s, "user_id": 2, "avg_mean_l2": s["avg_mean_l2"] / 3}
    assert overall([s, s2])["avg_mean_l2"] == np.mean([s["avg_mean_l2"], s2["avg_mean_l2"]])


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
    from eval.job import results_text

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
