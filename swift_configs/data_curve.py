"""The data-efficiency curve's training: per test user, fold and n, the personalized run on n of the fold's training
samples, its hold-out evaluated (the same hold-out as the personalized stage).

Usage: python -m swift_configs.data_curve --config EXP --gpus 0,1 [--users 1 2] [--fold F] [--workers N]
                                          [--fresh] [--dry-run] [--force] [key=value ...]

n from ``controls.data_curve_n`` (docs/config.md); the subsets are nested seeded draws written beside the export
(data_prep/controls.py). Each (n, user, fold) is a job of the sweep runner (swift_configs/sweep.py: queue per GPU,
resumable from DONE markers and checkpoints, the kept training and eval processes), in
runs/<exp>/controls/data_curve/n_N/; per-n summaries as the personalized stage's. The curve itself (its points,
intervals and plot) is summarised by ``python -m eval.controls --data-curve``; its last point, all of a fold's
samples, is the personalized stage. Before it starts, the GPU-hours it costs are stated from the samples it trains
and the measured person-fold rates (bench/RESULTS.md).
"""
from __future__ import annotations

import sys

from data_prep.config import load_experiment
from data_prep.controls import curve_sizes, write_curve
from data_prep.export import swift_paths
from data_prep.rundir import curve_stage_dir, fold_dir
from data_prep.runtime.cli import parser, positive_int, run

from .generate import gpu_list, render
from .sweep import Job, Target, add_sweep_args, sweep, worker_slots

PIGG_FOLDS, PIGG_SMALLEST_TRAIN = 30, 178  # PIGG's 10 test users x 3 folds; user 1's 268 samples: 178 a fold
TOKENS_PER_SAMPLE = 1073  # a Qwen3-VL-8B training sample at the 980-token budget (bench/RESULTS.md)
RATES = {"H100": 7062, "H200": 9943}  # person LoRA tokens/s per median step, shipped template (bench/RESULTS.md)


def curve_job(cfg: dict, a, n: int, user: int, fold: int) -> Job:
    return Job(label=f"n {n} user {user} fold {fold}",
               render=lambda device: render(cfg, "person", user=user, fold=fold, gpus=device,
                                            overrides=a.swift_overrides, curve_n=n),
               targets=[Target(user, swift_paths(cfg, user, fold)["test"],
                               fold_dir(curve_stage_dir(cfg, n), user, fold))])


def cost_line(cfg: dict, counts: dict, epochs: float) -> str:
    """What the curve trains, in samples, tokens and GPU-hours at the measured rates."""
    samples = sum(c for per_user in counts.values() for per_fold in per_user.values() for c in per_fold.values())
    tokens = samples * epochs * TOKENS_PER_SAMPLE
    hours = ", ".join(f"{tokens / r / 3600:.2f} {card}-hours at {r:,} tokens/s" for card, r in RATES.items())
    pigg = sum(min(n, PIGG_SMALLEST_TRAIN) for n in counts) * PIGG_FOLDS * epochs * TOKENS_PER_SAMPLE
    at_pigg = ", ".join(f"{pigg / r / 3600:.2f} {card}-hours" for card, r in RATES.items())
    return (f"[curve] this run: {samples:,} training samples x {epochs:g} epochs = {tokens / 1e6:.1f} M tokens: {hours} "
            f"at 8B shape (person LoRA median step, bench/RESULTS.md), plus ~10 s of fixed cost a run; at PIGG's sizes "
            f"(10 users x 3 folds, n {sorted(counts)}): {pigg / 1e6:.1f} M tokens, {at_pigg}")


def main(argv=None) -> int:
    p = parser("python -m swift_configs.data_curve", __doc__)
    add_sweep_args(p)
    p.add_argument("--users", type=positive_int, nargs="+", help="test users (default: all of the experiment's)")
    a = p.parse_intermixed_args(argv)
    return run(lambda: curve(a))


def curve(a) -> int:
    cfg = load_experiment(a.config, a.overrides)
    sizes, users = cfg["controls"]["data_curve_n"], a.users or cfg["users"]["test"]
    folds = a.fold if a.fold is not None else list(range(cfg["folds"]["k"]))
    counts = curve_sizes(cfg, sizes) if a.dry_run else write_curve(cfg, sizes)  # a dry run writes nothing
    chosen = {n: {u: {f: counts[n][u][f] for f in folds} for u in users} for n in sizes}
    epochs = render(cfg, "person", user=users[0], fold=folds[0],  # the person run's recipe: the curve's own
                    overrides=a.swift_overrides).args.get("num_train_epochs", 3)
    print(cost_line(cfg, chosen, float(epochs)), flush=True)
    if a.dry_run:
        for n in sizes:
            print(f"# n {n}: {len(users) * len(folds)} runs (users {users}, folds {folds}) -> {curve_stage_dir(cfg, n)}")
        return 0
    gl = gpu_list(a.gpus)
    jobs = [curve_job(cfg, a, n, u, f) for n in sizes for u in users for f in folds]
    stages = [str(curve_stage_dir(cfg, n).relative_to(curve_stage_dir(cfg, n).parents[2])) for n in sizes]
    return sweep(cfg, jobs, a, gl, worker_slots(gl, a.workers), "curve", "runs", stages, cfg["users"]["test"])


if __name__ == "__main__":
    sys.exit(main())
