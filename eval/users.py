"""Evaluate one model on every test user's samples: the vanilla and checkpoint eval stages.

Usage: python -m eval.users --config EXP --model PATH [--adapters CKPT] [--name NAME]
                            [--users 1 2 3] [--devices 0,1] [--batch-size N] [--fresh]

Writes runs/<exp>/eval/<name>/user_U/{predictions.jsonl, out.json, metrics.json, results.txt},
user_U_summary.json and overall.json (unweighted mean over users, as PIGG reports). The model is
loaded once for all users. ``--name`` defaults to ``vanilla`` for the experiment's base model,
else to the run folder's name (runs/<exp>/global_full/checkpoint-N -> global_full). A re-run resumes; answers
made by another model, adapter or setting (a retrained checkpoint included) are refused, naming the difference
(--fresh answers again).
"""
from __future__ import annotations

import sys
from pathlib import Path

from data_prep.config import load_experiment
from data_prep.export import check_export, swift_paths
from data_prep.io import read_json, write_json
from data_prep.rundir import overall_file, resolve_checkpoint, run_dir, user_dir, user_summary
from data_prep.runtime.cli import batch_arg, parser, positive_int, run
from data_prep.summary import overall, summarize_folds

from .engine import EvalError
from .job import evaluate


def default_name(cfg: dict, model: str, adapters: list[str]) -> str:
    target = Path(adapters[-1] if adapters else model).resolve()
    if not adapters and target == Path(cfg["paths"]["model"]).resolve():
        return "vanilla"
    return target.parent.name if target.name.startswith("checkpoint-") else target.name


def evaluate_users(a) -> None:
    cfg = load_experiment(a.config, a.overrides)
    check_export(cfg)
    model = a.model or cfg["paths"]["model"]
    if a.checkpoint:
        ckpt = resolve_checkpoint(Path(a.checkpoint))
        if a.lora:
            a.adapters.append(str(ckpt))
        else:
            model = str(ckpt)
    if not Path(model, "config.json").exists():
        raise EvalError(f"{model} is not a model folder (no config.json)")
    name = a.name or default_name(cfg, model, a.adapters)
    users = a.users or cfg["users"]["test"]
    base = run_dir(cfg, "eval", name)
    outs = [user_dir(base, u) for u in users]
    if a.dry_run:
        print(f"[eval] would evaluate {model}" + (f" + adapters {a.adapters}" if a.adapters else "") +
              f" on devices {a.devices}:")
        for u, o in zip(users, outs):
            print(f"  user {u}: {swift_paths(cfg, u)['all']} -> {o}")
        return
    evaluate(cfg, model, a.adapters, [(swift_paths(cfg, u)["all"], o) for u, o in zip(users, outs)],
             [d for d in str(a.devices).split(",") if d], a.batch_size, a.max_new_tokens, fresh=a.fresh)
    sums = []
    for u, o in zip(users, outs):
        s = summarize_folds([read_json(Path(o) / "metrics.json")], u)
        write_json(user_summary(base, u), s)
        sums.append(s)
    o = overall(sums)
    write_json(overall_file(base), {"model": model, "adapters": a.adapters, **o})
    print(f"[eval] {name}: acc {o['avg_accuracy']:.4f}  mean L2 {o['avg_mean_l2']:.1f}  "
          f"median L2 {o['avg_median_l2']:.1f}  -> {base}/overall.json")


def main(argv=None) -> int:
    p = parser("python -m eval.users", __doc__)
    p.add_argument("--model", help="default: the experiment's base model (paths.model)")
    p.add_argument("--checkpoint", help="a trained checkpoint, or its run folder (runs/<exp>/global_full)")
    p.add_argument("--lora", action="store_true", help="--checkpoint is a LoRA adapter on --model")
    p.add_argument("--adapters", action="append", default=[])
    p.add_argument("--name")
    p.add_argument("--users", type=positive_int, nargs="+")
    p.add_argument("--devices", default="cpu")
    p.add_argument("--batch-size", type=batch_arg, help="rows per generate call, or auto")
    p.add_argument("--max-new-tokens", type=positive_int)
    p.add_argument("--fresh", action="store_true", help="drop the earlier answers of these users and answer again")
    p.add_argument("--dry-run", action="store_true", help="print what would be evaluated where; load nothing")
    a = p.parse_args(argv)
    return run(lambda: evaluate_users(a))


if __name__ == "__main__":
    sys.exit(main())
