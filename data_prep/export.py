"""Export canonical samples to swift-format JSONL per stage / user / fold.

Usage: ``python -m data_prep export --config EXP.yaml [--folds random|episode] [--k 3] [--seed 42]``

Writes under DATA/swift/: ``global_train.jsonl`` (global users), ``user_{k}/all.jsonl`` and
``user_{k}/fold_{f}/{train,test}.jsonl`` (test users); each JSONL has a ``.ids`` side file with
the sample ids in row order (swift drops extra columns). ``export.json`` records the settings;
re-exporting with other settings needs ``--force`` (runs trained on the old folds would no
longer match the files).
"""
from __future__ import annotations

from pathlib import Path

from .fingertip import load_samples
from .io import read_json, write_json, write_jsonl, write_lines
from .kfold import check_folds, fold_split, make_folds
from .schema import swift_row


class ExportError(RuntimeError):
    pass


def _write(path: Path, samples, prompt: str) -> int:
    write_lines(path.with_suffix(".ids"), (s.id for s in samples))
    return write_jsonl(path, (swift_row(s, prompt) for s in samples))


def export(cfg: dict, force: bool = False) -> dict:
    data = Path(cfg["paths"]["data"])
    test_users, global_users = cfg["users"]["test"], cfg["users"]["global"]
    k, seed, mode, prompt = cfg["folds"]["k"], cfg["folds"]["seed"], cfg["folds"]["mode"], cfg["data"]["prompt"]
    settings = {"k": k, "seed": seed, "mode": mode, "prompt": prompt, "test_users": test_users,
                "global_users": global_users}
    out = data / "swift"
    manifest_path = out / "export.json"
    if manifest_path.exists() and not force:
        old = read_json(manifest_path).get("settings")
        if old != settings:
            raise ExportError(f"{manifest_path}: exported before with {old}; now {settings}. "
                              "Runs trained on the old folds would not match: pass --force to overwrite")
    samples = load_samples(data, sorted(set(test_users) | set(global_users)))
    gl = [s for u in global_users for s in samples[u]]
    if {s.id for s in gl} & {s.id for u in test_users for s in samples[u]}:
        raise ExportError("a sample is both in the global and the test set")
    counts = {"global_train": _write(out / "global_train.jsonl", gl, prompt), "users": {}}
    empty = [u for u in test_users if not samples[u]]
    if empty:
        raise ExportError(f"test users {empty} have no samples in {data / 'samples'}")
    for u in test_users:
        us = samples[u]
        folds = make_folds(us, k, seed, mode)
        check_folds(folds, us)
        udir = out / f"user_{u}"
        entry = {"all": _write(udir / "all.jsonl", us, prompt), "folds": []}
        for f in range(k):
            train, test = fold_split(folds, f)
            fdir = udir / f"fold_{f}"
            entry["folds"].append({"train": _write(fdir / "train.jsonl", train, prompt),
                                   "test": _write(fdir / "test.jsonl", test, prompt)})
        counts["users"][str(u)] = entry
    manifest = {"settings": settings, "counts": counts}
    write_json(manifest_path, manifest)
    return manifest


def swift_paths(cfg: dict, user: int | None = None, fold: int | None = None) -> dict[str, Path]:
    """Where export put a stage's files: the one place later stages look them up."""
    out = Path(cfg["paths"]["data"]) / "swift"
    if user is None:
        return {"train": out / "global_train.jsonl"}
    if fold is None:
        return {"all": out / f"user_{user}" / "all.jsonl"}
    d = out / f"user_{user}" / f"fold_{fold}"
    return {"train": d / "train.jsonl", "test": d / "test.jsonl"}
