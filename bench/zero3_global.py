"""Global full fine-tuning of the 8B-shaped model with DeepSpeed ZeRO over several GPUs, measured.

Usage: python bench/zero3_global.py --gpus 0,1 [--variants 3:1:gc 3:4:gc 2:4:gc] [--steps 20]

Runs `python -m swift_configs.train --full --gpus 0,1` (what scripts/2_finetune_global.sh runs; ZeRO
from train.zero_stage) on phone-sized synthetic data for a few steps with PIGG's global settings
(effective batch 8 per GPU: PIGG's 1 x accum 8, or 4 x 2, ...), then checks that the saved checkpoint
loads and that its vision tower and aligner equal the base. Writes one
bench/results/zero{N}_global_<n>gpu_bs{B}[_nogc].json per variant with tokens/s per GPU over the whole
run and in the steady state (after step 5, timed from outside as each step's log line lands), peak memory, the
loss of every step and the MFU: FLOPs a sample = (6, or 8 with gradient checkpointing's recomputation) x the
language model's parameters x 1,082 tokens (forward 2, backward 4, recomputation 2) + 2 x the frozen vision tower's
parameters x its ~3,920 patches, over the bf16 8192^3 matrix product measured on the card in a child before the
variants. A variant ``auto`` runs the launcher's own recipe search (train.global_recipe: auto); with several
variants the first --compare-steps losses of each are printed beside the first variant's, with their largest
relative difference (same seed, same data order).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from data_prep.io import write_json  # noqa: E402
from data_prep.rundir import done, generated_yaml, marker_checkpoint  # noqa: E402
from _common import ROOT, child_env, first_gpu, prepare_experiment, read_train_log, run_polled, steady_rate, scratch, random_model  # noqa: E402

TOKENS = 1082  # per sample: prompt ≈ 1052 (measured by gpu_bench) + answer ≈ 30
PATCHES = 3920  # vision-tower patches of a phone screenshot at the 980-token budget (4 per merged token)


LIGER = {"": None, "liger": {}, "liger-noce": {"fused_linear_cross_entropy": False}}


def parse_variant(v: str) -> dict:
    """"3:4:gc" -> ZeRO stage 3, per-GPU batch 4 (accumulation 8 / 4), gradient checkpointing on;
    a fourth field sets Liger's kernels (liger: as the template; liger-noce: without the fused linear
    cross-entropy, which reads lm_head's weight outside its module) or turns them off (noliger);
    ":offload" after it puts AdamW's states in CPU memory (train.offload: optimizer); "@2" runs it on the
    first 2 of --gpus."""
    v, _, ngpu = v.partition("@")
    parts = v.split(":")
    try:
        if parts[0] == "auto":
            return {"auto": True, "zero": 0, "bs": 0, "gc": True, "liger": "liger", "offload": False,
                    "n_gpus": int(ngpu) if ngpu.isdigit() else None}
        zero, bs, g = parts[:3]
        lig = parts[3] if len(parts) > 3 and parts[3] != "offload" else "noliger"
        assert g in ("gc", "nogc") and int(zero) in (2, 3) and int(bs) > 0 and lig in ("noliger", *LIGER)
    except (ValueError, AssertionError):
        raise SystemExit(f"--variants: {v!r} is not ZERO:BATCH:gc|nogc[:liger|liger-noce|noliger][:offload] (e.g. 3:4:gc)")
    return {"zero": int(zero), "bs": int(bs), "gc": g == "gc", "liger": lig, "offload": parts[-1] == "offload",
            "n_gpus": int(ngpu) if ngpu.isdigit() else None, "auto": False}


def run_variant(tmp: Path, model: Path, gpus: str, steps: int, v: dict, out_dir: Path, label: str = "",
                peak_tflops: float | None = None) -> dict:
    tag = f"{'' if v['gc'] else '_nogc'}{'' if v['liger'] == 'noliger' else '_' + v['liger']}{'_offload' if v['offload'] else ''}"
    name = "auto" if v["auto"] else f"z{v['zero']}_bs{v['bs']}{tag}"
    accum = max(1, 8 // v["bs"]) if v["bs"] else None
    ov = {"max_steps": steps, "save_steps": steps, "logging_steps": 1, "save_only_model": True,
          "dataloader_num_workers": 2, "use_liger_kernel": v["liger"] != "noliger"}
    if not v["auto"]:
        ov.update(per_device_train_batch_size=v["bs"], gradient_accumulation_steps=accum, gradient_checkpointing=v["gc"])
    if LIGER.get(v["liger"]):
        ov["liger_kernel_config"] = LIGER[v["liger"]]
    cfg_path, cfg = prepare_experiment(tmp, model, name, {
        "users": {"test": "1", "global": "2-3"}, "train": {"zero_stage": v["zero"] or 3, "global_overrides": ov,
                                                         "global_recipe": "auto" if v["auto"] else "template",
                                                         "offload": "optimizer" if v["offload"] else "none"}})
    run = tmp / "runs" / name / "global_full"
    t = time.time()
    rc, output, marks = run_polled([sys.executable, "-m", "swift_configs.train", "--config", str(cfg_path),
                                    "--gpus", gpus, "--full"], child_env(), ROOT, run / "logging.jsonl")
    wall = time.time() - t
    n_gpu = len(gpus.split(","))
    res = {"gpus": gpus, "zero": v["zero"], "steps": steps, "rc": rc, "wall_s": wall, "log_tail": output[-2000:],
           "per_device_batch": v["bs"], "grad_accum": accum, "gradient_checkpointing": v["gc"], "liger": v["liger"],
           "offload": v["offload"], "step_marks_s": marks, "card_gib": first_gpu()[1]}
    if generated_yaml(run).exists() and model.is_dir():
        import yaml

        from swift_configs.preflight import GIB, estimate, model_shape

        args = yaml.safe_load(generated_yaml(run).read_text())
        args.pop("ENV", None)
        est = estimate(args, n_gpu, cfg["image_max_token_num"], "optimizer" if v["offload"] else "none")
        res["preflight_gib"] = est["per_gpu_bytes"] / GIB
        accum = int(args.get("gradient_accumulation_steps", 1))
        res.update(per_device_batch=int(args["per_device_train_batch_size"]), grad_accum=accum,
                   gradient_checkpointing=bool(args.get("gradient_checkpointing")), zero=str(args.get("deepspeed")))
        shape = model_shape(model)
        res["flops_per_sample"] = ((8 if res["gradient_checkpointing"] else 6) * shape["language"] * TOKENS
                                   + 2 * shape["vision"] * PATCHES)
    logs = [json.loads(x) for x in (run / "logging.jsonl").read_text().splitlines()] if (run / "logging.jsonl").exists() else []
    res["losses"] = [float(x["loss"]) for x in logs if "loss" in x and "train_runtime" not in x]
    if (run / "train.log").exists():
        res["train_log_tail"] = (run / "train.log").read_text(errors="replace")[-3000:]
    final, peak = read_train_log(run / "logging.jsonl")
    if final:
        sps = float(final["train_samples_per_second"])  # includes warm-up and the checkpoint save
        rate = steady_rate(marks)  # optimizer steps/s after step 5
        steady = rate * res["per_device_batch"] * res["grad_accum"] * n_gpu if rate else None
        res.update(samples_per_s=sps, tokens_per_s_per_gpu=sps * TOKENS / n_gpu, train_runtime_s=float(final["train_runtime"]),
                   steady_samples_per_s=steady, steady_tokens_per_s_per_gpu=steady and steady * TOKENS / n_gpu,
                   peak_mem_gib=peak, preflight_error=peak and res.get("preflight_gib") and (res["preflight_gib"] - peak) / peak,
                   peak_share_of_card=peak and res["card_gib"] and peak / res["card_gib"])
        if steady and res.get("flops_per_sample") and peak_tflops:
            res["peak_tflops"] = peak_tflops
            res["mfu"] = steady / n_gpu * res["flops_per_sample"] / (peak_tflops * 1e12)
    if done(run).exists():
        ckpt = marker_checkpoint(done(run))
        res["checkpoint"] = str(ckpt)
        b, n = visual_tensors(model), visual_tensors(ckpt)
        res["vision_keys"] = len(b)
        res["vision_equal"] = bool(b) and set(b) == set(n) and all(b[k].equal(n[k]) for k in b)
        from transformers import AutoConfig

        res["checkpoint_config_loads"] = AutoConfig.from_pretrained(ckpt).model_type
        shutil.rmtree(ckpt.parent, ignore_errors=True)  # ~17 GB per checkpoint of the 8B shape: keep the disk
    out = out_dir / f"zero{v['zero']}_global_{n_gpu}gpu_bs{v['bs']}{tag}{'_' + label if label else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, res)
    print(json.dumps({k: x for k, x in res.items() if "tail" not in k and k != "step_marks_s"}, indent=1), flush=True)
    if rc:
        print(res.get("train_log_tail", "")[-2500:])
    print(f"wrote {out}", flush=True)
    return res


def matmul_in_child() -> float | None:
    """The card's bf16 8192^3 matrix product in TFLOP/s, measured in a child (this process holds no GPU memory)."""
    import subprocess

    code = "import sys; sys.path.insert(0, 'bench'); import flops; print(flops.peak_matmul_tflops())"
    p = subprocess.run([sys.executable, "-c", code], env=child_env(CUDA_VISIBLE_DEVICES="0"), cwd=ROOT,
                       capture_output=True, text=True)
    try:
        return float(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"matrix product not measured: {p.stderr[-500:]}", flush=True)
        return None


def compare_losses(names: list[str], results: list[dict], steps: int) -> None:
    """Each variant's first ``steps`` losses beside the first variant's, and their largest relative difference."""
    if len(results) < 2 or not results[0].get("losses"):
        return
    ref = results[0]["losses"][:steps]
    for name, r in zip(names[1:], results[1:]):
        got = r.get("losses", [])[:len(ref)]
        if not got:
            continue
        rel = max(abs(b - a) / abs(a) for a, b in zip(ref, got) if a)
        print(f"losses, {names[0]} vs {name} (first {len(got)} steps): largest relative difference {rel:.4%}", flush=True)
        for i, (x, y) in enumerate(zip(ref, got), start=1):
            print(f"  step {i:3d}  {x:.5f}  {y:.5f}", flush=True)
        r["loss_max_rel_diff_vs_first"] = rel


def visual_tensors(folder: Path) -> dict:
    from safetensors import safe_open

    out = {}
    for f in folder.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            for k in st.keys():
                if ".visual." in k or k.startswith("visual."):
                    out[k] = st.get_tensor(k)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="0,1")
    p.add_argument("--variants", nargs="+", default=["3:1:gc"],
                   help="ZERO:BATCH:gc|nogc each (per-GPU batch; accumulation 8 / batch); default PIGG's 3:1:gc")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--shape", choices=["tiny", "8b"], default="8b")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--label", default="", help="suffix of the result files (e.g. h100)")
    p.add_argument("--compare-steps", type=int, default=50, help="steps whose losses are compared between variants")
    a = p.parse_args(argv)
    variants = [parse_variant(v) for v in a.variants]
    from data_prep.synth import synth

    with scratch("pigg_z3_") as tmp:
        synth(tmp / "raw", users=3, episodes=60, seed=0, scale=1.0, defects=False, test_users=1, test_episodes=10)
        model = tmp / "model"
        # built in a child: this process must hold no GPU memory while swift trains (it kept ~17 GB on GPU 0,
        # its allocator's cache, and the 2 x H100 run ran out of memory)
        random_model(model, a.shape, "cuda" if a.shape == "8b" else "cpu")
        peak = matmul_in_child() if a.shape == "8b" else None
        results = []
        for v in variants:
            gpus = ",".join(a.gpus.split(",")[:v["n_gpus"]]) if v["n_gpus"] else a.gpus
            results.append(run_variant(tmp, model, gpus, a.steps, v, Path(a.out), a.label, peak))
        compare_losses(a.variants, results, a.compare_steps)
        print(f"parent process initialised CUDA: {'torch' in sys.modules and sys.modules['torch'].cuda.is_initialized()}")


if __name__ == "__main__":
    main()
