"""A process's environment: what every child process the harness starts gets, and what a model load may run.

Usage: ``subprocess.run(cmd, env=child_env(cfg, devices="0"))``; ``apply(cfg)`` in a process that loads a
model itself (eval); ``swift_args()`` and ``experiment_env(cfg)`` for a generated swift YAML.

The one place these are set:
- offline hubs (``HF_HUB_OFFLINE``, ``MODELSCOPE_OFFLINE``): nothing is ever downloaded;
- ``PYTHONPATH`` with the project root first (entry points run as ``python -m``);
- ``CUDA_VISIBLE_DEVICES`` from a device list (``cpu`` hides every GPU);
- ``DEFAULTS`` unless the environment sets them: ``THP_MEM_ALLOC_ENABLE=1`` (huge pages for large CPU tensors);
- from the experiment: ``IMAGE_MAX_TOKEN_NUM`` (the image budget: swift reads it per process and does not
  save it in a checkpoint, and answers in pixels depend on it) and each library patch's switch (the registry's
  ``env`` and ``setting``, data_prep/patches/__init__.py), which its plugin file reads in a ``swift sft`` /
  ``swift export`` child (``PLUGINS``, passed as swift's own ``external_plugins``).

Imports no torch (torch and swift only inside functions: apply, preload).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from ..patches import PATCHES, REGISTRY, env_value

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = [Path(__file__).resolve().parents[1] / "patches" / "plugins" / f"{p.name}.py" for p in REGISTRY if p.plugin]
TRUST_ENV = PATCHES["remote_code"].env
OFFLINE = {"HF_HUB_OFFLINE": "1", "MODELSCOPE_OFFLINE": "1"}
# PyTorch's CPU allocator backs tensors of >= 2 MB with transparent huge pages (read once, when a process first
# allocates: it must be in the environment a process starts with). On CPU the tiny model's 151,936-row logits are
# hundreds of MB a step, and without it each is page-faulted in 4 KB at a time: a CPU training step 1.61 -> 1.06 s,
# system time 10.8 -> 3.9 s (2-core box). A default: THP_MEM_ALLOC_ENABLE=0 in the environment keeps it off
DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1"}


def experiment_env(cfg: dict) -> dict[str, str]:
    """What a process loading this experiment's models needs in its environment."""
    env = {"IMAGE_MAX_TOKEN_NUM": str(cfg["image_max_token_num"])}
    for p in REGISTRY:
        if p.env and p.setting:
            section, key = p.setting.split(".")
            env[p.env] = env_value(cfg[section][key])
    return env


def child_env(cfg: dict | None = None, devices: str | None = None, **extra) -> dict[str, str]:
    """This process's environment for a child: offline, the project first on PYTHONPATH, the experiment's
    budget and remote-code switch (``cfg``), the visible devices (``devices``: "cpu", "0" or "0,1"), then ``extra``."""
    env = {**DEFAULTS, **os.environ, **OFFLINE}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if cfg is not None:
        env.update(experiment_env(cfg))
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = "" if devices == "cpu" else str(devices)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _entry(module: str, cfg: dict, *args: str) -> list[str]:
    """``python -m module --config EXP ARGS --set ...``: the experiment loaded as this process loaded it."""
    cmd = [sys.executable, "-m", module, "--config", cfg["config_path"], *args]
    for ov in cfg.get("overrides", []):
        cmd += ["--set", ov]
    return cmd


def eval_child(cfg: dict, model: str, adapters: list[str], pairs: list, device: str, **flags) -> tuple[list[str], dict]:
    """(command, environment) of a ``python -m eval.run`` child on ``device`` over (data, out) pairs: the one way a
    device-isolated eval process is started (the sweeps' hold-outs, eval's own shards). ``flags``: extra CLI flags
    (batch_size=..., shard=...; None left out). The child loads the experiment as this process did."""
    cmd = _entry("eval.run", cfg, "--model", str(model), "--devices", device)
    for a in adapters:
        cmd += ["--adapters", str(a)]
    for data, out in pairs:
        cmd += ["--data", str(data), "--out", str(out)]
    for k, v in flags.items():
        if v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd, child_env(cfg, devices=device)


def eval_server(cfg: dict, device: str) -> tuple[Callable[[int], list[str]], dict]:
    """(command given the reply descriptor, environment) of a ``python -m eval.serve`` child on ``device``: one eval
    process that answers a sweep worker's jobs with the base model kept loaded (data_prep/runtime/server.py starts it)."""
    return (lambda fd: _entry("eval.serve", cfg, "--devices", device, "--reply-fd", str(fd))), child_env(cfg, devices=device)


def train_server(reply_fd: int) -> list[str]:
    """The command of a ``python -m swift_configs.train_serve`` child: a sweep worker's training process, which
    imports once and forks each run; it is started in the runs' own environment (``child_env`` of the run)."""
    return [sys.executable, "-m", "swift_configs.train_serve", "--reply-fd", str(reply_fd)]


PRELOAD = ("torch", "peft", "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
           "transformers.models.qwen3_vl.modeling_qwen3_vl")
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def preload(*more: str) -> float:
    """Import what a run or an eval imports first (``PRELOAD``, then the modules ``more``) in a kept process before it
    is given work; returns the seconds. While it imports, torch's "is CUDA available" and the GPU's compute capability
    are answered by NVML, so the CUDA driver is not started here (a process forked from this one could not use CUDA
    otherwise)."""
    import importlib
    import time

    t, had = time.time(), os.environ.get(NVML_CHECK)
    os.environ[NVML_CHECK] = "1"
    import torch

    capability = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = _nvml_capability  # bitsandbytes asks at import (peft imports it)
    try:
        for m in (*PRELOAD, *more):
            importlib.import_module(m)
    finally:
        torch.cuda.get_device_capability = capability
        if had is None:
            os.environ.pop(NVML_CHECK, None)
        else:
            os.environ[NVML_CHECK] = had
    return time.time() - t


def _nvml_capability(device=None) -> tuple[int, int]:
    """torch.cuda.get_device_capability answered by NVML, without starting CUDA: bitsandbytes calls it while it is
    imported (peft imports it wherever it is installed) to pick its CUDA library, and torch's own answer starts the
    CUDA driver, after which no forked run could use the GPU (found on an H200: every run fell back to a fresh
    process). The visible devices' first physical index is asked (bitsandbytes uses the highest capability only)."""
    import ctypes

    vis = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    nvml = ctypes.CDLL("libnvidia-ml.so.1")
    handle, major, minor = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_int()
    if (nvml.nvmlInit_v2() or nvml.nvmlDeviceGetHandleByIndex_v2(int(vis) if vis.isdigit() else 0, ctypes.byref(handle))
            or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor))):
        raise RuntimeError("NVML could not tell the GPU's compute capability")
    return major.value, minor.value


def apply(cfg: dict) -> None:
    """This process loads the experiment's models itself (eval): the same budget, remote-code switch and window
    attention as a training child."""
    os.environ.update({**OFFLINE, **experiment_env(cfg)})
    PATCHES["remote_code"].apply(cfg["model"]["trust_remote_code"])
    windows = PATCHES["window_attention"]
    windows.apply() if cfg["model"]["batched_window_attention"] else windows.remove()


def swift_args(existing: list | None = None) -> dict:
    """The swift keys that carry the switches into a `swift sft` / `swift export` child (after the user's own plugins)."""
    ours = {str(p.resolve()) for p in PLUGINS}
    plugins = [p for p in (existing or []) if str(Path(p).resolve()) not in ours]
    return {"external_plugins": plugins + [str(p) for p in PLUGINS]}
