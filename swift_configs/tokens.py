"""One model for all test users: the user-token method and its pooled control, K runs instead of users x K.

Usage: python -m swift_configs.tokens --config EXP --gpus 0,1 [--kind special text pooled] [--fold F]
                                      [--workers N] [--fresh] [--dry-run] [--force] [key=value ...]

For each fold f and tag kind: one `swift sft` (the person template, LoRA by default, on top of the
global checkpoint like the per-user runs) on the union of every test user's PIGG fold-f training
samples, each prompt starting with its user's tag (data_prep.schema.USER_TAGS: ``special`` = a new
token per user, <user_3>, whose embedding row is trained (modules_to_save: embed_tokens); ``text`` =
"User 3: " in existing tokens; ``pooled`` = no tag, the control that isolates what the tag adds); then
each user's fold-f hold-out, tagged the same way, is evaluated with that one adapter. Folders mirror the
per-user method, so summaries and the report read them alike:
runs/<exp>/user_tokens_<kind>/fold_F/ (training: generated/swift.yaml, checkpoints, TRAINED, DONE),
runs/<exp>/user_tokens_<kind>/user_U/fold_F/{eval/, DONE}, user_U_summary.json, overall.json.
Runs are a queue, one per GPU; a re-run skips DONE runs and resumes a killed one from its checkpoint.
The runner: swift_configs/sweep.py; this file says only which runs (one per kind and fold) and which
hold-outs each evaluates (every test user's, tagged).
"""
from __future__ import annotations

import sys

from data_prep.config import load_experiment
from data_prep.runtime.cli import parser, run
from data_prep.export import token_paths
from data_prep.rundir import fold_dir, run_dir, tokens_stage
from data_prep.schema import USER_TAGS

from .generate import gpu_list, render
from .sweep import Job, Target, add_sweep_args, sweep, worker_slots


def tokens_job(cfg: dict, a, kind: str, fold: int) -> Job:
    """One model for every test user (tag ``kind``) trained on fold ``fold``; each user's hold-out evaluated."""
    stage = run_dir(cfg, tokens_stage(kind))
    return Job(label=f"{kind} fold {fold}",
               render=lambda device: render(cfg, "tokens", fold=fold, kind=kind, gpus=device,
                                            overrides=a.swift_overrides),
               targets=[Target(u, token_paths(cfg, kind, fold, u)["test"], fold_dir(stage, u, fold))
                        for u in cfg["users"]["test"]])


def main(argv=None) -> int:
    p = parser("python -m swift_configs.tokens", __doc__)
    add_sweep_args(p)
    p.add_argument("--kind", nargs="+", choices=sorted(USER_TAGS), default=["special", "text", "pooled"],
                   help="tag kinds to run (default all three; pooled is the control)")
    a = p.parse_intermixed_args(argv)

    def work() -> int:
        cfg = load_experiment(a.config, a.overrides)
        folds = a.fold if a.fold is not None else list(range(cfg["folds"]["k"]))
        gl = gpu_list(a.gpus)
        jobs = [tokens_job(cfg, a, k, f) for k in a.kind for f in folds]
        return sweep(cfg, jobs, a, gl, worker_slots(gl, a.workers), "tokens", "runs",
                     [tokens_stage(k) for k in a.kind], cfg["users"]["test"])

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
