"""Bring your own clicks: recorded phone/desktop sessions -> the same canonical samples.

Usage: python -m data_prep import-clicks --records FILE.jsonl|FILE.csv --out DATA

One record per line (JSONL) or row (CSV with a header). Required: ``user``, ``screenshot``,
``instruction``, ``x_px``, ``y_px``; optional: ``content`` (element text), ``episode``, ``app``.
Relative screenshot paths resolve against the records file's folder. Users are re-indexed 1..N
(numeric ids sorted numerically, others alphabetically; ``users.json`` keeps the mapping). Every
bad row is reported by line number and reason in report.json, never silently dropped. Then
``export``, ``validate`` and every stage work as on FingerTip data.
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

from .fingertip import ImageProblem, image_size
from .schema import Sample, to_grid
from .store import refuse_existing, write_samples

REQUIRED = ("user", "screenshot", "instruction", "x_px", "y_px")


def _jsonl_rows(path: Path) -> list[tuple[int, dict | None, str]]:
    """[(line number, record or None, error)]: line numbers as a person sees them in the file."""
    out = []
    with open(path, encoding="utf-8-sig") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out.append((i, rec, "") if isinstance(rec, dict) else (i, None, "not_an_object: want {...}"))
            except json.JSONDecodeError as e:
                out.append((i, None, f"malformed_json: {e.msg}"))
    return out


def _csv_rows(path: Path) -> list[tuple[int, dict | None, str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        return [(reader.line_num, dict(row), "") for row in reader]


def check(rec: dict, base: Path) -> tuple[dict | None, str]:
    missing = [k for k in REQUIRED if str(rec.get(k, "")).strip() == ""]
    if missing:
        return None, f"missing_field: {', '.join(missing)}"
    try:
        x, y = float(rec["x_px"]), float(rec["y_px"])
    except (TypeError, ValueError):
        return None, f"bad_coordinates: ({rec['x_px']!r}, {rec['y_px']!r})"
    img = Path(str(rec["screenshot"])).expanduser()
    img = (img if img.is_absolute() else base / img).resolve()
    if not img.is_file():
        return None, f"missing_screenshot: {img}"
    try:
        w, h = image_size(img)
    except ImageProblem as e:
        return None, f"{e.reason}: {img}: {e}"
    if not (0 <= x < w and 0 <= y < h):
        return None, f"click_outside_image: ({x:g}, {y:g}) outside {w}x{h}"
    return {"image": str(img), "width": w, "height": h, "x_px": x, "y_px": y}, ""


def import_clicks(records: str | Path, out: str | Path, force: bool = False) -> dict:
    """``force``: replace the sample set of a DATA folder that has one (never merged with it)."""
    records, out = Path(records).resolve(), Path(out).resolve()
    if not records.is_file():
        raise FileNotFoundError(f"{records}: no such records file")
    refuse_existing(out, force)
    rows = _csv_rows(records) if records.suffix.lower() == ".csv" else _jsonl_rows(records)
    good, skipped, problems = [], Counter(), []
    for line, rec, err in rows:
        if rec is not None:
            info, err = check(rec, records.parent)
        if err:
            skipped[err.split(":")[0]] += 1
            problems.append(f"{records}:{line}: {err}")
            continue
        good.append((line, rec, info))
    raw_ids = sorted({str(r["user"]).strip() for _, r, _ in good},
                     key=lambda u: (0, int(u), "") if u.isdigit() else (1, 0, u))
    index = {raw: i for i, raw in enumerate(raw_ids, start=1)}
    per_user = defaultdict(list)
    for line, rec, info in good:
        raw = str(rec["user"]).strip()
        episode = str(rec.get("episode") or "records")
        s = Sample(id=f"{raw}/{episode}/{line}", user=index[raw], raw_user=raw, episode=episode, step=line,
                   action="click", instruction=str(rec["instruction"]).strip(), content=str(rec.get("content") or ""),
                   x=to_grid(info["x_px"], info["width"]), y=to_grid(info["y_px"], info["height"]),
                   app=str(rec.get("app") or ""), **info)
        per_user[s.user].append(s.to_dict())
    report = {"source": str(records), "samples": len(good), "users": len(per_user),
              "samples_per_user": {str(u): len(ss) for u, ss in sorted(per_user.items())},
              "skipped": dict(skipped), "problems": problems[:200]}
    write_samples(out, dict(per_user), {str(i): raw for raw, i in index.items()}, report)
    return report
