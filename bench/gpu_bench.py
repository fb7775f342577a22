"""One-GPU benchmark at Qwen3-VL-8B scale: eval throughput and personalized-fold training throughput.

Usage: python bench/gpu_bench.py --shape 8b --device cuda          (on a GPU box; ~8 min on an H200)
       python bench/gpu_bench.py --shape tiny --device cpu --quick (what CI runs: same code, tiny model)
       python bench/gpu_bench.py --estimate bench/results/A.json [B.json ...]   (protocol GPU-hours only)

Random weights with the real architecture (scripts/build_tiny_model.py --shape 8b), phone-sized
synthetic screenshots at the experiment's image budget (980 tokens), the real PIGG prompt, and a
forced answer length (min = max new tokens), since random weights never stop. Measured in one run:
  eval: PIGG's way (HF generate, batch 1), plain HF batched generate and a prefill-only pass on the
        stock model; then eval.run's path (swift TransformersEngine, size-sorted batches) adding one
        speed-up at a time (GQA decode step, Liger kernels, patches made on the GPU: what the
        experiment enables; the time spent waiting for encoded batches is recorded), extra batch
        sizes (--eval-batches), other batch / encoding-worker / patch-device combinations
        (--eval-variants), and a stage-by-stage breakdown of one batch (--profile: the kernel table
        of a prefill);
  train: a hand-rolled PEFT LoRA loop, and the real `swift sft` on the project's generated
        personalized-LoRA YAML in variants (tokens/s over the run, after step 5 and at the median
        step, timed from outside; peak memory);
then an estimate of the GPU-hours of the whole PIGG protocol. Writes bench/results/gpu_bench_<device>[_TAG].json.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
from data_prep.io import write_json  # noqa: E402
from _common import child_env, first_gpu, median_step_s, prepare_experiment, read_train_log, run_fresh, short_run, steady_rate, scratch, random_model  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MODELSCOPE_OFFLINE", "1")

VARIANT_FLAGS = {"gpu", "nopin", "graphs"}  # of --eval-variants, besides prefetchN
TRAIN_VARIANTS = {  # name -> swift sft overrides on top of the generated personalized-LoRA YAML
    "default": [],  # the person_lora template as committed
    "bs4_gc": ["per_device_train_batch_size=4", "gradient_accumulation_steps=1"],
    "bs4_nogc": ["per_device_train_batch_size=4", "gradient_accumulation_steps=1", "gradient_checkpointing=false"],
    "bs8_nogc": ["per_device_train_batch_size=8", "gradient_accumulation_steps=1", "gradient_checkpointing=false"],
    "bs8_gc": ["per_device_train_batch_size=8", "gradient_accumulation_steps=1"],
    "bs16_gc": ["per_device_train_batch_size=16", "gradient_accumulation_steps=1"],
    "bs6_nogc": ["per_device_train_batch_size=6", "gradient_accumulation_steps=1", "gradient_checkpointing=false"],
    # Liger's Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear + cross-entropy): `pip install liger-kernel`
    "bs4_nogc_liger": ["per_device_train_batch_size=4", "gradient_accumulation_steps=1", "gradient_checkpointing=false",
                       "use_liger_kernel=true"],
    "bs8_nogc_liger": ["per_device_train_batch_size=8", "gradient_accumulation_steps=1", "gradient_checkpointing=false",
                       "use_liger_kernel=true"],
    "bs8_gc_liger": ["per_device_train_batch_size=8", "gradient_accumulation_steps=1", "use_liger_kernel=true"],
    "bs12_nogc_liger": ["per_device_train_batch_size=12", "gradient_accumulation_steps=1", "gradient_checkpointing=false",
                        "use_liger_kernel=true"],
}
HANDROLLED = {"handrolled_bs4_gc": (4, True), "handrolled_bs4_nogc": (4, False)}
PIGG = {"global_samples": 90727, "test_samples": 10063, "folds": 30, "person_epochs": 3, "global_epochs": 1}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def save(res, path):
    write_json(path, res)  # strict JSON: an undefined figure is null, never NaN


def make_data(tmp: Path, shape: str, budget: int):
    """Synthetic phone screenshots (one test user with many samples), built and exported as an experiment
    whose model is the one built next under tmp/model."""
    from data_prep.synth import synth

    synth(tmp / "raw", users=3, episodes=40, seed=0, scale=1.0 if shape == "8b" else 0.25, defects=False,
          test_users=1, test_episodes=320 if shape == "8b" else 30)
    return prepare_experiment(tmp, tmp / "model", "bench", {"users": {"test": "1", "global": "2-3"},
                                                            "image_max_token_num": budget})[1]


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def forced_generation(new_tokens: int):
    """Greedy, exactly new_tokens new tokens (random weights never stop on their own)."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                            pad_token_id=151643, eos_token_id=151645)


def hf_processor(cfg, model_dir):
    """The HF processor at the experiment's image budget (what PIGG's scripts and the baselines use)."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(model_dir)
    proc.image_processor.size = {"shortest_edge": 4 * 32 * 32, "longest_edge": cfg["image_max_token_num"] * 32 * 32}
    return proc


def user_turn(row) -> list[dict]:
    """A swift-format row's user message as an HF chat turn (image first, then the prompt)."""
    text = row["messages"][0]["content"].replace("<image>", "")
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def requests_of(rows) -> list:
    """swift InferRequests of swift-format rows: the user turn (prompt + screenshot), no answer."""
    from swift.infer_engine import InferRequest

    return [InferRequest(messages=r["messages"][:1], images=r["images"]) for _, r in rows]


def timed_generate(engine, rows, batch, new_tokens, device, workers=0, pin_memory=None, prefetch=0,
                   graphs=False) -> tuple[float, list[int], dict]:
    """eval.run's generate over rows after one warm-up batch: (seconds, answer lengths in chars,
    generate's stats: input wait, decode steps)."""
    from eval.generation import generate

    kw = dict(workers=workers, pin_memory=pin_memory, prefetch=prefetch, graphs=graphs)
    with tempfile.TemporaryDirectory() as d:
        generate(engine, rows[:batch], Path(d) / "warm.jsonl", batch, new_tokens, {}, progress=False, graphs=graphs)
        sync(device)
        t = time.time()
        st = generate(engine, rows, Path(d) / "p.jsonl", batch, new_tokens, {}, progress=False, **kw)
        sync(device)
        dt = time.time() - t
        return dt, [len(json.loads(x)["raw"]) for x in open(Path(d) / "p.jsonl")], st


def eval_breakdown(engine, rows, batch, new_tokens, device, profile_to: Path | None = None) -> dict:
    """Seconds per stage for one batch through swift's engine: CPU encode, collate + copy, vision
    tower, prefill (the GPU floor: one forward over encoded inputs), generate (prefill + decode)."""
    import torch

    from data_prep.patches import gqa_decode
    from eval.cuda_graphs import graphed_decode

    tpl, model = engine.template, engine.model
    tpl.set_mode("transformers")
    reqs = requests_of(rows[:batch])

    def timed(fn):
        sync(device)
        t = time.time()
        v = fn()
        sync(device)
        return v, time.time() - t

    out = {"batch": len(reqs)}
    (enc, _), out["encode_s"] = timed(lambda: engine._batch_encode(reqs, strict=True))
    for x in enc:
        x.pop("template_inputs", None)
    (_, inputs), out["collate_copy_s"] = timed(lambda: tpl.pre_forward_hook(model, None, tpl.data_collator(enc)))
    gen = forced_generation(new_tokens)
    with torch.inference_mode():
        model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])  # warm-up
        _, out["vision_s"] = timed(lambda: model.model.get_image_features(inputs["pixel_values"],
                                                                          inputs["image_grid_thw"]))
        model(**inputs, logits_to_keep=1)
        _, out["prefill_s"] = timed(lambda: model(**inputs, logits_to_keep=1))
        _, out["generate_s"] = timed(lambda: model.generate(**inputs, generation_config=gen))
        if gqa_decode.installed():  # the same generate with transformers' sdpa decode step
            gqa_decode.uninstall()
            _, out["generate_sdpa_decode_s"] = timed(lambda: model.generate(**inputs, generation_config=gen))
            gqa_decode.install()
        if device == "cuda":  # static cache, decode steps from a CUDA graph (eval.cuda_graphs)
            static = forced_generation(new_tokens)
            static.cache_implementation = "static"

            def graphed():
                with graphed_decode(model):
                    return model.generate(**inputs, generation_config=static)

            graphed()
            _, out["generate_graphs_s"] = timed(graphed)
            out["decode_graphs_s"] = out["generate_graphs_s"] - out["prefill_s"]
        if profile_to is not None:  # the kernels of one prefill, most device time first
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                model(**inputs, logits_to_keep=1)
                sync(device)
            table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=30, max_name_column_width=70)
            profile_to.write_text(f"one prefill, batch {out['batch']}, {out['prefill_s']:.3f} s untraced\n{table}\n")
            log(f"profile: {profile_to}")
    out["decode_s"] = out["generate_s"] - out["prefill_s"]
    out["prefill_floor_samples_per_s"] = out["batch"] / out["prefill_s"]
    # FLOPs of each stage (bench/flops.py) and its MFU against a matrix product measured here, now
    import flops

    b = out["batch"]
    prompt = float(inputs["attention_mask"].sum()) / b
    patches = inputs["pixel_values"].shape[0] / b
    fl = {"vision": b * flops.vit_flops(model, patches), "prefill": b * flops.lm_forward_flops(model, prompt),
          "decode": b * (flops.lm_forward_flops(model, prompt, new_tokens) - flops.lm_forward_flops(model, prompt))}
    out.update(prompt_tokens_mean=prompt, patches_per_image=patches, flops=fl)
    if device == "cuda":
        peak = out["peak_matmul_tflops"] = flops.peak_matmul_tflops()
        dec = out.get("decode_graphs_s", out["decode_s"])
        out["mfu"] = {"vision": flops.mfu(fl["vision"] / out["vision_s"], peak),
                      "prefill (incl. vision)": flops.mfu((fl["vision"] + fl["prefill"]) / out["prefill_s"], peak),
                      "decode": flops.mfu(fl["decode"] / dec, peak),
                      "whole batch": flops.mfu(sum(fl.values()) / (out["prefill_s"] + dec), peak)}
    return out


def preprocess_difference(engine, rows) -> float:
    """Largest |difference| between the patches the image processor makes on the CPU and on the GPU."""
    from eval.engine import set_image_device

    tpl, out = engine.template, []
    tpl.set_mode("transformers")
    for dev in (None, engine.model.device):
        set_image_device(engine, dev)
        out.append([tpl.encode(r)["pixel_values"].cpu() for r in requests_of(rows)])
    set_image_device(engine, None)
    return max(float((a - b).abs().max()) for a, b in zip(*out))


def graph_difference(engine, rows, batch) -> dict:
    """One batch answered three ways with log-probs: transformers' dynamic cache, the static cache with
    eager decode steps, the static cache with the decode steps from a CUDA graph (eval.cuda_graphs)."""
    from swift.infer_engine import RequestConfig

    from eval.batches import encoded_batches, infer_encoded

    reqs = requests_of(rows[:batch])
    cfg = RequestConfig(max_tokens=engine.generation_config.min_new_tokens or 24, temperature=0, logprobs=True)
    out, on_gpu = {}, engine.model.device.type == "cuda"
    (_, b, tis), = encoded_batches(engine, reqs, len(reqs))  # one encoding, answered three ways
    for name, graphs, capture in (("dynamic", False, None), ("static", True, False), ("graph", True, on_gpu)):
        st = {}
        resp = infer_encoded(engine, b, tis, cfg, graphs=graphs, capture=capture, stats=st)
        out[name] = ([r.choices[0].message.content for r in resp],
                     [[(t["token"], t["logprob"]) for t in r.choices[0].logprobs["content"]] for r in resp], st)

    def compare(a, b) -> dict:
        """Texts equal; first tokens equal; largest |log-prob difference| over each row's common prefix
        (after two answers part, their log-probs are of different tokens)."""
        prefix, first = 0.0, 0
        for u, v in zip(out[a][1], out[b][1]):
            first += u[0][0] == v[0][0]
            for (tu, lu), (tv, lv) in zip(u, v):
                if tu != tv:
                    break
                prefix = max(prefix, abs(lu - lv))
        return {f"{a}_vs_{b}_texts_equal": sum(x == y for x, y in zip(out[a][0], out[b][0])),
                f"{a}_vs_{b}_first_tokens_equal": first, f"{a}_vs_{b}_prefix_max_abs_logprob_diff": prefix}

    return {"rows": len(reqs), "graph_steps": out["graph"][2], **compare("graph", "static"),
            **compare("static", "dynamic")}


def bench_eval(cfg, model_dir, device, n, batch, new_tokens, res, out_json, baselines=True, extra_batches=(),
               profile=False, variants=(), ladder=True, breakdown=True):
    import torch

    from data_prep.export import swift_paths
    from data_prep.patches import gqa_decode
    from eval.engine import apply_liger, build_engine, set_image_device
    from eval.job import load_rows

    rows = load_rows(swift_paths(cfg, 1)["all"])
    rows = (rows * (1 + n // len(rows)))[:n]
    ev = cfg["eval"]
    engine = build_engine(str(model_dir), [], batch, device)  # stock: transformers' sdpa, no Liger
    engine.generation_config.min_new_tokens = new_tokens  # random weights: force the answer length
    model = engine.model

    gpu_pre = ev["gpu_preprocess"] and device == "cuda"
    graphs_on = ev["cuda_graphs"] and device == "cuda"

    def measure(key, b=batch, what="", workers=0, gpu=False, pin_memory=None, prefetch=0, graphs=False):
        engine.max_batch_size = b
        set_image_device(engine, model.device if gpu else None)
        m = max(n, 2 * b)
        how = {"batch": b, "workers": workers, "gpu_preprocess": gpu, "prefetch": prefetch, "cuda_graphs": graphs}
        try:
            dt, lens, st = timed_generate(engine, (rows * (1 + m // len(rows)))[:m], b, new_tokens, device,
                                          workers, pin_memory, prefetch, graphs)
        except Exception as e:  # one failed variant does not lose the others
            res["eval"][key] = {**how, "error": repr(e)[:500]}
            log(f"{key}{what}: FAILED {e!r}")
            return
        res["eval"][key] = {"samples": m, **how, "seconds": dt, "samples_per_s": m / dt,
                            "input_wait_s": st["input_wait_s"], "decode_steps": st["decode_steps"],
                            "answer_chars_mean": sum(lens) / len(lens)}
        if pin_memory is not None:
            res["eval"][key]["pin_memory"] = pin_memory
        log(f"{key}{what}: {m / dt:.2f} samples/s (batch {b}, waited {st['input_wait_s']:.2f} s for inputs"
            f"{', decode steps ' + str(st['decode_steps']) if graphs else ''})")
        save(res, out_json)

    if baselines:  # on the stock model, before eval.run's speed-ups touch it
        hf_baselines(cfg, model_dir, model, rows, device, n, batch, new_tokens, res, out_json)
    # the project's eval.run path (swift TransformersEngine, size-sorted batches), one speed-up at a time
    if ladder:
        measure("eval_run_stock", what=" (swift engine, transformers' sdpa)")
    if ev["gqa_decode"]:
        gqa_decode.install()
        if ladder:
            measure("eval_run_gqa", what=" (+ GQA decode step)")
    if ev["liger_kernel"] and device == "cuda":
        apply_liger(model)  # in place: last
        if ladder:
            measure("eval_run_liger", what=" (+ Liger kernels)")
    if gpu_pre:
        res["eval"]["gpu_preprocess_max_abs_diff"] = preprocess_difference(engine, rows[:8])
        log(f"patches made on the GPU vs the CPU: max |diff| {res['eval']['gpu_preprocess_max_abs_diff']}")
    if graphs_on or device == "cpu":  # on the CPU: the same path without capturing a graph
        set_image_device(engine, model.device if gpu_pre else None)
        try:
            res["eval"]["graph_check"] = graph_difference(engine, rows, min(batch, 32))
        except Exception as e:  # the throughput figures below still come
            res["eval"]["graph_check"] = {"error": repr(e)[:500]}
        log(f"decode from CUDA graphs vs eager: {res['eval']['graph_check']}")
    measure("eval_run", what=f" (as configured: gpu_preprocess {gpu_pre}, {ev['workers']} encoding workers, "
                             f"prefetch {ev['prefetch']}, cuda_graphs {graphs_on})",
            workers=ev["workers"], gpu=gpu_pre, prefetch=ev["prefetch"], graphs=graphs_on)
    tpl = engine.template
    tpl.set_mode("transformers")
    prompt_tokens = [len(tpl.encode(r)["input_ids"]) for r in requests_of(rows[:8])]
    res["eval"]["eval_run"].update(prompt_tokens_mean=sum(prompt_tokens) / len(prompt_tokens),
                                   gqa_decode=ev["gqa_decode"], liger_kernel=ev["liger_kernel"] and device == "cuda")
    for b in extra_batches:
        measure(f"eval_run_b{b}", b=b, workers=ev["workers"], gpu=gpu_pre, prefetch=ev["prefetch"], graphs=graphs_on)
    for v in variants:  # BATCH:WORKERS[:gpu][:nopin][:prefetchN][:graphs]
        b, w, *rest = v.split(":")
        pre = [f for f in rest if re.fullmatch(r"prefetch\d+", f)]
        unknown = set(rest) - VARIANT_FLAGS - set(pre)
        if unknown:
            raise SystemExit(f"--eval-variants {v}: unknown flag(s) {sorted(unknown)} (gpu, nopin, prefetchN, graphs)")
        gpu, graphs = ("gpu" in rest and device == "cuda"), ("graphs" in rest and device == "cuda")
        name = "".join([f"eval_run_b{b}_w{w}", "_gpu" if gpu else "_cpu", "_nopin" if "nopin" in rest else ""]
                       + [f"_{f}" for f in pre] + ["_graphs" if graphs else ""])
        measure(name, b=int(b), workers=int(w), gpu=gpu, pin_memory=False if "nopin" in rest else None,
                prefetch=int(pre[0][8:]) if pre else 0, graphs=graphs)
    set_image_device(engine, model.device if gpu_pre else None)
    engine.max_batch_size = batch
    if breakdown:
        res["eval"]["breakdown"] = eval_breakdown(engine, rows, batch, new_tokens, device,
                                                  out_json.with_suffix(".prefill_profile.txt") if profile else None)
        log(f"breakdown (batch {batch}): " + ", ".join(f"{k} {v:.3f}" for k, v in res["eval"]["breakdown"].items()
                                                       if isinstance(v, float)) + f"; MFU {res['eval']['breakdown'].get('mfu')}")
        save(res, out_json)
    gqa_decode.uninstall()
    engine = model = None  # free the GPU memory for the training runs
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def hf_baselines(cfg, model_dir, model, rows, device, n, batch, new_tokens, res, out_json):
    """PIGG's way (HF processor + generate, batch 1), the same batched, and a prefill-only pass."""
    import torch
    from PIL import Image

    proc = hf_processor(cfg, model_dir)
    gen = forced_generation(new_tokens)

    def hf_inputs(chunk):
        texts, images = [], []
        for _, r in chunk:
            texts.append(proc.apply_chat_template(user_turn(r), add_generation_prompt=True, tokenize=False))
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
    # prefill only (one forward, no decoding), HF processor in the loop as in the batched baseline
    chunks = [rows[i:i + batch] for i in range(0, n, batch)]
    with torch.no_grad():
        model(**hf_inputs(chunks[0]), logits_to_keep=1)
        sync(device)
        t = time.time()
        for c in chunks:
            model(**hf_inputs(c), logits_to_keep=1)
        sync(device)
    dt = time.time() - t
    res["eval"]["prefill_only"] = {"samples": n, "batch": batch, "seconds": dt, "samples_per_s": n / dt,
                                   "note": "HF processor on the CPU inside the timed loop"}
    log(f"prefill only (with HF processor): {n / dt:.2f} samples/s")
    save(res, out_json)


def train_encoder(cfg, model_dir):
    """HF-processor encoding of training rows (prompt + answer, labels on the answer only), at the
    experiment's image budget: the hand-rolled loop's batches, and the token count of a sample."""
    from PIL import Image

    proc = hf_processor(cfg, model_dir)

    def encode(chunk):
        prompts, fulls, images = [], [], []
        for _, r in chunk:
            user = user_turn(r)
            answer = [{"role": "assistant", "content": [{"type": "text", "text": r["messages"][1]["content"]}]}]
            prompts.append(proc.apply_chat_template(user, add_generation_prompt=True, tokenize=False))
            fulls.append(proc.apply_chat_template(user + answer, tokenize=False))
            images.append(Image.open(r["images"][0]).convert("RGB"))
        enc = proc(text=fulls, images=images, padding=True, padding_side="right", return_tensors="pt")
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        for i, (pr, im) in enumerate(zip(prompts, images)):
            labels[i, :proc(text=[pr], images=[im], return_tensors="pt")["input_ids"].shape[1]] = -100
        enc["labels"] = labels
        return enc

    return encode


def train_tokens_per_sample(cfg, model_dir, n: int = 16) -> float:
    from data_prep.export import swift_paths
    from eval.job import load_rows

    enc = train_encoder(cfg, model_dir)(load_rows(swift_paths(cfg, 1, 0)["train"])[:n])
    return float(enc["attention_mask"].sum()) / len(enc["attention_mask"])


def bench_train(cfg, model_dir, device, steps, res, out_json, variants):
    from swift_configs.generate import render

    cfg = {**cfg, "train": {**cfg["train"], "person_base": str(model_dir)}}
    tokens = res.setdefault("train_tokens_per_sample", train_tokens_per_sample(cfg, model_dir))
    for name, ov in variants:
        run = render(cfg, "person", user=1, fold=0, gpus="0" if device == "cuda" else "cpu",
                     overrides=short_run(steps, device) + ov)
        t = time.time()  # each variant its own folder and logging.jsonl
        rc, output, marks = run_fresh(run, child_env(**{k: str(v) for k, v in run.env.items()}, **run.proc_env), device)
        wall = time.time() - t
        final, peak = read_train_log(run.run_dir / "logging.jsonl")
        if rc != 0 or final is None:
            res["train"][name] = {"error": output[-1500:], "overrides": ov}
            log(f"train {name}: FAILED")
            save(res, out_json)
            continue
        mem = peak or 0.0
        bs = run.args["per_device_train_batch_size"] * run.args["gradient_accumulation_steps"]
        sps = float(final["train_samples_per_second"])
        rate = steady_rate(marks)
        steady = rate * bs if rate else None
        med = median_step_s(marks)
        res["train"][name] = {"steps": steps, "batch": bs, "samples_per_s": sps, "tokens_per_s": sps * tokens,
                              "steady_samples_per_s": steady, "steady_tokens_per_s": steady and steady * tokens,
                              "median_step_s": med, "median_step_tokens_per_s": med and bs / med * tokens,
                              "train_runtime_s": float(final["train_runtime"]), "wall_s": wall,
                              "peak_mem_gib": mem, "overrides": ov, "step_marks_s": marks}
        log(f"train {name}: {sps:.2f} samples/s ≈ {sps * tokens:.0f} tokens/s over the run; steady (after step 5) "
            f"{steady or 0:.2f} samples/s ≈ {(steady or 0) * tokens:.0f} tokens/s; peak {mem} GiB")
        save(res, out_json)


def bench_handrolled(cfg, model_dir, device, steps, res, out_json, batch=4, checkpointing=True):
    """The baseline for the LoRA fold: a plain PEFT LoRA loop (transformers + peft + AdamW) with the
    person_lora settings (r 8, alpha 32, dropout 0.1, all linear layers of the language model, vision
    frozen) on the same fold's training rows, batches encoded by the HF processor before the timed loop."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3VLForConditionalGeneration

    from data_prep.export import swift_paths
    from eval.job import load_rows

    name = f"handrolled_bs{batch}_{'gc' if checkpointing else 'nogc'}"
    dev = "cuda" if device == "cuda" else "cpu"
    rows = load_rows(swift_paths(cfg, 1, 0)["train"])
    encode = train_encoder(cfg, model_dir)
    batches = [encode(rows[i:i + batch]) for i in range(0, min(len(rows), batch * 6), batch)]
    model = Qwen3VLForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.bfloat16 if dev == "cuda" else torch.float32, attn_implementation="sdpa").to(dev)
    model.requires_grad_(False)
    model = get_peft_model(model, LoraConfig(
        r=8, lora_alpha=32, lora_dropout=0.1,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, weight_decay=0.01)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    marks, ntok, t0 = [], [], time.time()
    for step in range(1, steps + 1):
        inp = batches[(step - 1) % len(batches)].to(dev)
        loss = model(**inp).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        marks.append((step, time.time() - t0))
        ntok.append(int(inp["attention_mask"].sum()))
    rate = steady_rate(marks)
    per_sample = sum(ntok) / len(ntok) / batch
    tok_s = rate * batch * per_sample if rate else None
    med = median_step_s(marks)
    res["train"][name] = {"steps": steps, "batch": batch, "steady_samples_per_s": rate and rate * batch,
                          "steady_tokens_per_s": tok_s, "tokens_per_sample": per_sample, "median_step_s": med,
                          "median_step_tokens_per_s": med and batch / med * per_sample,
                          "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None,
                          "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if dev == "cuda" else None,
                          "step_marks_s": marks}
    log(f"train {name}: steady {rate and rate * batch or 0:.2f} samples/s ≈ {tok_s or 0:.0f} tokens/s, "
        f"peak {res['train'][name]['peak_mem_gib']} GiB")
    save(res, out_json)
    del model, opt, batches
    gc.collect()
    if dev == "cuda":
        torch.cuda.empty_cache()


def estimate(res, zero_json: Path = ROOT / "bench" / "results" / "zero3_global_2gpu_bs4.json"):
    """GPU-hours of the whole protocol from the measured rates (no overlap): evals and personalized folds
    at this run's best eval.run and batch-4 swift-LoRA rates; global full FT at the ZeRO-3 rate per GPU of
    bench/zero3_global.py when its result file exists, else at the LoRA rate (a lower bound)."""
    ev = max((v.get("samples_per_s") or 0 for k, v in res["eval"].items() if k.startswith("eval_run")), default=0)
    # swift runs at PIGG's personalized batch (4), the best of them
    tr = max((v.get("steady_samples_per_s") or v.get("samples_per_s") or 0 for k, v in res["train"].items()
              if not k.startswith("handrolled") and v.get("batch") == 4), default=0)
    if not ev or not tr:
        return None
    t, e = PIGG["test_samples"], PIGG["person_epochs"]
    est = {"eval_samples_per_s": ev, "person_train_samples_per_s": tr,
           "vanilla_eval_h": t / ev / 3600, "global_eval_h": t / ev / 3600,
           # every test sample is in the training set of K-1 = 2 of its user's 3 folds, 3 epochs each
           "person_train_h": 2 * t * e / tr / 3600, "person_eval_h": t / ev / 3600}
    z = json.loads(zero_json.read_text()) if zero_json.exists() else {}
    zr = z.get("steady_tokens_per_s_per_gpu")
    if zr:
        tok = res.get("train_tokens_per_sample") or 1082
        est["global_train_h"] = PIGG["global_samples"] * PIGG["global_epochs"] * tok / zr / 3600
        est["global_note"] = (f"global full FT at {zr:.0f} tokens/s per GPU (ZeRO-{z['zero']}, batch "
                              f"{z['per_device_batch']} x {z['grad_accum']}, {zero_json.name}), in GPU-hours")
    else:
        est["global_train_h"] = PIGG["global_samples"] * PIGG["global_epochs"] / tr / 3600
        est["global_note"] = "global full FT at the LoRA samples/s (full FT does more work): a lower bound"
    est["total_gpu_h"] = sum(v for k, v in est.items() if k.endswith("_h"))
    return est


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=["tiny", "8b"], default="tiny")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="CI size: few samples and steps")
    p.add_argument("--model-dir", help="a model folder scripts/build_tiny_model.py wrote with this --shape (linked "
                   "into the scratch folder, never changed or removed) instead of building one")
    p.add_argument("--n-eval", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--train-steps", type=int, default=25)
    p.add_argument("--skip", choices=["eval", "train", "baselines", "handrolled", "breakdown"], action="append",
                   default=[])
    p.add_argument("--eval-batches", type=int, nargs="+", default=None, help="extra eval.run batch sizes")
    p.add_argument("--eval-variants", nargs="+", default=[], metavar="BATCH:WORKERS[:FLAG...]",
                   help="eval.run at these batch sizes / encoding workers; flags: gpu (patches made on the GPU), "
                        "nopin (workers' batches not page-locked), prefetchN (N threads encode the next batch), "
                        "graphs (decode steps from a CUDA graph)")
    p.add_argument("--no-eval-ladder", action="store_true",
                   help="skip eval.run's one-speed-up-at-a-time measurements (stock, +GQA, +Liger)")
    p.add_argument("--train-variants", nargs="+", choices=sorted(TRAIN_VARIANTS), default=None)
    p.add_argument("--handrolled", nargs="+", choices=sorted(HANDROLLED), default=None,
                   help="hand-rolled PEFT loop variants (default: handrolled_bs4_gc)")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--profile", action="store_true", help="write the kernel table of one prefill next to the result")
    p.add_argument("--estimate", metavar="RESULT_JSON", nargs="+",
                   help="only print the protocol estimate from saved results (their eval and train parts merged)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = p.parse_args(argv)
    if a.estimate:
        merged = {"eval": {}, "train": {}}
        for f in a.estimate:
            r = json.loads(Path(f).read_text())
            merged["eval"].update(r["eval"])
            merged["train"].update(r["train"])
            merged.setdefault("train_tokens_per_sample", r.get("train_tokens_per_sample"))
        print(json.dumps(estimate(merged), indent=1))
        return
    if a.quick:
        a.n_eval, a.batch, a.train_steps = 8, 4, 2
    budget = 980 if a.shape == "8b" else 32
    os.environ["IMAGE_MAX_TOKEN_NUM"] = str(budget)
    out_json = Path(a.out) / f"gpu_bench_{a.device}{'_quick' if a.quick else ''}{a.tag and '_' + a.tag}.json"
    import torch
    import transformers

    res = {"shape": a.shape, "device": a.device, "gpu": first_gpu()[0] if a.device == "cuda" else "cpu",
           "torch": torch.__version__, "transformers": transformers.__version__, "image_max_token_num": budget,
           "new_tokens": a.new_tokens, "eval": {}, "train": {}}
    with scratch("pigg_bench_") as tmp:
        t0 = time.time()
        cfg = make_data(tmp, a.shape, budget)
        log(f"data ready ({time.time() - t0:.0f}s)")
        model_dir = random_model(tmp / "model", a.shape, a.device, given=a.model_dir)
        log(f"model ready ({time.time() - t0:.0f}s)")
        if "train" not in a.skip:  # first: swift's children get the whole GPU (this process has not touched it yet)
            variants = [(v, TRAIN_VARIANTS[v]) for v in (a.train_variants or ["bs4_gc", "bs4_nogc"])]
            if a.quick:
                variants = variants[:1]
            bench_train(cfg, model_dir, a.device, a.train_steps, res, out_json, variants)
            res["parent_cuda_initialized_while_training"] = torch.cuda.is_initialized()
        if "eval" not in a.skip:
            bench_eval(cfg, model_dir, a.device, a.n_eval, a.batch, a.new_tokens, res, out_json,
                       baselines="baselines" not in a.skip, extra_batches=a.eval_batches or [], profile=a.profile,
                       variants=a.eval_variants, ladder=not a.no_eval_ladder, breakdown="breakdown" not in a.skip)
        if "handrolled" not in a.skip:
            for h in (a.handrolled or ["handrolled_bs4_gc"])[:1 if a.quick else None]:
                bench_handrolled(cfg, model_dir, a.device, a.train_steps if a.quick else max(a.train_steps, 20), res,
                                 out_json, *HANDROLLED[h])
        res["estimate_gpu_hours"] = estimate(res)
        save(res, out_json)
        print(json.dumps({k: res[k] for k in ("eval", "estimate_gpu_hours")}, indent=1))
        for k, v in res["train"].items():
            print(k, {x: v.get(x) for x in ("samples_per_s", "tokens_per_s", "peak_mem_gib", "error")})
        print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
