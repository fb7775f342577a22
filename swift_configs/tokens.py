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
"""
from __future__ import annotations

import argparse
import sys
import time

from data_prep.config import ConfigError, add_config_args, load_experiment, run_dir
from data_prep.export import swift_dir, token_paths
from data_prep.io import read_json
from data_prep.rundir import write_marker
from data_prep.schema import USER_TAGS

from .generate import gpu_list, render
from .person import eval_command, run_eval, run_queue, worker_slots, write_summaries
from .train import execute, preflight, prepare, trained_checkpoint


def run_name(kind: str) -> str:
    return f"user_tokens_{kind}"


def run_one(cfg: dict, a, kind: str, fold: int, device: str, env: dict) -> dict:
    """Train fold ``fold`` of ``kind`` and evaluate every test user's hold-out on it; {user: metrics}."""
    run = render(cfg, "tokens", fold=fold, kind=kind, gpus=device, overrides=a.swift_overrides)
    users = cfg["users"]["test"]
    user_dir = {u: run_dir(cfg, run_name(kind), f"user_{u}", f"fold_{fold}") for u in users}
    if (run.run_dir / "DONE").exists():
        return {u: read_json(user_dir[u] / "eval" / "metrics.json") for u in users}
    todo = prepare(run)
    if todo is not None:
        print(f"[tokens] {kind} fold {fold}: training on {device}", flush=True)
        execute(todo, extra_env=env, echo=False)
    ckpt = trained_checkpoint(run.run_dir)
    lora = run.args.get("tuner_type") != "full"
    model, adapters = (run.args["model"], [str(ckpt)]) if lora else (str(ckpt), [])
    exported = swift_dir(cfg)
    todo_users = [u for u in users if not (user_dir[u] / "DONE").exists()]
    if todo_users:
        cmd = eval_command(cfg["config_path"], a.overrides, model, adapters,
                           token_paths(exported, kind, fold, todo_users[0])["test"], user_dir[todo_users[0]] / "eval",
                           device)
        for u in todo_users[1:]:
            cmd += ["--data", str(token_paths(exported, kind, fold, u)["test"]), "--out", str(user_dir[u] / "eval")]
        print(f"[tokens] {kind} fold {fold}: evaluating users {todo_users} on {device}", flush=True)
        run_eval(cmd, env, device, run.run_dir / "eval.log", f"{kind} fold {fold}")
    out = {}
    for u in users:
        m = out[u] = read_json(user_dir[u] / "eval" / "metrics.json")
        if not (user_dir[u] / "DONE").exists():
            write_marker(user_dir[u] / "DONE", checkpoint=ckpt, accuracy=m["pigg"]["accuracy"],
                         median_l2=m["pigg"]["median_l2"])
    write_marker(run.run_dir / "DONE", checkpoint=ckpt)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m swift_configs.tokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--gpus", default="cpu")
    p.add_argument("--kind", nargs="+", choices=sorted(USER_TAGS), default=["special", "text", "pooled"],
                   help="tag kinds to run (default all three; pooled is the control)")
    p.add_argument("--fold", type=int, nargs="+", help="only these folds (default all K)")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: one per GPU; 1 on CPU)")
    p.add_argument("--fresh", action="store_true", help="delete the selected runs' folders first")
    p.add_argument("--dry-run", action="store_true", help="print each run's command and the memory estimate")
    p.add_argument("--force", action="store_true", help="start even if the memory preflight says it will not fit")
    p.add_argument("swift_overrides", nargs="*", metavar="key=value")
    a = p.parse_intermixed_args(argv)
    try:
        cfg = load_experiment(a.config, a.overrides)
        folds = a.fold if a.fold is not None else list(range(cfg["folds"]["k"]))
        gl = gpu_list(a.gpus)
        slots = worker_slots(gl, a.workers)
        runs = {(k, f): render(cfg, "tokens", fold=f, kind=k, gpus=slots[0], overrides=a.swift_overrides)
                for k in a.kind for f in folds}
        pending = [r for r in runs.values() if not (r.run_dir / "DONE").exists()]
        if pending and gl:
            preflight(pending[0], cfg, sorted(set(slots)), force=a.force or a.dry_run, n_gpus=1)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        for (k, f), r in runs.items():
            print(f"# {k} fold {f}\n{r.shell()}")
        return 0
    if a.fresh:
        import shutil

        for k in a.kind:
            for f in folds:
                shutil.rmtree(runs[(k, f)].run_dir, ignore_errors=True)
                for u in cfg["users"]["test"]:
                    shutil.rmtree(run_dir(cfg, run_name(k), f"user_{u}", f"fold_{f}"), ignore_errors=True)
    todo = [(k, f) for k in a.kind for f in folds if not (runs[(k, f)].run_dir / "DONE").exists()]
    print(f"[tokens] {len(runs) - len(todo)} runs already done, {len(todo)} to run on {slots}", flush=True)
    t0 = time.time()

    def do(job, device, env):
        k, f = job
        ms = run_one(cfg, a, k, f, device, env)
        accs = "  ".join(f"user {u} {m['pigg']['accuracy']:.3f}" for u, m in ms.items())
        return f"[tokens] {k} fold {f}: acc {accs}  ({time.time() - t0:.0f}s)"

    failures = run_queue(todo, slots, bool(gl), do, "tokens")
    for k in a.kind:
        o = write_summaries(cfg, run_name(k), cfg["users"]["test"])
        if o:
            print(f"[tokens] {k}: overall over {o['n_users']} users: acc {o['avg_accuracy']:.4f}  mean L2 "
                  f"{o['avg_mean_l2']:.1f}  median L2 {o['avg_median_l2']:.1f}  -> "
                  f"{run_dir(cfg, run_name(k))}/overall.json", flush=True)
    if failures:
        print(f"[tokens] {len(failures)} runs failed: {[job for job, _ in failures]}; re-run to resume",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
