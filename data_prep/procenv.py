"""A process's environment: what every child process the harness starts gets, and what a model load may run.

Usage: ``subprocess.run(cmd, env=child_env(cfg, devices="0"))``; ``apply(cfg)`` in a process that loads a
model itself (eval); ``swift_args()`` and ``experiment_env(cfg)`` for a generated swift YAML.

The one place these are set:
- offline hubs (``HF_HUB_OFFLINE``, ``MODELSCOPE_OFFLINE``): nothing is ever downloaded;
- ``PYTHONPATH`` with the project root first (entry points run as ``python -m``);
- ``CUDA_VISIBLE_DEVICES`` from a device list (``cpu`` hides every GPU);
- ``DEFAULTS`` unless the environment sets them: ``THP_MEM_ALLOC_ENABLE=1`` (huge pages for large CPU tensors);
- from the experiment: ``IMAGE_MAX_TOKEN_NUM`` (the image budget: swift reads it per process and does not
  save it in a checkpoint, and answers in pixels depend on it), ``PIGG_TRUST_REMOTE_CODE`` and
  ``PIGG_BATCHED_WINDOWS`` (data_prep/window_attention.py), ``PIGG_TOKEN_INIT`` (data_prep/token_init.py),
  ``PIGG_LORA_AUTOCAST_INPUTS``, ``PIGG_LORA_FUSED_ADD``, ``PIGG_NATIVE_RMSNORM``, ``PIGG_VISION_CACHE_GIB``,
  ``PIGG_EPOCH_PREFETCH`` and ``PIGG_PAD_TO_MULTIPLE`` (data_prep/lora_inputs.py, lora_fused.py, rms_norm.py,
  vision_cache.py, epoch_prefetch.py, pad_multiple.py).

Remote code: ms-swift 4.6 loads every model folder with ``trust_remote_code=True`` (``ModelLoader.
default_trust_remote_code``, and a hard-coded ``AutoConfig.from_pretrained(..., trust_remote_code=True)`` in
``swift.model.model_meta._get_model_info``), i.e. it would run Python files shipped inside the folder. Qwen3-VL and
Qwen2.5-VL are transformers' own classes and need none of it, so the harness turns it off unless the
experiment says ``model.trust_remote_code: true``: in this process by ``set_trust_remote_code``, in a
``swift sft`` / ``swift export`` child through swift's own ``external_plugins`` (``PLUGINS``: plugins/remote_code.py
reads ``PIGG_TRUST_REMOTE_CODE``). A folder that needs its own code then fails to load with transformers' error.
Imports no torch (torch and swift only inside functions: set_trust_remote_code, preload).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from .epoch_prefetch import ENV as EPOCH_PREFETCH_ENV
from .lora_fused import ENV as LORA_FUSED_ENV
from .lora_inputs import ENV as LORA_INPUTS_ENV
from .pad_multiple import ENV as PAD_MULTIPLE_ENV
from .rms_norm import ENV as RMS_NORM_ENV
from .token_init import ENV as TOKEN_INIT_ENV
from .vision_cache import ENV as VISION_CACHE_ENV
from .window_attention import ENV as WINDOWS_ENV

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = [Path(__file__).with_name("plugins") / f
           for f in ("remote_code.py", "window_attention.py", "token_init.py", "lora_inputs.py", "lora_fused.py",
                     "vision_cache.py", "flash_varlen.py", "rms_norm.py", "epoch_prefetch.py", "pad_multiple.py")]
# swift's external_plugins: the remote-code switch, Qwen2.5-VL's batched window attention
# (data_prep/window_attention.py), distinct starting rows of new user tokens (data_prep/token_init.py),
# LoRA inputs left in the autocast dtype (data_prep/lora_inputs.py), the LoRA update added inside one product
# (data_prep/lora_fused.py), the frozen vision tower's features kept for later epochs (data_prep/vision_cache.py),
# Qwen3-VL's RMSNorm as torch's fused operator (data_prep/rms_norm.py), int lengths for flash-attn-4's varlen kernel
# (data_prep/attention.py), the next epoch's batches encoded during this one (data_prep/epoch_prefetch.py), batches
# padded to a multiple of tokens on CUDA (data_prep/pad_multiple.py)
TRUST_ENV = "PIGG_TRUST_REMOTE_CODE"
OFFLINE = {"HF_HUB_OFFLINE": "1", "MODELSCOPE_OFFLINE": "1"}
# PyTorch's CPU allocator backs tensors of >= 2 MB with transparent huge pages (read once, when a process first
# allocates: it must be in the environment a process starts with). On CPU the tiny model's 151,936-row logits are
# hundreds of MB a step, and without it each is page-faulted in 4 KB at a time: a CPU training step 1.61 -> 1.06 s,
# system time 10.8 -> 3.9 s (2-core box). A default: THP_MEM_ALLOC_ENABLE=0 in the environment keeps it off
DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1"}


def experiment_env(cfg: dict) -> dict[str, str]:
    """What a process loading this experiment's models needs in its environment."""
    return {"IMAGE_MAX_TOKEN_NUM": str(cfg["image_max_token_num"]),
            TRUST_ENV: "1" if cfg["model"]["trust_remote_code"] else "0",
            WINDOWS_ENV: "1" if cfg["model"]["batched_window_attention"] else "0",
            TOKEN_INIT_ENV: cfg["train"]["tokens_init"],
            LORA_INPUTS_ENV: "1" if cfg["train"]["lora_autocast_inputs"] else "0",
            LORA_FUSED_ENV: "1" if cfg["train"]["lora_fused_add"] else "0",
            RMS_NORM_ENV: "1" if cfg["train"]["native_rms_norm"] else "0",
            EPOCH_PREFETCH_ENV: "1" if cfg["train"]["epoch_prefetch"] else "0",
            PAD_MULTIPLE_ENV: str(cfg["train"]["pad_to_multiple"]),
            VISION_CACHE_ENV: str(cfg["train"]["vision_cache_gib"])}


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
    process that answers a sweep worker's jobs with the base model kept loaded (data_prep/server.py starts it)."""
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
    from . import window_attention

    os.environ.update({**OFFLINE, **experiment_env(cfg)})
    set_trust_remote_code(cfg["model"]["trust_remote_code"])
    window_attention.apply(cfg["model"]["batched_window_attention"])


class _SwitchedAutoConfig:
    """transformers' AutoConfig as swift's model_meta sees it: trust_remote_code follows the switch."""

    def __init__(self, auto_config):
        self.auto_config = auto_config

    def from_pretrained(self, *args, **kwargs):
        from swift.model.register import ModelLoader

        kwargs["trust_remote_code"] = ModelLoader.default_trust_remote_code
        return self.auto_config.from_pretrained(*args, **kwargs)


def _drop_untrue_warning(record) -> bool:
    """swift warns 'Loading ... with trust_remote_code=True' before every load: not so while the switch is off."""
    from swift.model.register import ModelLoader

    return ModelLoader.default_trust_remote_code or "with trust_remote_code=True" not in record.getMessage()


def set_trust_remote_code(on: bool) -> None:
    """Whether swift's model loaders (config, processor, weights) may run code shipped in a model folder."""
    from swift.model import model_meta
    from swift.model.register import ModelLoader
    from swift.utils import get_logger

    ModelLoader.default_trust_remote_code = bool(on)
    if not isinstance(model_meta.AutoConfig, _SwitchedAutoConfig):
        model_meta.AutoConfig = _SwitchedAutoConfig(model_meta.AutoConfig)
    logger = get_logger()
    if _drop_untrue_warning not in logger.filters:
        logger.addFilter(_drop_untrue_warning)


def trust_from_env() -> bool:
    return os.environ.get(TRUST_ENV, "0") == "1"


def swift_args(existing: list | None = None) -> dict:
    """The swift keys that carry the switches into a `swift sft` / `swift export` child (after the user's own plugins)."""
    ours = {str(p.resolve()) for p in PLUGINS}
    plugins = [p for p in (existing or []) if str(Path(p).resolve()) not in ours]
    return {"external_plugins": plugins + [str(p) for p in PLUGINS]}
