"""The experiment config: load a YAML against the declared schema (data_prep/config_schema.py), with ``base:``
files and ``--set key=value`` overrides, and resolve its paths.

Usage: ``cfg = load_experiment("swift_configs/experiments/demo.yaml", ["folds.k=5"])``

One YAML per experiment under ``swift_configs/experiments/``. A file may start with ``base: other.yaml`` and then
hold only its differences; without ``base:`` it is read over the schema's defaults. Every stage (data export, YAML
generation, training launchers, eval, report) reads the experiment through this module. Unknown keys, wrong types,
values out of range, missing required keys, ``base:`` cycles and overrides that do not parse are refused with the
file (or ``<command line>``) and the dotted key. Paths in a file resolve against the project root; paths given
with ``--set`` against the directory the command runs in.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from .errors import HarnessError
from .config_schema import KEYS, MAPPING_KEYS, PATH_KEYS, REQUIRED, check_value, defaults, sections
from .family import FAMILIES
from .io import load_yaml
from .schema import PROMPT_COORDS

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "swift_configs" / "experiments"
DEFAULT_EXPERIMENT = EXPERIMENTS / "demo.yaml"
CMDLINE = Path("<command line>")


class ConfigError(HarnessError, ValueError):
    pass


def parse_users(spec) -> list[int]:
    """'1-10', '1,3,5-7', [1, 2, 3] or 4 -> sorted unique ints."""
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, list):
        out = []
        for item in spec:
            out += parse_users(item)
        return sorted(set(out))
    out = []
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()) or int(a) > int(b):
                raise ConfigError(f"bad user range {part!r} (want e.g. 1-10)")
            out += range(int(a), int(b) + 1)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ConfigError(f"bad user id {part!r} (want e.g. 1-10 or 1,3,5)")
    return sorted(set(out))


def _read(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: experiment config not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _merge(base: dict, over: dict, src: Path, prefix: str = "") -> dict:
    """``over`` on top of ``base``, every key checked against the schema (unknown, null, type, range)."""
    out = copy.deepcopy(base)
    for key, val in over.items():
        dotted = f"{prefix}{key}"
        if dotted not in KEYS and dotted not in sections():
            known = sorted(k for k in base) if prefix else sorted(set(base) | {"base"})
            raise ConfigError(f"{src}: unknown key '{dotted}' (known here: {known}; docs/config.md lists them all)")
        if val is None:
            raise ConfigError(f"{src}: '{dotted}' is null; give a value or leave the key out")
        if dotted in sections():
            if not isinstance(val, dict):
                raise ConfigError(f"{src}: '{dotted}' must be a mapping of its keys")
            out[key] = _merge(base[key], val, src, dotted + ".")
            continue
        try:
            val = check_value(dotted, val, str(src))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        out[key] = {**base[key], **val} if dotted in MAPPING_KEYS and isinstance(base[key], dict) else val
    return out


def _load_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise ConfigError("base: cycle: " + " -> ".join(str(p) for p in (*chain, path)))
    data = _read(path)
    base_name = data.pop("base", None)
    if base_name is None:
        return _merge(defaults(), data, path)
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: 'base' must name another experiment file, got {base_name!r}")
    return _merge(_load_file((path.parent / base_name).resolve(), (*chain, path)), data, path)


def parse_override(text: str) -> tuple[str, object]:
    """``key.sub=value`` -> (key, value read as YAML); a value that does not parse names the key and the text."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: no key before '='")
    try:
        return key, load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        why = str(e).splitlines()[0]
        raise ConfigError(f"{CMDLINE}: '{key}': the value {raw!r} is not valid YAML ({why})") from None


def _nest(key: str, val) -> dict:
    d: dict = {}
    cur = d
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = val
    return d


def find_experiment(path: str | Path | None) -> Path:
    """An experiment file: a path (relative to the current directory), or a name under swift_configs/experiments/."""
    path = Path(path or DEFAULT_EXPERIMENT).expanduser()
    for cand in (path, EXPERIMENTS / path, EXPERIMENTS / f"{path}.yaml"):
        if cand.is_file():
            return cand.resolve()
    raise ConfigError(f"{path}: experiment config not found (a path from {os.getcwd()}, or a name under {EXPERIMENTS})")


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Load, merge with its base, apply key=value overrides, resolve paths, validate."""
    path = find_experiment(path)
    cfg = _load_file(path)
    resolved = []  # the overrides with their paths made absolute: how a child (started elsewhere) reads them
    for ov in overrides or []:
        key, val = parse_override(ov)
        is_path = key in PATH_KEYS or (key == "train.person_base" and isinstance(val, str)
                                       and ("/" in val or val.startswith(".")))
        if is_path and isinstance(val, str) and val.strip():
            val = str(Path(os.path.expanduser(val)).resolve())  # typed by the user: from where they stand
            ov = f"{key}={val}"
        resolved.append(ov)
        cfg = _merge(cfg, _nest(key, val), CMDLINE)
    missing = [k.key for k in KEYS.values() if _get(cfg, k.key) is REQUIRED]
    if missing:
        raise ConfigError(f"{path}: required key(s) missing: {missing} (docs/config.md; or start the file with "
                          "'base: pigg.yaml')")
    cfg["config_path"] = str(path)
    cfg["overrides"] = resolved  # with config_path: how a child process (its own working folder) loads the same experiment
    return _finish(cfg, path)


def _get(cfg: dict, dotted: str):
    node = cfg
    for p in dotted.split("."):
        node = node[p]
    return node


def _finish(cfg: dict, path: Path) -> dict:
    for dotted in PATH_KEYS:
        sect, key = dotted.split(".")
        p = Path(str(cfg[sect][key])).expanduser()
        cfg[sect][key] = str(p if p.is_absolute() else (ROOT / p).resolve())
    cfg["users"]["test"] = parse_users(cfg["users"]["test"])
    cfg["users"]["global"] = parse_users(cfg["users"]["global"])
    for group in ("test", "global"):
        if not cfg["users"][group]:
            raise ConfigError(f"{path}: 'users.{group}' lists no user")
        if cfg["users"][group][0] < 1:
            raise ConfigError(f"{path}: 'users.{group}': user ids start at 1, got {cfg['users'][group][0]}")
    both = set(cfg["users"]["test"]) & set(cfg["users"]["global"])
    if both:
        raise ConfigError(f"{path}: users {sorted(both)} are both test and global users")
    if cfg["eval"]["batch_size"] != "auto" and cfg["eval"]["batch_size"] < 1:
        raise ConfigError(f"{path}: 'eval.batch_size' must be auto or >= 1, got {cfg['eval']['batch_size']}")
    fam = FAMILIES[cfg["model"]["family"]]
    if cfg["data"]["prompt"] == "auto":
        cfg["data"]["prompt"] = fam.prompt
    elif PROMPT_COORDS[cfg["data"]["prompt"]] != fam.coords:
        raise ConfigError(f"{path}: 'data.prompt' {cfg['data']['prompt']!r} asks for {PROMPT_COORDS[cfg['data']['prompt']]} "
                          f"coordinates but model.family {fam.name} answers in {fam.coords}: use auto")
    return cfg
