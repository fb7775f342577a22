"""eval's engine options that need no model: a missing optional package is named, not a stack; the CLI
turns the library's errors into a message and exit code 2."""
from __future__ import annotations

import re
import sys

import pytest


def test_liger_for_eval_names_the_missing_package(monkeypatch):
    from eval.engine import EvalError, apply_liger

    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # as if not installed: its import fails
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)
    with pytest.raises(EvalError, match=r"eval.liger_kernel: true needs the liger-kernel package"):
        apply_liger(object())


def test_gpu_preprocess_and_workers_exclude_each_other_before_any_work(tmp_path, capsys):
    """On a GPU, forked encoding workers and GPU-made patches are refused at once, naming the keys and
    the experiment file (before data, model or GPU are touched: the data here does not even exist)."""
    from conftest import write_experiment
    from eval.run import main

    cfg = write_experiment(tmp_path, eval__workers=2, eval__gpu_preprocess=True, eval__prefetch=4)
    args = ["--config", str(cfg), "--model", str(tmp_path / "m"), "--data", str(tmp_path / "x.jsonl"),
            "--out", str(tmp_path / "o"), "--devices", "0"]
    # prefetching threads (pigg.yaml's 4) and workers as well: refused on any device, first
    assert main(args[:-1] + ["cpu"]) == 2
    assert re.search(r"error: .*t\.yaml: eval\.workers=2 and eval\.prefetch=4 both encode", capsys.readouterr().err)
    cfg = write_experiment(tmp_path, eval__workers=2, eval__gpu_preprocess=True, eval__prefetch=0)
    assert main(args) == 2
    assert re.search(r"t\.yaml: eval\.workers=2 and eval\.gpu_preprocess: true exclude", capsys.readouterr().err)
    # on the CPU gpu_preprocess is off anyway: the run goes on, as far as the data that was never exported
    assert main(args[:-1] + ["cpu"]) == 2
    assert "x.jsonl: no such eval file (run `python -m data_prep export`)" in capsys.readouterr().err


def test_encoded_batches_refuses_workers_with_a_gpu_image_processor():
    from types import SimpleNamespace

    from eval.batches import encoded_batches

    proc = SimpleNamespace(image_processor=SimpleNamespace(device="cuda:0"))
    engine = SimpleNamespace(template=SimpleNamespace(processor=proc, use_model=False, set_mode=lambda m: None),
                             model=SimpleNamespace(device=SimpleNamespace(type="cuda"), dtype=None))
    with pytest.raises(ValueError, match=r"eval.workers=2 .* image processor is set to \(cuda:0"):
        list(encoded_batches(engine, [1, 2, 3], 1, workers=2))
