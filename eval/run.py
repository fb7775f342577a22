"""Batched greedy evaluation of a model (+ optional adapter) on swift-format JSONL, resumable: the CLI.

Usage: python -m eval.run --model PATH [--adapters CKPT] --data X.jsonl --out DIR
                          [--data Y.jsonl --out DIR2 ...] [--batch-size N] [--devices cpu|0|0,1] [--fresh]

Inference is ms-swift's TransformersEngine (no vLLM) with the training template (a checkpoint's
args.json is honoured) and the experiment's image-token budget, so the eval input of a sample
is its training encoding minus the answer. Each sample's answer is appended at once to
``DIR/predictions.jsonl`` (one line per sample id); a killed run resumes where it stopped and
never scores a sample twice. With several devices the rows are sharded (row i -> device i mod n),
one process per device, and merged in row order. Per job it writes ``out.json`` (per-sample
records), ``metrics.json`` and ``results.txt``; ``provenance.json`` says what made the answers, and a folder
holding another model's (or setting's) answers is refused before any model loads (``--fresh`` answers again).

The code: eval/engine.py (build the engine, the card's limits), eval/generation.py (the batched
generation loop), eval/job.py (resume, shards, scoring: ``evaluate`` is what other code calls);
this file only reads the command line and turns errors into exit codes.
"""
from __future__ import annotations

import argparse
import sys

from data_prep.config import load_experiment
from data_prep.runtime.cli import batch_arg, parser as cli_parser, positive_int, run

from .job import evaluate


def parser():
    p = cli_parser("python -m eval.run", __doc__)
    p.add_argument("--model", required=True, help="model folder or swift full checkpoint")
    p.add_argument("--adapters", action="append", default=[], help="LoRA checkpoint (repeatable)")
    p.add_argument("--data", action="append", required=True, help="swift JSONL with a .ids side file")
    p.add_argument("--out", action="append", required=True, help="output folder, one per --data")
    p.add_argument("--batch-size", type=batch_arg, default=None, help="rows per generate call, or auto")
    p.add_argument("--max-new-tokens", type=positive_int, default=None)
    p.add_argument("--devices", default="cpu", help="cpu, 0, or 0,1,2,3 (one process per GPU)")
    p.add_argument("--fresh", action="store_true", help="drop the output folders' earlier answers and answer again")
    p.add_argument("--shard", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--num-shards", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if len(a.data) != len(a.out):
        print("error: give one --out per --data", file=sys.stderr)
        return 2

    def work():
        evaluate(load_experiment(a.config, a.overrides), a.model, a.adapters, list(zip(a.data, a.out)),
                 [d for d in str(a.devices).split(",") if d], a.batch_size, a.max_new_tokens,
                 shard=a.shard, num_shards=a.num_shards, fresh=a.fresh)

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
