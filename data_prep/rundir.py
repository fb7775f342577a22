"""The one owner of every folder and file name of a run and of the exported data, and of the markers.

Usage: ``run_dir(cfg, stage)``; ``fold_dir(stage_dir, user, fold)``; ``done(fold_dir)``;
``write_marker(done(d), checkpoint=ckpt)``; ``marker_checkpoint(done(d))``; ``latest_checkpoint(run)``

Run folder (``<paths.runs>/<name>/``)::

    <stage>/                              global_full, global_lora, ...: one training run
        generated/swift.yaml  checkpoint-N/  TRAINED  DONE  train.log  manifest.json
    person_<method>/user_U/fold_F/        one personalized fold: the run above + eval/ (out.json, metrics.json,
                                          predictions.jsonl, results.txt) + eval.log; DONE when evaluated
    person_<method>/user_U_summary.json   mean/std over the user's folds;  overall.json  over users
    user_tokens_<kind>/fold_F/            one model for all test users (training run)
    user_tokens_<kind>/user_U/fold_F/     each user's hold-out evaluated on it: eval/ + DONE
    eval/<name>/user_U/                   a checkpoint (or the base) evaluated on a user's samples
    in_context_<variant>/user_U/fold_F/   the global model answering a hold-out with k of the user's clicks before it
    controls/cross_user/fold_F/adapter_U/user_V/   user U's fold adapter on user V's hold-out; overall.json
    controls/data_curve/n_N/user_U/fold_F/         a person fold trained on N of its training samples; overall.json
    report/  visualizations/  logs/

Data folder (``paths.data``): ``samples/user_U.jsonl``; ``swift[_<family>]/global_train.jsonl``,
``user_U/all.jsonl``, ``user_U/fold_F/{train,test}.jsonl``, ``user_tokens/<kind>/fold_F/train.jsonl``,
``user_tokens/<kind>/user_U/fold_F/test.jsonl``, ``controls/data_curve/n_N/user_U/fold_F/train.jsonl``,
``controls/in_context/<variant>_k<K>/user_U/fold_F/test.jsonl`` (each with a ``.ids`` side file).
No other module builds these names (tests/test_data_prep.py greps for it).

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
TOKENS_PREFIX = "user_tokens_"
BUILD_RECORD = "build.json"  # DATA's completion record of a sample set (data_prep/store.py)
EXPORT_RECORD = "export.json"  # an export folder's settings and counts, written last (data_prep/export.py)
PROVENANCE = "provenance.json"  # what produced an eval folder's answers (eval/job.py)


# ---- the run folder
def run_dir(cfg: dict, *parts: str) -> Path:
    """runs/<experiment>/<stage>/...: the predictable place of every run's outputs."""
    return Path(cfg["paths"]["runs"], cfg["name"], *parts)


def tokens_stage(kind: str) -> str:
    """The stage folder of the one-model method with tag ``kind``."""
    return f"{TOKENS_PREFIX}{kind}"


def user_dir(stage_dir: Path, user: int) -> Path:
    return Path(stage_dir) / f"user_{user}"


def fold_dir(stage_dir: Path, user: int, fold: int) -> Path:
    return user_dir(stage_dir, user) / f"fold_{fold}"


def tokens_run_dir(stage_dir: Path, fold: int) -> Path:
    """A user-token stage's training run of fold ``fold`` (its users' evals are under fold_dir)."""
    return Path(stage_dir) / f"fold_{fold}"


CONTROLS = "controls"
IN_CONTEXT_PREFIX = "in_context_"
CURVE_PREFIX = "n_"


def in_context_stage(variant: str) -> str:
    """The stage folder of in-context personalization with ``variant`` (image | text)."""
    return f"{IN_CONTEXT_PREFIX}{variant}"


def cross_user_dir(cfg: dict) -> Path:
    return run_dir(cfg, CONTROLS, "cross_user")


def cross_eval_dir(cfg: dict, fold: int, adapter_user: int, user: int) -> Path:
    """User ``adapter_user``'s fold-``fold`` adapter answering user ``user``'s hold-out."""
    return eval_dir(user_dir(Path(cross_user_dir(cfg), f"fold_{fold}", f"adapter_{adapter_user}"), user))


def curve_dir(cfg: dict) -> Path:
    return run_dir(cfg, CONTROLS, "data_curve")


def curve_stage_dir(cfg: dict, n: int) -> Path:
    """The per-user K-fold of the data-efficiency curve at ``n`` training samples a fold."""
    return Path(curve_dir(cfg), f"{CURVE_PREFIX}{n}")


def curve_sizes_found(cfg: dict) -> list[int]:
    return sorted(int(p.name[len(CURVE_PREFIX):]) for p in Path(curve_dir(cfg)).glob(f"{CURVE_PREFIX}*")
                  if p.name[len(CURVE_PREFIX):].isdigit())


def user_summary(stage_dir: Path, user: int) -> Path:
    return Path(stage_dir) / f"user_{user}_summary.json"


def overall_file(stage_dir: Path) -> Path:
    return Path(stage_dir) / "overall.json"


def user_summaries(stage_dir: Path) -> list[Path]:
    return sorted(Path(stage_dir).glob("user_*_summary.json"))


def eval_dir(d: Path) -> Path:
    """Where a fold's (or a run's) evaluation writes out.json, metrics.json, predictions.jsonl."""
    return Path(d) / "eval"


def eval_outputs(stage_dir: Path, per_fold: bool, user: int | None = None) -> list[Path]:
    """Every out.json of a stage: eval/<name>/user_U/out.json, or <stage>/user_U/fold_F/eval/out.json."""
    base = Path(stage_dir) if user is None else user_dir(stage_dir, user)
    users = "" if user is not None else "user_*/"
    return sorted(base.glob(f"{users}fold_*/eval/out.json" if per_fold else f"{users}out.json"))


def user_of(path: Path, stage_dir: Path) -> int:
    """The test user a file under ``stage_dir`` belongs to (its user_U folder)."""
    return int(next(p for p in Path(path).relative_to(stage_dir).parts if p.startswith("user_")).split("_")[1])


def generated_yaml(d: Path) -> Path:
    return Path(d) / "generated" / "swift.yaml"


def done(d: Path) -> Path:
    return Path(d) / "DONE"


def trained(d: Path) -> Path:
    return Path(d) / "TRAINED"


# ---- the data folder
def sample_dir(data: Path) -> Path:
    return Path(data) / "samples"


def sample_file(data: Path, user: int) -> Path:
    return sample_dir(data) / f"user_{user}.jsonl"


def sample_files(data: Path) -> dict[int, Path]:
    """{user: samples/user_U.jsonl} of a built data folder."""
    return {int(p.stem.split("_")[1]): p for p in sample_dir(data).glob("user_*.jsonl")}


def swift_files(out: Path, user: int | None = None, fold: int | None = None) -> dict[str, Path]:
    """Under DATA/swift[_<family>]: global_train.jsonl; user_U/all.jsonl; user_U/fold_F/{train,test}.jsonl."""
    out = Path(out)
    if user is None:
        return {"train": out / "global_train.jsonl"}
    if fold is None:
        return {"all": user_dir(out, user) / "all.jsonl"}
    d = fold_dir(out, user, fold)
    return {"train": d / "train.jsonl", "test": d / "test.jsonl"}


def token_files(out: Path, kind: str, fold: int, user: int | None = None) -> dict[str, Path]:
    """DATA/swift/user_tokens/<kind>/fold_F/train.jsonl; .../user_U/fold_F/test.jsonl (``out``: DATA/swift)."""
    d = Path(out) / "user_tokens" / kind
    return {"train": d / f"fold_{fold}" / "train.jsonl"} if user is None else \
        {"test": fold_dir(d, user, fold) / "test.jsonl"}


def clear(folder: Path) -> None:
    """Empty ``folder`` for a fresh start, keeping its lock file (the lock stays with the process that holds it)."""
    import shutil

    folder = Path(folder)
    for p in folder.iterdir() if folder.is_dir() else []:
        if p.name == ".lock":
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def curve_files(out: Path, n: int, user: int, fold: int) -> dict[str, Path]:
    """DATA/swift/controls/data_curve/n_N/user_U/fold_F/train.jsonl (``out``: DATA/swift)."""
    return {"train": fold_dir(Path(out) / CONTROLS / "data_curve" / f"{CURVE_PREFIX}{n}", user, fold) / "train.jsonl"}


def in_context_files(out: Path, variant: str, k: int, user: int, fold: int) -> dict[str, Path]:
    """DATA/swift/controls/in_context/<variant>_k<K>/user_U/fold_F/test.jsonl (``out``: DATA/swift)."""
    return {"test": fold_dir(Path(out) / CONTROLS / "in_context" / f"{variant}_k{k}", user, fold) / "test.jsonl"}


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


def person_base(cfg: dict) -> Path | None:
    """The checkpoint ``train.person_base`` names: a run under runs/<exp>/ (its DONE marker's checkpoint) or a path
    (a run folder stands for its final checkpoint); None where the named run is not finished."""
    base = cfg["train"]["person_base"]
    if Path(base).is_absolute():
        return resolve_checkpoint(Path(base))
    marker = done(run_dir(cfg, base))
    return marker_checkpoint(marker) if marker.exists() else None


def resolve_checkpoint(path: Path) -> Path:
    """A run folder with a DONE/TRAINED marker stands for its final checkpoint; anything else for itself."""
    path = Path(path)
    for marker in MARKERS:
        if (path / marker).exists():
            return marker_checkpoint(path / marker)
    return path.resolve()
