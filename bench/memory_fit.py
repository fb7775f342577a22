"""Does each stage fit the card it runs on? Eval batch sizing, person LoRA / QLoRA memory, preflight vs measured.

Usage: python bench/memory_fit.py --shape 8b --device cuda [--n-eval 192] [--steps 12] [--tag h100] [--tokens]
       python bench/memory_fit.py --family qwen2_5_vl --shape 7b --device cuda ...   (Qwen2.5-VL-7B shape)
       python bench/memory_fit.py --shape tiny --device cpu --quick          (CI: the same code paths on CPU)

Everything that touches the GPU runs in a child process (this one never initialises CUDA, so it holds no
GPU memory while a child trains). On one card, it measures:
1. eval (one child, the model loaded once): eval's own batching (eval/generation.py ``generate``) at
   ``batch_size: auto`` and at fixed batches, answers of ``--short-tokens`` (the random model never stops:
   every row runs to the limit, ~PIGG's 30-token answers); samples/s and peak memory each; then PIGG's
   max_new_tokens 512 with eval.reserve_new_tokens 64 (every row goes past the reserve and is answered
   again up to 512: the worst case) at auto; and the prefill activations per row (batches 8 and 32,
   one new token), the coefficient data_prep/runtime/memory.py keeps.
2. the same eval at auto on the card capped to ``--cap-gb`` GiB (PIGG_GPU_MEMORY_GB).
3. person folds through `swift sft` (the generated YAML of the person stage, ``--steps`` steps): the
   person_lora template as shipped on the whole card; person_qlora and person_lora with gradient
   checkpointing capped to ``--cap-gb`` (bench/gpu_cap/sitecustomize.py), each with the preflight's estimate;
   with ``--tokens``, one fold of the user-token method (special tokens: LoRA + the trained embedding).
Writes bench/results/memory_fit_<device>[_tag].json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from _common import ROOT, child_env, first_gpu, median_step_s, prepare_experiment, read_train_log, run_fresh, short_run, steady_rate, scratch, random_model  # noqa: E402
from data_prep.io import read_json, write_json  # noqa: E402
from data_prep.rundir import tokens_stage  # noqa: E402

GIB = 2**30
CAP_DIR = Path(__file__).resolve().parent / "gpu_cap"


def log(msg):
    print(f"[memory_fit {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the eval child ---------------------------------------------------------------------------------

def eval_child(spec: dict) -> dict:
    """Runs in its own process: one engine, eval.run's generate at several batch settings."""
    import torch

    from data_prep.config import load_experiment
    from data_prep.runtime.memory import PREFILL_ACT_COEF, PREFILL_ACT_COEFS, kv_bytes_per_token
    from data_prep.family import family
    from eval.engine import build_engine, cap_card, plan_batch
    from eval.generation import Reader, generate
    from eval.job import load_rows, sample_index

    cfg = load_experiment(spec["config"])
    fam = family(cfg)
    reader = Reader(fam, cfg["image_max_token_num"])
    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(cfg["image_max_token_num"])
    ev, gpu = cfg["eval"], spec["device"] == "cuda"
    if gpu:
        cap_card()
    t = time.time()
    engine = build_engine(spec["model"], [], 8, "0" if gpu else "cpu", ev["overrides"], gqa_decode=ev["gqa_decode"],
                          liger_kernel=ev["liger_kernel"] and gpu, gpu_preprocess=ev["gpu_preprocess"] and gpu,
                          model_type=fam.model_type, template_type=fam.template)
    out = {"load_s": time.time() - t, "weights_bytes": torch.cuda.memory_allocated() if gpu else None, "runs": {}}
    meta = sample_index(cfg)
    rows = load_rows(spec["data"])[:spec["n"]]
    tmp = Path(spec["tmp"])

    def peak_reset():
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def one(name, batch, max_new, reserve, n=None):
        peak_reset()
        use = rows[:n] if n else rows
        plan = plan_batch(engine, use, meta, batch, max_new, reserve, reader)
        pred = tmp / f"{name}.jsonl"
        pred.unlink(missing_ok=True)
        generate(engine, use[:plan["batch_size"]], tmp / "warm.jsonl", plan["batch_size"], min(max_new, 8), meta,
                 progress=False, prefetch=ev["prefetch"], graphs=ev["cuda_graphs"] and gpu, reader=reader)  # warm
        peak_reset()
        t = time.time()
        st = generate(engine, use, pred, plan["batch_size"], max_new, meta, progress=False, prefetch=ev["prefetch"],
                      graphs=ev["cuda_graphs"] and gpu, reserve_new_tokens=reserve,
                      long_batch_size=plan["long_batch_size"], reader=reader)
        dt = time.time() - t
        r = {"batch": batch, "plan": plan, "max_new_tokens": max_new, "reserve_new_tokens": reserve, "n": len(use),
             "seconds": dt, "samples_per_s": len(use) / dt, "long_rows": st["long_rows"],
             "batch_sizes": st["batch_sizes"], "decode_steps": st["decode_steps"]}
        if gpu:
            r.update(peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
                     peak_reserved_gib=torch.cuda.max_memory_reserved() / GIB)
        out["runs"][name] = r
        log(f"eval {name}: batch {plan['batch_size']} ({batch}), {r['samples_per_s']:.2f} samples/s, "
            f"peak reserved {r.get('peak_reserved_gib', 0):.1f} GiB, long rows {st['long_rows']}")
        write_json(spec["out"], out)

    for b in spec["batches"]:
        one(f"short_{b}", b, spec["short_tokens"], ev["reserve_new_tokens"])
    if spec.get("long"):
        one("pigg512_auto", "auto", spec.get("long_tokens") or ev["max_new_tokens"],
            spec.get("long_reserve") or ev["reserve_new_tokens"], n=spec["long_n"])
    if gpu and ev["cuda_graphs"]:  # the same 16 rows and static cache: decode steps replayed vs eager, equal answers?
        import json

        from eval import cuda_graphs

        got = {}
        for replay in (True, False):
            f = tmp / f"graphs_{replay}.jsonl"
            f.unlink(missing_ok=True)
            cuda_graphs.CAPTURE_ERROR = None if replay else "bench: eager steps on the same static buffers"
            generate(engine, rows[:16], f, 16, spec["short_tokens"], meta, progress=False, graphs=True, reader=reader)
            got[replay] = {r["id"]: r["raw"] for r in map(json.loads, f.read_text().splitlines())}
        cuda_graphs.CAPTURE_ERROR = None
        out["graphs_vs_eager"] = {"rows": len(got[False]), "equal": sum(got[True][k] == v for k, v in got[False].items())}
        log(f"graphs vs eager: {out['graphs_vs_eager']}")
        write_json(spec["out"], out)
    if gpu and spec.get("coef"):  # prefill activations per row: peak - weights - KV, one new token
        tc = engine.model.config.text_config.to_dict()
        coef = {}
        for b in (8, 32):
            peak_reset()
            generate(engine, rows[:b], tmp / f"coef{b}.jsonl", b, 1, meta, progress=False, reader=reader)
            prompt = out["runs"]["short_auto"]["plan"]["first"]["prompt_tokens"] if "short_auto" in out["runs"] else 1100
            kv = kv_bytes_per_token(tc) * (prompt + 1) * b
            act = torch.cuda.max_memory_allocated() - out["weights_bytes"] - kv
            coef[b] = act / b / (prompt * tc["hidden_size"] * 2)
        out["prefill_act_coef"] = {"measured": coef, "in_code": PREFILL_ACT_COEFS.get(tc.get("model_type"), PREFILL_ACT_COEF)}
        write_json(spec["out"], out)
    return out


# --- the parent -------------------------------------------------------------------------------------

def make_data(tmp: Path, shape: str, budget: int, episodes: int, fam: str = "qwen3_vl"):
    from data_prep.synth import synth

    synth(tmp / "raw", users=3, episodes=30, seed=0, scale=0.25 if shape == "tiny" else 1.0, defects=False,
          test_users=1, test_episodes=episodes)
    return prepare_experiment(tmp, tmp / "model", "fit", {"users": {"test": "1", "global": "2-3"},
                                                          "image_max_token_num": budget, "model": {"family": fam}})


def run_eval_child(spec: dict, env_extra: dict) -> dict:
    spec_file = Path(spec["tmp"]) / f"spec_{Path(spec['out']).stem}.json"
    write_json(spec_file, spec)
    env = child_env(**env_extra)
    p = subprocess.run([sys.executable, __file__, "--eval-child", str(spec_file)], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    res = read_json(spec["out"]) if Path(spec["out"]).exists() else {}
    if p.returncode:
        res["error"] = (p.stdout + p.stderr)[-3000:]
        log(f"eval child failed ({p.returncode}):\n{res['error'][-1500:]}")
    return res


def train_fold(cfg: dict, cfg_path: Path, model: Path, device: str, steps: int, template: str, extra: list[str],
               cap_gb: float | None, kind: str | None = None) -> dict:
    """One person fold's `swift sft` (the person stage's generated YAML; ``kind``: the user-token stage's, fold 0,
    that tag kind), --steps steps, timed from outside."""
    from swift_configs import preflight as pf
    from swift_configs.generate import missing_packages, render

    cfg = {**cfg, "train": {**cfg["train"], "person_base": str(model), "person_template": template}}
    gpus = "0" if device == "cuda" else "cpu"
    run = render(cfg, "tokens" if kind else "person", user=None if kind else 1, fold=0, gpus=gpus, kind=kind,
                 overrides=short_run(steps, device) + extra)
    res = {"template": template, "overrides": extra, "cap_gib": cap_gb, "steps": steps, "stage": run.stage,
           "kind": kind}
    missing = missing_packages(run)
    if missing:
        return {**res, "error": "; ".join(missing)}
    est = pf.estimate(run.args, 1, cfg["image_max_token_num"])
    res["preflight_gib"] = est["per_gpu_bytes"] / GIB
    res["preflight_parts_gib"] = {k: v / GIB for k, v in est["parts"].items()}
    env = child_env(**{k: str(v) for k, v in run.env.items()}, **run.proc_env)
    if cap_gb:
        env["PIGG_GPU_MEMORY_GB"] = str(cap_gb)
        env["PYTHONPATH"] = os.pathsep.join([str(CAP_DIR), env["PYTHONPATH"]])
    t = time.time()
    rc, output, marks = run_fresh(run, env, device)
    final, peak = read_train_log(run.run_dir / "logging.jsonl")
    res.update(rc=rc, wall_s=time.time() - t)
    if rc or final is None:
        return {**res, "error": output[-2500:]}
    tokens = est["tokens_per_sample"]
    bs = run.args["per_device_train_batch_size"] * run.args["gradient_accumulation_steps"]
    rate, med = steady_rate(marks, warm=3), median_step_s(marks)
    res.update(peak_reserved_gib=peak, batch=bs, median_step_s=med,
               median_step_tokens_per_s=med and bs / med * tokens,
               steady_tokens_per_s=rate and rate * bs * tokens,
               whole_run_tokens_per_s=float(final["train_samples_per_second"]) * tokens,
               preflight_error=peak and (res["preflight_gib"] - peak) / peak)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["qwen3_vl", "qwen2_5_vl"], default="qwen3_vl")
    p.add_argument("--shape", choices=["tiny", "8b", "7b"], default="tiny", help="8b: Qwen3-VL-8B; 7b: Qwen2.5-VL-7B")
    p.add_argument("--tokens", action="store_true", help="also a user-token (special) fold")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="CI size")
    p.add_argument("--model-dir", help="a model folder scripts/build_tiny_model.py wrote with this --shape and "
                   "--family (linked into the scratch folder, never changed or removed) instead of building one")
    p.add_argument("--n-eval", type=int, default=128)
    p.add_argument("--long-n", type=int, default=64, help="samples of the max_new_tokens 512 eval")
    p.add_argument("--short-tokens", type=int, default=32)
    p.add_argument("--batches", nargs="+", default=["auto", "64", "128"])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--cap-gb", type=float, default=24.0)
    p.add_argument("--skip", action="append", default=[], choices=["eval", "cap_eval", "train", "cap_train"])
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--eval-child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.eval_child:
        eval_child(read_json(a.eval_child))
        return
    if a.quick:
        a.n_eval, a.long_n, a.steps, a.short_tokens, a.batches = 6, 4, 2, 6, ["auto", "4"]
    budget = 32 if a.shape == "tiny" else 980
    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(budget)
    out = Path(a.out) / f"memory_fit_{a.device}{'_quick' if a.quick else ''}{a.tag and '_' + a.tag}.json"
    gpu, card = first_gpu() if a.device == "cuda" else ("cpu", None)
    res = {"family": a.family, "shape": a.shape, "device": a.device, "gpu": gpu, "card_gib": card,
           "cap_gib": a.cap_gb, "eval": {}, "cap_eval": {}, "train": {}}
    with scratch("pigg_fit_") as tmp:
        t0 = time.time()
        cfg_path, cfg = make_data(tmp, a.shape, budget, 12 if a.shape == "tiny" else 150, a.family)
        log(f"data ready ({time.time() - t0:.0f}s)")
        random_model(tmp / "model", a.shape, a.device, a.family, given=a.model_dir)
        log(f"model ready ({time.time() - t0:.0f}s)")
        from data_prep.export import swift_paths

        data = str(swift_paths(cfg, 1)["all"])
        base = {"config": str(cfg_path), "model": str(tmp / "model"), "data": data, "device": a.device, "tmp": str(tmp),
                "short_tokens": a.short_tokens, "long_n": a.long_n,
                "long_tokens": 24 if a.quick else None, "long_reserve": 6 if a.quick else None}
        if "eval" not in a.skip:
            spec = {**base, "n": a.n_eval, "batches": [b if b == "auto" else int(b) for b in a.batches], "long": True,
                    "coef": True, "out": str(tmp / "eval.json")}
            res["eval"] = run_eval_child(spec, {})
            write_json(out, res)
        if "cap_eval" not in a.skip:
            spec = {**base, "n": min(a.n_eval, 64), "batches": ["auto"], "long": True, "long_n": min(a.long_n, 16),
                    "out": str(tmp / "cap_eval.json")}
            res["cap_eval"] = run_eval_child(spec, {"PIGG_GPU_MEMORY_GB": str(a.cap_gb)})
            write_json(out, res)
        folds = []
        if "train" not in a.skip:
            folds.append(("person_lora", "person_lora", [], None))
        if a.tokens:
            folds.append((tokens_stage("special"), "person_lora", [], None))
        if "cap_train" not in a.skip:
            folds += [("person_qlora_cap", "person_qlora", [], a.cap_gb),
                      ("person_lora_gc_cap", "person_lora", ["gradient_checkpointing=true"], a.cap_gb)]
        for name, template, extra, cap in folds:
            if a.device == "cpu" and template == "person_qlora":
                res["train"][name] = {"skipped": "QLoRA (bitsandbytes 4-bit) runs on a GPU only"}
                continue
            if a.device == "cpu":
                extra = extra + ["use_liger_kernel=false"]
            log(f"train {name} ...")
            res["train"][name] = r = train_fold(cfg, cfg_path, tmp / "model", a.device, a.steps, template, extra, cap,
                                                "special" if name == tokens_stage("special") else None)
            log(f"train {name}: peak {r.get('peak_reserved_gib')} GiB (preflight {r.get('preflight_gib', 0):.1f}), "
                f"median step {r.get('median_step_tokens_per_s') or 0:.0f} tokens/s {r.get('error', '')[-300:]}")
            write_json(out, res)
        res["parent_cuda_initialized"] = "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized()
        write_json(out, res)
        log(f"wrote {out}")
        summary(res)


def summary(res: dict) -> None:
    card = res.get("card_gib")
    print(f"\n{res['gpu']}: {card and f'{card:.1f} GiB'}")
    for part in ("eval", "cap_eval"):
        for k, r in res[part].get("runs", {}).items():
            pk = r.get("peak_reserved_gib")
            lim = res["cap_gib"] if part == "cap_eval" else card
            print(f"{part:8s} {k:14s} batch {r['plan']['batch_size']:>4} {r['samples_per_s']:7.2f} samples/s  peak "
                  f"{pk or 0:5.1f} GiB" + (f" ({pk / lim:.0%} of {lim:.1f})" if pk and lim else ""))
    for k, r in res["train"].items():
        print(f"train    {k:20s} peak {r.get('peak_reserved_gib')} GiB  preflight {r.get('preflight_gib') or 0:.1f} GiB  "
              f"median step {r.get('median_step_tokens_per_s') or 0:.0f} tokens/s  {r.get('error', r.get('skipped', ''))[-200:]}")


if __name__ == "__main__":
    main()
