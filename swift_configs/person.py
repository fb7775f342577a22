"""Personalized K-fold: per test user and fold, train on the other folds, evaluate the hold-out.

Usage: python -m swift_configs.person --config EXP --gpus 0,1 [--lora|--full] [--users 1 2 3]
                                      [--fold F] [--workers N] [--fresh] [key=value ...]

Each fold: render runs/<exp>/person_lora/user_U/fold_F/generated/swift.yaml (base = the global full
checkpoint, PIGG's design; train.person_base changes it), `swift sft`, then `python -m eval.run`
on the hold-out fold into fold_F/eval/ (out.json, results.txt, metrics.json), then DONE. Folds
are a queue served by one worker per GPU (`--workers N` CPU processes on a CPU box). A re-run
skips DONE folds, resumes a killed fold from its last checkpoint and a killed eval from its
predictions. When all folds of a user are DONE, user_U_summary.json (mean/std over folds) is
written; at the end overall.json (unweighted mean over users). The runner: swift_configs/sweep.py;
this file says only which runs (one per user and fold) and which hold-out each evaluates.
"""
from __future__ import annotations

import sys

from data_prep.config import ConfigError, load_experiment
from data_prep.runtime.cli import nonneg_int, parser, positive_int, run
from data_prep.export import swift_paths
from data_prep.rundir import fold_dir, run_dir

from .generate import gpu_list, render
from .sweep import Job, Target, add_sweep_args, sweep, worker_slots


def fold_job(cfg: dict, a, user: int, fold: int) -> Job:
    """User ``user``'s fold ``fold``: train on the other folds, evaluate the hold-out in the same folder."""
    folder = fold_dir(run_dir(cfg, cfg["train"]["person_template"]), user, fold)
    return Job(label=f"user {user} fold {fold}",
               render=lambda device: render(cfg, "person", user=user, fold=fold, gpus=device,
                                            overrides=a.swift_overrides),
               targets=[Target(user, swift_paths(cfg, user, fold)["test"], folder)])


def main(argv=None) -> int:
    p = parser("python -m swift_configs.person", __doc__)
    add_sweep_args(p, "folds")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lora", action="store_true", help="personalized LoRA (template person_lora, default)")
    g.add_argument("--full", action="store_true", help="personalized full fine-tuning (template person_full)")
    g.add_argument("--qlora", action="store_true", help="personalized QLoRA, 4-bit base (template person_qlora)")
    p.add_argument("--users", type=positive_int, nargs="+", help="test users (default: all of the experiment's)")
    p.add_argument("--array-task", type=nonneg_int, default=None,
                   help="run only the i-th (user, fold) pair, users x folds in order (Slurm job arrays)")
    a = p.parse_intermixed_args(argv)
    a.overrides += [f"train.person_template=person_{k}" for k in ("lora", "full", "qlora") if getattr(a, k)]
    return run(lambda: person(a))


def person(a) -> int:
    cfg = load_experiment(a.config, a.overrides)
    users = a.users or cfg["users"]["test"]
    folds = a.fold if a.fold is not None else list(range(cfg["folds"]["k"]))
    if a.array_task is not None:
        pairs = [(u, f) for u in users for f in folds]
        if not 0 <= a.array_task < len(pairs):
            raise ConfigError(f"--array-task {a.array_task}: want 0..{len(pairs) - 1} ({len(users)} users x {len(folds)} folds)")
        users, folds = [pairs[a.array_task][0]], [pairs[a.array_task][1]]
    gl = gpu_list(a.gpus)
    jobs = [fold_job(cfg, a, u, f) for u in users for f in folds]
    # summaries of every test user whose folds are DONE; overall.json only once all of them are
    return sweep(cfg, jobs, a, gl, worker_slots(gl, a.workers), "person", "folds",
                 [cfg["train"]["person_template"]], cfg["users"]["test"])


if __name__ == "__main__":
    sys.exit(main())
