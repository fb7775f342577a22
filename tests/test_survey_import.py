"""Survey numbers and bring-your-own click records (JSONL and CSV)."""
from __future__ import annotations

import json

import pandas as pd
from PIL import Image

from conftest import run_cli, write_experiment
from data_prep.config import load_experiment
from data_prep.store import load_samples
from data_prep.import_clicks import import_clicks
from data_prep.kfold import create_k_folds
from data_prep.survey import survey, user_table


def _records(tmp_path):
    shots = tmp_path / "rec" / "shots"
    shots.mkdir(parents=True)
    Image.new("RGB", (100, 200), "white").save(shots / "a.png")
    Image.new("RGB", (300, 600), "white").save(shots / "b.jpg")
    rows = [
        {"user": "alice", "screenshot": "shots/a.png", "instruction": "open settings", "x_px": 50, "y_px": 100,
         "content": "gear", "app": "com.settings"},
        {"user": "alice", "screenshot": "shots/b.jpg", "instruction": "open mail", "x_px": 30, "y_px": 60,
         "app": "com.mail"},
        {"user": "bob", "screenshot": str(shots / "b.jpg"), "instruction": "open mail", "x_px": 299, "y_px": 0,
         "app": "com.mail", "episode": "e1"},
        {"user": "bob", "screenshot": "shots/a.png", "instruction": "", "x_px": 1, "y_px": 1},  # missing field
        {"user": "bob", "screenshot": "shots/a.png", "instruction": "x", "x_px": "left", "y_px": 1},  # bad number
        {"user": "bob", "screenshot": "shots/nope.png", "instruction": "x", "x_px": 1, "y_px": 1},  # missing image
        {"user": "bob", "screenshot": "shots/a.png", "instruction": "x", "x_px": 100, "y_px": 5},  # off screen
    ]
    path = tmp_path / "rec" / "clicks.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    return path, rows


def test_import_clicks_jsonl_reports_bad_rows_by_line(tmp_path):
    path, _ = _records(tmp_path)
    rep = import_clicks(path, tmp_path / "data")
    assert rep["samples"] == 3 and rep["users"] == 2
    assert rep["skipped"] == {"missing_field": 1, "bad_coordinates": 1, "missing_screenshot": 1,
                              "click_outside_image": 1, "malformed_json": 1}
    assert [p.split(":")[1] for p in rep["problems"]] == ["4", "5", "6", "7", "8"]
    users = json.loads((tmp_path / "data" / "users.json").read_text())
    assert users == {"1": "alice", "2": "bob"}
    s = load_samples(tmp_path / "data")
    a = s[1][0]
    assert (a.image, a.width, a.height, a.x, a.y, a.content) == (
        str(tmp_path / "rec" / "shots" / "a.png"), 100, 200, 500, 500, "gear")
    assert (s[2][0].x, s[2][0].y, s[2][0].episode, s[2][0].id) == (996, 0, "e1", "bob/e1/3")


def test_import_clicks_csv_then_export_and_validate(tmp_path):
    path, rows = _records(tmp_path)
    csv_path = path.with_suffix(".csv")
    pd.DataFrame(rows).to_csv(csv_path, index=False, encoding="utf-8-sig")  # Excel's CSV: a BOM before 'user'
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbfuser")
    rep = import_clicks(csv_path, tmp_path / "data")
    assert rep["samples"] == 3 and rep["skipped"]["missing_field"] == 1
    assert rep["problems"][0].split(":")[1] == "5"  # CSV line numbers count the header
    cfg = write_experiment(tmp_path, users__test="1", users__global="2", folds__k=2)
    run_cli("-m", "data_prep", "export", "--config", str(cfg), "--data", str(tmp_path / "data"))
    run_cli("-m", "data_prep", "validate", "--config", str(cfg), "--data", str(tmp_path / "data"))
    assert (tmp_path / "data" / "swift" / "user_1" / "fold_1" / "test.jsonl").exists()


def test_survey_numbers(tmp_path, exp):
    cfg = exp["cfg"]
    df = user_table(cfg).set_index("user")
    samples = load_samples(cfg["paths"]["data"])
    for u, ss in samples.items():
        assert df.loc[u, "samples"] == len(ss)
        assert df.loc[u, "episodes"] == len({s.episode for s in ss})
    rep = exp["report"]
    assert df.loc[1, "actions"] == sum(rep["actions_per_user"]["1"].values())
    assert df.loc[1, "click_share"] == rep["actions_per_user"]["1"]["click"] / df.loc[1, "actions"]
    folds = create_k_folds(samples[1], 3, 42)
    assert df.loc[1, "folds_train_test"] == " ".join(f"{len(samples[1]) - len(f)}/{len(f)}" for f in folds)
    assert set(df.role) == {"test", "global"} and (df.exclusive_app_ratio == 0).all()  # every synth app is shared
    text = survey(cfg)
    out = exp["tmp"] / "data" / "survey"
    assert "survey.md" in text and (out / "survey.csv").exists() and (out / "samples_per_user.png").exists()
    assert (out / "heatmap_user_1.png").exists() and (out / "heatmap_user_2.png").exists()


def test_exclusive_app_ratio(tmp_path):
    path, _ = _records(tmp_path)
    import_clicks(path, tmp_path / "data")
    cfg = load_experiment(write_experiment(tmp_path, users__test="1", users__global="2", folds__k=2))
    df = user_table(cfg).set_index("user")
    # alice: settings (only hers) + mail (shared with bob) -> 1/2; bob: mail only -> 0
    assert df.loc[1, "exclusive_app_ratio"] == 0.5 and df.loc[2, "exclusive_app_ratio"] == 0.0
