"""Run one `swift sft` run resumably, with a manifest; the global fine-tuning stage's entry point.

Usage: python -m swift_configs.train --config EXP --gpus 0,1 [--lora|--full] [--fresh] [key=value ...]

A run folder (runs/<exp>/<template>/...) holds: generated/swift.yaml (the concrete config), manifest.json
(command, git commit, package versions, dataset hashes), train.log, swift's checkpoints, then
TRAINED (training finished; names the final checkpoint) and, for the global stage, DONE. A re-run
skips a finished run, resumes an interrupted one from its newest complete checkpoint
(resume_from_checkpoint), and refuses a folder made from other data unless --fresh.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from data_prep import rundir
from data_prep.config import ROOT, ConfigError, add_config_args, load_experiment
from data_prep.io import write_json
from data_prep.procenv import child_env, train_server
from data_prep.rundir import latest_checkpoint, marker_checkpoint, write_marker
from data_prep.server import LineServer

from .generate import Run, gpu_list, missing_packages, render

PACKAGES = ("torch", "torchvision", "transformers", "ms-swift", "peft", "qwen-vl-utils", "deepspeed", "flash-attn")


class TrainError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        out[str(p)] = sha256(p)
        ids = p.with_suffix(".ids")
        if ids.exists():
            out[str(ids)] = sha256(ids)
    return out


def prepare(run: Run, fresh: bool = False) -> Run | None:
    """Decide fresh / resume / skip; returns the run to execute (with resume set) or None if trained."""
    d = run.run_dir
    if fresh and d.exists():
        shutil.rmtree(d)
    if rundir.trained(d).exists():
        return None
    hashes = data_hashes(run)
    man = d / "manifest.json"
    if man.exists():
        old = json.loads(man.read_text(encoding="utf-8")).get("data_hashes")
        if old != hashes:
            raise TrainError(f"{d}: made from other data than {list(hashes)} (the export changed since). "
                             "Re-run with --fresh to start this run over, or use another experiment name")
    ckpt = latest_checkpoint(d)
    if ckpt is not None:
        run.args["resume_from_checkpoint"] = str(ckpt)
    d.mkdir(parents=True, exist_ok=True)
    run.write()
    write_json(man, {"stage": run.stage, "template": run.template, "command": run.shell(),
                     "argv": run.command(), "git_commit": git_commit(), "versions": versions(),
                     "data_hashes": hashes, "resumed_from": str(ckpt) if ckpt else None})
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
            ready = self.srv.read()
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
    p = argparse.ArgumentParser(prog="python -m swift_configs.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
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
    try:
        cfg = load_experiment(a.config, ov)
        run = render(cfg, "global", gpus=a.gpus, overrides=a.swift_overrides)
        if a.dry_run:
            print(run.dump())
            print(run.shell())
            preflight(run, cfg, gpu_list(a.gpus), force=True)
            return 0
        if not rundir.trained(run.run_dir).exists() or a.fresh:
            preflight(run, cfg, gpu_list(a.gpus), a.force)
            require_packages(run)  # said before the run folder is touched
        todo = prepare(run, a.fresh)
        if todo is None:
            print(f"[train] {run.run_dir} already trained: {trained_checkpoint(run.run_dir)}")
        else:
            execute(todo)
        write_marker(rundir.done(run.run_dir), checkpoint=trained_checkpoint(run.run_dir))
        print(f"[train] done: {trained_checkpoint(run.run_dir)}")
    except (ConfigError, TrainError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
