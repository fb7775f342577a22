"""Personalized K-fold: per test user and fold, train on the other folds, evaluate the hold-out.

Usage: python -m swift_configs.person --config EXP --gpus 0,1 [--lora|--full] [--users 1 2 3]
                                      [--fold F] [--workers N] [--fresh] [key=value ...]

Each fold: render runs/<exp>/person_lora/user_U/fold_F/generated/swift.yaml (base = the global full
checkpoint, PIGG's design; train.person_base changes it), `swift sft`, then `python -m eval.run`
on the hold-out fold into fold_F/eval/ (out.json, results.txt, metrics.json), then DONE. Folds
are a queue served by one worker per GPU (`--workers N` CPU processes on a CPU box). A re-run
skips DONE folds, resumes a killed fold from its last checkpoint and a killed eval from its
predictions. When all folds of a user are DONE, user_U_summary.json (mean/std over folds) is
written; at the end overall.json (unweighted mean over users).
"""
from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from data_prep.config import ROOT, ConfigError, add_config_args, load_experiment, run_dir
from data_prep.export import swift_paths
from data_prep.io import read_json, write_json
from data_prep.procenv import child_env
from data_prep.rundir import write_marker
from data_prep.summary import overall, summarize_folds

from .generate import gpu_list, render
from .train import TrainError, execute, preflight, prepare, trained_checkpoint


def eval_command(cfg_path: str, overrides: list[str], model: str, adapters: list[str], data: Path, out: Path,
                 device: str) -> list[str]:
    cmd = [sys.executable, "-m", "eval.run", "--config", cfg_path, "--model", model, "--data", str(data),
           "--out", str(out), "--devices", device]
    for ov in overrides:
        cmd += ["--set", ov]
    for a in adapters:
        cmd += ["--adapters", a]
    return cmd


def run_eval(cmd: list[str], env: dict, device: str, log: Path, what: str) -> None:
    """Run an eval.run command on ``device``, its output appended to ``log``; a failure names the log's tail."""
    with open(log, "a", encoding="utf-8") as f:
        rc = subprocess.run(cmd, env=child_env(devices=device, **env), stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise TrainError(f"eval failed (exit {rc}) for {what}; see {log}:\n" + "\n".join(tail))


def run_fold(cfg: dict, a, user: int, fold: int, device: str, env: dict) -> dict:
    run = render(cfg, "person", user=user, fold=fold, gpus=device, overrides=a.swift_overrides)
    d = run.run_dir
    if (d / "DONE").exists():
        return read_json(d / "eval" / "metrics.json")
    todo = prepare(run)
    if todo is not None:
        print(f"[person] user {user} fold {fold}: training on {device} "
              f"({'resuming ' + Path(todo.args['resume_from_checkpoint']).name if 'resume_from_checkpoint' in todo.args else 'fresh'})",
              flush=True)
        execute(todo, extra_env=env, echo=False)
    ckpt = trained_checkpoint(d)
    lora = run.args.get("tuner_type") == "lora"
    model, adapters = (run.args["model"], [str(ckpt)]) if lora else (str(ckpt), [])
    test = swift_paths(cfg, user, fold)["test"]
    cmd = eval_command(cfg["config_path"], a.overrides, model, adapters, test, d / "eval", device)
    print(f"[person] user {user} fold {fold}: evaluating {test.name} on {device}", flush=True)
    run_eval(cmd, env, device, d / "eval.log", f"user {user} fold {fold}")
    m = read_json(d / "eval" / "metrics.json")
    write_marker(d / "DONE", checkpoint=ckpt, accuracy=m["pigg"]["accuracy"], median_l2=m["pigg"]["median_l2"])
    return m


def worker_slots(gl: list[str], workers: int | None) -> list[str]:
    """Where queued runs go: one worker per listed GPU (or ``workers`` spread over them); 'cpu' x workers."""
    if gl and workers:
        return [gl[i % len(gl)] for i in range(workers)]
    return gl or ["cpu"] * (workers or 1)


def run_queue(todo: list, slots: list[str], on_gpu: bool, do, label: str, after=None) -> list:
    """Serve ``todo`` from a queue, one worker thread per slot (a GPU id each; on the CPU, 'cpu' slots whose
    processes get an equal share of the cores); ``do(job, device, env)`` returns the line to print,
    ``after()`` runs under a lock after each success. Returns the failures [(job, message)]."""
    jobs: queue.Queue = queue.Queue()
    for j in todo:
        jobs.put(j)
    failures, lock = [], threading.Lock()
    threads_per = None if on_gpu else max(1, (os.cpu_count() or 1) // len(slots))

    def worker(device: str):
        env = {"OMP_NUM_THREADS": str(threads_per)} if threads_per else {}
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                print(do(job, device, env), flush=True)
                if after is not None:
                    with lock:
                        after()
            except (TrainError, ConfigError, OSError) as e:
                with lock:
                    failures.append((job, str(e)))
                print(f"[{label}] {job} FAILED: {e}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker, args=(dev,), daemon=True) for dev in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def write_summaries(cfg: dict, template: str, users: list[int]) -> dict | None:
    """user_U_summary.json for every user whose K folds are DONE; overall.json when all are."""
    base = run_dir(cfg, template)
    k = cfg["folds"]["k"]
    sums = []
    for u in users:
        folds = [base / f"user_{u}" / f"fold_{f}" for f in range(k)]
        if all((f / "DONE").exists() for f in folds):
            s = summarize_folds([read_json(f / "eval" / "metrics.json") for f in folds], u)
            write_json(base / f"user_{u}_summary.json", s)
            sums.append(s)
    if len(sums) == len(users) and sums:
        o = overall(sums)
        write_json(base / "overall.json", o)
        return o
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m swift_configs.person", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--gpus", default="cpu")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lora", action="store_true", help="personalized LoRA (template person_lora, default)")
    g.add_argument("--full", action="store_true", help="personalized full fine-tuning (template person_full)")
    g.add_argument("--qlora", action="store_true", help="personalized QLoRA, 4-bit base (template person_qlora)")
    p.add_argument("--users", type=int, nargs="+", help="test users (default: all of the experiment's)")
    p.add_argument("--fold", type=int, nargs="+", help="only these folds (default: all K)")
    p.add_argument("--workers", type=int, default=None, help="parallel folds (default: one per GPU; 1 on CPU)")
    p.add_argument("--array-task", type=int, default=None,
                   help="run only the i-th (user, fold) pair, users x folds in order (Slurm job arrays)")
    p.add_argument("--fresh", action="store_true", help="delete the selected folds' folders first")
    p.add_argument("--dry-run", action="store_true", help="print each fold's command and the memory estimate; run nothing")
    p.add_argument("--force", action="store_true", help="start even if the memory preflight says a fold will not fit")
    p.add_argument("swift_overrides", nargs="*", metavar="key=value")
    a = p.parse_intermixed_args(argv)
    a.overrides += [f"train.person_template=person_{k}" for k in ("lora", "full", "qlora") if getattr(a, k)]
    try:
        cfg = load_experiment(a.config, a.overrides)
        users = a.users or cfg["users"]["test"]
        folds = a.fold if a.fold is not None else list(range(cfg["folds"]["k"]))
        if a.array_task is not None:
            pairs = [(u, f) for u in users for f in folds]
            if not 0 <= a.array_task < len(pairs):
                raise ConfigError(f"--array-task {a.array_task}: want 0..{len(pairs) - 1} ({len(users)} users x {len(folds)} folds)")
            users, folds = [pairs[a.array_task][0]], [pairs[a.array_task][1]]
        gl = gpu_list(a.gpus)
        slots = worker_slots(gl, a.workers)
        # fail fast: render every fold (validates config, data, base checkpoint) before any training
        runs = {(u, f): render(cfg, "person", user=u, fold=f, gpus=slots[0], overrides=a.swift_overrides)
                for u in users for f in folds}
        summary_users = cfg["users"]["test"] if a.array_task is not None else users
        pending_runs = [r for r in runs.values() if not (r.run_dir / "DONE").exists()]
        if pending_runs and gl:  # one fold per GPU: each slot's card must hold one fold
            preflight(pending_runs[0], cfg, sorted(set(slots)), force=a.force or a.dry_run, n_gpus=1)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    template = cfg["train"]["person_template"]
    if a.dry_run:
        for (u, f), r in runs.items():
            print(f"# user {u} fold {f}\n{r.shell()}")
        return 0
    if a.fresh:
        for r in runs.values():
            shutil.rmtree(r.run_dir, ignore_errors=True)
    pending = [(u, f) for u in users for f in folds if not (runs[(u, f)].run_dir / "DONE").exists()]
    print(f"[person] {len(runs) - len(pending)} folds already done, {len(pending)} to run on {slots}", flush=True)
    t0 = time.time()

    def do(job, device, env):
        u, f = job
        m = run_fold(cfg, a, u, f, device, env)
        return (f"[person] user {u} fold {f}: acc {m['pigg']['accuracy']:.4f}  median L2 "
                f"{m['pigg']['median_l2']:.1f}  ({time.time() - t0:.0f}s)")

    failures = run_queue(pending, slots, bool(gl), do, "person",
                         after=lambda: write_summaries(cfg, template, summary_users))
    o = write_summaries(cfg, template, summary_users)
    if failures:
        print(f"[person] {len(failures)} folds failed: {[job for job, _ in failures]}; re-run to resume",
              file=sys.stderr)
        return 1
    if o:
        print(f"[person] overall over {o['n_users']} users: acc {o['avg_accuracy']:.4f}  mean L2 "
              f"{o['avg_mean_l2']:.1f}  median L2 {o['avg_median_l2']:.1f}  -> {run_dir(cfg, template)}/overall.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
