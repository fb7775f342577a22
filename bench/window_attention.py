"""Qwen2.5-VL's vision tower: window attention one call per window (transformers 5.17) vs batched by window
length (data_prep/patches/window_attention.py), side by side on one card, in one run.

Usage: python bench/window_attention.py --device cuda [--n 128] [--steps 16] [--tag h200]
       python bench/window_attention.py --shape tiny --device cpu --quick     (the same code paths on CPU)

Everything on the GPU runs in child processes (this one never initialises CUDA). It measures:
1. the card's bf16 matrix-product rate (bench/flops.py): the peak every MFU here is taken against;
2. the vision tower alone on 32 exported screenshots, both ways: max |difference| of the merged features,
   median seconds of 3 (CUDA events);
3. eval.run's ``generate`` on --n rows at ``batch_size: auto``, ``--short-tokens`` forced answer tokens, both
   ways: samples/s, MFU, and how many greedy answers are identical;
4. one person LoRA fold (`swift sft`, person_lora as shipped), --steps steps, both ways: median step tokens/s,
   MFU, peak memory.
Writes bench/results/window_attention_<device>[_tag].json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from _common import ROOT, child_env, first_gpu, scratch, random_model  # noqa: E402
from data_prep.io import read_json, write_json  # noqa: E402
from memory_fit import make_data, train_fold  # noqa: E402

GIB = 2**30


def log(msg):
    print(f"[window_attention {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def child(spec: dict) -> dict:
    """One engine: the vision tower and eval both ways; the FLOPs a training sample costs, for the parent."""
    import json

    import torch
    from swift.infer_engine import InferRequest

    from data_prep.patches import window_attention
    from data_prep.runtime import procenv
    from data_prep.config import load_experiment
    from data_prep.family import family
    from eval.engine import build_engine, plan_batch
    from eval.generation import Reader, generate
    from eval.job import load_rows, sample_index
    import flops

    cfg = load_experiment(spec["config"])
    procenv.apply(cfg)
    fam, ev, gpu = family(cfg), cfg["eval"], spec["device"] == "cuda"
    out = {"peak_tflops": flops.peak_matmul_tflops() if gpu else None}
    log(f"bf16 matmul: {out['peak_tflops']} TFLOP/s")
    engine = build_engine(spec["model"], [], 8, "0" if gpu else "cpu", ev["overrides"], gqa_decode=ev["gqa_decode"],
                          liger_kernel=ev["liger_kernel"] and gpu, gpu_preprocess=ev["gpu_preprocess"] and gpu,
                          model_type=fam.model_type, template_type=fam.template)
    model, reader, meta = engine.model, Reader(fam, cfg["image_max_token_num"]), sample_index(cfg)
    rows = load_rows(spec["data"])[:spec["n"]]
    out["params"] = flops.param_counts(model)
    # the screenshots as swift's template feeds them (at the experiment's budget; passing max_pixels to the image
    # processor itself is ignored by transformers 5.17: a first run here measured 3.3x larger images)
    enc = [engine.template.encode(InferRequest(messages=reader.messages(r, meta.get(sid)), images=r["images"]))
           for sid, r in rows[:32]]
    pix = torch.cat([e["pixel_values"] for e in enc]).to(model.device, model.dtype)
    grid = torch.cat([e["image_grid_thw"] for e in enc]).to(model.device)
    patches = float(grid.prod(-1).float().mean())
    prompt = statistics.fmean(len(e["input_ids"]) for e in enc)
    out.update(patches_per_image=patches, prompt_tokens_mean=prompt)

    def sync():
        if gpu:
            torch.cuda.synchronize()

    feats, out["vision"] = {}, {}
    for batched in (False, True):
        window_attention.apply(batched)
        with torch.no_grad():
            model.model.visual(pix, grid_thw=grid)  # warm
            times = []
            for _ in range(3):
                sync()
                t = time.perf_counter()
                r = model.model.visual(pix, grid_thw=grid)
                sync()
                times.append(time.perf_counter() - t)
        feats[batched] = getattr(r, "pooler_output", r).float()
        out["vision"]["batched" if batched else "per_window"] = {"images": len(enc), "median_s": statistics.median(times)}
    out["vision"]["max_abs_diff"] = (feats[True] - feats[False]).abs().max().item()
    out["vision"]["feature_abs_max"] = feats[False].abs().max().item()
    out["vision"]["speedup"] = out["vision"]["per_window"]["median_s"] / out["vision"]["batched"]["median_s"]
    log(f"vision tower: {out['vision']}")
    per_sample = flops.eval_flops(model, prompt, spec["short_tokens"], patches)
    out["eval_flops_per_sample"] = per_sample
    answers, out["eval"] = {}, {}
    tmp = Path(spec["tmp"])
    for batched in (False, True):
        window_attention.apply(batched)
        name = "batched" if batched else "per_window"
        plan = plan_batch(engine, rows, meta, "auto", spec["short_tokens"], ev["reserve_new_tokens"], reader)
        kw = dict(progress=False, prefetch=ev["prefetch"], graphs=ev["cuda_graphs"] and gpu, reader=reader)
        generate(engine, rows[:plan["batch_size"]], tmp / f"warm_{name}.jsonl", plan["batch_size"], 4, meta, **kw)
        pred = tmp / f"eval_{name}.jsonl"
        sync()
        t = time.perf_counter()
        generate(engine, rows, pred, plan["batch_size"], spec["short_tokens"], meta, **kw)
        sync()
        dt = time.perf_counter() - t
        answers[batched] = {r["id"]: r["raw"] for r in map(json.loads, pred.read_text().splitlines())}
        sps = len(rows) / dt
        out["eval"][name] = {"batch": plan["batch_size"], "n": len(rows), "seconds": dt, "samples_per_s": sps,
                             "mfu": flops.mfu(sps * per_sample, out["peak_tflops"])}
        log(f"eval {name}: {out['eval'][name]}")
    out["eval"]["identical_answers"] = sum(answers[True][k] == v for k, v in answers[False].items())
    out["eval"]["speedup"] = out["eval"]["batched"]["samples_per_s"] / out["eval"]["per_window"]["samples_per_s"]
    out["train_flops_per_sample"] = flops.train_flops(model, prompt + 30, patches, "lora")
    write_json(spec["out"], out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=["tiny", "7b"], default="7b")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--short-tokens", type=int, default=32)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(read_json(a.child))
        return
    if a.quick:
        a.n, a.short_tokens, a.steps = 8, 6, 3
    budget = 32 if a.shape == "tiny" else 980
    out = Path(a.out) / f"window_attention_{a.device}{'_quick' if a.quick else ''}{a.tag and '_' + a.tag}.json"
    res = {"shape": a.shape, "device": a.device, "gpu": first_gpu()[0] if a.device == "cuda" else "cpu",
           "image_max_token_num": budget,  # the device's copy of the tree may carry a stale .git: PIGG_COMMIT wins
           "commit": os.environ.get("PIGG_COMMIT") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                                     capture_output=True, text=True).stdout.strip()}
    with scratch("pigg_win_") as tmp:
        cfg_path, cfg = make_data(tmp, a.shape, budget, 12 if a.quick else 150, "qwen2_5_vl")
        random_model(tmp / "model", a.shape, a.device, "qwen2_5_vl")
        log("model ready")
        from data_prep.export import swift_paths

        spec = {"config": str(cfg_path), "model": str(tmp / "model"), "data": str(swift_paths(cfg, 1)["all"]),
                "device": a.device, "tmp": str(tmp), "n": a.n, "short_tokens": a.short_tokens,
                "out": str(tmp / "child.json")}
        write_json(tmp / "spec.json", spec)
        pr = subprocess.run([sys.executable, __file__, "--child", str(tmp / "spec.json")], env=child_env(), cwd=ROOT)
        if pr.returncode:
            raise SystemExit(f"the eval child failed ({pr.returncode})")
        res.update(read_json(tmp / "child.json"))
        write_json(out, res)
        res["train"] = {}
        for batched in ([] if a.skip_train else (False, True)):
            name = "batched" if batched else "per_window"
            c = {**cfg, "model": {**cfg["model"], "batched_window_attention": batched}}
            extra = [] if a.device == "cuda" else ["use_liger_kernel=false"]
            r = train_fold(c, cfg_path, tmp / "model", a.device, a.steps, "person_lora", extra, None)
            tok = r.get("median_step_tokens_per_s")
            per_token = res["train_flops_per_sample"] / (res["prompt_tokens_mean"] + 30)
            r["mfu"] = tok and res["peak_tflops"] and tok * per_token / (res["peak_tflops"] * 1e12)
            res["train"][name] = r
            log(f"train {name}: median step {tok} tokens/s, peak {r.get('peak_reserved_gib')} GiB "
                f"{r.get('error', '')[-500:]}")
            write_json(out, res)
        t = res["train"]
        if t and all(t[k].get("median_step_tokens_per_s") for k in t):
            t["speedup"] = t["batched"]["median_step_tokens_per_s"] / t["per_window"]["median_step_tokens_per_s"]
        write_json(out, res)
    e, v = res["eval"], res["vision"]
    print(f"\n{res['gpu']}  bf16 matmul {res['peak_tflops']} TFLOP/s")
    print(f"vision tower, 32 screenshots: per window {v['per_window']['median_s']:.3f} s, batched "
          f"{v['batched']['median_s']:.3f} s ({v['speedup']:.2f}x), max |diff| {v['max_abs_diff']:.3g}")
    for k in ("per_window", "batched"):
        print(f"eval {k:10s} batch {e[k]['batch']:>4}  {e[k]['samples_per_s']:7.2f} samples/s  MFU {e[k]['mfu']}")
        if k in res["train"]:
            r = res["train"][k]
            print(f"train {k:10s} {r.get('median_step_tokens_per_s')} tokens/s  MFU {r.get('mfu')}  peak "
                  f"{r.get('peak_reserved_gib')} GiB")
    print(f"identical answers: {e['identical_answers']}/{e['per_window']['n']}; wrote {out}")


if __name__ == "__main__":
    main()
