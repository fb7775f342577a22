"""Batched greedy evaluation of a model (+ optional adapter) on swift-format JSONL, resumable.

Usage: python -m eval.run --model PATH [--adapters CKPT] --data X.jsonl --out DIR
                          [--data Y.jsonl --out DIR2 ...] [--batch-size N] [--devices cpu|0|0,1]

Inference is ms-swift's TransformersEngine (no vLLM) with the training template (a checkpoint's
args.json is honoured) and the experiment's image-token budget, so the eval input of a sample
is its training encoding minus the answer. Each sample's answer is appended at once to
``DIR/predictions.jsonl`` (one line per sample id); a killed run resumes where it stopped and
never scores a sample twice. With several devices the rows are sharded (row i -> device i mod n),
one process per device, and merged in row order. Per job it writes ``out.json`` (per-sample
records), ``metrics.json`` and ``results.txt``. Speed (GPU; bench/RESULTS.md): batches of similar
screens, ``eval.gqa_decode``, ``eval.liger_kernel``, ``eval.gpu_preprocess`` and ``eval.prefetch``
(eval/batches.py), ``eval.cuda_graphs`` (eval/cuda_graphs.py).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from data_prep import procenv, window_attention
from data_prep.config import add_config_args, load_experiment
from data_prep.family import DEFAULT, Family, check_model_folder, family, get as get_family
from data_prep.io import atomic_open, dumps, read_jsonl, write_json
from data_prep.memory import PROMPT_SLACK, gib
from data_prep.schema import from_grid, on_grid

from .elements import element_hit
from .metrics import score
from .parse import parse_point, parse_point_pigg, parse_referring
from .profiles import PROFILES, Profile, get as get_profile, parse_answer, user_text

PRED_FILE = "predictions.jsonl"


def load_rows(data: str | Path) -> list[tuple[str, dict]]:
    data = Path(data)
    ids_path = data.with_suffix(".ids")
    if not data.is_file():
        raise FileNotFoundError(f"{data}: no such eval file (run `python -m data_prep export`)")
    rows = read_jsonl(data)
    ids = ids_path.read_text(encoding="utf-8").splitlines() if ids_path.exists() else None
    if ids is None or len(ids) != len(rows):
        raise ValueError(f"{ids_path}: missing or not one id per row of {data}")
    return list(zip(ids, rows))


def read_predictions(out: Path) -> dict[str, dict]:
    """Every complete prediction line under ``out`` (all shards); a torn last line is dropped."""
    done: dict[str, dict] = {}
    for f in sorted(out.glob("predictions*.jsonl")):
        lines = f.read_text(encoding="utf-8").split("\n")
        good, torn = [], False
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                torn = True
                continue
            good.append(line)
            done.setdefault(rec["id"], rec)
        if torn:  # killed mid-write: keep only the whole lines
            with atomic_open(f) as fh:
                fh.write("".join(g + "\n" for g in good))
    return done


def sample_index(cfg: dict) -> dict[str, dict]:
    from data_prep.fingertip import load_samples

    return {s.id: s.to_dict() for ss in load_samples(cfg["paths"]["data"]).values() for s in ss}


class Reader:
    """How a model's answer becomes a point on PIGG's 0-1000 grid of the original screenshot: eval/profiles.py
    ``parse_answer`` (the profile's parser, then the model family's conversion at the experiment's image
    budget; ``long_press``: long clicks are scored). The default (qwen3_vl, harness) is the corrected parser."""

    def __init__(self, fam: Family | None = None, budget: int = 0, profile: Profile | None = None,
                 long_press: bool = False):
        self.fam, self.budget, self.profile = fam or get_family(DEFAULT), budget, profile or PROFILES["harness"]
        self.long_press = long_press

    def points(self, sid: str, text: str, meta: dict | None):
        """(corrected point, PIGG-compatible point), both on the grid, unclamped."""
        if self.fam.coords == "pixels" and meta is None:
            raise ValueError(f"{sid}: no sample record (DATA/samples) to convert a {self.fam.name} answer in pixels "
                             "of the resized screenshot to the grid; re-run `python -m data_prep build`")
        w, h = (meta["width"], meta["height"]) if meta else (0, 0)
        pred = parse_answer(self.profile, text, w, h, self.budget, self.fam.name, self.long_press)
        pigg = parse_point_pigg(text)  # PIGG's own parser, its points as PIGG scores them
        return pred, list(pigg if self.fam.coords == "grid" else self.fam.to_grid(pigg, w, h, self.budget))

    def messages(self, row: dict, meta: dict | None) -> list[dict]:
        return user_text(self.profile, row, (meta or {}).get("instruction", ""))


def make_record(sid: str, row: dict, text: str, meta: dict | None, reader: Reader | None = None) -> dict:
    gt_text = row["messages"][-1]["content"]
    gt = parse_point(gt_text)
    pred, pred_pigg = (reader or Reader()).points(sid, text, meta)
    rec = {"id": sid, "raw": text, "pred": list(pred) if pred else None,
           "pred_pigg": pred_pigg, "gt": list(gt) if gt else None,
           "gt_ref": parse_referring(gt_text), "pred_ref": parse_referring(text),
           "status": "no_point" if pred is None else "ok" if on_grid(pred) else "off_screen", "image": row["images"][0]}
    if meta:
        rec.update(width=meta["width"], height=meta["height"], tree=meta.get("tree", ""))
        rec["gt"] = [meta["x"], meta["y"]]
        if pred:
            w, h = meta["width"], meta["height"]
            rec["element_hit"] = element_hit(meta.get("tree", ""), (meta["x_px"], meta["y_px"]),
                                             (from_grid(pred[0], w), from_grid(pred[1], h)))
    return rec


QUANT_SKIP = ["model.visual", "lm_head"]  # what swift leaves in bf16 for Qwen3-VL: vision tower + aligner, lm_head


def adapter_args(adapters: list[str]) -> dict:
    """The training arguments (swift's args.json) of the first adapter that has them ({} if none)."""
    for a in adapters or []:
        f = Path(a) / "args.json"
        if f.exists():
            return json.loads(f.read_text(encoding="utf-8"))
    return {}


def quantization_of(adapters: list[str]):
    """The bitsandbytes config a QLoRA adapter's base was loaded with in training (its args.json), so
    that eval loads the base the same way (4-bit NF4 weights, not the bf16 ones the adapter never saw)."""
    args = adapter_args(adapters)
    if args.get("quant_method") != "bnb":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    bits = int(args.get("quant_bits") or 4)
    return BitsAndBytesConfig(load_in_4bit=bits == 4, load_in_8bit=bits == 8,
                              bnb_4bit_quant_type=args.get("bnb_4bit_quant_type") or "nf4",
                              bnb_4bit_use_double_quant=bool(args.get("bnb_4bit_use_double_quant", True)),
                              bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=QUANT_SKIP)


def build_engine(model: str, adapters: list[str], batch_size: int, device: str, overrides: dict | None = None,
                 gqa_decode: bool = False, liger_kernel: bool = False, gpu_preprocess: bool = False,
                 model_type: str = "qwen3_vl", template_type: str | None = None, trust_remote_code: bool = False,
                 batched_windows: bool = True):
    """swift's TransformersEngine on one device; ``gqa_decode``: decode steps through eval/gqa_decode.py;
    ``liger_kernel``: Liger's Triton RMSNorm / RoPE / SwiGLU in the language model (GPU only);
    ``gpu_preprocess``: the image processor rescales, normalises and cuts patches on the GPU (GPU only);
    ``model_type`` / ``template_type``: swift's, for a raw model folder (the experiment's model.family);
    ``trust_remote_code``: whether Python files in the model folder may run (model.trust_remote_code);
    ``batched_windows``: Qwen2.5-VL's ViT windows in one attention call per length (data_prep/window_attention.py)."""
    import torch
    from swift.infer_engine import TransformersEngine

    from . import gqa_decode as gqa

    procenv.set_trust_remote_code(trust_remote_code)
    window_attention.apply(batched_windows)
    if gqa_decode:
        gqa.install()
    else:
        gqa.uninstall()

    on_cpu = device == "cpu" or not torch.cuda.is_available()
    quant = quantization_of(adapters)
    if quant is not None and on_cpu:
        raise SystemExit(f"{adapters[0]}: a QLoRA adapter (4-bit bitsandbytes base, quant_method bnb): evaluate it "
                         "on a GPU, where its base loads 4-bit as in training")
    kwargs = dict(adapters=adapters or None, max_batch_size=batch_size, quantization_config=quant,
                  torch_dtype=torch.float32 if on_cpu else torch.bfloat16,
                  device_map="cpu" if on_cpu else "cuda:0", **(overrides or {}))
    if not (Path(model) / "args.json").exists():
        kwargs["model_type"] = model_type  # a raw model folder; a swift checkpoint names its own
        if template_type:
            kwargs["template_type"] = template_type
    tokens = adapter_args(adapters).get("new_special_tokens")
    if tokens:  # the user-token method's <user_U>: the same tokenizer (and embedding size) as in training
        kwargs["new_special_tokens"] = tokens
    engine = TransformersEngine(model, **kwargs)
    if liger_kernel and not on_cpu:
        apply_liger(engine.model)
    if gpu_preprocess and not on_cpu:
        set_image_device(engine, engine.model.device)
    return engine


def set_image_device(engine, device) -> None:
    """Where the image processor turns screenshots into patches (None: the CPU). The same float32
    ops run on the resized uint8 image either way; on the GPU they leave the CPU the JPEG decode and resize."""
    engine.template.processor.image_processor.device = device


def apply_liger(model) -> None:
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        raise SystemExit("eval.liger_kernel: true needs the liger-kernel package (pip install -e '.[gpu]'); "
                         "or set it false in the experiment")
    _apply_liger_kernel_to_instance(model=model.get_base_model() if hasattr(model, "get_base_model") else model)


def generate(engine, rows: list[tuple[str, dict]], pred_file: Path, batch_size: int, max_new_tokens: int,
             meta: dict[str, dict], progress: bool = True, extra: dict | None = None, workers: int = 0,
             pin_memory: bool | None = None, prefetch: int = 0, graphs: bool = False,
             reserve_new_tokens: int | None = None, long_batch_size: int | None = None,
             reader: Reader | None = None) -> dict:
    """Answer the rows not yet in pred_file, in batches, appending each batch as it finishes.
    ``workers`` processes or ``prefetch`` threads encode the next batches while this one generates
    (eval/batches.py); ``graphs``: decode steps from a CUDA graph over a static cache (eval/cuda_graphs.py).
    ``reserve_new_tokens`` (< max_new_tokens): a batch is answered up to that many tokens (the static cache
    reserves no more); its rows still going then are answered again alone, dynamic cache and no graph, up
    to ``max_new_tokens``, ``long_batch_size`` rows at a time (greedy: the same answers, memory bounded by
    the reserve). ``reader``: the prompt sent and how the answer is read (family, eval profile; default
    the exported prompt, qwen3_vl). A CUDA out-of-memory error halves the batch and redoes the batch it
    hit: nothing is written twice or lost. Returns {"samples", "seconds", "input_wait_s", "decode_steps", "long_rows",
    "batch_sizes"}: with ``graphs`` the decode steps run eagerly / replayed; ``batch_sizes`` each size used."""
    import torch
    from swift.infer_engine import InferRequest, RequestConfig
    from tqdm import tqdm

    from .batches import encode_now, encoded_batches, infer_encoded

    stats = {"samples": 0, "seconds": 0.0, "input_wait_s": 0.0, "decode_steps": {}, "long_rows": 0,
             "batch_sizes": [batch_size]}
    if not rows:
        return stats
    first = min(reserve_new_tokens or max_new_tokens, max_new_tokens)
    cfg = RequestConfig(max_tokens=first, temperature=0, **(extra or {}))
    long_cfg = RequestConfig(max_tokens=max_new_tokens, temperature=0, **(extra or {})) if first < max_new_tokens else None
    long_batch_size = long_batch_size or batch_size
    # similar sizes together: less padding (screens of one phone share a token count)
    order = sorted(rows, key=lambda r: (meta.get(r[0], {}).get("width", 0) * meta.get(r[0], {}).get("height", 0)))
    reader = reader or Reader()
    reqs = [InferRequest(messages=reader.messages(row, meta.get(sid)), images=row["images"]) for sid, row in order]
    bar = tqdm(total=len(order), desc=f"eval {pred_file.parent.name}", unit="sample", disable=not progress)
    t0, pos = time.time(), 0  # rows go in order: order[:pos] are written
    with open(pred_file, "a", encoding="utf-8") as f:
        while pos < len(order):
            base, oom = pos, None
            t = time.time()
            try:
                for chunk, batch, tis in encoded_batches(engine, reqs[base:], batch_size, workers, pin_memory, prefetch):
                    stats["input_wait_s"] += time.time() - t
                    resps = infer_encoded(engine, batch, tis, cfg, graphs=graphs, stats=stats["decode_steps"])
                    late = [j for j, r in enumerate(resps) if long_cfg and r.choices[0].finish_reason == "length"]
                    for k in range(0, len(late), long_batch_size):  # rows still answering at the reserve
                        sub = late[k:k + long_batch_size]
                        lb, lt = encode_now(engine, [reqs[base + chunk[j]] for j in sub])
                        for j, r in zip(sub, infer_encoded(engine, lb, lt, long_cfg)):
                            resps[j] = r
                    stats["long_rows"] += len(late)
                    for i, resp in zip(chunk, resps):
                        sid, row = order[base + i]
                        text = resp.choices[0].message.content or ""
                        f.write(dumps(make_record(sid, row, text, meta.get(sid), reader)) + "\n")
                    f.flush()
                    pos = base + chunk[-1] + 1
                    bar.update(len(chunk))
                    el = time.time() - t0
                    bar.set_postfix(samples_per_s=f"{pos / el:.2f}", batch=batch_size,
                                    input_wait=f"{stats['input_wait_s'] / el:.0%}")
                    t = time.time()
            except torch.OutOfMemoryError as e:
                if batch_size == 1 and long_batch_size == 1:
                    raise
                oom = str(e).splitlines()[0][:200]
            if oom is not None:  # outside the except: the traceback (and the batch's tensors) are gone
                gc.collect()
                torch.cuda.empty_cache()
                batch_size, long_batch_size = max(1, batch_size // 2), max(1, min(long_batch_size, batch_size) // 2)
                stats["batch_sizes"].append(batch_size)
                tqdm.write(f"eval: CUDA out of memory ({oom}); batch size now {batch_size}, redoing the batch "
                           f"from row {pos} ({pos} answers written, none lost or repeated)", file=sys.stderr)
    bar.close()
    stats["samples"], stats["seconds"] = len(order), time.time() - t0
    return stats


def num(v, spec: str = ".4f", unit: str = "") -> str:
    """A metric for a person to read: ``n/a`` where it is undefined (None: nothing parsed, no tree)."""
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def results_text(m: dict, title: str) -> str:
    p, c, cp = m["pigg"], m["corrected"], m["corrected_parsed"]

    def line(a: dict) -> str:
        return f"acc@{m['delta']:g}: {num(a['accuracy'])}  mean L2: {num(a['mean_l2'], '.2f')}  median L2: {num(a['median_l2'], '.2f')}"

    return (f"{title}\n"
            f"  samples: {m['n']}   parse failures: {m['parse_failures']} ({num(m['parse_fail_rate'], '.2%')})   "
            f"off screen: {m['off_screen']} ({num(m['off_screen_rate'], '.2%')}; misses in the corrected metrics)\n"
            f"  PIGG-compatible    {line(p)}   off screen (unclamped in its mean L2): {p['off_screen']}\n"
            f"  corrected (all)    {line(c)}\n"
            f"  corrected (parsed) {line(cp)}\n"
            f"  pixels (parsed)    mean L2: {num(m['mean_l2_px'], '.1f', ' px')}  "
            f"median L2: {num(m['median_l2_px'], '.1f', ' px')}\n"
            f"  element hit rate: {num(m['element_hit_rate'])} (n={m['element_hit_n']})\n")


def finalize(rows: list[tuple[str, dict]], out: Path, delta: float, title: str) -> dict:
    """Score a finished job: out.json in row order, metrics.json, results.txt."""
    done = read_predictions(out)
    missing = [sid for sid, _ in rows if sid not in done]
    if missing:
        raise RuntimeError(f"{out}: {len(missing)} samples have no prediction (first: {missing[0]})")
    records = [done[sid] for sid, _ in rows]
    m = score(records, delta)
    write_json(out / "out.json", records)
    write_json(out / "metrics.json", m)
    with atomic_open(out / "results.txt") as f:
        f.write(results_text(m, title))
    return m


CPU_AUTO_BATCH = 32  # eval.batch_size: auto off a GPU (the tiny model; memory is not what limits the CPU)


def plan_batch(engine, rows: list[tuple[str, dict]], meta: dict, batch_size, max_new_tokens: int,
               reserve_new_tokens: int, reader: Reader | None = None) -> dict:
    """eval.batch_size: auto -> the batch for the first pass (KV reserved for ``reserve_new_tokens``) and
    for rows answered again up to ``max_new_tokens``, from the card's free memory (data_prep/memory.py); a
    number stands for both. The prompt length is the encoded largest screenshot's."""
    if batch_size != "auto":
        return {"batch_size": int(batch_size), "long_batch_size": int(batch_size), "auto": False}
    model = engine.model
    if model.device.type != "cuda" or not rows:
        return {"batch_size": CPU_AUTO_BATCH, "long_batch_size": CPU_AUTO_BATCH, "auto": True, "device": "cpu"}
    import torch
    from swift.infer_engine import InferRequest

    from data_prep.memory import batch_plan, card_limit_bytes

    from .batches import prepare_template

    area = lambda r: meta.get(r[0], {}).get("width", 0) * meta.get(r[0], {}).get("height", 0)  # noqa: E731
    sid, row = max(rows, key=area)
    enc = prepare_template(engine).encode(InferRequest(
        messages=(reader or Reader()).messages(row, meta.get(sid)), images=row["images"]))
    prompt = len(enc["input_ids"]) + PROMPT_SLACK
    free, total = torch.cuda.mem_get_info()
    card = min(card_limit_bytes() or total, total)
    free = min(free, card - torch.cuda.memory_reserved())
    tc = model.config.text_config.to_dict()
    nbytes = torch.finfo(model.dtype).bits // 8
    first = batch_plan(tc, prompt, min(reserve_new_tokens, max_new_tokens), free, card, nbytes)
    long = batch_plan(tc, prompt, max_new_tokens, free, card, nbytes)
    if not first["fits_one_row"]:
        raise SystemExit(f"eval: one row needs {gib(first['per_row_bytes'])} beside the model, and only "
                         f"{gib(first['usable_bytes'])} of this card is free after keeping 10% spare: use a larger "
                         "GPU, or lower image_max_token_num / eval.reserve_new_tokens")
    return {"batch_size": first["batch_size"], "long_batch_size": long["batch_size"], "auto": True,
            "first": first, "long": long}


def _worker(args, cfg, jobs, shard: int, num_shards: int, device: str) -> None:
    meta = sample_index(cfg)
    todo = []
    for data, out in jobs:
        out.mkdir(parents=True, exist_ok=True)
        rows = load_rows(data)
        done = read_predictions(out)
        mine = [r for i, r in enumerate(rows) if i % num_shards == shard and r[0] not in done]
        todo.append((mine, out))
    if not any(m for m, _ in todo):
        return
    ev = cfg["eval"]
    if device != "cpu":
        cap_card()
    fam = family(cfg)
    reader = Reader(fam, cfg["image_max_token_num"], get_profile(ev["profile"], fam.name),
                    long_press="long_click" in cfg["data"]["actions"])
    if fam.coords == "pixels" or reader.profile.prompt is not None:  # both need each row's sample record
        orphans = [sid for m, _ in todo for sid, _ in m if sid not in meta]
        if orphans:
            raise SystemExit(f"{len(orphans)} eval rows have no sample record under {cfg['paths']['data']}/samples "
                             f"(first: {orphans[0]}); model.family {fam.name} / eval.profile {reader.profile.name} "
                             "need its screen size and instruction: re-run `python -m data_prep build` and export")
    engine = build_engine(args.model, args.adapters, CPU_AUTO_BATCH if args.batch_size == "auto" else args.batch_size,
                          device, ev["overrides"], gqa_decode=ev["gqa_decode"], liger_kernel=ev["liger_kernel"],
                          gpu_preprocess=ev["gpu_preprocess"], model_type=fam.model_type,
                          template_type=fam.template, trust_remote_code=cfg["model"]["trust_remote_code"],
                          batched_windows=cfg["model"]["batched_window_attention"])
    plan = plan_batch(engine, [r for m, _ in todo for r in m], meta, args.batch_size, args.max_new_tokens,
                      ev["reserve_new_tokens"], reader)
    if plan["auto"]:
        first = plan.get("first")
        print(f"eval.batch_size auto: {plan['batch_size']} rows"
              + (f" ({gib(first['per_row_bytes'])} a row for {first['prompt_tokens']} prompt + {first['new_tokens']} "
                 f"answer tokens, {gib(first['free_bytes'])} free of {gib(first['card_bytes'])}); rows answering past "
                 f"{first['new_tokens']} tokens go again {plan['long_batch_size']} at a time" if first else " (CPU)"),
              flush=True)
    name = PRED_FILE if num_shards == 1 else f"predictions.shard{shard}.jsonl"
    for mine, out in todo:
        st = generate(engine, mine, out / name, plan["batch_size"], args.max_new_tokens, meta, workers=ev["workers"],
                      prefetch=ev["prefetch"], graphs=ev["cuda_graphs"] and engine.model.device.type == "cuda",
                      reserve_new_tokens=ev["reserve_new_tokens"], long_batch_size=plan["long_batch_size"],
                      reader=reader)
        plan["batch_size"], plan["long_batch_size"] = st["batch_sizes"][-1], min(plan["long_batch_size"], st["batch_sizes"][-1])
        write_json(out / f"eval_stats{'' if num_shards == 1 else f'.shard{shard}'}.json", {
            **st, "plan": plan, "peak_bytes": peak_memory()})


def cap_card() -> None:
    """PIGG_GPU_MEMORY_GB: this process uses at most that much of the card (a shared or smaller card)."""
    import torch

    from data_prep.memory import card_limit_bytes

    cap = card_limit_bytes()
    if cap is not None and torch.cuda.is_available():
        total = torch.cuda.mem_get_info()[1]
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))


def peak_memory() -> dict | None:
    """This process's peak CUDA memory: allocated by tensors, and reserved by the allocator (what the card
    must hold, beside the CUDA context)."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return {"allocated": int(torch.cuda.max_memory_allocated()), "reserved": int(torch.cuda.max_memory_reserved())}


def run(args) -> list[dict]:
    cfg = load_experiment(args.config, args.overrides)
    procenv.apply(cfg)  # the experiment's image budget (as in training) and remote-code switch
    args.batch_size = args.batch_size or cfg["eval"]["batch_size"]
    args.max_new_tokens = args.max_new_tokens or cfg["eval"]["max_new_tokens"]
    if len(args.data) != len(args.out):
        raise SystemExit("give one --out per --data")
    jobs = [(Path(d), Path(o)) for d, o in zip(args.data, args.out)]
    devices = [d for d in str(args.devices).split(",") if d]
    ev = cfg["eval"]
    try:
        get_profile(ev["profile"], cfg["model"]["family"])
    except ValueError as e:
        raise SystemExit(f"{cfg['config_path']}: {e}") from None
    bad = check_model_folder(args.model, family(cfg), "--model")
    if bad:
        raise SystemExit(f"{cfg['config_path']}: {bad}")
    if ev["workers"] > 0 and ev["prefetch"] > 0:
        raise SystemExit(f"{cfg['config_path']}: eval.workers={ev['workers']} and eval.prefetch={ev['prefetch']} both "
                         "encode the next batches (processes / threads): set one of them to 0")
    if ev["gpu_preprocess"] and ev["workers"] > 0 and any(d != "cpu" for d in devices):
        raise SystemExit(f"{cfg['config_path']}: eval.workers={ev['workers']} and eval.gpu_preprocess: true exclude "
                         "each other on a GPU (forked workers cannot use it): set eval.workers=0 or "
                         "eval.gpu_preprocess=false")
    if args.shard is not None:  # a worker started by the parent below
        _worker(args, cfg, jobs, args.shard, args.num_shards, devices[0])
        return []
    if len(devices) == 1:
        if devices[0] != "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[0]
        _worker(args, cfg, jobs, 0, 1, devices[0])
    else:
        procs = []
        for i, dev in enumerate(devices):
            cmd = [sys.executable, "-m", "eval.run", "--config", args.config, "--model", args.model,
                   "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
                   "--devices", dev, "--shard", str(i), "--num-shards", str(len(devices))]
            for ov in args.overrides:
                cmd += ["--set", ov]
            for a in args.adapters:
                cmd += ["--adapters", a]
            for d, o in jobs:
                cmd += ["--data", str(d), "--out", str(o)]
            procs.append(subprocess.Popen(cmd, env=procenv.child_env(cfg, devices=dev)))
        codes = [p.wait() for p in procs]
        if any(codes):
            raise SystemExit(f"eval workers failed with exit codes {codes}; re-run to resume")
    results = []
    for data, out in jobs:
        m = finalize(load_rows(data), out, cfg["eval"]["delta"], f"{args.model} on {data}")
        print(results_text(m, str(out)))
        results.append(m)
    return results


def batch_arg(text: str):
    if text == "auto":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: want auto or a positive int")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--model", required=True, help="model folder or swift full checkpoint")
    p.add_argument("--adapters", action="append", default=[], help="LoRA checkpoint (repeatable)")
    p.add_argument("--data", action="append", required=True, help="swift JSONL with a .ids side file")
    p.add_argument("--out", action="append", required=True, help="output folder, one per --data")
    p.add_argument("--batch-size", type=batch_arg, default=None, help="rows per generate call, or auto")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--devices", default="cpu", help="cpu, 0, or 0,1,2,3 (one process per GPU)")
    p.add_argument("--shard", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--num-shards", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    run(parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
