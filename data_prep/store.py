"""The built data folder's sample set: written whole or not at all, read only when complete.

Usage: ``write_samples(DATA, per_user, users_map, report)`` (build, import-pigg, import-clicks);
``load_samples(DATA, users)``; ``build_record(DATA)``; ``swap_in(staged, final)``.

Writing: the per-user files go into a sibling staging folder; then the completion record ``DATA/build.json`` is
removed, the staging folder swapped in for ``DATA/samples/``, ``users.json`` and ``report.json`` written, and
``build.json`` written last (each user's file, rows and SHA-256, and the set's fingerprint). A process killed
before the swap leaves the previous complete set; killed after it, no ``build.json``: every reader refuses the
folder until the job is re-run. Reading: ``build.json`` must be there and every file it lists must hold its rows.
Names: data_prep/rundir.py. Imports no torch.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import HarnessError
from .io import read_json, read_jsonl, write_json, write_jsonl
from .provenance import fingerprint, sha256_file
from .rundir import BUILD_RECORD, sample_dir, sample_file
from .schema import Sample


class BuildError(HarnessError, RuntimeError):
    pass


def staging(final: Path) -> Path:
    """A fresh sibling folder to write ``final``'s new contents into (removed if it was left by a killed run)."""
    tmp = final.with_name(f".{final.name}.staging")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def swap_in(staged: Path, final: Path) -> None:
    """``staged`` takes ``final``'s place (the old one moved aside, then removed)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)


def write_samples(out: str | Path, per_user: dict[int, list[dict]], users_map: dict, report: dict) -> dict:
    """Replace DATA's sample set with ``per_user`` (module docstring); returns the build record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = staging(sample_dir(out))
    files = {}
    for user in sorted(per_user):
        name = sample_file(out, user).name
        n = write_jsonl(tmp / name, per_user[user])
        files[str(user)] = {"file": name, "rows": n, "sha256": sha256_file(tmp / name)}
    record = {"users": files, "fingerprint": fingerprint(files), "source": report.get("raw") or report.get("source")}
    (out / BUILD_RECORD).unlink(missing_ok=True)
    swap_in(tmp, sample_dir(out))
    write_json(out / "users.json", users_map)
    write_json(out / "report.json", report)
    write_json(out / BUILD_RECORD, record)
    return record


def refuse_existing(out: str | Path, force: bool) -> None:
    """An import into a DATA folder that already holds a sample set: refused unless ``force`` (which replaces the
    whole set, never merges the two)."""
    out = Path(out)
    if not force and ((out / BUILD_RECORD).exists() or any(sample_dir(out).glob("*.jsonl"))):
        raise FileExistsError(f"{out}: already holds a sample set ({sample_dir(out)}); pass --force to replace it "
                              "(the old users' files go; nothing is merged), or import into another --out")


def build_record(data: str | Path) -> dict:
    """DATA/build.json, or BuildError saying why the folder is not a complete build."""
    data = Path(data)
    path = data / BUILD_RECORD
    if not path.exists():
        if sample_dir(data).is_dir():
            raise BuildError(f"{data}: no complete build ({BUILD_RECORD} missing: a build or import was interrupted, "
                             "or made by an older version); re-run `python -m data_prep build` (or the import)")
        raise BuildError(f"{sample_dir(data)}: no samples; run `python -m data_prep build` first")
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: unreadable ({e}); re-run `python -m data_prep build`") from None


def load_samples(data: str | Path, users: list[int] | None = None) -> dict[int, list[Sample]]:
    """{user: [Sample]} of a complete build (all users, or the ones asked for; a user the build has no samples
    for gets []); a listed file that is missing or does not hold its recorded rows is refused."""
    rec = build_record(data)["users"]
    want = sorted(int(u) for u in rec) if users is None else users
    out = {}
    for u in want:
        if str(u) not in rec:
            out[u] = []
            continue
        path = sample_file(data, u)
        if not path.exists():
            raise BuildError(f"{path}: missing, but {Path(data) / BUILD_RECORD} lists it; re-run the build")
        rows = read_jsonl(path)
        if len(rows) != rec[str(u)]["rows"]:
            raise BuildError(f"{path}: {len(rows)} rows, the build recorded {rec[str(u)]['rows']}; re-run the build")
        out[u] = [Sample.from_dict(d) for d in rows]
    return out
