"""The benchmarks run on CPU at CI size (same code paths as on the GPU / at full scale)."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_gpu_bench_runs_on_cpu_with_the_tiny_model(tmp_path):
    run_cli("bench/gpu_bench.py", "--shape", "tiny", "--device", "cpu", "--quick", "--out", str(tmp_path))
    r = json.loads((tmp_path / "gpu_bench_cpu_quick.json").read_text())
    for k in ("eval_run", "hf_batch1_pigg", "hf_batched", "prefill_only"):
        assert r["eval"][k]["samples_per_s"] > 0, k
    assert r["eval"]["eval_run"]["prompt_tokens_mean"] > 32  # image tokens + the PIGG prompt
    assert r["train"]["bs4_gc"]["samples_per_s"] > 0 and "error" not in r["train"]["bs4_gc"]
    assert r["estimate_gpu_hours"]["total_gpu_h"] > 0


def test_data_build_bench_small(tmp_path):
    p = run_cli("bench/data_build.py", "--root", str(tmp_path / "b"), "--episodes", "400", "--users", "12")
    assert "build:" in p.stdout and "peak RSS" in p.stdout and "skipped 0" in p.stdout
