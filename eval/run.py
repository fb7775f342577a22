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
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from data_prep.config import add_config_args, load_experiment
from data_prep.io import atomic_open, read_jsonl, write_json
from data_prep.schema import from_grid

from .elements import element_hit
from .metrics import score
from .parse import parse_point, parse_point_pigg, parse_referring

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


def make_record(sid: str, row: dict, text: str, meta: dict | None) -> dict:
    gt_text = row["messages"][-1]["content"]
    gt = parse_point(gt_text)
    pred = parse_point(text)
    rec = {"id": sid, "raw": text, "pred": list(pred) if pred else None,
           "pred_pigg": list(parse_point_pigg(text)), "gt": list(gt) if gt else None,
           "gt_ref": parse_referring(gt_text), "pred_ref": parse_referring(text),
           "status": "ok" if pred else "no_point", "image": row["images"][0]}
    if meta:
        rec.update(width=meta["width"], height=meta["height"], tree=meta.get("tree", ""))
        rec["gt"] = [meta["x"], meta["y"]]
        if pred:
            w, h = meta["width"], meta["height"]
            rec["element_hit"] = element_hit(meta.get("tree", ""), (meta["x_px"], meta["y_px"]),
                                             (from_grid(pred[0], w), from_grid(pred[1], h)))
    return rec


def build_engine(model: str, adapters: list[str], batch_size: int, device: str, overrides: dict | None = None,
                 gqa_decode: bool = False, liger_kernel: bool = False, gpu_preprocess: bool = False):
    """swift's TransformersEngine on one device; ``gqa_decode``: decode steps through eval/gqa_decode.py;
    ``liger_kernel``: Liger's Triton RMSNorm / RoPE / SwiGLU in the language model (GPU only);
    ``gpu_preprocess``: the image processor rescales, normalises and cuts patches on the GPU (GPU only)."""
    import torch
    from swift.infer_engine import TransformersEngine

    from . import gqa_decode as gqa

    if gqa_decode:
        gqa.install()
    else:
        gqa.uninstall()

    on_cpu = device == "cpu" or not torch.cuda.is_available()
    kwargs = dict(adapters=adapters or None, max_batch_size=batch_size,
                  torch_dtype=torch.float32 if on_cpu else torch.bfloat16,
                  device_map="cpu" if on_cpu else "cuda:0", **(overrides or {}))
    if not (Path(model) / "args.json").exists():
        kwargs["model_type"] = "qwen3_vl"  # a raw model folder; a swift checkpoint names its own
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
             pin_memory: bool | None = None, prefetch: int = 0, graphs: bool = False) -> dict:
    """Answer the rows not yet in pred_file, in batches, appending each batch as it finishes.
    ``workers`` processes or ``prefetch`` threads encode the next batches while this one generates
    (eval/batches.py); ``graphs``: decode steps from a CUDA graph over a static cache (eval/cuda_graphs.py).
    Returns {"samples", "seconds", "input_wait_s", "decode_steps"}: the time spent waiting for encoded
    batches, and with ``graphs`` the decode steps run eagerly / replayed."""
    from swift.infer_engine import InferRequest, RequestConfig
    from tqdm import tqdm

    from .batches import encoded_batches, infer_encoded

    if not rows:
        return {"samples": 0, "seconds": 0.0, "input_wait_s": 0.0, "decode_steps": {}}
    cfg = RequestConfig(max_tokens=max_new_tokens, temperature=0, **(extra or {}))
    # similar sizes together: less padding (screens of one phone share a token count)
    order = sorted(rows, key=lambda r: (meta.get(r[0], {}).get("width", 0) * meta.get(r[0], {}).get("height", 0)))
    reqs = [InferRequest(messages=[m for m in row["messages"] if m["role"] != "assistant"], images=row["images"])
            for _, row in order]
    bar = tqdm(total=len(order), desc=f"eval {pred_file.parent.name}", unit="sample", disable=not progress)
    t0, n, wait, steps = time.time(), 0, 0.0, {}
    with open(pred_file, "a", encoding="utf-8") as f:
        t = time.time()
        for chunk, batch, tis in encoded_batches(engine, reqs, batch_size, workers, pin_memory, prefetch):
            wait += time.time() - t
            resps = infer_encoded(engine, batch, tis, cfg, graphs=graphs, stats=steps)
            for i, resp in zip(chunk, resps):
                sid, row = order[i]
                text = resp.choices[0].message.content or ""
                f.write(json.dumps(make_record(sid, row, text, meta.get(sid)), ensure_ascii=False) + "\n")
            f.flush()
            n += len(chunk)
            bar.update(len(chunk))
            bar.set_postfix(samples_per_s=f"{n / (time.time() - t0):.2f}", input_wait=f"{wait / (time.time() - t0):.0%}")
            t = time.time()
    bar.close()
    return {"samples": n, "seconds": time.time() - t0, "input_wait_s": wait, "decode_steps": steps}


def results_text(m: dict, title: str) -> str:
    p, c, cp = m["pigg"], m["corrected"], m["corrected_parsed"]
    return (f"{title}\n"
            f"  samples: {m['n']}   parse failures: {m['parse_failures']} ({m['parse_fail_rate']:.2%})\n"
            f"  PIGG-compatible   acc@{m['delta']:g}: {p['accuracy']:.4f}  mean L2: {p['mean_l2']:.2f}  "
            f"median L2: {p['median_l2']:.2f}\n"
            f"  corrected (all)   acc@{m['delta']:g}: {c['accuracy']:.4f}  mean L2: {c['mean_l2']:.2f}  "
            f"median L2: {c['median_l2']:.2f}\n"
            f"  corrected (parsed) acc: {cp['accuracy']:.4f}  mean L2: {cp['mean_l2']:.2f}  "
            f"median L2: {cp['median_l2']:.2f}\n"
            f"  pixels (parsed)   mean L2: {m['mean_l2_px']:.1f} px  median L2: {m['median_l2_px']:.1f} px\n"
            f"  element hit rate: {m['element_hit_rate']:.4f} (n={m['element_hit_n']})\n")


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
    engine = build_engine(args.model, args.adapters, args.batch_size, device, ev["overrides"],
                          gqa_decode=ev["gqa_decode"], liger_kernel=ev["liger_kernel"],
                          gpu_preprocess=ev["gpu_preprocess"])
    name = PRED_FILE if num_shards == 1 else f"predictions.shard{shard}.jsonl"
    for mine, out in todo:
        generate(engine, mine, out / name, args.batch_size, args.max_new_tokens, meta, workers=ev["workers"],
                 prefetch=ev["prefetch"], graphs=ev["cuda_graphs"] and engine.model.device.type == "cuda")


def run(args) -> list[dict]:
    cfg = load_experiment(args.config, args.overrides)
    os.environ.setdefault("IMAGE_MAX_TOKEN_NUM", str(cfg["image_max_token_num"]))
    args.batch_size = args.batch_size or cfg["eval"]["batch_size"]
    args.max_new_tokens = args.max_new_tokens or cfg["eval"]["max_new_tokens"]
    if len(args.data) != len(args.out):
        raise SystemExit("give one --out per --data")
    jobs = [(Path(d), Path(o)) for d, o in zip(args.data, args.out)]
    devices = [d for d in str(args.devices).split(",") if d]
    ev = cfg["eval"]
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
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if dev == "cpu" else dev}
            procs.append(subprocess.Popen(cmd, env=env))
        codes = [p.wait() for p in procs]
        if any(codes):
            raise SystemExit(f"eval workers failed with exit codes {codes}; re-run to resume")
    results = []
    for data, out in jobs:
        m = finalize(load_rows(data), out, cfg["eval"]["delta"], f"{args.model} on {data}")
        print(results_text(m, str(out)))
        results.append(m)
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--model", required=True, help="model folder or swift full checkpoint")
    p.add_argument("--adapters", action="append", default=[], help="LoRA checkpoint (repeatable)")
    p.add_argument("--data", action="append", required=True, help="swift JSONL with a .ids side file")
    p.add_argument("--out", action="append", required=True, help="output folder, one per --data")
    p.add_argument("--batch-size", type=int, default=None)
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
