"""One runner for the stages that train many runs and evaluate each: the personalized K-fold
(swift_configs/person.py) and the one-model user-token runs (swift_configs/tokens.py).

Usage: ``sweep(cfg, jobs, a, tag="person", noun="folds", stages=[...])`` where each ``Job`` says which
run to render and which hold-outs to evaluate on its checkpoint; the stage files keep only that.

For every job, in a queue served by one worker per GPU (``--workers N`` CPU processes on a CPU box):
render the swift YAML for the worker's device, `swift sft` (resuming from the last complete
checkpoint; skipped when TRAINED; with ``train.keep_loaded`` forked from the worker's one
`python -m swift_configs.train_serve` child, which has torch, transformers and swift imported), then every
hold-out of the job not yet DONE evaluated on the same device
(eval resumes from its predictions): with ``eval.keep_loaded`` by the worker's one `python -m eval.serve`
child, which keeps the base model loaded between jobs and swaps each job's adapter (the base stays on the GPU
while the next run trains where the preflight leaves room for it, else it goes to host memory: ``eval_park``);
otherwise by a fresh `python -m eval.run` child per job. Then a DONE marker per hold-out (checkpoint, accuracy,
median L2, the job's train and eval seconds) and one in the run folder. Before anything runs: every job is
rendered (config, data and base checkpoint checked), the memory preflight of one run, ``--dry-run``
prints the commands, ``--fresh`` deletes the selected jobs' folders. After each job and at the end:
user_U_summary.json for each user whose K folds are DONE and overall.json when all users are
(data_prep/summary.py). Folder names: data_prep/rundir.py.
"""
from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from data_prep.config import ROOT
from data_prep.errors import HarnessError
from data_prep.export import check_export
from data_prep.io import read_json, write_json
from data_prep.runtime.procenv import eval_child, eval_server
from data_prep.provenance import ProvenanceError, check_same, eval_record, model_identity
from data_prep.rundir import (PROVENANCE, clear, done, eval_dir, fold_dir, overall_file, run_dir, user_summary,
                              write_marker)
from data_prep.runtime.lock import FolderLock
from data_prep.runtime.server import LineServer
from data_prep.summary import overall, summarize_folds

from .generate import Run
from .train import TrainError, TrainServer, check_provenance, execute, log_tail, preflight, prepare, trained_checkpoint


@dataclass
class Target:
    """One hold-out evaluated on a job's checkpoint: its data and the fold folder (eval/ and DONE go there)."""
    user: int
    data: Path
    folder: Path


@dataclass
class Job:
    label: str  # "user 2 fold 0", "special fold 1"
    render: Callable[[str], Run]  # device -> the rendered run
    targets: list[Target]
    run: Run | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    def is_done(self) -> bool:
        return done(self.run_dir).exists()

    def __str__(self) -> str:
        return self.label


def add_sweep_args(p, noun: str = "runs") -> None:
    """The flags every sweep stage takes (person folds, user-token runs, the data curve): GPUs, the folds to run,
    workers, --fresh, --dry-run, --force, and swift keys as key=value."""
    from data_prep.runtime.cli import nonneg_int, positive_int

    p.add_argument("--gpus", default="cpu", help="cpu, 0 or 0,1,2,3 (one run per GPU at a time)")
    p.add_argument("--fold", type=nonneg_int, nargs="+", help="only these folds (default: all K)")
    p.add_argument("--workers", type=positive_int, default=None, help=f"{noun} side by side (default: one per GPU; "
                                                                      "1 on CPU)")
    p.add_argument("--fresh", action="store_true", help=f"empty the selected {noun}' folders first")
    p.add_argument("--dry-run", action="store_true", help=f"print each of the {noun}' commands and the memory "
                                                          "estimate; run nothing")
    p.add_argument("--force", action="store_true", help="start even if the memory preflight says a run will not fit")
    p.add_argument("swift_overrides", nargs="*", metavar="key=value", help="swift sft keys for every run")


def worker_slots(gl: list[str], workers: int | None) -> list[str]:
    """Where queued runs go: one worker per listed GPU (or ``workers`` spread over them); 'cpu' x workers."""
    if gl and workers:
        return [gl[i % len(gl)] for i in range(workers)]
    return gl or ["cpu"] * (workers or 1)


def run_eval(cfg: dict, model: str, adapters: list[str], pairs: list, device: str, env: dict, log: Path,
             what: str) -> None:
    """Evaluate (data, out) pairs in an eval.run child on ``device`` (data_prep/procenv.eval_child: it owns the
    device and its environment), output appended to ``log``; a failure names the log's tail."""
    cmd, child = eval_child(cfg, model, adapters, pairs, device)
    with open(log, "a", encoding="utf-8") as f:
        rc = subprocess.run(cmd, env={**child, **env}, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        raise TrainError(f"eval failed (exit {rc}) for {what}; see {log}:\n{log_tail(log)}")


class EvalServer:
    """A sweep worker's eval process (data_prep/procenv.eval_server, eval/serve.py): started at the worker's first
    evaluation, fed one job at a time, closed with the worker; a failed or dead one is replaced at the next job."""

    def __init__(self, cfg: dict, device: str, env: dict, park: bool = True):
        self.cfg, self.device, self.env, self.park, self.srv = cfg, device, env, park, LineServer()

    def warm(self, log: Path) -> None:
        """Start the process if none runs (it imports while the caller's run trains)."""
        if not self.srv.alive():
            cmd_for_fd, child = eval_server(self.cfg, self.device)
            self.srv.start(cmd_for_fd, {**child, **self.env}, log)

    def evaluate(self, model: str, adapters: list[str], pairs: list, log: Path, what: str) -> dict:
        self.warm(log)
        req = {"model": str(model), "adapters": [str(a) for a in adapters],
               "pairs": [[str(d), str(o)] for d, o in pairs], "log": str(log), "park": self.park}
        ans = self.srv.ask(req) or {"ok": False, "error": f"the eval process ended (exit {self.srv.exit_code()})"}
        if not ans["ok"]:
            self.close()
            raise TrainError(f"eval failed for {what}: {ans['error']}; see {log}:\n{log_tail(log)}")
        return ans

    def close(self) -> None:
        self.srv.close()


def eval_park(cfg: dict, est: dict | None, gpus: list[str]) -> bool:
    """Whether the kept eval base goes to host memory while the next run trains (True), or stays on the card: only
    where a LoRA run's estimate, the eval copy of its base and a CUDA context leave 10% of the smallest card free."""
    from .preflight import card_bytes

    cards = card_bytes(gpus) if est else None
    if not cards or est["full"] or est["qlora"]:  # unknown card; a full or 4-bit run's eval is not kept
        return True
    need, card = est["per_gpu_bytes"] + est["parts"]["weights"] + est["parts"]["cuda_context"], min(cards)
    park = need > 0.9 * card
    print(f"[eval] the kept eval base {'goes to host memory' if park else 'stays on the GPU'} while the next run trains "
          f"(run ~{est['per_gpu_bytes'] / 2**30:.1f} + eval base ~{(need - est['per_gpu_bytes']) / 2**30:.1f} GiB "
          f"{'>' if park else '<='} 90% of {card / 2**30:.1f} GiB)", flush=True)
    return park


def check_done_evals(cfg: dict, job: Job) -> None:
    """A DONE job's hold-out evaluations were made by this job's checkpoint with the experiment's eval settings now
    (data_prep/provenance.py ``eval_record``); ProvenanceError naming the difference otherwise."""
    ckpt = trained_checkpoint(job.run_dir)
    lora = job.run.args.get("tuner_type") != "full"
    model, adapters = (job.run.args["model"], [ckpt]) if lora else (ckpt, [])
    ids = model_identity(model), [model_identity(a) for a in adapters]
    for t in job.targets:
        record = eval_dir(t.folder) / PROVENANCE
        ways = f"ways out: --fresh (train and evaluate {job.label} again) or another experiment name"
        if not record.exists():
            raise ProvenanceError(f"{t.folder}: DONE, but its evaluation has no {PROVENANCE} (made by an older "
                                  f"version); {ways}")
        check_same(record, eval_record(cfg, *ids, t.data, cfg["eval"]["max_new_tokens"]),
                   f"the evaluation of {job.label}", ways)


def run_job(cfg: dict, job: Job, device: str, env: dict, tag: str, server: EvalServer | None = None,
            trainer: TrainServer | None = None, build: str | None = None) -> dict[int, dict]:
    """Train ``job`` on ``device`` (or resume it; forked from ``trainer`` if given), evaluate its hold-outs (by
    ``server`` if given), mark them; {user: metrics}. ``build``: the export's build fingerprint (provenance)."""
    run = job.render(device)
    todo = prepare(run, build=build)  # refuses a folder made by other settings, base or data, DONE or not
    if done(run.run_dir).exists():
        return {t.user: read_json(eval_dir(t.folder) / "metrics.json") for t in job.targets}
    t0 = time.time()
    if server is not None and any(not done(t.folder).exists() for t in job.targets):
        server.warm(run.run_dir / "eval.log")  # its imports overlap this run's training
    if todo is not None:
        how = ("resuming " + Path(todo.args["resume_from_checkpoint"]).name
               if "resume_from_checkpoint" in todo.args else "fresh")
        print(f"[{tag}] {job.label}: training on {device} ({how})", flush=True)
        execute(todo, extra_env=env, echo=False, server=trainer)
    t1 = time.time()
    ckpt = trained_checkpoint(run.run_dir)
    lora = run.args.get("tuner_type") != "full"
    model, adapters = (run.args["model"], [str(ckpt)]) if lora else (str(ckpt), [])
    pending = [t for t in job.targets if not done(t.folder).exists()]
    if pending:
        what = ", ".join(t.data.name if len(job.targets) == 1 else f"user {t.user}" for t in pending)
        print(f"[{tag}] {job.label}: evaluating {what} on {device}", flush=True)
        pairs, log = [(t.data, eval_dir(t.folder)) for t in pending], run.run_dir / "eval.log"
        if server is not None:
            server.evaluate(model, adapters, pairs, log, job.label)
        else:
            run_eval(cfg, model, adapters, pairs, device, env, log, job.label)
    took = {"train_s": round(t1 - t0, 1), "eval_s": round(time.time() - t1, 1)}  # this call's (a resumed job: the rest)
    out = {}
    for t in job.targets:
        m = out[t.user] = read_json(eval_dir(t.folder) / "metrics.json")
        if not done(t.folder).exists():
            write_marker(done(t.folder), checkpoint=ckpt, accuracy=m["pigg"]["accuracy"],
                         median_l2=m["pigg"]["median_l2"], **took)
    if not done(run.run_dir).exists():
        write_marker(done(run.run_dir), checkpoint=ckpt, **took)
    return out


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
            except (HarnessError, OSError) as e:
                with lock:
                    failures.append((job, str(e)))
                print(f"[{label}] {job} FAILED: {e}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker, args=(dev,), daemon=True) for dev in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def write_summaries(cfg: dict, stage: str, users: list[int]) -> dict | None:
    """user_U_summary.json for every user whose K folds are DONE; overall.json when all are."""
    base = run_dir(cfg, stage)
    sums = []
    for u in users:
        folds = [fold_dir(base, u, f) for f in range(cfg["folds"]["k"])]
        if all(done(f).exists() for f in folds):
            s = summarize_folds([read_json(eval_dir(f) / "metrics.json") for f in folds], u)
            write_json(user_summary(base, u), s)
            sums.append(s)
    if len(sums) == len(users) and sums:
        o = overall(sums)
        write_json(overall_file(base), o)
        return o
    return None


def acc_line(ms: dict[int, dict]) -> str:
    if len(ms) == 1:
        m = next(iter(ms.values()))["pigg"]
        return f"acc {m['accuracy']:.4f}  median L2 {m['median_l2']:.1f}"
    return "acc " + "  ".join(f"user {u} {m['pigg']['accuracy']:.3f}" for u, m in ms.items())


def sweep(cfg: dict, jobs: list[Job], a, gl: list[str], slots: list[str], tag: str, noun: str,
          stages: list[str], summary_users: list[int]) -> int:
    """Run ``jobs`` as the module docstring says; the exit code (0, 1 when some failed, 2 on a config error).
    ``a``: the stage's parsed flags (dry_run, fresh, force, overrides)."""
    try:  # fail fast: every run rendered (config, data, base checkpoint) before any training
        for job in jobs:
            job.run = job.render(slots[0])
        pending = [j for j in jobs if not j.is_done()]
        est = None
        if pending and gl:  # one run per GPU: each slot's card must hold one
            est = preflight(pending[0].run, cfg, sorted(set(slots)), force=a.force or a.dry_run, n_gpus=1)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        for j in jobs:
            print(f"# {j.label}\n{j.run.shell()}")
        return 0
    with contextlib.ExitStack() as held:  # every selected job's folders, for the whole sweep: one process each
        try:
            build = check_export(cfg)["build"]
            for j in jobs:
                for d in dict.fromkeys([j.run_dir, *(t.folder for t in j.targets)]):
                    held.enter_context(FolderLock(d, "run folder"))
        except HarnessError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if a.fresh:
            for j in jobs:
                for d in [j.run_dir, *(t.folder for t in j.targets)]:
                    clear(d)
        try:  # a DONE job is reused only where what made it is what this sweep would run
            for j in jobs:
                check_provenance(j.run, build)
                if j.is_done():
                    check_done_evals(cfg, j)
        except HarnessError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return _run_sweep(cfg, jobs, gl, slots, tag, noun, stages, summary_users, est, build)


def _run_sweep(cfg, jobs, gl, slots, tag, noun, stages, summary_users, est, build) -> int:
    """The queue of ``sweep`` once its folders are held: train and evaluate what is not DONE, then summaries."""
    todo = [j for j in jobs if not j.is_done()]
    print(f"[{tag}] {len(jobs) - len(todo)} {noun} already done, {len(todo)} to run on {slots}", flush=True)
    t0 = time.time()
    local, servers = threading.local(), []
    park = eval_park(cfg, est, sorted(set(slots))) if gl and cfg["eval"]["keep_loaded"] else True

    def do(job, device, env):
        if not getattr(local, "started", False):  # this worker's kept processes (each started at its first use)
            local.started = True
            local.trainer = TrainServer() if cfg["train"]["keep_loaded"] else None
            local.server = EvalServer(cfg, device, env, park) if cfg["eval"]["keep_loaded"] else None
            servers.extend(s for s in (local.trainer, local.server) if s is not None)
        return (f"[{tag}] {job.label}: {acc_line(run_job(cfg, job, device, env, tag, local.server, local.trainer, build))}  "
                f"({time.time() - t0:.0f}s)")

    def summarise():
        return {s: write_summaries(cfg, s, summary_users) for s in stages}

    try:
        failures = run_queue(todo, slots, bool(gl), do, tag, after=summarise)
    finally:
        for srv in servers:
            srv.close()
    for s, o in summarise().items():
        if o:
            print(f"[{tag}] {s}: overall over {o['n_users']} users: acc {o['avg_accuracy']:.4f}  mean L2 "
                  f"{o['avg_mean_l2']:.1f}  median L2 {o['avg_median_l2']:.1f}  -> {overall_file(run_dir(cfg, s))}",
                  flush=True)
    if failures:
        print(f"[{tag}] {len(failures)} {noun} failed: {[str(j) for j, _ in failures]}; re-run to resume",
              file=sys.stderr)
        return 1
    return 0
