"""eval/stats.py: paired bootstrap intervals and the Wilcoxon signed-rank test against known values."""
from __future__ import annotations

import numpy as np
import pytest

from eval.stats import excludes_zero, paired_bootstrap, wilcoxon_p


def test_wilcoxon_against_the_textbook_example():
    # Hollander & Wolfe, Nonparametric Statistical Methods, depression scores before / after (n = 9):
    # T+ = 5, exact two-sided p = 10/256 = 0.0390625
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    assert wilcoxon_p(x, y) == pytest.approx(0.0390625)
    assert wilcoxon_p(y, x) == pytest.approx(0.0390625)  # two-sided
    assert wilcoxon_p([1, 2, 3], [1, 2, 3]) is None  # nothing differs: no test


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(3)
    a = rng.normal(100, 30, 400)
    b = a - 20 + rng.normal(0, 10, 400)  # b is 20 lower, pair by pair
    ci = paired_bootstrap(a, b, n_resamples=4000, seed=0)
    assert ci["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    assert ci["lo"] < ci["diff"] < ci["hi"] < 0 and excludes_zero(ci)
    # the paired interval is the interval of the mean difference: ~ +-1.96 sd/sqrt(n) of the differences
    half = 1.96 * np.std(b - a) / np.sqrt(400)
    assert (ci["hi"] - ci["lo"]) / 2 == pytest.approx(half, rel=0.1)
    assert paired_bootstrap(a, b, n_resamples=4000, seed=0) == ci  # seeded
    same = paired_bootstrap(a, a + rng.normal(0, 1, 400), n_resamples=2000)
    assert same["lo"] < 0 < same["hi"] and not excludes_zero(same)
    assert paired_bootstrap([], []) == {"diff": None, "lo": None, "hi": None, "n": 0}
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1, 2], [1])


def test_bootstrap_of_hits_and_medians():
    a = [0, 0, 1, 0, 1, 0, 0, 0, 1, 0] * 10  # 30 % hits
    b = [1, 0, 1, 1, 1, 0, 1, 0, 1, 0] * 10  # 60 % hits, never a hit lost
    ci = paired_bootstrap(a, b, n_resamples=2000)
    assert ci["diff"] == pytest.approx(0.3) and ci["lo"] > 0.15
    med = paired_bootstrap([5.0, 7.0, 9.0], [1.0, 2.0, 3.0], n_resamples=500, stat=np.median)
    assert med["diff"] == -5.0 and med["hi"] < 0


def test_report_compares_each_method_with_global_pairing_samples_by_id(tmp_path):
    """eval.report.significance on written result files: samples paired by id across the fold files,
    one row per user and one over users, intervals that contain the difference."""
    import json

    from eval.report import significance

    def write(path, recs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recs))

    glob_, pers = tmp_path / "eval" / "global_full", tmp_path / "person_lora"
    for u in (1, 2):
        ids = [f"u{u}/{i}" for i in range(30)]
        # Global hits 10 of 30 (the first ten); personalized all 30 (10 px off on 25), split over 3 folds
        write(glob_ / f"user_{u}" / "out.json",
              [{"id": i, "gt": [500, 500], "pred_pigg": [500, 500] if k < 10 else [900, 900]} for k, i in enumerate(ids)])
        recs = [{"id": i, "gt": [500, 500], "pred_pigg": [510, 500] if k >= 5 else [500, 500]} for k, i in enumerate(ids)]
        for f in range(3):
            write(pers / f"user_{u}" / f"fold_{f}" / "eval" / "out.json", recs[f::3])
    models = [{"name": "global_full", "role": "global", "dir": glob_, "kind": "eval"},
              {"name": "global+person_lora", "role": "personalized", "dir": pers, "kind": "person"}]
    sig = significance(models, 140, n_resamples=2000).set_index("user")
    assert list(sig.index) == ["1", "2", "all (over users)"]
    one = sig.loc["1"]
    assert one["samples"] == 30 and one["acc diff (pp)"] == pytest.approx(100 * (30 - 10) / 30)
    assert 0 < one["acc lo"] < one["acc diff (pp)"] < one["acc hi"]
    assert one["median L2 diff"] < 0 and one["wilcoxon p (L2)"] < 0.05
    assert sig.loc["all (over users)", "samples"] == 2
