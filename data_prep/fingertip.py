"""Read the raw FingerTip-20K tree into canonical per-user click samples.

Usage: ``python -m data_prep build --raw RAW --out DATA [--actions click,long_click]``

Layout (protocol notes): ``RAW/<uid>/<YYYYMMDD_HHMMSS>/{Screenshots_<ep>/<ms>.jpg, action.jsonl,
survey_result.json}``, some users one level deeper (``RAW/<uid>/<uid>/<ep>/``). Nothing under RAW
is moved or written. Every dropped step or episode is counted under a reason in report.json,
with its first locations, so nothing disappears silently.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import re
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .actions import ActionError, parse_action
from .io import read_json
from .schema import Sample, to_grid
from .store import BuildError, write_samples

EPISODE_RE = re.compile(r"^\d{8}_\d{6}$")
MAX_EXAMPLES = 20  # locations kept per skip reason in report.json

# reason -> what one count is
SKIP_REASONS = {
    "not_an_episode_folder": "folder",
    "missing_survey": "episode",
    "bad_survey": "episode",
    "empty_intent": "episode",
    "missing_action_file": "episode",
    "malformed_json_line": "line",
    "unparseable_action": "line",
    "unknown_action_type": "line",
    "missing_screenshot": "line",
    "unreadable_screenshot": "line",
    "oversized_screenshot": "line",
    "click_outside_image": "line",
}


def find_users(raw: Path) -> list[tuple[str, list[Path], list[Path]]]:
    """[(raw_user_id, episode_dirs, other_dirs)] sorted by numeric id; both layouts."""
    if not raw.is_dir():
        raise BuildError(f"{raw}: not a folder")
    users = sorted((d for d in raw.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    out = []
    for udir in users:
        episodes, other = [], []
        for d in sorted(udir.iterdir()):
            if not d.is_dir():
                continue
            if EPISODE_RE.match(d.name):
                episodes.append(d)
            elif d.name == udir.name:  # nested layout: <uid>/<uid>/<episode>/
                for e in sorted(d.iterdir()):
                    if e.is_dir() and EPISODE_RE.match(e.name):
                        episodes.append(e)
                    elif e.is_dir():
                        other.append(e)
            else:
                other.append(d)
        out.append((udir.name, sorted(episodes, key=lambda p: p.name), other))
    if not any(eps for _, eps, _ in out):
        raise BuildError(
            f"{raw}: not a FingerTip-20K tree: expected <raw>/<numeric user id>/<YYYYMMDD_HHMMSS>/ "
            f"(or <uid>/<uid>/<episode>/) folders, found {len(out)} numeric user folders and no episodes")
    return out


class ImageProblem(ValueError):
    """A screenshot a sample cannot use: ``reason`` is its skip reason (unreadable_screenshot, oversized_screenshot)."""

    def __init__(self, reason: str, msg: str):
        super().__init__(msg)
        self.reason = reason


def image_size(path: Path) -> tuple[int, int]:
    """Width, height from the file header (Pillow opens lazily: no pixel decode). ImageProblem where the file is
    not an image Pillow reads, or declares more pixels than Pillow's decompression-bomb limit
    (``Image.MAX_IMAGE_PIXELS``): such a file would stop every later stage that decodes it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise ImageProblem("oversized_screenshot", f"{pixels.group(1) if pixels else 'more'} px, over Pillow's "
                                                   f"decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageProblem("unreadable_screenshot", str(e)[:100]) from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and size[0] * size[1] > limit:
        raise ImageProblem("oversized_screenshot", f"{size[0]}x{size[1]} px, over Pillow's decompression-bomb limit "
                                                   f"of {limit}")
    return size


def read_episode(job: tuple[str, int, str, tuple[str, ...]]) -> dict:
    """One episode -> {"samples": [...], "actions": Counter, "skipped": Counter, "examples": [...]}."""
    raw_user, user, ep_dir, wanted = job
    ep = Path(ep_dir)
    res = {"samples": [], "actions": Counter(), "skipped": Counter(), "examples": [], "user": user}

    def skip(reason, where, msg=""):
        res["skipped"][reason] += 1
        res["examples"].append((reason, f"{where}{': ' + msg if msg else ''}"))

    survey_path = ep / "survey_result.json"
    if not survey_path.exists():
        skip("missing_survey", survey_path)
        return res
    try:
        survey = read_json(survey_path)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        skip("bad_survey", survey_path, str(e)[:100])
        return res
    if not isinstance(survey, dict):
        skip("bad_survey", survey_path, "not a JSON object")
        return res
    intent = str(survey.get("intentDescription") or "").strip()
    if not intent:
        skip("empty_intent", survey_path, "no intentDescription")
        return res
    action_path = ep / "action.jsonl"
    if not action_path.exists():
        skip("missing_action_file", action_path)
        return res
    shots = ep / f"Screenshots_{ep.name}"
    if not shots.is_dir():
        alt = sorted(ep.glob("Screenshots_*"))
        shots = alt[0] if alt else shots
    # utf-8-sig: a byte-order mark (files saved by Windows tools) is not damage, and must not cost line 1
    with open(action_path, encoding="utf-8-sig", errors="replace") as f:
        lines = f.read().splitlines()
    for step, line in enumerate(lines):
        where = f"{action_path}:{step + 1}"
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not (isinstance(obj, dict) and len(obj) == 1):
                raise ValueError("want one {screenshot: action} pair")
            (shot, call), = obj.items()
            if not isinstance(call, str):
                raise ValueError("action is not a string")
        except ValueError as e:
            skip("malformed_json_line", where, str(e)[:100])
            continue
        try:
            action = parse_action(call)
        except ActionError as e:
            skip(e.reason, where, str(e)[:120])
            continue
        res["actions"][action.name] += 1
        if action.name not in wanted:
            continue
        img = shots / shot
        if not img.is_file():
            skip("missing_screenshot", where, shot)
            continue
        try:
            w, h = image_size(img)
        except ImageProblem as e:
            skip(e.reason, where, f"{shot}: {str(e)[:80]}")
            continue
        x_px, y_px = action.point
        if not (0 <= x_px < w and 0 <= y_px < h):
            skip("click_outside_image", where, f"({x_px:g}, {y_px:g}) outside {w}x{h}")
            continue
        tree = shots / f"tree_{Path(shot).stem}.xml"
        s = Sample(
            id=f"{raw_user}/{ep.name}/{step}", user=user, raw_user=raw_user, episode=ep.name, step=step,
            action=action.name, image=str(img.resolve()), width=w, height=h, instruction=intent,
            content=str(action.args.get("content", "")), x_px=x_px, y_px=y_px,
            x=to_grid(x_px, w), y=to_grid(y_px, h), app=str(survey.get("app", "")),
            tree=str(tree.resolve()) if tree.is_file() else "",
        )
        res["samples"].append(s.to_dict())
    return res


def build(raw: str | Path, out: str | Path, actions=("click",), workers: int | None = None,
          progress: bool = True) -> dict:
    raw, out = Path(raw).resolve(), Path(out).resolve()
    if out == raw or raw in out.parents:
        raise BuildError(f"--out {out} lies inside --raw {raw}: the raw tree is never written")
    users = find_users(raw)
    mapping = {str(i): uid for i, (uid, _, _) in enumerate(users, start=1)}
    jobs, skipped, examples = [], Counter(), defaultdict(list)
    for i, (uid, eps, other) in enumerate(users, start=1):
        jobs += [(uid, i, str(e), tuple(actions)) for e in eps]
        for d in other:
            skipped["not_an_episode_folder"] += 1
            examples["not_an_episode_folder"].append(str(d))
    per_user, act_count, n_eps = defaultdict(list), defaultdict(Counter), 0
    workers = workers or min(4, mp.cpu_count())
    bar = dict(total=len(jobs), desc="episodes", unit="ep", disable=not progress, mininterval=1)
    if workers > 1 and len(jobs) > 200:
        with mp.get_context("fork").Pool(workers) as pool:
            results = tqdm(pool.imap(read_episode, jobs, chunksize=64), **bar)
            n_eps = _collect(results, per_user, act_count, skipped, examples)
    else:
        n_eps = _collect(tqdm(map(read_episode, jobs), **bar), per_user, act_count, skipped, examples)
    report = {
        "raw": str(raw),
        "actions_kept": list(actions),
        "samples": sum(map(len, per_user.values())),
        "users": len(per_user),
        "user_folders": len(users),
        "episodes": n_eps,
        "samples_per_user": {str(u): len(per_user[u]) for u in sorted(per_user)},
        "actions": dict(sorted(sum(act_count.values(), Counter()).items())),
        "actions_per_user": {str(u): dict(sorted(act_count[u].items())) for u in sorted(act_count)},
        "episodes_per_user": {str(u): n for u, n in sorted(Counter(job[1] for job in jobs).items())},
        "skipped": {r: skipped[r] for r in SKIP_REASONS if skipped[r]},
        "skip_units": {r: SKIP_REASONS[r] for r in SKIP_REASONS if skipped[r]},
        "skip_examples": {r: examples[r][:MAX_EXAMPLES] for r in SKIP_REASONS if skipped[r]},
    }
    write_samples(out, dict(per_user), mapping, report)  # whole or not at all (data_prep/store.py)
    return report


def _collect(results, per_user, act_count, skipped, examples) -> int:
    n_eps = 0
    for res in results:
        n_eps += 1
        act_count[res["user"]].update(res["actions"])
        for s in res["samples"]:
            per_user[s["user"]].append(s)
        skipped.update(res["skipped"])
        for reason, where in res["examples"]:
            if len(examples[reason]) < MAX_EXAMPLES:
                examples[reason].append(where)
    return n_eps
