"""Run one `swift sft` run resumably, with a manifest; the global fine-tuning stage's entry point.

Usage: python -m swift_configs.train --config EXP --gpus 0,1 [--lora|--full] [--fresh] [key=value ...]

A run folder (runs/<exp>/<template>/...) holds: generated/swift.yaml (the concrete config), manifest.json
(command, git commit, package versions, and its provenance: the generated YAML's fingerprint, the base model's
identity, the dataset hashes and the build they were exported from), train.log, swift's checkpoints, then
TRAINED (training finished; names the final checkpoint) and, for the global stage, DONE. A re-run
skips a finished run and resumes an interrupted one from its newest complete checkpoint (resume_from_checkpoint),
only where its provenance matches; a folder made by other settings, another base model or other data is refused
before anything loads, naming what differs (--fresh starts it over). One process per run folder
(data_prep/runtime/lock.py); --dry-run takes no lock.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from data_prep import rundir
from data_prep.errors import HarnessError
from data_prep.config import ROOT, ConfigError, load_experiment
from data_prep.export import check_export
from data_prep.io import write_json
from data_prep.provenance import ProvenanceError, differences, fingerprint, model_identity, sha256_file
from data_prep.runtime.cli import parser, run as run_cli
from data_prep.runtime.lock import FolderLock
from data_prep.runtime.procenv import child_env, train_server
from data_prep.rundir import latest_checkpoint, marker_checkpoint, write_marker
from data_prep.runtime.server import START_TIMEOUT_S, LineServer

from .generate import Run, gpu_list, missing_packages, render

PACKAGES = ("torch", "torchvision", "transformers", "ms-swift", "peft", "qwen-vl-utils", "deepspeed", "flash-attn")


class TrainError(HarnessError, RuntimeError):
    pass


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def data_hashes(run: Run) -> dict:
    out = {}
    for ds in run.args["dataset"]:
        p = Path(ds)
        out[str(p)] = sha256_file(p)
        ids = p.with_suffix(".ids")
        if ids.exists():
            out[str(ids)] = sha256_file(ids)
    return out


# what may change between a run and its resumption without changing what it trains: where it resumes from, where
# it writes, and how many processes and nodes it runs on
MACHINE_ARGS = ("resume_from_checkpoint", "output_dir")
MACHINE_ENV = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "PYTORCH_CUDA_ALLOC_CONF")


def provenance(run: Run, build: str | None) -> dict:
    """What a run folder's training is made of: the generated YAML (less MACHINE_*), the base model, the data."""
    yaml_body = {"args": {k: v for k, v in run.args.items() if k not in MACHINE_ARGS},
                 "env": {k: str(v) for k, v in run.env.items() if k not in MACHINE_ENV}}
    return {"swift_yaml_sha256": fingerprint(yaml_body), "swift_yaml": yaml_body,
            "base_model": model_identity(run.args["model"]), "data": data_hashes(run), "build": build}


def check_provenance(run: Run, build: str | None = None) -> dict:
    """This run's provenance record; ProvenanceError where its folder holds a run (trained or not) that another
    provenance (or none) made: nothing of it is reused."""
    d = run.run_dir
    record = provenance(run, build)
    man = d / "manifest.json"
    if man.exists() or rundir.trained(d).exists() or rundir.done(d).exists():
        old = json.loads(man.read_text(encoding="utf-8")).get("provenance") if man.exists() else None
        diff = differences(old, record) if old is not None else ["no provenance record (made by an older version)"]
        if diff:
            raise ProvenanceError(f"{d}: made by other settings, base model or data than this run:\n  " +
                                  "\n  ".join(diff) + "\nRe-run with --fresh to start this run over, or use another "
                                  "experiment name (--set name=...)")
    return record


def prepare(run: Run, fresh: bool = False, build: str | None = None) -> Run | None:
    """Decide fresh / resume / skip; returns the run to execute (with resume set) or None if trained. Refuses a
    folder whose manifest records another provenance (or none): check_provenance."""
    d = run.run_dir
    if fresh and d.exists():
        rundir.clear(d)
    record = check_provenance(run, build)
    man = d / "manifest.json"
    if rundir.trained(d).exists():
        return None
    ckpt = latest_checkpoint(d)
    if ckpt is not None:
        run.args["resume_from_checkpoint"] = str(ckpt)
    d.mkdir(parents=True, exist_ok=True)
    run.write()
    write_json(man, {"stage": run.stage, "template": run.template, "command": run.shell(),
                     "argv": run.command(), "git_commit": git_commit(), "versions": versions(),
                     "provenance": record, "resumed_from": str(ckpt) if ckpt else None})
    return run


def final_checkpoint(run_dir: Path) -> Path:
    ckpt = rundir.final_checkpoint(run_dir)
    if ckpt is None:
        raise TrainError(f"{run_dir}: swift finished but left no complete checkpoint")
    return ckpt


def require_packages(run: Run) -> None:
    """Stop, naming each package the run's settings need and this Python lacks."""
    missing = missing_packages(run)
    if missing:
        raise ConfigError(f"{run.yaml_path}: cannot start swift sft:\n  " + "\n  ".join(missing))


def log_tail(log: Path, n: int = 15) -> str:
    """The last ``n`` lines of a child's log (what a failure shows before pointing at the file)."""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]) if log.exists() else ""


FORKED = "[train] this run is forked from the kept training process"  # the log line of a forked run


class TrainServer:
    """A sweep worker's training process (swift_configs/train_serve.py; ``train.keep_loaded``): torch, transformers
    and swift imported once, each run forked from it. Started at the worker's first run in that run's environment;
    a run in another environment restarts it; a run that needs torchrun, or a server that cannot start (it says
    why, once), runs as a fresh process."""

    def __init__(self):
        self.srv, self.env, self.off = LineServer(), None, None

    def run(self, run: Run, env: dict, log: Path) -> int | None:
        """The exit code of ``run`` forked from the kept process; None where it is not (run it fresh)."""
        if self.off or "NPROC_PER_NODE" in env or "NNODES" in env:
            return None
        if not self.srv.alive() or env != self.env:
            self.srv.start(train_server, env, log)
            self.env = env
            ready = self.srv.read(START_TIMEOUT_S)
            if not (ready and ready.get("ready")):
                self.off = ready["error"] if ready else f"it ended with exit {self.srv.exit_code()}, see {log}"
                self.srv.close()
                print(f"[train] runs start as fresh processes: the kept training process did not start ({self.off})",
                      flush=True)
                return None
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{FORKED} (pid {self.srv.proc.pid})\n")
        ans = self.srv.ask({"yaml": str(run.yaml_path), "cwd": str(run.run_dir), "log": str(log)})
        return ans["rc"] if ans is not None else (self.srv.exit_code() or -1)

    def close(self) -> None:
        self.srv.close()


def execute(run: Run, log_name: str = "train.log", extra_env: dict | None = None, echo: bool = True,
            server: TrainServer | None = None) -> Path:
    """Run swift sft for a prepared run (forked from ``server`` where it can); on success write TRAINED and return
    the final checkpoint."""
    require_packages(run)
    env = child_env(**run.env, **run.proc_env, **(extra_env or {}))  # the YAML's ENV wins over an inherited value
    log = run.run_dir / log_name
    if echo:
        print(f"[train] swift sft {run.yaml_path}  (env, command, versions: {run.run_dir / 'manifest.json'}; "
              f"log: {log})", flush=True)
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(run.command())}\n")
    rc = server.run(run, env, log) if server is not None else None
    if rc is None:
        with open(log, "a", encoding="utf-8") as f:
            rc = subprocess.run(run.command(), env=env, stdout=f, stderr=subprocess.STDOUT, cwd=run.run_dir).returncode
    if rc != 0:
        raise TrainError(f"swift sft failed (exit {rc}) in {run.run_dir}; last lines of {log}:\n{log_tail(log)}")
    ckpt = final_checkpoint(run.run_dir)
    write_marker(rundir.trained(run.run_dir), checkpoint=ckpt, seconds=round(time.time() - t0, 1), started=round(t0, 3))
    return ckpt


def trained_checkpoint(run_dir: Path) -> Path:
    return marker_checkpoint(rundir.trained(run_dir))


def preflight(run: Run, cfg: dict, gpus: list[str], force: bool = False, n_gpus: int | None = None) -> dict | None:
    """Estimate the run's peak memory per GPU against the listed cards (swift_configs/preflight.py) and
    stop with the settings that would fit, unless ``force``. Prints the estimate; None on the CPU."""
    from . import preflight as pf

    if not gpus:
        return None
    try:
        est, line = pf.check(run.args, gpus, cfg["image_max_token_num"], cfg["train"]["offload"], run.template, n_gpus,
                             cfg["train"]["vision_cache_gib"])
    except pf.PreflightError as e:
        if not force:
            raise ConfigError(f"{run.yaml_path.parent.parent}: {e}") from None
        print(f"[train] --force: starting anyway. {e}", flush=True)
        return None
    print(f"[train] {line}", flush=True)
    return est


def main(argv=None) -> int:
    p = parser("python -m swift_configs.train", __doc__)
    p.add_argument("--gpus", default="cpu", help="cpu, 0 or 0,1,2,3")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lora", action="store_true", help="global LoRA (template global_lora)")
    g.add_argument("--full", action="store_true", help="global full fine-tuning (template global_full)")
    g.add_argument("--qlora", action="store_true", help="global QLoRA, 4-bit base (template global_qlora)")
    p.add_argument("--fresh", action="store_true", help="delete this run's folder and start over")
    p.add_argument("--dry-run", action="store_true", help="print the YAML, the command and the memory estimate")
    p.add_argument("--force", action="store_true", help="start even if the memory preflight says it will not fit")
    p.add_argument("swift_overrides", nargs="*", metavar="key=value")
    a = p.parse_intermixed_args(argv)
    ov = list(a.overrides) + [f"train.global_template=global_{k}" for k in ("lora", "full", "qlora") if getattr(a, k)]
    return run_cli(lambda: train_global(a, ov))


def node() -> tuple[int, int]:
    """(this node's rank, the number of nodes) of a multi-node run: NNODES / NODE_RANK / MASTER_ADDR in the
    environment (docs/clusters.md); (0, 1) without them."""
    try:
        nnodes, rank = int(os.environ.get("NNODES") or 1), int(os.environ.get("NODE_RANK") or 0)
    except ValueError:
        raise ConfigError(f"NNODES={os.environ.get('NNODES')!r} / NODE_RANK={os.environ.get('NODE_RANK')!r}: want "
                          "integers") from None
    if nnodes < 1 or not 0 <= rank < nnodes:
        raise ConfigError(f"NODE_RANK={rank} with NNODES={nnodes}: want 0 <= NODE_RANK < NNODES")
    if nnodes > 1 and not os.environ.get("MASTER_ADDR"):
        raise ConfigError(f"NNODES={nnodes}: set MASTER_ADDR (node rank 0's address) and MASTER_PORT on every node")
    return rank, nnodes


def train_other_node(run: Run, rank: int, fresh: bool) -> None:
    """A node of rank > 0: it only trains. Node rank 0 owns the run folder (its lock, generated YAML, manifest, log,
    markers); this node renders the same run, keeps its YAML and log in a folder of its own, resumes from the
    newest complete checkpoint as rank 0 does (none with --fresh: rank 0 starts over) and joins swift's torchrun
    rendezvous. Its exit code is the run's."""
    import tempfile

    marker = rundir.trained(run.run_dir)
    if marker.exists() and not fresh:
        print(f"[train] node {rank}: {run.run_dir} already trained (node rank 0 marks it)", flush=True)
        return
    before = marker.read_text(encoding="utf-8") if marker.exists() else None
    require_packages(run)
    ckpt = None if fresh else latest_checkpoint(run.run_dir)
    if ckpt is not None:
        run.args["resume_from_checkpoint"] = str(ckpt)
    own = Path(tempfile.mkdtemp(prefix=f"pigg-node{rank}-"))
    run.yaml_at = own / "swift.yaml"
    run.write()
    log = own / "train.log"
    print(f"[train] node {rank}: swift sft {run.yaml_path} (joins node 0 at {os.environ.get('MASTER_ADDR')}:"
          f"{os.environ.get('MASTER_PORT', '29500')}; log: {log})", flush=True)
    env = child_env(**run.env, **run.proc_env)
    with open(log, "a", encoding="utf-8") as f:
        rc = subprocess.run(run.command(), env=env, stdout=f, stderr=subprocess.STDOUT, cwd=own).returncode
    if rc != 0 and not completed_by_rank0(marker, before):
        raise TrainError(f"swift sft failed on node {rank} (exit {rc}); last lines of {log}:\n{log_tail(log)}")
    if rc != 0:  # torch's process-group threads can abort a rank's interpreter at exit once rank 0 has gone
        print(f"[train] node {rank}: its process ended with exit {rc} after the run was complete (node 0 marked it "
              f"TRAINED; log: {log})", flush=True)
    print(f"[train] node {rank}: done", flush=True)


def completed_by_rank0(marker: Path, before: str | None, wait_s: float = 120) -> bool:
    """Whether node rank 0 marks the run TRAINED (a marker other than the one there at this node's start) within
    ``wait_s``: a rank that fails during training or saving fails rank 0's collectives too, so a new TRAINED marker
    means every rank took part to the end."""
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if marker.exists() and marker.read_text(encoding="utf-8") != before:
            return True
        time.sleep(2)
    return False


def train_global(a, ov: list[str]) -> None:
    cfg = load_experiment(a.config, ov)
    rank, nnodes = node()
    run = render(cfg, "global", gpus=a.gpus, overrides=a.swift_overrides)
    if run.recipe:
        print(f"[train] {run.recipe}", flush=True)
    if a.dry_run:
        print(run.dump())
        print(run.shell())
        preflight(run, cfg, gpu_list(a.gpus), force=True)
        return
    if rank > 0:
        return train_other_node(run, rank, a.fresh)
    if not rundir.trained(run.run_dir).exists() or a.fresh:
        preflight(run, cfg, gpu_list(a.gpus), a.force)
        require_packages(run)  # said before the run folder is touched
    with FolderLock(run.run_dir, "run folder"):
        todo = prepare(run, a.fresh, check_export(cfg)["build"])
        if todo is None:
            print(f"[train] {run.run_dir} already trained: {trained_checkpoint(run.run_dir)}")
        else:
            execute(todo)
        write_marker(rundir.done(run.run_dir), checkpoint=trained_checkpoint(run.run_dir))
        print(f"[train] done: {trained_checkpoint(run.run_dir)}")


if __name__ == "__main__":
    sys.exit(main())
