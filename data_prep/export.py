"""Export canonical samples to swift-format JSONL per stage / user / fold.

Usage: ``python -m data_prep export --config EXP.yaml [--folds random|episode] [--k 3] [--seed 42]``

Writes under DATA/swift/ (DATA/swift_<family>/ for a model family other than qwen3_vl, whose answers
are in its own coordinates: data_prep/family.py): ``global_train.jsonl`` (global users), ``user_U/all.jsonl`` and
``user_U/fold_F/{train,test}.jsonl`` (test users; names: data_prep/rundir.py), ``user_tokens/<kind>/...`` (the user-token
method: see ``export_user_tokens``); each JSONL has a ``.ids`` side file with
the sample ids in row order (swift drops extra columns). The export is written whole into a staging folder and
swapped in; ``export.json`` (written last, inside it) records the settings, the build's fingerprint and the counts.
Re-exporting with other settings needs ``--force`` (runs trained on the old folds would no longer match the
files). Every stage that reads an export first calls ``check_export(cfg)``: an export made with other fold
settings, users, prompt or image budget than the experiment's, or from another build of the samples, is refused.
"""
from __future__ import annotations

from pathlib import Path

from .errors import HarnessError
from .family import family
from .io import read_json, write_json, write_jsonl, write_lines
from .kfold import check_folds, fold_split, make_folds
from .provenance import differences
from .rundir import EXPORT_RECORD, swift_files, token_files
from .schema import USER_TAGS, swift_row, user_tag
from .store import build_record, load_samples, staging, swap_in


class ExportError(HarnessError, RuntimeError):
    pass


class Writer:
    """Rows of one export: the experiment's prompt, the answer's point in the model family's coordinates. Files
    named under ``final`` are written to the same place under ``staged``."""

    def __init__(self, cfg: dict, staged: Path, final: Path):
        self.prompt, self.fam, self.budget = cfg["data"]["prompt"], family(cfg), cfg["image_max_token_num"]
        self.staged, self.final = staged, final

    def __call__(self, path: Path, samples, tag=lambda s: "") -> int:
        path = self.staged / Path(path).relative_to(self.final)
        write_lines(path.with_suffix(".ids"), (s.id for s in samples))
        return write_jsonl(path, (swift_row(s, self.prompt, tag(s), self.fam.answer_point(s, self.budget))
                                  for s in samples))


def export_settings(cfg: dict) -> dict:
    """What an export is made with: folds, users, prompt, and the family's answer settings (image budget)."""
    return {"k": cfg["folds"]["k"], "seed": cfg["folds"]["seed"], "mode": cfg["folds"]["mode"],
            "prompt": cfg["data"]["prompt"], "test_users": cfg["users"]["test"], "global_users": cfg["users"]["global"],
            **family(cfg).export_settings(cfg["image_max_token_num"])}


def export(cfg: dict, force: bool = False) -> dict:
    data = Path(cfg["paths"]["data"])
    test_users, global_users = cfg["users"]["test"], cfg["users"]["global"]
    k, seed, mode = cfg["folds"]["k"], cfg["folds"]["seed"], cfg["folds"]["mode"]
    settings = export_settings(cfg)
    out = swift_dir(cfg)
    manifest_path = out / EXPORT_RECORD
    if manifest_path.exists() and not force:
        old = read_json(manifest_path).get("settings")
        if old != settings:
            raise ExportError(f"{manifest_path}: exported before with {old}; now {settings}. "
                              "Runs trained on the old folds would not match: pass --force to overwrite")
    build = build_record(data)
    samples = load_samples(data, sorted(set(test_users) | set(global_users)))
    for group, users in (("test", test_users), ("global", global_users)):
        empty = [u for u in users if not samples[u]]
        if empty:
            raise ExportError(f"{cfg['config_path']}: users.{group} lists users {empty} that have no samples in "
                              f"{data / 'samples'} (the build has {sorted(int(u) for u in build['users'])}): "
                              f"fix users.{group} or the data")
    gl = [s for u in global_users for s in samples[u]]
    if {s.id for s in gl} & {s.id for u in test_users for s in samples[u]}:
        raise ExportError("a sample is both in the global and the test set")
    tmp = staging(out)  # the whole export, swapped in at the end: a killed export leaves the old one
    _write = Writer(cfg, tmp, out)
    counts = {"global_train": _write(swift_files(out)["train"], gl), "users": {}}
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
    manifest = {"settings": settings, "build": build["fingerprint"], "counts": counts}
    write_json(tmp / EXPORT_RECORD, manifest)
    swap_in(tmp, out)
    return manifest


def check_export(cfg: dict) -> dict:
    """The export this experiment's stages read, refused (ExportError) when it is missing, was made with other
    settings than the experiment's, or from another build of the samples than DATA's current one."""
    path = swift_dir(cfg) / EXPORT_RECORD
    if not path.exists():
        raise ExportError(f"{swift_dir(cfg)}: no complete export ({EXPORT_RECORD} missing); run "
                          f"`python -m data_prep export --config {cfg['config_path']}`")
    man = read_json(path)
    diff = differences(man.get("settings") or {}, export_settings(cfg))
    if diff:
        raise ExportError(f"{path}: exported with other settings than {cfg['config_path']} (with its --set) asks "
                          "for:\n  " + "\n  ".join(f"{d} (export -> experiment)" for d in diff) +
                          "\nre-export (`python -m data_prep export --force` with these settings) or run with the "
                          "export's settings")
    build = build_record(cfg["paths"]["data"])["fingerprint"]
    if man.get("build") != build:
        raise ExportError(f"{path}: made from another build of {cfg['paths']['data']}/samples than the current one; "
                          "re-run `python -m data_prep export --force`")
    return man


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
