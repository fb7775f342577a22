"""Shared by the GPU bench scripts: a scratch folder removed on exit, a temporary experiment on synthetic
data, built and exported; a `swift sft` run timed step by step from outside."""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from data_prep.runtime import procenv  # noqa: E402


@contextlib.contextmanager
def scratch(prefix: str):
    """A temporary folder for a bench's data and model (an 8B-shaped model is 16-17 GB), said where, and removed
    when the bench ends: normally, on an error, on Ctrl-C and on SIGTERM (turned into SystemExit here)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"[bench] scratch folder (data, model; removed on exit): {tmp}", flush=True)
    old = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield tmp
    finally:
        signal.signal(signal.SIGTERM, old)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"[bench] removed {tmp}", flush=True)


def prepare_experiment(tmp: Path, model: Path, name: str, changes: dict) -> tuple[Path, dict]:
    """Write tmp/exp.yaml (base pigg.yaml; data under tmp/raw must exist), build and export it."""
    from data_prep.config import load_experiment
    from data_prep.export import export
    from data_prep.fingertip import build

    exp = {"base": str(ROOT / "swift_configs/experiments/pigg.yaml"), "name": name,
           "paths": {"raw": str(tmp / "raw"), "data": str(tmp / "data"), "runs": str(tmp / "runs"),
                     "model": str(model)}, **changes}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    cfg = load_experiment(path)
    build(cfg["paths"]["raw"], cfg["paths"]["data"], progress=False)
    export(cfg)
    return path, cfg


def first_gpu() -> tuple[str, float | None]:
    """(name, memory in GiB) of GPU 0 from nvidia-smi, ("cpu", None) without one. Never torch: that would
    start a CUDA context (~0.5 GB) in the bench's parent, which must hold no GPU memory while a child trains."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        name, mib = out.stdout.strip().splitlines()[0].rsplit(",", 1)
        return name.strip(), float(mib) / 1024
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return "cpu", None


def random_model(out: Path, shape: str, device: str, family: str = "qwen3_vl", given: str | None = None) -> Path:
    """The bench's random model of ``shape`` at ``out``: scripts/build_tiny_model.py in a child process (this process
    holds no GPU memory while swift trains later), bf16 weights for CUDA, float32 on the CPU; or, with ``given`` (a
    folder that script wrote with the same shape and family), a link to it, never changed or removed (a scratch
    folder's clean-up removes the link only)."""
    if given:
        out.symlink_to(Path(given).resolve(), target_is_directory=True)
    else:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_tiny_model.py"), "--out", str(out), "--shape",
                        shape, "--family", family, "--device", device,
                        "--dtype", "bfloat16" if device == "cuda" else "float32"], check=True, env=child_env(), cwd=ROOT)
    return out


def child_env(**extra) -> dict:
    """A child's environment (data_prep/runtime/procenv.py: offline, the project first on PYTHONPATH) plus ``extra``."""
    return procenv.child_env(**extra)


def read_train_log(log_file: Path) -> tuple[dict | None, float | None]:
    """swift's logging.jsonl: (the final summary record with train_runtime, peak memory(GiB) over the steps)."""
    logs = [json.loads(x) for x in log_file.read_text().splitlines()] if log_file.exists() else []
    final = next((x for x in reversed(logs) if "train_runtime" in x), None)
    peak = max((float(str(x.get("memory(GiB)", 0))) for x in logs if "loss" in x), default=None)
    return final, peak


def run_polled(cmd, env, cwd, log_file: Path) -> tuple[int, str, list[tuple[int, float]]]:
    """Run cmd, noting the wall-clock time at which each training step's line lands in logging.jsonl
    (logging_steps=1): (exit code, output, [(step, seconds since start)])."""
    out = tempfile.TemporaryFile(mode="w+")
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
    seen, marks = 0, []
    while True:
        done = p.poll() is not None
        if log_file.exists():
            lines = log_file.read_text().splitlines()
            now = time.time() - t0
            for x in lines[seen:]:
                try:
                    rec = json.loads(x)
                except ValueError:
                    break  # a line being written: read it on the next poll
                if "loss" in rec and "global_step/max_steps" in rec:
                    marks.append((int(str(rec["global_step/max_steps"]).split("/")[0]), now))
                seen += 1
        if done:
            break
        time.sleep(0.02)
    out.seek(0)
    return p.returncode, out.read(), marks


def short_run(steps: int, device: str) -> list[str]:
    """The swift keys of a bench's timed training run: ``steps`` optimizer steps, one logged line each (the step
    marks run_polled reads), nothing saved; on the CPU no loader workers."""
    return [f"max_steps={steps}", "logging_steps=1", "save_strategy='no'"] + \
        ([] if device == "cuda" else ["dataloader_num_workers=0"])


def run_fresh(run, env: dict, device: str) -> tuple[int, str, list[tuple[int, float]]]:
    """A rendered `swift sft` run started in an emptied folder (its own logging.jsonl), on this process's GPU when
    ``device`` is cuda, timed step by step (run_polled)."""
    import os

    shutil.rmtree(run.run_dir, ignore_errors=True)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    run.write()
    if device == "cuda":
        env = {**env, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    return run_polled(run.command(), env, run.run_dir, run.run_dir / "logging.jsonl")


def steady_rate(marks, warm: int = 5) -> float | None:
    """Steps per second between step `warm` and the last step (first steps: allocator and kernel warm-up)."""
    if len(marks) < 2:
        return None
    warm = min(warm, marks[-1][0] - 1)  # short (CI) runs: from the first step
    a = next(((s, t) for s, t in marks if s >= warm), None)
    if a is None or marks[-1][0] <= a[0]:
        return None
    return (marks[-1][0] - a[0]) / (marks[-1][1] - a[1])


def median_step_s(marks) -> float | None:
    """The median seconds per step between consecutive step marks (a log line every step, or every N: the window
    over its N steps): the sustained step time, robust to one-time stalls (the first batch of each new padded
    length; see bench/RESULTS.md)."""
    import statistics

    dts = [(b[1] - a[1]) / max(b[0] - a[0], 1) for a, b in zip(marks, marks[1:])]
    return statistics.median(dts) if dts else None
