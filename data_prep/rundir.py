"""Run-folder conventions read by training and eval alike: DONE / TRAINED markers and checkpoints.

Usage: ``write_marker(run / "DONE", checkpoint=ckpt)``; ``marker_checkpoint(run / "DONE")``;
``latest_checkpoint(run)``; ``resolve_checkpoint(path)``

A marker is a small YAML file written atomically: TRAINED when `swift sft` finished (names the
final checkpoint), DONE when the whole stage finished (global: training; person: training + eval
of the hold-out fold). A checkpoint folder counts only when complete (trainer_state.json is written
after the weights and optimizer). This module sits on the lowest floor (no torch, no swift), so
the eval layer and the training layer share one reading of a run folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .io import atomic_open

MARKERS = ("DONE", "TRAINED")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def write_marker(path: Path, **fields) -> None:
    with atomic_open(path) as f:
        f.write(yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in fields.items()}))


def read_marker(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def marker_checkpoint(marker: Path) -> Path:
    """The checkpoint a DONE/TRAINED marker names."""
    return Path(read_marker(marker)["checkpoint"])


def checkpoint_complete(ckpt: Path) -> bool:
    """HF's Trainer writes trainer_state.json after the weights and optimizer: its presence marks a whole one."""
    return (ckpt / "trainer_state.json").exists() and any((ckpt / f).exists() for f in WEIGHT_FILES)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint-N/ of a run folder (None if there is none)."""
    cks = [c for c in Path(run_dir).glob("checkpoint-*") if c.is_dir() and c.name.split("-")[-1].isdigit()
           and checkpoint_complete(c)]
    return max(cks, key=lambda c: int(c.name.split("-")[-1]), default=None)


def final_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint swift names last in logging.jsonl, else the newest complete one."""
    log = Path(run_dir) / "logging.jsonl"
    if log.exists():
        for line in reversed(log.read_text(encoding="utf-8").splitlines()):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("last_model_checkpoint"):
                return Path(rec["last_model_checkpoint"])
    return latest_checkpoint(run_dir)


def resolve_checkpoint(path: Path) -> Path:
    """A run folder with a DONE/TRAINED marker stands for its final checkpoint; anything else for itself."""
    path = Path(path)
    for marker in MARKERS:
        if (path / marker).exists():
            return marker_checkpoint(path / marker)
    return path.resolve()
