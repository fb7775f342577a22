"""Shared fixtures: a small synthetic FingerTip tree, its build/export, the tiny Qwen3-VL, a config."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MODELSCOPE_OFFLINE", "1")
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the launchers and data_prep/runtime/procenv.py set it (huge pages)
# Several xdist workers (pyproject: -n auto) share the cores: each worker's torch, and the processes it starts,
# take their share instead of all of them each (the sweeps' queues set their own children's share)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject): one worker more than the cores. A worker often waits (on a child process starting,
    importing, writing a checkpoint, or on a kept eval process), and the extra one takes up that slack."""
    return (os.cpu_count() or 1) + 1


def _group(item) -> str | None:
    m = item.get_closest_marker("xdist_group")
    return (m.args[0] if m.args else m.kwargs.get("name")) if m else None


def pytest_collection_modifyitems(config, items):
    """The order xdist hands work out in (pyproject: --dist loadgroup --no-loadscope-reorder): the two demos first,
    one to each worker, two short tests, then the end-to-end module (it lands on the worker that finishes its demo
    first), then the rest in file order; the workers end within about a minute of each other on 2 cores."""
    demo = [i for i in items if _group(i) == "demo"]
    demo25 = [i for i in items if _group(i) == "demo25"]
    e2e = [i for i in items if _group(i) == "e2e"]
    rest = [i for i in items if _group(i) not in ("demo", "demo25", "e2e")]
    items[:] = demo + demo25 + rest[:2] + e2e + rest[2:]


def write_experiment(tmp: Path, name: str = "t", **changes) -> Path:
    """An experiment YAML (base: the demo) under tmp with the given nested changes."""
    cfg = {"base": str(ROOT / "swift_configs/experiments/demo.yaml"), "name": name,
           "paths": {"raw": str(tmp / "raw"), "data": str(tmp / "data"), "runs": str(tmp / "runs"),
                     "model": str(tmp / "model")}}
    for key, val in changes.items():
        cur = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = val
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def bf16_lora(dims: list[int], dropout: float):
    """A bf16 stack of Linear layers (``dims``: widths) with PEFT LoRA (r 8, alpha 32) on every layer, its adapter
    weights float32 as PEFT trains them, drawn from N(0, 0.1) (lora_B starts at zero: give it a value to see)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:])]).to(torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, lora_dropout=dropout,
                                            target_modules=[str(i) for i in range(len(dims) - 1)]))
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
            torch.nn.init.normal_(p, std=0.1)
    return model


def run_cli(*args, env=None, check=True, timeout=900) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory) -> Path:
    from data_prep.synth import synth

    raw = tmp_path_factory.mktemp("ft") / "raw"
    synth(raw, users=6, episodes=12, seed=1, test_users=2, test_episodes=18)
    return raw


@pytest.fixture(scope="session")
def exp(tmp_path_factory, synth_raw) -> dict:
    """A built and exported small experiment: test users 1-2, global 3-6."""
    from data_prep.config import load_experiment
    from data_prep.export import export
    from data_prep.fingertip import build

    tmp = tmp_path_factory.mktemp("exp")
    path = write_experiment(tmp, users__test="1-2", users__global="3-6")
    cfg = load_experiment(path)
    cfg["paths"]["raw"] = str(synth_raw)
    report = build(synth_raw, cfg["paths"]["data"], progress=False)
    export(cfg)
    return {"cfg": cfg, "path": path, "tmp": tmp, "report": report}


def built_once(tmp_path_factory, folder: str, *args: str) -> Path:
    """``scripts/build_tiny_model.py --out <run's base>/<folder> ARGS``, once per test run: under xdist the workers
    share the run's base folder (the parent of each worker's own) and take turns on a lock, so the second worker
    to ask finds the model there (~10 CPU-s a build on the 2-core box). The model folders are read-only to tests."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    out = base / "shared" / folder
    done = out.with_name(out.name + ".done")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            run_cli("scripts/build_tiny_model.py", "--out", str(out), *args)
            done.write_text("")
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny random Qwen3-VL, built once per test run (shared by the xdist workers)."""
    return built_once(tmp_path_factory, "tiny/tiny-qwen3-vl")


@pytest.fixture(scope="session")
def tiny25(tmp_path_factory) -> Path:
    """The tiny random Qwen2.5-VL (window attention in its ViT), built once per test run."""
    return built_once(tmp_path_factory, "tiny25/model", "--family", "qwen2_5_vl")
