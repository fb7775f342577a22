"""An eval job: rows of swift JSONL answered by a model (+ adapters), resumable from its predictions,
sharded over devices, then scored: out.json (records in row order), metrics.json, results.txt.

Each output folder holds ``provenance.json``: what its answers come from (the model's and adapters' identities,
model family, eval profile, prompt, image budget, decoding settings, the data file's and the build's hashes;
data_prep/provenance.py), written before the first answer. Answers are reused only where it matches; a folder made
by anything else is refused before a model loads, naming what differs and the ways out (``fresh``, another
folder). One process per output folder (data_prep/runtime/lock.py). Prediction lines that are torn (a kill
mid-write) or malformed are dropped, counted and answered again; they are never scored.

Usage: ``evaluate(cfg, model, adapters, [(data, out), ...], devices=["0"])`` -> [metrics per job].
With several devices, one child process per device (``python -m eval.run --shard i``; its environment from
data_prep/runtime/procenv.py) takes rows i, i+n, ...; the parent merges them in row order. Raises EvalError
(eval/engine.py), FileNotFoundError, ValueError; only the CLI (eval/run.py) turns them into exit codes.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from data_prep.runtime import procenv
from data_prep.runtime.attention import flash_problems
from data_prep.family import check_model_folder, family
from data_prep.io import atomic_open, read_json, read_jsonl, write_json
from data_prep.runtime.memory import gib
from data_prep.provenance import ProvenanceError, check_same, eval_record, fingerprint, model_identity
from data_prep.patches import PATCHES
from data_prep.rundir import PROVENANCE, clear
from data_prep.runtime.lock import FolderLock

from .engine import CPU_AUTO_BATCH, Engines, EvalError, build_engine, cap_card, check_devices, peak_memory, plan_batch
from .generation import Reader, generate
from .metrics import score
from .profiles import get as get_profile


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


def valid_record(rec) -> bool:
    """A prediction line the scorer can trust: an id, the answer text, PIGG's point, the ground truth and, where
    parsed, the point on the grid."""
    def point(v):
        return isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                           for x in v)
    return (isinstance(rec, dict) and isinstance(rec.get("id"), str) and isinstance(rec.get("raw"), str)
            and point(rec.get("pred_pigg")) and point(rec.get("gt")) and (rec.get("pred") is None or point(rec["pred"])))


def read_predictions(out: Path) -> dict[str, dict]:
    """Every trusted prediction under ``out`` (all shards). A torn last line (a kill mid-write, even inside a UTF-8
    character) and malformed records are dropped, counted on stderr and left for the run to answer again; the file
    is rewritten with the good lines only, so appends stay whole lines."""
    done: dict[str, dict] = {}
    for f in sorted(out.glob("predictions*.jsonl")):
        good, torn, bad = [], 0, 0
        for raw in f.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                torn += 1
                continue
            if not valid_record(rec):
                bad += 1
                continue
            good.append(raw)
            done.setdefault(rec["id"], rec)
        if torn or bad:
            print(f"warning: {f}: {torn} torn and {bad} malformed line(s) dropped; their samples are answered again",
                  file=sys.stderr, flush=True)
            with atomic_open(f, "wb") as fh:
                fh.write(b"".join(g + b"\n" for g in good))
    return done


def sample_index(cfg: dict) -> dict[str, dict]:
    from data_prep.store import load_samples

    return {s.id: s.to_dict() for ss in load_samples(cfg["paths"]["data"]).values() for s in ss}


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


def claim(out: Path, record: dict, fresh: bool) -> None:
    """Make ``out`` this job's: with ``fresh`` empty it first; refuse it (ProvenanceError, before any model loads)
    where it holds answers of something else, or answers without a provenance record; then record this job."""
    if fresh:
        clear(out)
    ways = (f"ways out: --fresh (drop its answers and evaluate again) or another output folder than {out}")
    has_answers = any(out.glob("predictions*.jsonl")) or (out / "out.json").exists()
    if has_answers and not (out / PROVENANCE).exists():
        raise ProvenanceError(f"{out}: holds answers but no {PROVENANCE} (what made them is unknown); {ways}")
    check_same(out / PROVENANCE, record, "this eval folder", ways)
    write_json(out / PROVENANCE, record)


def finalize(rows: list[tuple[str, dict]], out: Path, delta: float, title: str) -> dict:
    """Score a finished job: out.json in row order, metrics.json, results.txt."""
    done = read_predictions(out)
    missing = [sid for sid, _ in rows if sid not in done]
    if missing:
        raise EvalError(f"{out}: {len(missing)} samples have no prediction (first: {missing[0]})")
    records = [done[sid] for sid, _ in rows]
    m = score(records, delta)
    prov = read_json(out / PROVENANCE) if (out / PROVENANCE).exists() else {}
    m["provenance"] = {"record": fingerprint(prov), "build": prov.get("build"), "data": (prov.get("data") or {}).get("sha256")}
    write_json(out / "out.json", records)
    write_json(out / "metrics.json", m)
    with atomic_open(out / "results.txt") as f:
        f.write(results_text(m, title))
    return m


def _worker(cfg: dict, model: str, adapters: list[str], batch_size, max_new_tokens: int, jobs: list[tuple[Path, Path]],
            shard: int, num_shards: int, device: str, engines: Engines | None = None) -> None:
    """Answer this shard's rows of every job not yet in its predictions, with one model load (``engines``: the
    process's kept engines, eval/serve.py; None: built here and gone with the process)."""
    meta = engines.sample_index(cfg, sample_index) if engines else sample_index(cfg)
    todo = []
    for data, out in jobs:
        out.mkdir(parents=True, exist_ok=True)
        rows = load_rows(data)
        done = read_predictions(out)
        mine = [r for i, r in enumerate(rows) if i % num_shards == shard and r[0] not in done]
        todo.append((mine, out))
    if not any(m for m, _ in todo):
        return  # all answered: nothing loads (a resumed run's finished stages cost no torch/swift start-up)
    procenv.apply(cfg)  # the experiment's image budget (as in training) and remote-code switch, before a model loads
    ev = cfg["eval"]
    if device != "cpu":
        cap_card()
    fam = family(cfg)
    reader = Reader(fam, cfg["image_max_token_num"], get_profile(ev["profile"], fam.name),
                    long_press="long_click" in cfg["data"]["actions"])
    if fam.coords == "pixels" or reader.profile.prompt is not None:  # both need each row's sample record
        orphans = [sid for m, _ in todo for sid, _ in m if sid not in meta]
        if orphans:
            raise EvalError(f"{len(orphans)} eval rows have no sample record under {cfg['paths']['data']}/samples "
                            f"(first: {orphans[0]}); model.family {fam.name} / eval.profile {reader.profile.name} "
                            "need its screen size and instruction: re-run `python -m data_prep build` and export")
    t = time.time()
    switches = dict(overrides=ev["overrides"], gqa_decode=ev["gqa_decode"], liger_kernel=ev["liger_kernel"],
                    gpu_preprocess=ev["gpu_preprocess"], model_type=fam.model_type, template_type=fam.template,
                    trust_remote_code=cfg["model"]["trust_remote_code"],
                    batched_windows=cfg["model"]["batched_window_attention"])
    rows = CPU_AUTO_BATCH if batch_size == "auto" else batch_size
    engine = (engines.get(model, adapters, rows, device, **switches) if engines
              else build_engine(model, adapters, rows, device, **switches))
    load_s = round(time.time() - t, 2)
    plan = plan_batch(engine, [r for m, _ in todo for r in m], meta, batch_size, max_new_tokens,
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
        st = generate(engine, mine, out / name, plan["batch_size"], max_new_tokens, meta, workers=ev["workers"],
                      prefetch=ev["prefetch"], graphs=ev["cuda_graphs"] and engine.model.device.type == "cuda"
                      and PATCHES["cuda_graphs"].allowed(),
                      reserve_new_tokens=ev["reserve_new_tokens"], long_batch_size=plan["long_batch_size"],
                      reader=reader)
        plan["batch_size"], plan["long_batch_size"] = st["batch_sizes"][-1], min(plan["long_batch_size"], st["batch_sizes"][-1])
        write_json(out / f"eval_stats{'' if num_shards == 1 else f'.shard{shard}'}.json", {
            **st, "plan": plan, "peak_bytes": peak_memory(), "load_s": load_s,
            "engine": engines.last if engines else "built"})


def check(cfg: dict, model: str, devices: list[str]) -> None:
    """What the experiment asks of eval, checked before any model loads."""
    ev = cfg["eval"]
    try:
        get_profile(ev["profile"], cfg["model"]["family"])
    except ValueError as e:
        raise EvalError(f"{cfg['config_path']}: {e}") from None
    bad = check_model_folder(model, family(cfg), "--model")
    if bad:
        raise EvalError(f"{cfg['config_path']}: {bad}")
    if ev["workers"] > 0 and ev["prefetch"] > 0:
        raise EvalError(f"{cfg['config_path']}: eval.workers={ev['workers']} and eval.prefetch={ev['prefetch']} both "
                        "encode the next batches (processes / threads): set one of them to 0")
    flash = flash_problems(ev["overrides"], f"{cfg['config_path']}: eval.overrides")
    if flash:
        raise EvalError("; ".join(flash))
    if ev["gpu_preprocess"] and ev["workers"] > 0 and any(d != "cpu" for d in devices):
        raise EvalError(f"{cfg['config_path']}: eval.workers={ev['workers']} and eval.gpu_preprocess: true exclude "
                        "each other on a GPU (forked workers cannot use it): set eval.workers=0 or "
                        "eval.gpu_preprocess=false")
    check_devices(devices)


def evaluate(cfg: dict, model: str, adapters: list[str], jobs: list[tuple[Path, Path]], devices: list[str],
             batch_size=None, max_new_tokens: int | None = None, shard: int | None = None,
             num_shards: int = 1, quiet: bool = False, engines: Engines | None = None, fresh: bool = False) -> list[dict]:
    """Answer and score every (data, out) job (module docstring); [metrics] in job order ([] for a shard child).
    ``batch_size`` / ``max_new_tokens``: None takes the experiment's eval.batch_size / eval.max_new_tokens;
    ``engines``: engines kept between calls on one device (eval/serve.py); ``fresh``: each output folder's earlier
    answers dropped first."""
    batch_size = cfg["eval"]["batch_size"] if batch_size is None else batch_size
    max_new_tokens = cfg["eval"]["max_new_tokens"] if max_new_tokens is None else max_new_tokens
    if batch_size != "auto" and batch_size < 1 or max_new_tokens < 1:
        raise EvalError(f"batch size {batch_size!r} / max new tokens {max_new_tokens!r}: want positive numbers")
    jobs = [(Path(d), Path(o)) for d, o in jobs]
    check(cfg, model, devices)
    if shard is not None:  # a child started below, under its parent's locks and records
        _worker(cfg, model, adapters, batch_size, max_new_tokens, jobs, shard, num_shards, devices[0])
        return []
    with contextlib.ExitStack() as held:
        for _, out in jobs:
            held.enter_context(FolderLock(out, "eval folder"))
        ids = {"model": model_identity(model), "adapters": [model_identity(a) for a in adapters]}
        for data, out in jobs:
            if not data.is_file():
                raise FileNotFoundError(f"{data}: no such eval file (run `python -m data_prep export`)")
            claim(out, eval_record(cfg, ids["model"], ids["adapters"], data, max_new_tokens), fresh)
        return _answer_and_score(cfg, model, adapters, jobs, devices, batch_size, max_new_tokens, quiet, engines)


def _answer_and_score(cfg, model, adapters, jobs, devices, batch_size, max_new_tokens, quiet, engines) -> list[dict]:
    """The rows not yet answered answered (here, or one child process per device), then every job scored."""
    if len(devices) == 1:
        if devices[0] != "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[0]
        _worker(cfg, model, adapters, batch_size, max_new_tokens, jobs, 0, 1, devices[0], engines)
    else:
        children = [procenv.eval_child(cfg, model, adapters, jobs, dev, batch_size=batch_size,
                                       max_new_tokens=max_new_tokens, shard=i, num_shards=len(devices))
                    for i, dev in enumerate(devices)]
        procs = [subprocess.Popen(cmd, env=env) for cmd, env in children]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise EvalError(f"eval workers failed with exit codes {codes}; re-run to resume")
    results = []
    for data, out in jobs:
        m = finalize(load_rows(data), out, cfg["eval"]["delta"], f"{model} on {data}")
        if not quiet:
            print(results_text(m, str(out)))
        results.append(m)
    return results
