"""Small file helpers shared by every stage: atomic writes and JSONL in one spelling.

Usage: ``write_jsonl(path, rows)``; ``rows = read_jsonl(path)``; ``with atomic_open(path) as f: ...``

Atomic writes (temp file + rename) mean a killed process never leaves a half-written file that
a later run would trust.
"""
from __future__ import annotations

import contextlib
import json
import os
from functools import partial
from pathlib import Path

import jsonlines

dumps = partial(json.dumps, ensure_ascii=False)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_jsonl(path: str | Path, rows) -> int:
    n = 0
    with atomic_open(path) as f:
        writer = jsonlines.Writer(f, dumps=dumps)
        for row in rows:
            writer.write(row)
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    with jsonlines.open(path) as reader:
        return list(reader)


def write_json(path: str | Path, obj) -> None:
    with atomic_open(path) as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_lines(path: str | Path, lines) -> None:
    with atomic_open(path) as f:
        for line in lines:
            f.write(f"{line}\n")
