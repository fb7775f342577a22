"""Export canonical samples to swift-format JSONL per stage / user / fold.

Usage: ``python -m data_prep export --config EXP.yaml [--folds random|episode] [--k 3] [--seed 42]``

Writes under DATA/swift/ (DATA/swift_<family>/ for a model family other than qwen3_vl, whose answers
are in its own coordinates: data_prep/family.py): ``global_train.jsonl`` (global users), ``user_U/all.jsonl`` and
``user_U/fold_F/{train,test}.jsonl`` (test users; names: data_prep/rundir.py), ``user_tokens/<kind>/...`` (the user-token
method: see ``export_user_tokens``); each JSONL has a ``.ids`` side file with
the sample ids in row order (swift drops extra columns). ``export.json`` records the settings;
re-exporting with other settings needs ``--force`` (runs trained on the old folds would no
longer match the files).
"""
from __future__ import annotations

from pathlib import Path

from .family import family
from .fingertip import load_samples
from .io import read_json, write_json, write_jsonl, write_lines
from .kfold import check_folds, fold_split, make_folds
from .rundir import swift_files, token_files
from .schema import USER_TAGS, swift_row, user_tag


class ExportError(RuntimeError):
    pass


class Writer:
    """Rows of one export: the experiment's prompt, the answer's point in the model family's coordinates."""

    def __init__(self, cfg: dict):
        self.prompt, self.fam, self.budget = cfg["data"]["prompt"], family(cfg), cfg["image_max_token_num"]

    def __call__(self, path: Path, samples, tag=lambda s: "") -> int:
        write_lines(path.with_suffix(".ids"), (s.id for s in samples))
        return write_jsonl(path, (swift_row(s, self.prompt, tag(s), self.fam.answer_point(s, self.budget))
                                  for s in samples))


def export(cfg: dict, force: bool = False) -> dict:
    data = Path(cfg["paths"]["data"])
    test_users, global_users = cfg["users"]["test"], cfg["users"]["global"]
    k, seed, mode, prompt = cfg["folds"]["k"], cfg["folds"]["seed"], cfg["folds"]["mode"], cfg["data"]["prompt"]
    settings = {"k": k, "seed": seed, "mode": mode, "prompt": prompt, "test_users": test_users,
                "global_users": global_users, **family(cfg).export_settings(cfg["image_max_token_num"])}
    out = swift_dir(cfg)
    _write = Writer(cfg)
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
    counts = {"global_train": _write(swift_files(out)["train"], gl), "users": {}}
    empty = [u for u in test_users if not samples[u]]
    if empty:
        raise ExportError(f"test users {empty} have no samples in {data / 'samples'}")
    splits = {}
    for u in test_users:
        us = samples[u]
        folds = make_folds(us, k, seed, mode)
        check_folds(folds, us)
        splits[u] = [fold_split(folds, f) for f in range(k)]
        entry = {"all": _write(swift_files(out, u)["all"], us), "folds": []}
        for f in range(k):
            train, test = fold_split(folds, f)
            paths = swift_files(out, u, f)
            entry["folds"].append({"train": _write(paths["train"], train), "test": _write(paths["test"], test)})
        counts["users"][str(u)] = entry
    counts["user_tokens"] = export_user_tokens(out, splits, k, _write)
    manifest = {"settings": settings, "counts": counts}
    write_json(manifest_path, manifest)
    return manifest


def export_user_tokens(out: Path, splits: dict, k: int, _write: Writer) -> dict:
    """The user-token method's files: per fold, one training set, the union of every test user's PIGG
    fold-f training samples, each prompt starting with its user's tag; per user and fold, the hold-out
    with that user's tag. One set per tag kind (special, text, pooled = no tag: the control)."""
    counts = {}
    for kind in USER_TAGS:
        tag = (lambda s, kind=kind: user_tag(kind, s.user))
        counts[kind] = [_write(token_files(out, kind, f)["train"], [s for u in splits for s in splits[u][f][0]], tag)
                        for f in range(k)]
        for u in splits:
            for f in range(k):
                _write(token_files(out, kind, f, u)["test"], splits[u][f][1], tag)
    return counts


def swift_dir(cfg: dict) -> Path:
    """DATA/swift (qwen3_vl), DATA/swift_<family> for a family that answers in other coordinates."""
    return Path(cfg["paths"]["data"]) / family(cfg).swift_dir()


def token_paths(cfg: dict, kind: str, fold: int, user: int | None = None) -> dict[str, Path]:
    """The user-token method's exported files of this experiment (rundir.token_files)."""
    return token_files(swift_dir(cfg), kind, fold, user)


def swift_paths(cfg: dict, user: int | None = None, fold: int | None = None) -> dict[str, Path]:
    """Where export put a stage's files: the one place later stages look them up (rundir.swift_files)."""
    return swift_files(swift_dir(cfg), user, fold)
