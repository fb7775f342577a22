"""The experiment config: paths, users, K, seed, fold mode, delta, image-token budget, run settings.

Usage: ``cfg = load_experiment("swift_configs/experiments/demo.yaml", ["folds.k=5"])``

One YAML per experiment under ``swift_configs/experiments/``. A file may start with
``base: other.yaml`` and then hold only its differences. Every stage (data export, YAML
generation, training launchers, eval, report) reads the experiment through this module.
Unknown keys and wrong types fail with the file and the dotted key; relative paths resolve
against the project root.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .family import FAMILIES
from .io import load_yaml
from .schema import PROMPT_COORDS
from .token_init import CHOICES as TOKEN_INIT_CHOICES

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "swift_configs" / "experiments"
DEFAULT_EXPERIMENT = EXPERIMENTS / "demo.yaml"

# keys whose values are free-form mappings (checked later against swift's own arguments)
FREE_KEYS = {"train.global_overrides", "train.person_overrides", "train.tokens_overrides", "eval.overrides"}
PATH_KEYS = {"paths.raw", "paths.data", "paths.runs", "paths.model"}
AUTO_INT_KEYS = {"eval.batch_size"}  # a positive int, or the word auto


class ConfigError(ValueError):
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
    out = copy.deepcopy(base)
    for key, val in over.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{src}: unknown key '{dotted}' (known here: {sorted(base)})")
        if val is None:
            raise ConfigError(f"{src}: '{dotted}' is null; give a value or leave the key out")
        if dotted in FREE_KEYS:
            if not isinstance(val, dict):
                raise ConfigError(f"{src}: '{dotted}' must be a mapping of swift arguments")
            out[key] = {**base[key], **val}
        elif isinstance(base[key], dict):
            if not isinstance(val, dict):
                raise ConfigError(f"{src}: '{dotted}' must be a mapping")
            out[key] = _merge(base[key], val, src, dotted + ".")
        else:
            out[key] = _check_type(val, base[key], src, dotted)
    return out


def _check_type(val, like, src, dotted):
    if isinstance(like, bool) or isinstance(val, bool):
        if isinstance(like, bool) != isinstance(val, bool):
            raise ConfigError(f"{src}: '{dotted}' must be {type(like).__name__}, got {val!r}")
        return val
    if isinstance(like, float) and isinstance(val, int):
        return float(val)
    if dotted.startswith("users."):
        return val  # '1-10' or a list; parsed later
    if dotted in AUTO_INT_KEYS:
        if val == "auto" or (isinstance(val, int) and val > 0):
            return val
        raise ConfigError(f"{src}: '{dotted}' must be auto or a positive int, got {val!r}")
    if type(val) is not type(like):
        raise ConfigError(f"{src}: '{dotted}' must be {type(like).__name__}, got {val!r}")
    return val


def _load_file(path: Path) -> dict:
    data = _read(path)
    base_name = data.pop("base", None)
    if base_name is None:
        return data
    base_path = (path.parent / base_name).resolve()
    return _merge(_load_file(base_path), data, path)


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip(), load_yaml(raw) if raw != "" else ""


def _nest(key: str, val) -> dict:
    d: dict = {}
    cur = d
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = val
    return d


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Load, merge with its base, apply key=value overrides, resolve paths, validate."""
    path = Path(path or DEFAULT_EXPERIMENT)
    if not path.exists() and (EXPERIMENTS / path).exists():
        path = EXPERIMENTS / path
    if not path.exists() and (EXPERIMENTS / f"{path}.yaml").exists():
        path = EXPERIMENTS / f"{path}.yaml"
    path = path.resolve()
    cfg = _load_file(path)
    for ov in overrides or []:
        key, val = parse_override(ov)
        cfg = _merge(cfg, _nest(key, val), Path("<command line>"))
    cfg["config_path"] = str(path)
    cfg["overrides"] = list(overrides or [])  # with config_path: how a child process loads the same experiment
    return _finish(cfg, path)


def _finish(cfg: dict, path: Path) -> dict:
    for dotted in PATH_KEYS:
        sect, key = dotted.split(".")
        p = Path(str(cfg[sect][key])).expanduser()
        cfg[sect][key] = str(p if p.is_absolute() else (ROOT / p).resolve())
    cfg["users"]["test"] = parse_users(cfg["users"]["test"])
    cfg["users"]["global"] = parse_users(cfg["users"]["global"])
    both = set(cfg["users"]["test"]) & set(cfg["users"]["global"])
    if both:
        raise ConfigError(f"{path}: users {sorted(both)} are both test and global users")
    if cfg["folds"]["k"] < 2:
        raise ConfigError(f"{path}: 'folds.k' must be >= 2, got {cfg['folds']['k']}")
    if cfg["folds"]["mode"] not in ("random", "episode"):
        raise ConfigError(f"{path}: 'folds.mode' must be random or episode")
    if cfg["train"]["tokens_init"] not in TOKEN_INIT_CHOICES:
        raise ConfigError(f"{path}: 'train.tokens_init' must be one of {list(TOKEN_INIT_CHOICES)}, "
                          f"got {cfg['train']['tokens_init']!r}")
    if cfg["train"]["vision_cache_gib"] < 0:
        raise ConfigError(f"{path}: 'train.vision_cache_gib' must be >= 0 (0: off), "
                          f"got {cfg['train']['vision_cache_gib']}")
    if cfg["train"]["pad_to_multiple"] < 0:
        raise ConfigError(f"{path}: 'train.pad_to_multiple' must be >= 0 (0 or 1: off), "
                          f"got {cfg['train']['pad_to_multiple']}")
    if cfg["train"]["offload"] not in ("none", "optimizer"):
        raise ConfigError(f"{path}: 'train.offload' must be none or optimizer, got {cfg['train']['offload']!r}")
    for key in ("max_new_tokens", "reserve_new_tokens"):
        if cfg["eval"][key] < 1:
            raise ConfigError(f"{path}: 'eval.{key}' must be >= 1, got {cfg['eval'][key]}")
    fam = FAMILIES.get(cfg["model"]["family"])
    if fam is None:
        raise ConfigError(f"{path}: 'model.family' must be one of {sorted(FAMILIES)}, got {cfg['model']['family']!r}")
    if cfg["data"]["prompt"] == "auto":
        cfg["data"]["prompt"] = fam.prompt
    elif cfg["data"]["prompt"] not in PROMPT_COORDS:
        raise ConfigError(f"{path}: 'data.prompt' must be auto or one of {sorted(PROMPT_COORDS)}, "
                          f"got {cfg['data']['prompt']!r}")
    elif PROMPT_COORDS[cfg["data"]["prompt"]] != fam.coords:
        raise ConfigError(f"{path}: 'data.prompt' {cfg['data']['prompt']!r} asks for {PROMPT_COORDS[cfg['data']['prompt']]} "
                          f"coordinates but model.family {fam.name} answers in {fam.coords}: use auto")
    bad = set(cfg["data"]["actions"]) - {"click", "long_click"}
    if bad:
        raise ConfigError(f"{path}: 'data.actions' may hold click, long_click; got {sorted(bad)}")
    return cfg


def add_config_args(parser) -> None:
    """The two flags every entry point takes: --config and trailing key=value overrides."""
    parser.add_argument("--config", default=str(DEFAULT_EXPERIMENT),
                        help="experiment YAML (default: the embedded demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set folds.k=5 (repeatable)")
