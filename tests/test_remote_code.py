"""Model folders cannot run code unless the experiment says so (model.trust_remote_code, data_prep/runtime/procenv.py):
a copy of the tiny Qwen3-VL whose config.json maps AutoConfig to a shipped evil.py, which writes a marker file
when imported. Real `swift sft` and the real eval engine load it; only the switch decides whether evil.py runs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from data_prep.config import load_experiment
from data_prep.runtime.procenv import PLUGINS, TRUST_ENV

EVIL = '''import pathlib
pathlib.Path({ran!r}).write_text("evil.py ran")  # what code in a model folder can do (transformers runs a copy)
from transformers import Qwen3VLConfig


class EvilConfig(Qwen3VLConfig):
    pass
'''


@pytest.fixture()
def evil_model(tmp_path, tiny_model) -> Path:
    out = tmp_path / "evil-model"
    shutil.copytree(tiny_model, out)
    (out / "evil.py").write_text(EVIL.format(ran=str(out / "RAN")))
    cfg = json.loads((out / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_generated_yaml_carries_the_switch(exp, tiny_model):
    from swift_configs.generate import render

    for value, env in ((None, "0"), ("true", "1")):
        cfg = load_experiment(exp["path"], [f"paths.model={tiny_model}"]
                              + ([f"model.trust_remote_code={value}"] if value else []))
        run = render(cfg, "global")
        assert run.args["external_plugins"] == [str(p) for p in PLUGINS]
        assert run.env[TRUST_ENV] == env and f"{TRUST_ENV}: '{env}'" in run.dump()


def test_swift_sft_and_eval_do_not_run_a_model_folders_code(exp, evil_model, tmp_path):
    from data_prep.patches.remote_code import install as set_trust_remote_code
    from eval.engine import build_engine

    ran = evil_model / "RAN"
    # a real `swift sft` on the folder, through the harness's launcher: one step
    p = run_cli("-m", "swift_configs.train", "--config", str(exp["path"]), "--set", f"paths.model={evil_model}",
                "--set", f"paths.runs={tmp_path / 'runs'}", "--full", "max_steps=1", "save_steps=1")
    assert not ran.exists(), p.stdout[-2000:]
    log = next((tmp_path / "runs").rglob("train.log")).read_text()
    assert "remote_code.py" in log and "with trust_remote_code=True" not in log  # the plugin ran; swift's false claim dropped
    try:
        build_engine(str(evil_model), [], 2, "cpu")  # eval's engine, switch off (the default)
        assert not ran.exists()
        build_engine(str(evil_model), [], 2, "cpu", trust_remote_code=True)  # on: the folder's code runs
        assert ran.read_text() == "evil.py ran"
    finally:
        set_trust_remote_code(False)
