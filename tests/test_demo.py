"""The main job, shortened (2 test users instead of 3): the whole protocol through scripts/demo.sh
must show PIGG's ordering — Global beats Vanilla, Global+Personalized beats Global."""
from __future__ import annotations

import json
import os
import subprocess

import pandas as pd
import pytest

from conftest import ROOT, write_experiment

pytestmark = pytest.mark.slow


def test_demo_shows_piggs_ordering(tmp_path):
    cfg = write_experiment(tmp_path, name="demo_short", users__test="1-2", users__global="4-12")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(["bash", "scripts/demo.sh", "--config", str(cfg)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "ordering:" in p.stdout and "full report:" in p.stdout
    rep = tmp_path / "runs" / "demo_short" / "report"
    for f in ("report.md", "overall.csv", "per_user.csv", "per_user_accuracy.png", "l2_cdf.png", "significance.csv",
              "per_user_difference.png"):
        assert (rep / f).exists(), f
    o = pd.read_csv(rep / "overall.csv").set_index("role")
    assert o.loc["global", "acc@140 (%)"] > o.loc["vanilla", "acc@140 (%)"]
    assert o.loc["global", "median L2"] < o.loc["vanilla", "median L2"]
    assert o.loc["personalized", "acc@140 (%)"] > o.loc["global", "acc@140 (%)"] + 5  # seen: 29.4 vs 21.9
    assert o.loc["personalized", "median L2"] < o.loc["global", "median L2"]
    pu = pd.read_csv(rep / "per_user.csv").pivot_table(index="user", columns="role", values="median L2")
    assert (pu["personalized"] < pu["global"]).sum() >= 1 + len(pu) // 2  # most users
    assert list((tmp_path / "runs" / "demo_short" / "visualizations").rglob("*.png"))
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    assert report["skipped"] and sum(report["skipped"].values()) == 8  # the planted defects, counted
    # a second run resumes: nothing retrained
    p2 = subprocess.run(["bash", "scripts/demo.sh", "--config", str(cfg)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0 and "already trained" in p2.stdout and "6 folds already done" in p2.stdout
