"""Global full fine-tuning of the 8B-shaped model with DeepSpeed ZeRO over several GPUs, measured.

Usage: python bench/zero3_global.py --gpus 0,1 [--zero 3] [--steps 6]

Runs `python -m swift_configs.train --full --gpus 0,1` (what scripts/2_finetune_global.sh runs; ZeRO
from train.zero_stage) on phone-sized synthetic data for a few steps with PIGG's global settings
(batch 1 x accum 8, gradient checkpointing), then checks that the saved checkpoint loads and that
its vision tower and aligner equal the base. Writes bench/results/zero{N}_global_<n>gpu.json with
tokens/s per GPU and peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from _common import ROOT, prepare_experiment  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="0,1")
    p.add_argument("--zero", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--shape", choices=["tiny", "8b"], default="8b")
    p.add_argument("--bs", type=int, default=1, help="per-GPU batch; accumulation = 8 / bs (effective 8 per GPU)")
    p.add_argument("--no-gc", action="store_true", help="gradient checkpointing off")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    from build_tiny_model import build
    from data_prep.synth import synth
    from safetensors import safe_open

    tmp = Path(tempfile.mkdtemp(prefix="pigg_z3_"))
    synth(tmp / "raw", users=3, episodes=60, seed=0, scale=1.0, defects=False, test_users=1, test_episodes=10)
    model = build(tmp / "model", a.shape, device="cuda", dtype="bfloat16")
    cfg_path, cfg = prepare_experiment(tmp, model, "z3", {
        "users": {"test": "1", "global": "2-3"}, "train": {"zero_stage": a.zero, "global_overrides": {
            "max_steps": a.steps, "save_steps": a.steps, "logging_steps": 1, "save_only_model": True,
            "dataloader_num_workers": 2, "per_device_train_batch_size": a.bs,
            "gradient_accumulation_steps": max(1, 8 // a.bs), "gradient_checkpointing": not a.no_gc}}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t = time.time()
    pr = subprocess.run([sys.executable, "-m", "swift_configs.train", "--config", str(cfg_path), "--gpus", a.gpus,
                         "--full"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t
    run = tmp / "runs" / "z3" / "global_full"
    res = {"gpus": a.gpus, "zero": a.zero, "steps": a.steps, "rc": pr.returncode, "wall_s": wall,
           "log_tail": (pr.stdout + pr.stderr)[-2000:]}
    if (run / "train.log").exists():
        res["train_log_tail"] = (run / "train.log").read_text(errors="replace")[-3000:]
    logs = [json.loads(x) for x in (run / "logging.jsonl").read_text().splitlines()] if (run / "logging.jsonl").exists() else []
    final = next((x for x in reversed(logs) if "train_runtime" in x), None)
    if final:
        n_gpu = len(a.gpus.split(","))
        tokens = 1082  # prompt ≈ 1052 (measured by gpu_bench) + answer ≈ 30
        sps = float(final["train_samples_per_second"])
        res.update(samples_per_s=sps, tokens_per_s_per_gpu=sps * tokens / n_gpu, train_runtime_s=float(final["train_runtime"]),
                   peak_mem_gib=max((float(str(x.get("memory(GiB)", 0))) for x in logs if "loss" in x), default=None))
    if (run / "DONE").exists():
        ckpt = Path(yaml.safe_load((run / "DONE").read_text())["checkpoint"])
        res["checkpoint"] = str(ckpt)

        def visual(folder):
            out = {}
            for f in folder.glob("*.safetensors"):
                with safe_open(f, "pt") as st:
                    for k in st.keys():
                        if ".visual." in k or k.startswith("visual."):
                            out[k] = st.get_tensor(k)
            return out
        b, n = visual(model), visual(ckpt)
        res["vision_keys"] = len(b)
        res["vision_equal"] = bool(b) and set(b) == set(n) and all(b[k].equal(n[k]) for k in b)
        from transformers import AutoConfig

        res["checkpoint_config_loads"] = AutoConfig.from_pretrained(ckpt).model_type
    res.update(per_device_batch=a.bs, grad_accum=max(1, 8 // a.bs), gradient_checkpointing=not a.no_gc)
    out = Path(a.out) / f"zero{a.zero}_global_{len(a.gpus.split(','))}gpu_bs{a.bs}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if "tail" not in k}, indent=1))
    if pr.returncode:
        print(res.get("train_log_tail", "")[-2500:])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
