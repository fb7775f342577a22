"""The controls' evaluations at 8B shape: the cross-user eval (every adapter on the other users' hold-outs, one kept
base, adapters swapped) and in-context eval (k earlier clicks, with and without their screenshots), measured.

Usage: python bench/controls_eval.py --shape 8b --device cuda [--ks 1 3] [--episodes 40] [--tag h100]
       python bench/controls_eval.py --shape tiny --device cpu --quick --model-dir DIR   (as the tests run it)

A random model of the real shape (scripts/build_tiny_model.py), phone-sized synthetic screenshots at the experiment's
budget, 3 test users; three random LoRA adapters (rank 8, all-linear, PEFT) stand in for the personalized stage's.
One child process on one device: the bf16 matrix product of the card (MFU's denominator), then through
eval/job.py ``evaluate`` as the controls run it (eval/controls.py): the plain hold-outs (the reference), each adapter
on the other users' hold-outs (cross-user), and the in-context files (data_prep/controls.py) at each k of --ks with
screenshots and at the largest k as text. Per case: samples/s, peak GPU memory, prompt tokens and images a sample, MFU.
FLOPs a sample (bench/flops.py's counting): 2 x the language model's parameters x (prompt + answer tokens) + 2 x
the vision tower's x its patches (~4 a merged image token); attention scores left out. Answers are forced to
``eval.max_new_tokens`` tokens (the random model never stops). Writes bench/results/controls_eval_<device>[_tag].json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_common.py
from _common import ROOT, child_env, first_gpu, prepare_experiment, random_model, scratch  # noqa: E402
from data_prep.io import read_json, write_json  # noqa: E402

GIB = 2**30


def log(msg: str) -> None:
    print(f"[controls_eval {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_adapters(model: Path, out: Path, n: int, device: str) -> list[Path]:
    """``n`` random LoRA adapters (rank 8, alpha 32, the language model's linear layers) saved as PEFT folders."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    targets = r"^(?!.*visual).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, target_modules=targets))
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "lora_A" in name:
                torch.nn.init.normal_(p, std=0.02)
        path = out / f"adapter_{i + 1}"
        peft_model.save_pretrained(path)
        paths.append(path)
    return paths


def child(spec: dict) -> dict:
    import torch

    import flops
    from data_prep.config import load_experiment
    from data_prep.controls import write_in_context
    from data_prep.export import swift_paths
    from data_prep.rundir import user_dir
    from eval.engine import Engines
    from swift_configs.preflight import model_shape
    from eval.job import evaluate

    cfg = load_experiment(spec["config"])
    gpu = spec["device"] == "cuda"
    dev = ["0" if gpu else "cpu"]
    out = {"peak_tflops": flops.peak_matmul_tflops() if gpu else None}
    params = model_shape(Path(spec["model"]))
    users, adapters = cfg["users"]["test"], spec["adapters"]
    engines = Engines()
    tmp = Path(spec["tmp"])

    def case(name: str, jobs: list, adapter: list[str]) -> dict:
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t = time.time()
        ms = evaluate(cfg, spec["model"], adapter, jobs, dev, engines=engines, quiet=True)
        wall = time.time() - t
        stats = [read_json(o / "eval_stats.json") for _, o in jobs]
        n = sum(m["n"] for m in ms)
        tokens = sum(s.get("prompt_tokens", 0) for s in stats) / max(1, sum(s.get("samples", 0) for s in stats))
        images = sum(len(json.loads(x)["images"]) for d, _ in jobs for x in Path(d).read_text().splitlines()) / n
        return {"case": name, "samples": n, "seconds": wall, "samples_per_s": n / wall,
                "peak_gib": torch.cuda.max_memory_allocated() / GIB if gpu else None,
                "prompt_tokens_per_sample": tokens, "images_per_sample": images,
                "engines": sorted({s.get("engine") for s in stats})}

    def with_mfu(r: dict, new_tokens: int) -> dict:
        image_tokens = cfg["image_max_token_num"]
        f = 2 * params["language"] * (r["prompt_tokens_per_sample"] + new_tokens) + \
            2 * params["vision"] * 4 * image_tokens * r["images_per_sample"]
        r["flops_per_sample"] = f
        r["mfu"] = f * r["samples_per_s"] / (out["peak_tflops"] * 1e12) if out["peak_tflops"] else None
        log(f"{r['case']}: {r['samples_per_s']:.2f} samples/s, MFU {r['mfu']}, peak {r['peak_gib']} GiB, "
            f"{r['prompt_tokens_per_sample']:.0f} prompt tokens, {r['images_per_sample']:.1f} images a sample")
        return r

    new = cfg["eval"]["max_new_tokens"]
    case("warm-up (not recorded: the model's load, first kernels)",
         [(swift_paths(cfg, users[0], 1)["test"], user_dir(tmp / "ev" / "warmup", users[0]))], [])
    cases = []
    plain = [(swift_paths(cfg, u, 0)["test"], user_dir(tmp / "ev" / "plain", u)) for u in users]
    cases.append(with_mfu(case("plain hold-outs, base model", plain, []), new))
    jobs_all = []
    t = time.time()
    n = 0
    for i, u in enumerate(users):
        jobs = [(swift_paths(cfg, v, 0)["test"], user_dir(tmp / "ev" / "cross" / f"adapter_{u}", v)) for v in users if v != u]
        r = case(f"cross-user, adapter of user {u}", jobs, [adapters[i]])
        jobs_all += jobs
        n += r["samples"]
    cross = {**r, "case": "cross-user, every adapter on the other users' hold-outs (adapters swapped on one base)",
             "samples": n, "seconds": time.time() - t, "samples_per_s": n / (time.time() - t)}
    cases.append(with_mfu(cross, new))
    for variant, k in [*(("image", k) for k in spec["ks"]), ("text", max(spec["ks"]))]:
        files = write_in_context(cfg, variant, k)
        jobs = [(files[u][0], user_dir(tmp / "ev" / f"{variant}{k}", u)) for u in users]
        cases.append(with_mfu(case(f"in-context {variant}, k {k}", jobs, []), new))
    out["cases"] = cases
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=["tiny", "8b"], default="8b")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 3])
    p.add_argument("--episodes", type=int, default=40, help="episodes of each test user")
    p.add_argument("--quick", action="store_true", help="a few rows only (the CPU check)")
    p.add_argument("--model-dir", help="a model folder built by scripts/build_tiny_model.py with this shape (linked)")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        spec = read_json(a.child)
        write_json(spec["result"], child(spec))
        return 0
    from data_prep.synth import synth

    with scratch("pigg_controls_") as tmp:
        episodes = 4 if a.quick else a.episodes
        synth(tmp / "raw", users=4, episodes=6, seed=0, scale=0.25 if a.shape == "tiny" else 1.0, defects=False,
              test_users=3, test_episodes=episodes)
        model = random_model(tmp / "model", a.shape, a.device, given=a.model_dir)
        budget = 32 if a.shape == "tiny" else 980
        cfg_path, cfg = prepare_experiment(tmp, model, "controls", {
            "users": {"test": "1-3", "global": "4"}, "image_max_token_num": budget,
            "eval": {"max_new_tokens": 24, "reserve_new_tokens": 24, **({"batch_size": 8} if a.device == "cpu" else {})}})
        log("adapters")
        adapters = make_adapters_in_child(model, tmp / "adapters", 3, a.device)
        spec = {"config": str(cfg_path), "model": str(model), "adapters": [str(x) for x in adapters], "device": a.device,
                "ks": a.ks, "tmp": str(tmp), "result": str(tmp / "result.json")}
        write_json(tmp / "spec.json", spec)
        env = child_env(**({"CUDA_VISIBLE_DEVICES": "0"} if a.device == "cuda" else {"CUDA_VISIBLE_DEVICES": ""}))
        r = subprocess.run([sys.executable, __file__, "--child", str(tmp / "spec.json")], env=env, cwd=ROOT)
        if r.returncode:
            log(f"the eval child failed ({r.returncode})")
            return r.returncode
        res = {"card": first_gpu()[0], "shape": a.shape, "device": a.device, **read_json(tmp / "result.json")}
    out = Path(a.out) / f"controls_eval_{a.device}{'_' + a.tag if a.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, res)
    log(f"wrote {out}")
    return 0


def make_adapters_in_child(model: Path, out: Path, n: int, device: str) -> list[Path]:
    """make_adapters in a child process (this one holds no GPU memory while the eval child runs)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from controls_eval import make_adapters; "
            f"from pathlib import Path; make_adapters(Path({str(model)!r}), Path({str(out)!r}), {n}, {device!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env(), cwd=ROOT)
    return [out / f"adapter_{i + 1}" for i in range(n)]


if __name__ == "__main__":
    sys.exit(main())
