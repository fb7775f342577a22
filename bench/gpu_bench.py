"""One-GPU benchmark at Qwen3-VL-8B scale: eval throughput and personalized-fold training throughput.

Usage: python bench/gpu_bench.py --shape 8b --device cuda          (on a GPU box; ~8 min on an H100)
       python bench/gpu_bench.py --shape tiny --device cpu --quick (what CI runs: same code, tiny model)

Random weights with the real architecture (scripts/build_tiny_model.py --shape 8b), phone-sized
synthetic screenshots at the experiment's image budget (980 tokens), the real PIGG prompt, and a
forced answer length (min = max new tokens), since random weights never stop. Measured in one run:
  eval: eval.run's path (swift TransformersEngine, batched) vs PIGG's way (HF generate, batch 1) vs
        plain HF batched generate, plus a prefill-only floor;
  train: the real `swift sft` on the project's generated personalized-LoRA YAML, with and without
        gradient checkpointing (tokens/s, samples/s, peak memory);
then an estimate of the GPU-hours of the whole PIGG protocol. Writes bench/results/gpu_bench_<device>.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MODELSCOPE_OFFLINE", "1")

TRAIN_VARIANTS = {  # name -> swift sft overrides on top of the generated personalized-LoRA YAML
    "bs4_gc": ["per_device_train_batch_size=4", "gradient_accumulation_steps=1"],
    "bs4_nogc": ["per_device_train_batch_size=4", "gradient_accumulation_steps=1", "gradient_checkpointing=false"],
    "bs8_nogc": ["per_device_train_batch_size=8", "gradient_accumulation_steps=1", "gradient_checkpointing=false"],
    "bs8_gc": ["per_device_train_batch_size=8", "gradient_accumulation_steps=1"],
    "bs16_gc": ["per_device_train_batch_size=16", "gradient_accumulation_steps=1"],
}
PIGG = {"global_samples": 90727, "test_samples": 10063, "folds": 30, "person_epochs": 3, "global_epochs": 1}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def save(res, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")


def make_data(tmp: Path, shape: str, budget: int):
    from data_prep.config import load_experiment
    from data_prep.export import export
    from data_prep.fingertip import build
    from data_prep.synth import synth

    synth(tmp / "raw", users=3, episodes=40, seed=0, scale=1.0 if shape == "8b" else 0.25, defects=False,
          test_users=1, test_episodes=320 if shape == "8b" else 30)
    cfg = load_experiment("pigg", [f"paths.raw={tmp / 'raw'}", f"paths.data={tmp / 'data'}", f"paths.runs={tmp / 'runs'}",
                                   "users.test=1", "users.global=2-3", f"image_max_token_num={budget}",
                                   "name=bench"])
    build(cfg["paths"]["raw"], cfg["paths"]["data"], progress=False)
    export(cfg)
    return cfg


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed_generate(engine, rows, batch, new_tokens, device) -> tuple[float, list[int]]:
    """eval.run's generate over rows after one warm-up batch: (seconds, answer lengths in chars)."""
    from eval.run import generate

    with tempfile.TemporaryDirectory() as d:
        generate(engine, rows[:batch], Path(d) / "warm.jsonl", batch, new_tokens, {}, progress=False)
        sync(device)
        t = time.time()
        generate(engine, rows, Path(d) / "p.jsonl", batch, new_tokens, {}, progress=False)
        sync(device)
        dt = time.time() - t
        return dt, [len(json.loads(x)["raw"]) for x in open(Path(d) / "p.jsonl")]


def bench_eval(cfg, model_dir, device, n, batch, new_tokens, res, out_json, baselines=True, extra_batches=()):
    import torch
    from transformers import AutoProcessor, GenerationConfig

    from eval.run import build_engine, load_rows

    rows = load_rows(Path(cfg["paths"]["data"]) / "swift" / "user_1" / "all.jsonl")
    rows = (rows * (1 + n // len(rows)))[:n]
    # 1) the project's eval.run path: swift TransformersEngine, batched, sorted by size
    engine = build_engine(str(model_dir), [], batch, device)
    engine.generation_config.min_new_tokens = new_tokens  # random weights: force the answer length
    dt, lens = timed_generate(engine, rows, batch, new_tokens, device)
    tpl = engine.template
    tpl.set_mode("transformers")
    from swift.infer_engine import InferRequest

    prompt_tokens = [len(tpl.encode(InferRequest(messages=r["messages"][:1], images=r["images"]))["input_ids"])
                     for _, r in rows[:8]]
    res["eval"]["eval_run"] = {"samples": n, "batch": batch, "seconds": dt, "samples_per_s": n / dt,
                               "prompt_tokens_mean": sum(prompt_tokens) / len(prompt_tokens),
                               "answer_chars_mean": sum(lens) / len(lens)}
    log(f"eval.run: {n / dt:.2f} samples/s (batch {batch}, prompt ≈ {res['eval']['eval_run']['prompt_tokens_mean']:.0f} tokens)")
    save(res, out_json)
    for b in extra_batches:
        engine.max_batch_size = b
        m = max(n, 2 * b)
        rb = (rows * (1 + m // len(rows)))[:m]
        dt, _ = timed_generate(engine, rb, b, new_tokens, device)
        res["eval"][f"eval_run_b{b}"] = {"samples": m, "batch": b, "seconds": dt, "samples_per_s": m / dt}
        log(f"eval.run batch {b}: {m / dt:.2f} samples/s")
        save(res, out_json)
    model = engine.model
    if not baselines:
        engine = model = None  # free the GPU memory for the training runs
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        return
    # 2) HF processor + generate, as PIGG did (batch 1), and 3) the same batched
    proc = AutoProcessor.from_pretrained(model_dir)
    budget = cfg["image_max_token_num"] * 32 * 32
    proc.image_processor.size = {"shortest_edge": 4 * 32 * 32, "longest_edge": budget}
    gen = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=151643, eos_token_id=151645)
    from PIL import Image

    def hf_inputs(chunk):
        texts, images = [], []
        for _, r in chunk:
            text = r["messages"][0]["content"].replace("<image>", "")
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            texts.append(proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
            images.append(Image.open(r["images"][0]).convert("RGB"))
        return proc(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt").to(model.device)

    for name, bs, count in (("hf_batch1_pigg", 1, min(n, 16 if device == "cuda" else 4)), ("hf_batched", batch, n)):
        chunks = [rows[i:i + bs] for i in range(0, count, bs)]
        with torch.no_grad():
            model.generate(**hf_inputs(chunks[0]), generation_config=gen)  # warm-up
            sync(device)
            t = time.time()
            ntok = 0
            for c in chunks:
                inp = hf_inputs(c)
                ntok += int(inp["input_ids"].shape[1])
                model.generate(**inp, generation_config=gen)
            sync(device)
        dt = time.time() - t
        res["eval"][name] = {"samples": count, "batch": bs, "seconds": dt, "samples_per_s": count / dt,
                             "padded_prompt_tokens_mean": ntok / len(chunks)}
        log(f"{name}: {count / dt:.2f} samples/s")
        save(res, out_json)
    # 4) prefill-only floor: one forward over the prompts, no decoding
    chunks = [rows[i:i + batch] for i in range(0, n, batch)]
    with torch.no_grad():
        model(**hf_inputs(chunks[0]), logits_to_keep=1)
        sync(device)
        t = time.time()
        for c in chunks:
            model(**hf_inputs(c), logits_to_keep=1)
        sync(device)
    dt = time.time() - t
    res["eval"]["prefill_only"] = {"samples": n, "batch": batch, "seconds": dt, "samples_per_s": n / dt}
    log(f"prefill only: {n / dt:.2f} samples/s")
    save(res, out_json)
    engine = model = None
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def bench_train(cfg, model_dir, device, steps, res, out_json, variants):
    from swift_configs.generate import render

    cfg = {**cfg, "train": {**cfg["train"], "person_base": str(model_dir)}}
    tokens = res["eval"].get("eval_run", {}).get("prompt_tokens_mean", 0) + 30
    for name, ov in variants:
        run = render(cfg, "person", user=1, fold=0, gpus="0" if device == "cuda" else "cpu",
                     overrides=[f"max_steps={steps}", "logging_steps=1", "save_strategy='no'",
                                "dataloader_num_workers=4" if device == "cuda" else "dataloader_num_workers=0"] + ov)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        run.write()
        env = {**os.environ, **{k: str(v) for k, v in run.env.items()}, **run.proc_env,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
        t = time.time()
        p = subprocess.run(run.command(), env=env, capture_output=True, text=True, cwd=run.run_dir)
        wall = time.time() - t
        logs = [json.loads(x) for x in (run.run_dir / "logging.jsonl").read_text().splitlines()] \
            if (run.run_dir / "logging.jsonl").exists() else []
        final = next((x for x in reversed(logs) if "train_runtime" in x), None)
        if p.returncode != 0 or final is None:
            res["train"][name] = {"error": (p.stdout + p.stderr)[-1500:]}
            log(f"train {name}: FAILED")
            save(res, out_json)
            continue
        step_logs = [x for x in logs if "loss" in x]
        mem = max((float(str(x.get("memory(GiB)", 0))) for x in step_logs), default=0.0)
        bs = run.args["per_device_train_batch_size"] * run.args["gradient_accumulation_steps"]
        sps = float(final["train_samples_per_second"])
        res["train"][name] = {"steps": steps, "batch": bs, "samples_per_s": sps, "tokens_per_s": sps * tokens,
                              "train_runtime_s": float(final["train_runtime"]), "wall_s": wall,
                              "peak_mem_gib": mem, "overrides": ov}
        log(f"train {name}: {sps:.2f} samples/s ≈ {sps * tokens:.0f} tokens/s, peak {mem} GiB")
        save(res, out_json)


def estimate(res):
    """GPU-hours of the whole protocol on one GPU from the measured rates (1 GPU, no overlap)."""
    ev = res["eval"].get("eval_run", {}).get("samples_per_s")
    tr = max((v.get("samples_per_s") or 0 for v in res["train"].values()), default=0)
    if not ev or not tr:
        return None
    t, e = PIGG["test_samples"], PIGG["person_epochs"]
    est = {"vanilla_eval_h": t / ev / 3600, "global_eval_h": t / ev / 3600,
           # every test sample is in the training set of K-1 = 2 of its user's 3 folds, 3 epochs each
           "person_train_h": 2 * t * e / tr / 3600, "person_eval_h": t / ev / 3600,
           "global_train_h": PIGG["global_samples"] * PIGG["global_epochs"] / tr / 3600,
           "note": "global full FT estimated at the measured LoRA samples/s (full FT adds optimizer and "
                   "gradient work; ZeRO-3 over several GPUs changes it): a lower bound"}
    est["total_gpu_h"] = sum(v for k, v in est.items() if k.endswith("_h"))
    return est


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=["tiny", "8b"], default="tiny")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="CI size: few samples and steps")
    p.add_argument("--n-eval", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--train-steps", type=int, default=25)
    p.add_argument("--skip", choices=["eval", "train", "baselines"], action="append", default=[])
    p.add_argument("--eval-batches", type=int, nargs="+", default=None, help="extra eval.run batch sizes")
    p.add_argument("--train-variants", nargs="+", choices=sorted(TRAIN_VARIANTS), default=None)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    if a.quick:
        a.n_eval, a.batch, a.train_steps = 8, 4, 2
    budget = 980 if a.shape == "8b" else 32
    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(budget)
    out_json = Path(a.out) / f"gpu_bench_{a.device}{'_quick' if a.quick else ''}.json"
    import torch
    import transformers

    res = {"shape": a.shape, "device": a.device, "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu",
           "torch": torch.__version__, "transformers": transformers.__version__, "image_max_token_num": budget,
           "new_tokens": a.new_tokens, "eval": {}, "train": {}}
    tmp = Path(tempfile.mkdtemp(prefix="pigg_bench_"))
    t0 = time.time()
    cfg = make_data(tmp, a.shape, budget)
    log(f"data ready ({time.time() - t0:.0f}s)")
    from build_tiny_model import build

    model_dir = build(tmp / "model", a.shape, device="cuda" if a.device == "cuda" else "cpu",
                      dtype="bfloat16" if a.device == "cuda" else "float32")
    log(f"model ready ({time.time() - t0:.0f}s)")
    if "eval" not in a.skip:
        bench_eval(cfg, model_dir, a.device, a.n_eval, a.batch, a.new_tokens, res, out_json,
                   baselines="baselines" not in a.skip, extra_batches=a.eval_batches or [])
    if "train" not in a.skip:
        variants = [(v, TRAIN_VARIANTS[v]) for v in (a.train_variants or ["bs4_gc", "bs4_nogc"])]
        if a.quick:
            variants = variants[:1]
        bench_train(cfg, model_dir, a.device, a.train_steps, res, out_json, variants)
    res["estimate_gpu_hours"] = estimate(res)
    save(res, out_json)
    print(json.dumps({k: res[k] for k in ("eval", "estimate_gpu_hours")}, indent=1))
    for k, v in res["train"].items():
        print(k, {x: v.get(x) for x in ("samples_per_s", "tokens_per_s", "peak_mem_gib", "error")})
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
