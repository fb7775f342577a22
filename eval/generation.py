"""The generation loop: screenshots and prompts in batches through the engine, each answer read into a
record as it comes, appended to the predictions file (a killed run loses at most the batch in flight).

Usage: ``generate(engine, rows, out / "predictions.jsonl", batch_size, max_new_tokens, meta, reader=Reader(...))``.
Speed (GPU; bench/RESULTS.md): batches of similar screens, prefetch threads or workers (eval/batches.py),
decode steps from a CUDA graph (eval/cuda_graphs.py); a CUDA out-of-memory error halves the batch.
"""
from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

from data_prep.family import DEFAULT, Family, get as get_family
from data_prep.patches import PATCHES
from data_prep.io import dumps
from data_prep.schema import from_grid, on_grid

from .elements import element_hit
from .parse import parse_point, parse_point_pigg, parse_referring
from .profiles import PROFILES, Profile, parse_answer, user_text


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
           "status": "no_point" if pred is None else "ok" if on_grid(pred) else "off_screen", "image": row["images"][-1]}
    if meta:
        rec.update(width=meta["width"], height=meta["height"], tree=meta.get("tree", ""))
        rec["gt"] = [meta["x"], meta["y"]]
        if pred:
            w, h = meta["width"], meta["height"]
            rec["element_hit"] = element_hit(meta.get("tree", ""), (meta["x_px"], meta["y_px"]),
                                             (from_grid(pred[0], w), from_grid(pred[1], h)))
    return rec


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
             "batch_sizes": [batch_size], "prompt_tokens": 0}
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
    own = PATCHES["swift_infer"].allowed()  # eval/batches.py's copy of swift's generate call, or swift's own infer

    def batches(todo):
        if own:
            return encoded_batches(engine, todo, batch_size, workers, pin_memory, prefetch)
        return ((list(range(i, min(i + batch_size, len(todo)))), None, None) for i in range(0, len(todo), batch_size))

    def answer(requests, batch, tis, request_config, graphed):
        if not own:
            return engine.infer(requests, request_config, use_tqdm=False)
        if batch is None:
            batch, tis = encode_now(engine, requests)
        return infer_encoded(engine, batch, tis, request_config, graphs=graphed, stats=stats["decode_steps"])

    bar = tqdm(total=len(order), desc=f"eval {pred_file.parent.name}", unit="sample", disable=not progress)
    t0, pos = time.time(), 0  # rows go in order: order[:pos] are written
    with open(pred_file, "a", encoding="utf-8") as f:
        while pos < len(order):
            base, oom = pos, None
            t = time.time()
            try:
                for chunk, batch, tis in batches(reqs[base:]):
                    stats["input_wait_s"] += time.time() - t
                    resps = answer([reqs[base + i] for i in chunk], batch, tis, cfg, graphs)
                    if isinstance(batch, dict) and "attention_mask" in batch:  # prompt tokens (in-context rows: more)
                        stats["prompt_tokens"] += int(batch["attention_mask"].sum())
                    late = [j for j, r in enumerate(resps) if long_cfg and r.choices[0].finish_reason == "length"]
                    for k in range(0, len(late), long_batch_size):  # rows still answering at the reserve
                        sub = late[k:k + long_batch_size]
                        for j, r in zip(sub, answer([reqs[base + chunk[j]] for j in sub], None, None, long_cfg, False)):
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
