"""What produced an output: fingerprints of files, model folders and settings, compared before anything is reused.

Usage: ``sha256_file(path)``; ``fingerprint(obj)`` (a hash of its canonical JSON); ``model_identity(folder)``;
``differences(old, new)`` -> the "key: old -> new" lines of two records; ``check_same(record_file, new, what,
ways_out)`` raises ProvenanceError naming each difference and the ways out.

A model folder's identity is content-based and cheap at 8B sizes: the SHA-256 of its config and of every small
file beside the weights (adapter_config.json, trainer_state.json, ...), and of each weight file its name, size and
sixteen 64 KiB blocks read at evenly spaced offsets (a retrained or other checkpoint differs in all of them; a
full read of 16 GB would cost minutes per eval). The folder's path is recorded, never compared: a moved folder is
the same model. Imports no torch.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import HarnessError
from .io import read_json

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SMALL_FILES = (".json", ".txt", ".model", ".jinja", ".py", ".yaml")
BLOCKS, BLOCK = 16, 1 << 16
INFO_KEYS = ("path",)  # recorded for a person to read, not part of what must match


class ProvenanceError(HarnessError, RuntimeError):
    pass


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(obj) -> str:
    """SHA-256 of ``obj``'s canonical JSON (sorted keys): equal settings, equal fingerprint."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _sampled(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(BLOCKS):
            f.seek(max(0, (size - BLOCK) * i // max(1, BLOCKS - 1)))
            h.update(f.read(BLOCK))
    return h.hexdigest()


def model_identity(folder: str | Path) -> dict:
    """{"path", "fingerprint"} of a model, checkpoint or adapter folder (module docstring)."""
    folder = Path(folder).resolve()
    parts = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []:
        if f.suffix in WEIGHT_SUFFIXES:
            parts[f.name] = ["weights", f.stat().st_size, _sampled(f)]
        elif f.suffix in SMALL_FILES and f.stat().st_size < (64 << 20):
            parts[f.name] = ["file", sha256_file(f)]
    return {"path": str(folder), "fingerprint": fingerprint(parts)}


def data_identity(path: str | Path) -> dict:
    """{"path", "sha256"} of a data file and, where it has one, of its ``.ids`` side file."""
    path = Path(path).resolve()
    ids = path.with_suffix(".ids")
    return {"path": str(path), "sha256": sha256_file(path), "ids_sha256": sha256_file(ids) if ids.exists() else None}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in INFO_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Where two records differ (informational keys such as a path left out), as 'key: old -> new' lines."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        if key in INFO_KEYS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = differences(a, b, f"{prefix}{key}.")
            if sub and ("path" in a or "path" in b):
                sub = [f"{line} ({a.get('path', '?')} -> {b.get('path', '?')})" for line in sub]
            out += sub
        elif _strip(a) != _strip(b):
            where = ""
            if isinstance(a, dict) or isinstance(b, dict):
                where = f" ({(a or {}).get('path', '?')} -> {(b or {}).get('path', '?')})"
            elif isinstance(a, list) and isinstance(b, list) and all(isinstance(x, dict) for x in a + b):
                where = f" ({[x.get('path') for x in a]} -> {[x.get('path') for x in b]})"
            out.append(f"{prefix}{key}: {_short(a)} -> {_short(b)}{where}")
    return out


def _short(v) -> str:
    text = json.dumps(_strip(v), sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def eval_record(cfg: dict, model_id: dict, adapter_ids: list[dict], data: str | Path, max_new_tokens: int) -> dict:
    """What an eval folder's answers come from: its provenance.json (eval/job.py writes it, the sweeps check a
    finished fold's against it)."""
    from .store import BuildError, build_record

    try:
        build = build_record(cfg["paths"]["data"])["fingerprint"]
    except BuildError:
        build = None  # rows evaluated without a built DATA (their ground truth is in the rows)
    return {"model": model_id, "adapters": adapter_ids, "family": cfg["model"]["family"],
            "profile": cfg["eval"]["profile"], "prompt": cfg["data"]["prompt"],
            "image_max_token_num": cfg["image_max_token_num"], "long_press": "long_click" in cfg["data"]["actions"],
            "decoding": {"greedy": True, "max_new_tokens": max_new_tokens}, "data": data_identity(data), "build": build}


def check_same(record_file: Path, new: dict, what: str, ways_out: str) -> None:
    """Refuse (ProvenanceError) when ``record_file`` holds a record that differs from ``new``."""
    if not record_file.exists():
        return
    try:
        old = read_json(record_file)
    except (OSError, ValueError) as e:
        raise ProvenanceError(f"{record_file}: unreadable provenance record ({e}); {ways_out}") from None
    diff = differences(old, new)
    if diff:
        raise ProvenanceError(f"{record_file.parent}: {what} was made by something else than this run:\n  "
                              + "\n  ".join(diff) + f"\n{ways_out}")
