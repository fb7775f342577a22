"""Small file helpers shared by every stage: atomic writes and JSONL in one spelling.

Usage: ``write_jsonl(path, rows)``; ``rows = read_jsonl(path)``; ``with atomic_open(path) as f: ...``;
``load_yaml(text_or_file)`` (every config the harness reads: experiments, templates, ``key=value`` overrides).

Atomic writes (temp file + rename) mean a killed process never leaves a half-written file that
a later run would trust.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from pathlib import Path

import jsonlines
import yaml


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading a number in exponent form without a dot (``2e-5``, ``1E3``) as a float as
    YAML 1.2 does: PyYAML follows YAML 1.1, where ``learning_rate: 2e-5`` is the string '2e-5' (the form ML configs
    write it in), and the experiment check would refuse it as not a float."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def load_yaml(stream):
    """``yaml.safe_load`` with exponent-form numbers read as floats (``_Loader``)."""
    return yaml.load(stream, Loader=_Loader)


def strict(obj):
    """``obj`` with every non-finite float (NaN, inf) as None: JSON has no NaN, and strict readers
    (jq, a browser's JSON.parse) refuse a file that holds one."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """The one JSON spelling of the project: UTF-8 text, strict (NaN -> null, never the bare NaN)."""
    return json.dumps(strict(obj), ensure_ascii=False, allow_nan=False, **kw)


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


class TornLine(ValueError):
    pass


def read_jsonl_lines(path: str | Path) -> tuple[list, int]:
    """(records, lines dropped): every whole JSON line of ``path``; the last line, when a killed writer left it
    cut (inside a UTF-8 character or a JSON value), is dropped and counted. A bad line anywhere else raises
    TornLine naming the file and line."""
    lines = Path(path).read_bytes().split(b"\n")
    out, dropped = [], 0
    last = max((i for i, b in enumerate(lines) if b.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if i != last:
                raise TornLine(f"{path}:{i + 1}: not a JSON line ({str(e)[:80]})") from None
            dropped += 1
    return out, dropped


def read_jsonl(path: str | Path) -> list:
    """The records of a JSONL file (a torn last line dropped, with a warning on stderr)."""
    rows, dropped = read_jsonl_lines(path)
    if dropped:
        print(f"warning: {path}: its last line is cut (a killed write); dropped", file=sys.stderr)
    return rows


def write_json(path: str | Path, obj) -> None:
    with atomic_open(path) as f:
        f.write(dumps(obj, indent=2) + "\n")


def read_json(path: str | Path):
    with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not damage
        return json.load(f)


def write_lines(path: str | Path, lines) -> None:
    with atomic_open(path) as f:
        for line in lines:
            f.write(f"{line}\n")
