"""Where a personalized fold's training step spends its time, inside the real `swift sft` (the person stage's
generated YAML, swift's trainer and data loader), with the MFU of every figure; variants side by side in one run.

Usage: python bench/step_breakdown.py --shape 8b --device cuda [--family qwen3_vl] [--steps 30]
                                      [--variants shipped workers8 ...] [--tag h200]
       python bench/step_breakdown.py --shape 8b --device cuda --steps 24 --episodes 45 \
                                      --variants before fused vcache shipped   # the recipe's 3 epochs

Each variant is one `swift sft` child (this process never touches the GPU) of user 1 fold 0 on phone-sized
synthetic screenshots and a random model of the real shape, ``--steps`` optimizer steps, with the trainer
callback of bench/plugins/step_timer.py: per step data wait, vision tower, language model forward+backward,
optimizer, rest (CUDA events), tokens and FLOPs (bench/flops.py). Reported per variant, over the steps after
the first two: the median of each phase, tokens/s of the median step (host wall: data wait + GPU step), MFU
against the bf16 matrix product measured in the same child, the slowest step / median (stalls), swift's own
median step from logging.jsonl (the figure bench/memory_fit.py reports), peak memory, the median step's tokens/s
per epoch and the whole run's (epochs 2+ differ: data_prep/patches/vision_cache.py answers the vision tower there). Writes
bench/results/step_breakdown_<device>[_<tag>].json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, child_env, first_gpu, median_step_s, read_train_log, run_fresh, scratch, short_run, random_model  # noqa: E402
from data_prep.io import write_json  # noqa: E402

TIMER = Path(__file__).resolve().parent / "plugins" / "step_timer.py"
LORA_INPUTS = ROOT / "data_prep" / "plugins" / "lora_inputs.py"  # active only with PIGG_LORA_AUTOCAST_INPUTS=1
COMPILE = Path(__file__).resolve().parent / "plugins" / "compile_layers.py"  # active only with PIGG_COMPILE_LAYERS=1
SDPA = Path(__file__).resolve().parent / "plugins" / "sdpa_backend.py"  # active only with PIGG_SDPA_CUDNN=0
VARIANTS = {  # name -> (swift keys on top of the person template, environment); the recipe never changes here
    "shipped": ([], {}),
    # what was shipped before the fused LoRA add and the vision cache
    "before": ([], {"PIGG_LORA_FUSED_ADD": "0", "PIGG_VISION_CACHE_GIB": "0"}),
    "before_again": ([], {"PIGG_LORA_FUSED_ADD": "0", "PIGG_VISION_CACHE_GIB": "0"}),
    "fused": ([], {"PIGG_LORA_FUSED_ADD": "1", "PIGG_VISION_CACHE_GIB": "0"}),
    "vcache": ([], {"PIGG_LORA_FUSED_ADD": "0", "PIGG_VISION_CACHE_GIB": "8"}),
    # swift's logging every 5 steps as the template (the bench's other variants log every step for their step marks)
    "shipped_log5": (["logging_steps=5"], {}),
    # the shipped run as a user runs it (logging every 5 steps), timed without the timer's own GPU syncs
    # (PIGG_STEP_TIMER_SYNC=0, bench/plugins/step_timer.py): each step from its start to the next's on the GPU clock
    "nosync": (["logging_steps=5"], {"PIGG_STEP_TIMER_SYNC": "0"}),
    "nosync_again": (["logging_steps=5"], {"PIGG_STEP_TIMER_SYNC": "0"}),
    "compiled_log5": (["logging_steps=5"], {"PIGG_COMPILE_LAYERS": "1"}),  # bench/plugins/compile_layers.py
    "compiled_log5_again": (["logging_steps=5"], {"PIGG_COMPILE_LAYERS": "1"}),  # inductor's on-disk cache now warm
    "shipped_profiled": ([], {"PIGG_STEP_PROFILE": "14:17"}),  # epoch 2 with --episodes 45 (8 steps an epoch)
    "shipped_again": ([], {}),  # the same run again: Triton's kernel cache (~/.triton) now warm
    # Qwen3-VL's RMSNorm as torch's fused operator instead of Liger's (data_prep/patches/rms_norm.py)
    "native_norm": ([], {"PIGG_NATIVE_RMSNORM": "1"}),
    # the loader's workers kept between epochs (no new workers at each epoch's first step)
    "persistent": (["dataloader_persistent_workers=true"], {}),
    "native_norm_persistent": (["dataloader_persistent_workers=true"], {"PIGG_NATIVE_RMSNORM": "1"}),
    "native_norm_profiled": ([], {"PIGG_NATIVE_RMSNORM": "1", "PIGG_STEP_PROFILE": "14:17"}),
    # without the native RMSNorm (train.native_rms_norm false); the loader's batches not pinned
    "liger_norm": ([], {"PIGG_NATIVE_RMSNORM": "0"}),
    "liger_norm_again": ([], {"PIGG_NATIVE_RMSNORM": "0"}),
    "liger_norm_profiled": ([], {"PIGG_NATIVE_RMSNORM": "0", "PIGG_STEP_PROFILE": "14:17"}),
    "nopin": (["dataloader_pin_memory=false"], {}),
    # the next epoch's batches not started during this one (train.epoch_prefetch false)
    "no_epoch_prefetch": ([], {"PIGG_EPOCH_PREFETCH": "0"}),
    "no_epoch_prefetch_again": ([], {"PIGG_EPOCH_PREFETCH": "0"}),
    # epoch 1's slow language-model steps (3-5, 8-9: 500-740 ms against ~400): the allocator growing?
    "expandable": ([], {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}),
    "expandable_again": ([], {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}),
    "warmup_profiled": ([], {"PIGG_STEP_PROFILE": "3:6"}),
    # SDPA without its cuDNN backend (bench/plugins/sdpa_backend.py): cuDNN builds a plan per new sequence length
    "no_cudnn_sdpa": ([], {"PIGG_SDPA_CUDNN": "0"}),
    "no_cudnn_sdpa_again": ([], {"PIGG_SDPA_CUDNN": "0"}),
    "no_cudnn_sdpa_profiled": ([], {"PIGG_SDPA_CUDNN": "0", "PIGG_STEP_PROFILE": "14:17"}),
    # batches padded to the longest row only (train.pad_to_multiple 0)
    "no_pad_multiple": ([], {"PIGG_PAD_TO_MULTIPLE": "0"}),
    "no_pad_multiple_again": ([], {"PIGG_PAD_TO_MULTIPLE": "0"}),
    # every sample encoded once before training (8 processes) instead of by the loader's workers each epoch
    "eager_encode": (["lazy_tokenize=false", "dataset_num_proc=8"], {}),
    "profiled": ([], {"PIGG_STEP_PROFILE": "10:13"}),  # torch.profiler over steps 10-12: the kernel table
    "workers0": (["dataloader_num_workers=0"], {}),
    "workers8": (["dataloader_num_workers=8"], {}),
    "workers8_pin": (["dataloader_num_workers=8", "dataloader_persistent_workers=true"], {}),
    "nodropout": (["lora_dropout=0.0"], {}),  # what the recipe's LoRA dropout costs (not a default: it changes the recipe)
    "lora_off": ([], {"PIGG_LORA_AUTOCAST_INPUTS": "0"}),  # LoRA inputs cast to float32 (PEFT's way), explicitly
    "lora_bf16": ([], {"PIGG_LORA_AUTOCAST_INPUTS": "1"}),  # data_prep/patches/lora_inputs.py
    "lora_bf16_workers8": (["dataloader_num_workers=8"], {"PIGG_LORA_AUTOCAST_INPUTS": "1"}),
    "lora_bf16_profiled": ([], {"PIGG_LORA_AUTOCAST_INPUTS": "1", "PIGG_STEP_PROFILE": "10:13"}),
    "thp_off": ([], {"THP_MEM_ALLOC_ENABLE": "0"}),  # data_prep/runtime/procenv.py's default (huge pages for CPU tensors) off
    # flash-attn-4 installed (bench/fa4_check.py says how): its kernels in the language model and the vision tower,
    # then also swift's padding_free (rows concatenated, no padding; needs a flash-attention implementation)
    "fa4": (["attn_impl=flash_attention_4"], {}),
    "fa4_padding_free": (["attn_impl=flash_attention_4", "padding_free=true"], {}),
}
PHASES = ("data_s", "vision_s", "lm_fwd_bwd_s", "optimizer_s", "other_s", "gpu_step_s")


def log(msg: str) -> None:
    print(f"[step_breakdown {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def step_wall(s: dict) -> float:
    """A timer step's wall seconds: the timer's ``wall_s``; results written before it had one: data wait + GPU step."""
    return s.get("wall_s") or (s["data_s"] or 0.0) + s["gpu_step_s"]


def summarize(timer: dict, skip: int = 2, steps_per_epoch: int | None = None) -> dict:
    """Medians of each phase over the steps after ``skip``; the median step's tokens/s and MFU; stalls; the median
    step's tokens/s per epoch (``steps_per_epoch``) and over the whole run."""
    steps = timer["steps"][skip:] or timer["steps"]
    if not steps:
        return {"error": "no steps recorded"}
    wall = [step_wall(s) for s in steps]
    med = statistics.median(wall)
    out = {k: statistics.median(s[k] or 0.0 for s in steps) for k in PHASES}
    tokens = statistics.median(s["tokens"] for s in steps)
    fl = statistics.median(s["flops"] for s in steps)
    peak = timer.get("peak_matmul_tflops")
    by_epoch = {}
    for st, w in zip(steps, wall):
        by_epoch.setdefault((st["step"] - 1) // steps_per_epoch if steps_per_epoch else 0, []).append(st["tokens"] / w)
    out["epoch_median_tokens_per_s"] = {str(e): statistics.median(v) for e, v in sorted(by_epoch.items())}
    out["run_tokens_per_s"] = sum(s["tokens"] for s in steps) / sum(wall)  # every step after the first two
    out.update(steps=len(steps), median_step_s=med, tokens_per_step=tokens, median_step_tokens_per_s=tokens / med,
               flops_per_step=fl, peak_matmul_tflops=peak, mfu=peak and fl / med / (peak * 1e12),
               gpu_only_mfu=peak and fl / out["gpu_step_s"] / (peak * 1e12),
               slowest_over_median=max(wall) / med, slow_steps=[s["step"] for s, w in zip(steps, wall) if w > 1.5 * med],
               share={k: out[k] / med for k in PHASES if k != "gpu_step_s"})
    return out


def person_run(cfg: dict, model: Path, device: str, steps: int, overrides: list[str], **env):
    """User 1 fold 0's person run on ``model`` (``steps`` steps, swift keys ``overrides`` on top; no Liger on the CPU)
    and its child environment (the run's own, then ``env``)."""
    from swift_configs.generate import render

    cfg = {**cfg, "train": {**cfg["train"], "person_base": str(model)}}
    run = render(cfg, "person", user=1, fold=0, gpus="0" if device == "cuda" else "cpu",
                 overrides=short_run(steps, device) + ([] if device == "cuda" else ["use_liger_kernel=false"])
                 + overrides)
    return run, child_env(**{**{k: str(v) for k, v in run.env.items()}, **run.proc_env, **env})


def run_variant(cfg: dict, model: Path, device: str, steps: int, name: str, extra: list[str], tmp: Path,
                extra_env: dict) -> dict:
    out = tmp / f"timer_{name}.json"
    run, env = person_run(cfg, model, device, steps,
                          ["callbacks=['pigg_step_timer']",
                           f"external_plugins=['{TIMER}', '{LORA_INPUTS}', '{COMPILE}', '{SDPA}']"] + extra,
                          PIGG_STEP_TIMER_OUT=str(out), **extra_env)
    t = time.time()
    rc, output, marks = run_fresh(run, env, device)
    res = {"overrides": extra, "rc": rc, "wall_s": time.time() - t}
    if rc or not out.exists():
        return {**res, "error": output[-2500:]}
    timer = json.loads(out.read_text())
    _, peak = read_train_log(run.run_dir / "logging.jsonl")
    logs = [json.loads(x) for x in (run.run_dir / "logging.jsonl").read_text().splitlines()]
    res["losses"] = [float(x["loss"]) for x in logs if "loss" in x]  # same seed and data: variants comparable
    res["notes"] = [ln.strip() for ln in output.splitlines() if "[pigg]" in ln][-5:]  # e.g. the vision cache's count
    med = median_step_s(marks)
    n_train = sum(1 for _ in open(run.args["dataset"][0], encoding="utf-8"))
    spe = -(-n_train // run.args["per_device_train_batch_size"])
    res.update(summarize(timer, steps_per_epoch=spe), train_samples=n_train, steps_per_epoch=spe,
               swift_median_step_s=med, peak_reserved_gib=peak,
               first_step_mark_s=marks[0][1] if marks else None, timer_steps=timer["steps"],
               batch=run.args["per_device_train_batch_size"] * run.args["gradient_accumulation_steps"],
               params=timer["params"], profile=timer.get("profile"))
    return res


def run_untimed(cfg: dict, model: Path, device: str, steps: int, tmp: Path, timed: dict | None) -> dict:
    """The shipped run without the step timer: no callback, swift logging every 5 steps as the template (the timer
    synchronizes the GPU at every step's end, and per-step logging reads the loss: both keep the host from queueing
    the next step while the GPU finishes this one). The wall time of each 5-step window between log lines (polled),
    tokens from the timed ``shipped`` run of the same call (same data, order and seed: the same batches); windows
    after step 10 (epochs 2-3), against the timed run's median over the same steps."""
    run, env = person_run(cfg, model, device, steps, ["logging_steps=5"])
    t = time.time()
    rc, output, marks = run_fresh(run, env, device)
    res = {"overrides": ["logging_steps=5", "no step timer"], "rc": rc, "wall_s": time.time() - t,
           "marks": marks}
    if rc or len(marks) < 3:
        return {**res, "error": output[-2500:]}
    if not timed or "error" in timed:
        return {**res, "error": "no timed shipped run in this call to take the batches' tokens from"}
    tokens = {st["step"]: st["tokens"] for st in timed["timer_steps"]}
    windows = []
    for (a, ta), (b, tb) in zip(marks, marks[1:]):
        if a >= 10 and all(k in tokens for k in range(a + 1, b + 1)):
            windows.append({"steps": [a + 1, b], "step_s": (tb - ta) / (b - a),
                            "tokens_per_s": sum(tokens[k] for k in range(a + 1, b + 1)) / (tb - ta)})
    timed_same = [st for st in timed["timer_steps"]
                  if any(a <= st["step"] <= b for a, b in (w["steps"] for w in windows))]
    same = [step_wall(st) for st in timed_same]
    same_tok = [st["tokens"] for st in timed_same]
    res.update(windows=windows, untimed_tokens_per_s=sum(w["tokens_per_s"] for w in windows) / max(len(windows), 1),
               timed_same_steps_tokens_per_s=sum(same_tok) / sum(same) if same else None,
               timed_same_steps_median_tokens_per_s=(statistics.median(same_tok) / statistics.median(same))
               if same else None)
    return res


def table(res: dict) -> str:
    rows = ["| variant | tokens/s (median step) | MFU | data | vision | LM fwd+bwd | optimizer | other | "
            "slowest/median | swift median step | peak GiB | tokens/s by epoch (median step) | whole run |",
            "|" + "---|" * 13]
    for name, r in res["variants"].items():
        if "error" in r:
            rows.append(f"| {name} | failed | | | | | | | | | | | |")
            continue
        ms = lambda k: f"{r[k] * 1e3:.0f} ms ({r['share'][k]:.0%})"  # noqa: E731
        rows.append(f"| {name} | {r['median_step_tokens_per_s']:,.0f} | {r['mfu'] or 0:.2f} | {ms('data_s')} | "
                    f"{ms('vision_s')} | {ms('lm_fwd_bwd_s')} | {ms('optimizer_s')} | {ms('other_s')} | "
                    f"{r['slowest_over_median']:.2f} | {(r['swift_median_step_s'] or 0) * 1e3:.0f} ms | "
                    f"{r['peak_reserved_gib']} | "
                    + " / ".join(f"{v:,.0f}" for v in r["epoch_median_tokens_per_s"].values())
                    + f" | {r['run_tokens_per_s']:,.0f} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["qwen3_vl", "qwen2_5_vl"], default="qwen3_vl")
    p.add_argument("--shape", choices=["tiny", "8b", "7b"], default="tiny")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--episodes", type=int, default=150, help="the test user's episodes (~1 click each): 45 gives "
                   "~30 training samples in fold 0, 8 steps an epoch, so 24 steps are the recipe's 3 epochs")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS) + ["untimed"], default=["shipped"],
                   help="untimed: the shipped run without the step timer (after `shipped`, whose batches' tokens "
                   "it uses)")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    from memory_fit import make_data

    budget = 32 if a.shape == "tiny" else 980
    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(budget)
    out = Path(a.out) / f"step_breakdown_{a.device}{a.tag and '_' + a.tag}.json"
    gpu, card = first_gpu() if a.device == "cuda" else ("cpu", None)
    res = {"family": a.family, "shape": a.shape, "device": a.device, "gpu": gpu, "card_gib": card, "steps": a.steps,
           "episodes": a.episodes,
           "commit": os.environ.get("PIGG_COMMIT"), "variants": {}}
    with scratch("pigg_steps_") as tmp:
        t0 = time.time()
        _, cfg = make_data(tmp, a.shape, budget, 12 if a.shape == "tiny" else a.episodes, a.family)
        random_model(tmp / "model", a.shape, a.device, a.family)
        log(f"data and model ready ({time.time() - t0:.0f}s)")
        for name in a.variants:
            if name == "untimed":
                log("untimed: swift sft without the step timer, logging every 5 steps ...")
                r = res["untimed"] = run_untimed(cfg, tmp / "model", a.device, a.steps, tmp,
                                                 res["variants"].get("shipped"))
                log("untimed: " + (r["error"][-800:] if "error" in r else
                                   f"{r['untimed_tokens_per_s']:,.0f} tokens/s over windows "
                                   f"{[w['steps'] for w in r['windows']]}; the timed run over the same steps "
                                   f"{r['timed_same_steps_tokens_per_s']:,.0f} (median step "
                                   f"{r['timed_same_steps_median_tokens_per_s']:,.0f})"))
                write_json(out, res)
                continue
            log(f"{name}: swift sft, {a.steps} steps ...")
            r = res["variants"][name] = run_variant(cfg, tmp / "model", a.device, a.steps, name, *VARIANTS[name][:1], tmp,
                                                    VARIANTS[name][1])
            log(f"{name}: " + (r["error"][-800:] if "error" in r else
                               f"{r['median_step_tokens_per_s']:,.0f} tokens/s, MFU {r['mfu'] or 0:.2f}, "
                               f"slowest/median {r['slowest_over_median']:.2f}"))
            write_json(out, res)
    print(table(res))
    for name, r in res["variants"].items():
        if r.get("profile"):
            print(f"\n{name}: torch.profiler, kernels by device time\n{r['profile']}")
    write_json(out, res)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
