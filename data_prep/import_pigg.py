"""Read PIGG's own preprocessed ``user_{k}.pkl`` files into canonical samples.

Usage: ``python -m data_prep import-pigg --pkl-dir DIR --out DATA``

PIGG pickled, per user, a list of chat-message samples: a user turn with the screenshot and the
prompt (intent inside), and an assistant turn with the two-block answer (grounding on the 0-1000
grid). A sample may be the message list itself or a dict with ``messages``; a content may be a
string or a list of ``{"type": "image"|"text", ...}`` parts; a ``system`` turn counts as user
text (PIGG's dataset turned system into user). PIGG kept no pixel point, so x_px/y_px are put at
the centre of the grid cell, which maps back to the same grid point.

A pickle can name any importable function and have it called while loading (``os.system``,
``builtins.exec``, ``subprocess.Popen``...). PIGG's files hold only lists and dicts of strings and
numbers, so they are read by ``SafeUnpickler``: builtin containers and scalars (``ALLOWED``), every other
global refused before it is looked up. A refused file is not imported (nothing read from it is written),
named with the refused global in ``report.json`` (``refused_files``) and on stderr; the other users' files
still import, and the CLI exits non-zero.
"""
from __future__ import annotations

import io
import pickle
import re
import sys
from collections import Counter
from pathlib import Path


from .fingertip import ImageProblem, image_size
from .store import refuse_existing, write_samples
from .schema import Sample

_INSTR = re.compile(r"following instruction:\s*(.*?)(?:\n|$)", re.S)
_REF = re.compile(r"```referring\s*\n(.*?)\n?```", re.S)
_GRD = re.compile(r"```grounding\s*\n(.*?)```", re.S)
_INT2 = re.compile(r"-?\d+")
_EPISODE = re.compile(r"^\d{8}_\d{6}$")

# What PIGG's pickles need: builtin scalars and containers. Protocols 0-2 name some of them as globals
# (a set or frozenset through its constructor, bytes through _codecs.encode); protocol 4+ has opcodes for all.
ALLOWED = frozenset({
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                              "int", "float", "complex", "bool")} | {("_codecs", "encode")})


class RefusedPickle(pickle.UnpicklingError):
    """A pickle names a global that PIGG's data does not need (it would run code while loading)."""


class SafeUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the globals in ALLOWED (PIGG's data: builtin containers/scalars)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise RefusedPickle(f"refused global {module}.{name} (only builtin containers and scalars are "
                                "loaded: a pickle naming anything else could run code)")
        return super().find_class(module, name)


def safe_load(path: Path):
    """The object pickled in ``path``, through SafeUnpickler; RefusedPickle names the file and the global."""
    data = Path(path).read_bytes()
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except RefusedPickle as e:
        raise RefusedPickle(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise RefusedPickle(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def _parts(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [p if isinstance(p, dict) else {"type": "text", "text": str(p)} for p in content or []]


def convert(obj, user: int, index: int) -> tuple[Sample | None, str | None]:
    """One pickled sample -> (Sample, None) or (None, reason)."""
    messages = obj.get("messages") if isinstance(obj, dict) else obj
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return None, "not_a_message_list"
    image, prompt, answer = None, [], []
    for m in messages:
        for part in _parts(m.get("content")):
            if part.get("type") == "image" or "image" in part:
                image = image or part.get("image") or part.get("path")
            elif "text" in part:
                (answer if m.get("role") == "assistant" else prompt).append(part["text"])
    if isinstance(obj, dict) and not image:
        image = (obj.get("images") or [None])[0] or obj.get("image")
    if not image:
        return None, "no_image"
    image = str(image).removeprefix("file://")
    if not Path(image).is_file():
        return None, "missing_image"
    text, ans = "\n".join(prompt), "\n".join(answer)
    m = _INSTR.search(text)
    instruction = (m.group(1) if m else text).strip()
    g = _GRD.search(ans)
    nums = _INT2.findall(g.group(1)) if g else []
    if len(nums) < 2:
        return None, "no_grounding_point"
    x, y = int(nums[0]), int(nums[1])
    if not (0 <= x < 1000 and 0 <= y < 1000):
        return None, "point_off_grid"
    ref = _REF.search(ans)
    try:
        w, h = image_size(Path(image))
    except ImageProblem as e:
        return None, e.reason
    p = Path(image).resolve()
    episode = next((q.name for q in p.parents if _EPISODE.match(q.name)), f"pkl_{user}")
    ep_dir = next((q for q in p.parents if q.name == episode), None)
    raw_user = ep_dir.parent.name if ep_dir is not None and ep_dir.parent.name.isdigit() else str(user)
    return Sample(id=f"{raw_user}/{episode}/{p.stem}", user=user, raw_user=raw_user, episode=episode,
                  step=index, action="click", image=str(p), width=w, height=h, instruction=instruction,
                  content=ref.group(1).strip() if ref else "", x_px=(x + 0.5) * w / 1000,
                  y_px=(y + 0.5) * h / 1000, x=x, y=y), None


def import_pigg(pkl_dir: str | Path, out: str | Path, force: bool = False) -> dict:
    """``force``: replace the sample set of a DATA folder that has one (never merged with it)."""
    pkl_dir, out = Path(pkl_dir), Path(out)
    files = sorted(pkl_dir.glob("user_*.pkl"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not files:
        raise FileNotFoundError(f"{pkl_dir}: no user_{{k}}.pkl files")
    refuse_existing(out, force)
    skipped, examples, per_user, mapping, refused = Counter(), {}, {}, {}, {}
    for f in files:
        user = int(re.sub(r"\D", "", f.stem))
        try:
            data = safe_load(f)
        except RefusedPickle as e:
            refused[str(f)] = str(e)
            print(f"import-pigg: not imported: {e}", file=sys.stderr)
            continue
        if not isinstance(data, list):
            raise ValueError(f"{f}: expected a pickled list of samples, got {type(data).__name__}")
        rows = []
        for i, obj in enumerate(data):
            s, reason = convert(obj, user, i)
            if reason:
                skipped[reason] += 1
                examples.setdefault(reason, []).append(f"{f}[{i}]")
            else:
                rows.append(s.to_dict())
        per_user[user] = rows
        mapping[str(user)] = rows[0]["raw_user"] if rows else str(user)
    report = {"source": str(pkl_dir.resolve()), "samples": sum(map(len, per_user.values())),
              "users": len(per_user), "samples_per_user": {str(u): len(r) for u, r in per_user.items()},
              "skipped": dict(skipped), "skip_examples": {k: v[:20] for k, v in examples.items()},
              "refused_files": refused}
    write_samples(out, per_user, mapping, report)
    return report
