"""Re-check every sample (and every exported swift row) against its image.

Usage: ``python -m data_prep validate --data DATA``  (exit 1 with a per-reason report on any error)

Checks: image exists and decodes, recorded size matches the file, point inside the image, grid
point equals to_grid(px), and each exported answer text carries the sample's point in its model
family's coordinates (every DATA/swift*/ export, by the family its export.json records; a run that
trains on coordinates not matching the images learns nothing useful, at 99% token accuracy).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .family import DEFAULT, get
from .store import load_samples
from .io import read_json, read_jsonl
from .schema import Sample, answer_text, to_grid


def check_sample(s: Sample, decode: bool = True) -> str | None:
    """The first problem of a sample as a reason key, or None."""
    p = Path(s.image)
    if not p.is_file():
        return "missing_image"
    try:
        with Image.open(p) as im:
            size = im.size
            if decode:
                im.load()
    except Exception:  # noqa: BLE001 - any decoder failure is the same finding
        return "undecodable_image"
    if size != (s.width, s.height):
        return "size_mismatch"
    if not (0 <= s.x_px < s.width and 0 <= s.y_px < s.height):
        return "point_outside_image"
    if (s.x, s.y) != (to_grid(s.x_px, s.width), to_grid(s.y_px, s.height)):
        return "grid_mismatch"
    return None


def validate(data: str | Path, progress: bool = True) -> dict:
    data = Path(data)
    samples = load_samples(data)
    by_id = {s.id: s for ss in samples.values() for s in ss}
    errors, examples = Counter(), {}
    for s in tqdm(by_id.values(), desc="samples", disable=not progress, mininterval=1):
        reason = check_sample(s)
        if reason:
            errors[reason] += 1
            examples.setdefault(reason, []).append(s.id)
    rows = 0
    for jl, fam, budget in _exported(data):
        ids_path = jl.with_suffix(".ids")
        ids = ids_path.read_text(encoding="utf-8").splitlines() if ids_path.exists() else None
        lines = read_jsonl(jl)
        if ids is None or len(ids) != len(lines):
            errors["ids_side_file_mismatch"] += 1
            examples.setdefault("ids_side_file_mismatch", []).append(str(jl))
            continue
        for line_no, (sid, row) in enumerate(zip(ids, lines), start=1):
            rows += 1
            s = by_id.get(sid)
            answer = row["messages"][-1]["content"]
            if s is None:
                reason = "export_unknown_sample"
            elif row["images"] != [s.image]:
                reason = "export_image_mismatch"
            elif answer != answer_text(s.content, *fam.answer_point(s, budget)):
                reason = "export_answer_mismatch"
            else:
                continue
            errors[reason] += 1
            examples.setdefault(reason, []).append(f"{jl}:{line_no}")
    return {"samples": len(by_id), "swift_rows": rows, "errors": dict(errors),
            "examples": {k: v[:10] for k, v in examples.items()}}


def _exported(data: Path):
    """(jsonl, family, image budget) of every export under DATA (swift/, swift_<family>/)."""
    for d in sorted(p for p in data.glob("swift*") if p.is_dir()):
        man = d / "export.json"
        settings = read_json(man).get("settings", {}) if man.exists() else {}
        fam, budget = get(settings.get("family", DEFAULT)), settings.get("image_max_token_num", 0)
        for jl in sorted(d.rglob("*.jsonl")):
            yield jl, fam, budget
