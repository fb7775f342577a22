"""Personalized folds in parallel (one per GPU, from the queue) against the same folds one after another.

Usage: python bench/parallel_folds.py --gpus 0,1 [--shape 8b] [--steps 20]
       python bench/parallel_folds.py --gpus cpu --shape tiny --steps 2   (CPU smoke run)

Runs `swift_configs.person` (what scripts/4_finetune_person.sh runs) twice on the same data and base
model: once with the first GPU only (sequential), once with all GPUs; compares wall time and checks
that every fold of the parallel run left the same files and metric keys as the sequential one.
Writes bench/results/parallel_folds_<n>gpu.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from data_prep.io import write_json  # noqa: E402
from data_prep.rundir import done, eval_dir, fold_dir  # noqa: E402
from _common import ROOT, child_env, prepare_experiment, scratch  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="0,1")
    p.add_argument("--shape", choices=["tiny", "8b"], default="8b")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    from build_tiny_model import build
    from data_prep.synth import synth

    gpus = a.gpus.split(",")
    with scratch("pigg_par_") as tmp:
        budget = 980 if a.shape == "8b" else 32
        synth(tmp / "raw", users=4, episodes=20, seed=0, scale=1.0 if a.shape == "8b" else 0.25, defects=False,
              test_users=2, test_episodes=60)
        on_gpu = a.gpus != "cpu"
        model = build(tmp / "model", a.shape, device="cuda" if on_gpu else "cpu",
                      dtype="bfloat16" if on_gpu else "float32")
        cfg_path, cfg = prepare_experiment(tmp, model, "seq", {
            "users": {"test": "1-2", "global": "3-4"}, "image_max_token_num": budget,
            "eval": {"max_new_tokens": 24, "batch_size": 32},
            "train": {"person_base": str(model),
                      "person_overrides": {"max_steps": a.steps, "save_strategy": "steps", "save_steps": a.steps,
                                           "logging_steps": 5, **({} if on_gpu else {"dataloader_num_workers": 0})}}})
        env = child_env()
        res = {"gpus": gpus, "shape": a.shape, "steps": a.steps, "folds": "users 1-2, folds 0-1 (4 folds)"}
        for name, g in (("sequential", gpus[0]), ("parallel", a.gpus)):
            cmd = [sys.executable, "-m", "swift_configs.person", "--config", str(cfg_path), "--set", f"name={name}",
                   "--gpus", g, "--users", "1", "2", "--fold", "0", "1", "--lora"]
            if not on_gpu and name == "parallel":
                cmd += ["--workers", "2"]
            t = time.time()
            pr = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            res[name] = {"wall_s": time.time() - t, "rc": pr.returncode, "log": pr.stdout[-1500:] + pr.stderr[-800:]}
            print(f"{name} on {g}: {res[name]['wall_s']:.0f}s rc={pr.returncode}", flush=True)
        runs = tmp / "runs"
        same = True
        for u in (1, 2):
            for f in (0, 1):
                a_dir, b_dir = (fold_dir(runs / name / "person_lora", u, f) for name in ("sequential", "parallel"))
                names = lambda d: sorted(p.name for p in eval_dir(d).iterdir()) if eval_dir(d).is_dir() else []
                keys = lambda d: sorted(json.loads((eval_dir(d) / "metrics.json").read_text())) \
                    if (eval_dir(d) / "metrics.json").exists() else None
                ok = done(a_dir).exists() and done(b_dir).exists() and names(a_dir) == names(b_dir) \
                    and keys(a_dir) == keys(b_dir) and keys(a_dir) is not None
                same &= ok
        res["same_structure"] = same
        if res["sequential"]["rc"] == 0 and res["parallel"]["rc"] == 0:
            res["speedup"] = res["sequential"]["wall_s"] / res["parallel"]["wall_s"]
        out = Path(a.out) / f"parallel_folds_{len(gpus)}{'gpu' if on_gpu else 'cpu'}.json"
        write_json(out, res)
        print(json.dumps({k: v for k, v in res.items() if k not in ("sequential", "parallel")}, indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
