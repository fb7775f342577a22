"""Batched greedy evaluation of a model (+ optional adapter) on swift-format JSONL, resumable: the CLI.

Usage: python -m eval.run --model PATH [--adapters CKPT] --data X.jsonl --out DIR
                          [--data Y.jsonl --out DIR2 ...] [--batch-size N] [--devices cpu|0|0,1]

Inference is ms-swift's TransformersEngine (no vLLM) with the training template (a checkpoint's
args.json is honoured) and the experiment's image-token budget, so the eval input of a sample
is its training encoding minus the answer. Each sample's answer is appended at once to
``DIR/predictions.jsonl`` (one line per sample id); a killed run resumes where it stopped and
never scores a sample twice. With several devices the rows are sharded (row i -> device i mod n),
one process per device, and merged in row order. Per job it writes ``out.json`` (per-sample
records), ``metrics.json`` and ``results.txt``.

The code: eval/engine.py (build the engine, the card's limits), eval/generation.py (the batched
generation loop), eval/job.py (resume, shards, scoring: ``evaluate`` is what other code calls);
this file only reads the command line and turns errors into exit codes.
"""
from __future__ import annotations

import argparse
import sys

from data_prep.config import ConfigError, add_config_args, load_experiment
from data_prep.fingertip import BuildError

from .engine import EvalError
from .job import evaluate


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
    a = parser().parse_args(argv)
    if len(a.data) != len(a.out):
        print("error: give one --out per --data", file=sys.stderr)
        return 2
    try:
        cfg = load_experiment(a.config, a.overrides)
        evaluate(cfg, a.model, a.adapters, list(zip(a.data, a.out)), [d for d in str(a.devices).split(",") if d],
                 a.batch_size, a.max_new_tokens, shard=a.shard, num_shards=a.num_shards)
    except (EvalError, ConfigError, BuildError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
