"""FingerTip-20K data preparation CLI.

Usage:
  python -m data_prep synth    --out RAW [--users 12 --episodes 50 --seed 0]
  python -m data_prep build    [--config EXP] [--raw RAW] [--out DATA] [--actions click,long_click] [--dry-run]
  python -m data_prep export   [--config EXP] [--folds random|episode] [--k 3] [--seed 42] [--force] [--dry-run]
  python -m data_prep validate [--config EXP] [--data DATA]
  python -m data_prep import-pigg --pkl-dir DIR [--out DATA] [--force]
  python -m data_prep survey   [--config EXP] [--data DATA]
  python -m data_prep import-clicks --records FILE.jsonl|FILE.csv [--out DATA] [--force]
Paths default to the experiment config (the embedded demo unless --config is given).
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import load_experiment
from .runtime.cli import add_config_args, nonneg_int, positive_int, run
from .runtime.lock import FolderLock


def _print(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write a synthetic FingerTip-layout dataset")
    s.add_argument("--out", required=True)
    s.add_argument("--users", type=positive_int, default=12)
    s.add_argument("--episodes", type=positive_int, default=50)
    s.add_argument("--test-users", type=nonneg_int, default=3, help="first N users (kept free of defects)")
    s.add_argument("--test-episodes", type=positive_int, default=None, help="episodes of each of those users")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=float, default=0.25, help="screenshot size as a share of the phone's")
    s.add_argument("--no-defects", action="store_true")
    for name, hlp in [("build", "raw FingerTip tree -> DATA/samples"), ("export", "samples -> swift JSONL"),
                      ("validate", "re-check samples and exports"), ("survey", "dataset report")]:
        q = sub.add_parser(name, help=hlp)
        add_config_args(q)
        if name == "build":
            q.add_argument("--raw")
            q.add_argument("--out")
            q.add_argument("--actions", help="comma list: click,long_click (default: config data.actions)")
            q.add_argument("--workers", type=positive_int, default=None, help="reader processes (default: up to 4)")
        if name in ("build", "export"):
            q.add_argument("--dry-run", action="store_true", help="print what would be read and written; write nothing")
        if name == "export":
            q.add_argument("--folds", choices=["random", "episode"])
            q.add_argument("--k", type=positive_int, help="folds per test user (>= 2)")
            q.add_argument("--seed", type=nonneg_int)
            q.add_argument("--data")
            q.add_argument("--force", action="store_true")
        if name in ("validate", "survey"):
            q.add_argument("--data")
    q = sub.add_parser("import-pigg", help="PIGG's user_{k}.pkl files -> DATA/samples")
    q.add_argument("--pkl-dir", required=True)
    add_config_args(q)
    q.add_argument("--out")
    q.add_argument("--force", action="store_true", help="replace the sample set DATA already holds (never merged)")
    q = sub.add_parser("import-clicks", help="your own click records -> DATA/samples")
    q.add_argument("--records", required=True)
    add_config_args(q)
    q.add_argument("--out")
    q.add_argument("--force", action="store_true", help="replace the sample set DATA already holds (never merged)")
    a = p.parse_args(argv)
    return run(lambda: command(a))


WRITES = ("build", "export", "import-pigg", "import-clicks")  # commands that write DATA: one process at a time


def command(a) -> int:
    if a.cmd == "synth":
        from .synth import synth
        _print(synth(a.out, a.users, a.episodes, a.seed, a.scale, not a.no_defects,
                     test_users=a.test_users, test_episodes=a.test_episodes))
        return 0
    ov = list(a.overrides)
    if getattr(a, "folds", None):
        ov.append(f"folds.mode={a.folds}")
    if getattr(a, "k", None) is not None:
        ov.append(f"folds.k={a.k}")
    if getattr(a, "seed", None) is not None:
        ov.append(f"folds.seed={a.seed}")
    if getattr(a, "actions", None):
        ov.append(f"data.actions=[{a.actions}]")
    for attr, key in (("raw", "paths.raw"), ("out", "paths.data"), ("data", "paths.data")):
        if getattr(a, attr, None):
            ov.append(f"{key}={a.__dict__[attr]}")
    cfg = load_experiment(a.config, ov)
    data = cfg["paths"]["data"]
    if getattr(a, "dry_run", False):
        return dry_run(a, cfg, data)
    if a.cmd in WRITES:
        with FolderLock(data, "data folder"):
            return write_command(a, cfg, data)
    if a.cmd == "validate":
        from .validate import validate
        rep = validate(data)
        _print(rep)
        if rep["errors"]:
            print(f"validate: {sum(rep['errors'].values())} problems in {data}", file=sys.stderr)
            return 1
    elif a.cmd == "survey":
        from .survey import survey
        print(survey(cfg))
    return 0


def dry_run(a, cfg: dict, data: str) -> int:
    if a.cmd == "build":
        from pathlib import Path

        from .fingertip import find_users
        users = find_users(Path(cfg["paths"]["raw"]))
        print(f"build: {cfg['paths']['raw']} ({len(users)} users, {sum(len(e) for _, e, _ in users)} episodes) "
              f"-> {data}/samples, actions {cfg['data']['actions']}")
    else:
        from .export import export_settings, swift_dir
        from .store import build_record
        build_record(data)
        print(f"export: {data}/samples -> {swift_dir(cfg)} with {export_settings(cfg)}")
    return 0


def write_command(a, cfg: dict, data: str) -> int:
    if a.cmd == "build":
        from .fingertip import build
        rep = build(cfg["paths"]["raw"], data, tuple(cfg["data"]["actions"]), a.workers)
        _print({k: rep[k] for k in ("samples", "users", "episodes", "actions", "skipped")})
        print(f"wrote {data}/samples/, users.json, report.json, build.json", file=sys.stderr)
    elif a.cmd == "export":
        from .export import export
        _print(export(cfg, force=a.force)["counts"])
    elif a.cmd == "import-pigg":
        from .import_pigg import import_pigg
        rep = import_pigg(a.pkl_dir, data, force=a.force)
        _print(rep)
        if rep["refused_files"]:
            print(f"import-pigg: {len(rep['refused_files'])} file(s) refused (report.json: refused_files)",
                  file=sys.stderr)
            return 1
    elif a.cmd == "import-clicks":
        from .import_clicks import import_clicks
        rep = import_clicks(a.records, data, force=a.force)
        _print(rep)
        return 1 if rep["samples"] == 0 else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
