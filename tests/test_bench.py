"""The benchmarks run on CPU at CI size (same code paths as on the GPU / at full scale)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def scratch_of(stdout: str) -> Path:
    return Path(re.search(r"scratch folder \(data, model; removed on exit\): (\S+)", stdout).group(1))


def test_gpu_bench_runs_on_cpu_with_the_tiny_model(tmp_path, tiny_model):
    p = run_cli("bench/gpu_bench.py", "--shape", "tiny", "--device", "cpu", "--quick", "--model-dir", str(tiny_model),
                "--out", str(tmp_path))
    assert not scratch_of(p.stdout).exists()  # its data and the link to the model removed
    assert (tiny_model / "config.json").exists()  # the model it was given kept
    r = json.loads((tmp_path / "gpu_bench_cpu_quick.json").read_text())
    for k in ("eval_run", "eval_run_stock", "eval_run_gqa", "hf_batch1_pigg", "hf_batched", "prefill_only"):
        assert r["eval"][k]["samples_per_s"] > 0, k
    assert r["eval"]["eval_run"]["prompt_tokens_mean"] > 32  # image tokens + the PIGG prompt
    ev = r["eval"]["eval_run"]
    assert ev["gqa_decode"] is True and ev["liger_kernel"] is False and ev["gpu_preprocess"] is False  # CPU
    assert 0 < ev["input_wait_s"] < ev["seconds"]
    assert ev["prefetch"] == 4 and ev["cuda_graphs"] is False  # pigg.yaml's prefetch; graphs: GPU only
    g = r["eval"]["graph_check"]  # on the CPU: the static-cache path without capturing a graph
    assert g["graph_steps"] == {"new_inputs": 1, "eager": 23, "captures": 0, "replays": 0}  # 24 forced tokens
    assert g["graph_vs_static_texts_equal"] == g["rows"] == 4 and g["graph_vs_static_prefix_max_abs_logprob_diff"] == 0
    assert g["static_vs_dynamic_first_tokens_equal"] == 4 and g["static_vs_dynamic_prefix_max_abs_logprob_diff"] < 1e-4
    b = r["eval"]["breakdown"]
    assert b["batch"] == 4 and min(b[k] for k in ("encode_s", "vision_s", "prefill_s", "generate_s")) > 0
    assert b["generate_s"] > b["prefill_s"] and b["generate_sdpa_decode_s"] > b["prefill_s"]  # 24 forced new tokens
    swift = r["train"]["bs4_gc"]
    assert "error" not in swift and swift["samples_per_s"] > 0 and swift["steady_samples_per_s"] > 0
    assert [s for s, _ in swift["step_marks_s"]] == [1, 2]  # each step's log line was seen, in order
    assert r["parent_cuda_initialized_while_training"] is False  # the model was built in a child
    hand = r["train"]["handrolled_bs4_gc"]
    assert hand["steady_tokens_per_s"] > 0 and hand["tokens_per_sample"] > r["eval"]["eval_run"]["prompt_tokens_mean"]
    assert r["estimate_gpu_hours"]["total_gpu_h"] > 0
    # the estimate alone, from the saved result
    p = run_cli("bench/gpu_bench.py", "--estimate", str(tmp_path / "gpu_bench_cpu_quick.json"))
    assert json.loads(p.stdout)["total_gpu_h"] == pytest.approx(r["estimate_gpu_hours"]["total_gpu_h"])


def test_steady_rate_skips_the_warm_up_steps():
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    from _common import median_step_s, steady_rate

    marks = [(1, 10.0), (2, 11.0), (3, 12.0), (4, 12.5), (5, 13.0), (6, 13.5), (7, 14.0), (8, 14.5)]
    assert steady_rate(marks) == 3 / 1.5  # steps 5 -> 8
    assert steady_rate([(1, 3.0), (2, 5.0)]) == 0.5  # short runs: from the first step
    assert steady_rate([(1, 3.0)]) is None
    assert median_step_s(marks + [(9, 30.0)]) == 0.5  # one stall of 15.5 s does not move it
    assert median_step_s([(1, 3.0)]) is None
    assert median_step_s([(5, 10.0), (10, 12.5), (15, 15.0), (20, 30.0)]) == 0.5  # a log line every 5 steps


def test_data_build_bench_small(tmp_path):
    p = run_cli("bench/data_build.py", "--root", str(tmp_path / "b"), "--episodes", "400", "--users", "12")
    assert "build:" in p.stdout and "peak RSS" in p.stdout and "skipped 0" in p.stdout


def test_memory_fit_runs_on_cpu_with_the_tiny_model(tmp_path, tiny_model):
    """bench/memory_fit.py at CI size: eval.run's generate at auto and fixed batches in a child process,
    the reserve + long-rows path, person folds through swift sft with the preflight's estimate; the
    parent never touches CUDA."""
    run_cli("bench/memory_fit.py", "--shape", "tiny", "--device", "cpu", "--quick", "--skip", "cap_eval",
            "--model-dir", str(tiny_model), "--out", str(tmp_path))
    r = json.loads((tmp_path / "memory_fit_cpu_quick.json").read_text())
    runs = r["eval"]["runs"]
    assert runs["short_auto"]["plan"] == {"batch_size": 32, "long_batch_size": 32, "auto": True, "device": "cpu"}
    assert runs["short_4"]["plan"]["batch_size"] == 4 and runs["short_4"]["samples_per_s"] > 0
    long = runs["pigg512_auto"]
    assert long["reserve_new_tokens"] == 6 and long["max_new_tokens"] == 24 and long["long_rows"] == long["n"] == 4
    lora = r["train"]["person_lora"]
    assert "error" not in lora and lora["median_step_tokens_per_s"] > 0 and lora["preflight_gib"] > 0
    assert r["train"]["person_lora_gc_cap"]["overrides"][0] == "gradient_checkpointing=true"
    assert "GPU only" in r["train"]["person_qlora_cap"]["skipped"]
    assert r["parent_cuda_initialized"] is False


@pytest.mark.parametrize("how", ["error", "ctrl-c", "sigterm"])
def test_a_bench_removes_its_scratch_folder_however_it_ends(how):
    """bench/_common.scratch: the folder holding a bench's model (16-17 GB at 8B) goes on an error, on Ctrl-C
    and on SIGTERM, not only on success (three runs filled a 64 GiB disk before)."""
    code = ("import os, signal, sys, time; sys.path.insert(0, 'bench'); from _common import scratch\n"
            "with scratch('pigg_t_') as tmp:\n"
            "    (tmp / 'model.safetensors').write_bytes(b'x' * 1024)\n"
            f"    how = {how!r}\n"
            "    if how == 'error': raise RuntimeError('bench failed')\n"
            "    if how == 'ctrl-c': os.kill(os.getpid(), signal.SIGINT)\n"
            "    if how == 'sigterm': os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(5)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    tmp = scratch_of(p.stdout)
    assert not tmp.exists() and f"[bench] removed {tmp}" in p.stdout


def test_step_breakdown_summary_takes_medians_after_the_warm_up_and_names_the_stalls():
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    from step_breakdown import summarize

    step = lambda i, gpu, data=0.05: {"step": i, "data_s": data, "vision_s": 0.08, "lm_fwd_bwd_s": gpu - 0.1,  # noqa: E731
                                      "optimizer_s": 0.01, "other_s": 0.01, "gpu_step_s": gpu, "tokens": 4300,
                                      "patches": 16000, "samples": 4, "flops": 2e14}
    steps = [step(1, 14.0, None), step(2, 3.0)] + [step(i, 0.5) for i in range(3, 12)] + [step(12, 0.5, 0.8)]
    s = summarize({"peak_matmul_tflops": 800.0, "steps": steps})
    assert s["steps"] == 10 and s["median_step_s"] == pytest.approx(0.55)  # steps 1-2 (start-up) left out
    assert s["median_step_tokens_per_s"] == pytest.approx(4300 / 0.55)
    assert s["mfu"] == pytest.approx(2e14 / 0.55 / 800e12) and s["gpu_only_mfu"] == pytest.approx(2e14 / 0.5 / 800e12)
    assert s["slow_steps"] == [12] and s["slowest_over_median"] == pytest.approx(1.3 / 0.55)
    assert s["share"]["vision_s"] == pytest.approx(0.08 / 0.55)
    # the timer without its own syncs (PIGG_STEP_TIMER_SYNC=0) gives each step's wall from its start to the next's
    # on the GPU clock: that, not data wait + GPU step (the host's data time overlaps the GPU's work there)
    s = summarize({"peak_matmul_tflops": 800.0, "steps": [{**st, "wall_s": 0.4} for st in steps]})
    assert s["median_step_s"] == pytest.approx(0.4) and s["median_step_tokens_per_s"] == pytest.approx(4300 / 0.4)


def test_fold_overhead_splits_a_fold_from_its_markers_and_stamps(tmp_path):
    """bench/fold_overhead.py's arithmetic on a fold folder as the sweep and the phase clock leave it: fixed cost =
    wall - training loop - answering; swift's own end read from its log line."""
    import time

    import yaml

    sys.path.insert(0, str(ROOT / "bench"))
    from fold_overhead import fold_record

    cfg = {"name": "x", "paths": {"runs": str(tmp_path / "runs")}}
    fold = tmp_path / "runs" / "x" / "person_lora" / "user_1" / "fold_0"
    (fold / "eval").mkdir(parents=True)
    t0 = 1_800_000_000.0
    (fold / "TRAINED").write_text(yaml.safe_dump({"checkpoint": "c", "seconds": 41.0, "started": t0}))
    (fold / "DONE").write_text(yaml.safe_dump({"checkpoint": "c", "train_s": 41.2, "eval_s": 2.4}))
    (fold / "phase_clock.json").write_text(json.dumps({
        "imported": t0 + 20, "trainer_built": t0 + 25, "train_begin": t0 + 27, "first_step_end": t0 + 32,
        "train_end": t0 + 40, "exit": t0 + 40.5}))
    end = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0 + 40)) + ".250000"  # swift logs local time
    (fold / "train.log").write_text(f"[INFO:swift] End time of running main: {end}\n"
                                    "[pigg] the run is over: stopped 8 child processes still running\n")
    (fold / "eval" / "eval_stats.json").write_text(json.dumps({"load_s": 1.0, "seconds": 0.9, "engine": "kept",
                                                               "samples": 3}))
    r = fold_record(cfg, "person_lora", 1, 0)
    assert r["wall_s"] == 43.6 and r["sft_startup_s"] == 20 and r["sft_build_s"] == 5 and r["sft_loop_s"] == 13
    assert r["sft_after_s"] == 1.0 and r["sft_after_main_s"] == 0.25 and r["sft_after_teardown_s"] == 0.5
    assert r["fixed_s"] == round(43.6 - 13 - 0.9, 2) and r["eval_rest_s"] == 0.5
    assert r["children_stopped_at_end"] == 8
