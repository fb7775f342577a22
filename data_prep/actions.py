"""Parse FingerTip action calls such as ``click(coordinates=(336, 1267), content='蓝色加号按钮')``.

Usage: ``parse_action("click(coordinates=(1, 2), content='a, (b)')") -> Action``

The call is parsed with Python's own parser (``ast``), so a ``content`` holding quotes, commas,
parentheses or non-ASCII text is read exactly. Recorded lines sometimes carry an unescaped quote
inside ``content`` (``content='it's here'``), which is not valid Python: for those a fallback
takes the text between ``content='`` and the final quote of the call.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

# action name -> (required keywords, optional keywords)
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "click": (("coordinates",), ("content",)),
    "long_click": (("coordinates",), ("content",)),
    "type": (("text",), ()),
    "scroll": (("coordinates", "direction"), ()),
    "press_back": ((), ()),
    "press_home": ((), ()),
    "press_recent": ((), ()),
    "wait": ((), ()),
    "finished": ((), ()),
}
DIRECTIONS = {"up", "down", "left", "right"}


class ActionError(ValueError):
    """An action string that is not a known, well-formed call. ``reason`` is a report key."""

    def __init__(self, reason: str, msg: str):
        super().__init__(msg)
        self.reason = reason


@dataclass
class Action:
    name: str
    args: dict = field(default_factory=dict)

    @property
    def point(self) -> tuple[float, float] | None:
        c = self.args.get("coordinates")
        return (float(c[0]), float(c[1])) if c is not None else None


_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*\(")
_FALLBACK = re.compile(
    r"^\s*(?P<name>long_click|click)\s*\(\s*coordinates\s*=\s*[\(\[]\s*(?P<x>-?\d+(?:\.\d+)?)\s*,"
    r"\s*(?P<y>-?\d+(?:\.\d+)?)\s*[\)\]]\s*,\s*content\s*=\s*(?P<q>['\"])(?P<content>.*)(?P=q)\s*\)\s*$",
    re.S,
)


def parse_action(text: str) -> Action:
    if not isinstance(text, str):
        raise ActionError("unparseable_action", f"action is {type(text).__name__}, not a string")
    m = _NAME.match(text)
    if not m:
        raise ActionError("unparseable_action", f"not a call: {text[:80]!r}")
    if m.group(1) not in ACTIONS:
        raise ActionError("unknown_action_type", f"unknown action {m.group(1)!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
            raise ValueError("want name(key=value, ...)")
        args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    except (SyntaxError, ValueError, TypeError) as e:
        fb = _FALLBACK.match(text)
        if not fb:
            raise ActionError("unparseable_action", f"cannot parse {text[:80]!r}: {e}") from None
        name = fb.group("name")
        args = {"coordinates": (float(fb.group("x")), float(fb.group("y"))), "content": fb.group("content")}
        return _check(Action(name, args), text)
    return _check(Action(m.group(1), args), text)


def _check(action: Action, text: str) -> Action:
    required, optional = ACTIONS[action.name]
    missing = [k for k in required if k not in action.args]
    extra = [k for k in action.args if k not in required + optional]
    if missing or extra:
        raise ActionError("unparseable_action",
                          f"{action.name}: missing {missing} / unexpected {extra} in {text[:80]!r}")
    if "coordinates" in action.args:
        c = action.args["coordinates"]
        if (not isinstance(c, (tuple, list)) or len(c) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c)):
            raise ActionError("unparseable_action", f"bad coordinates {c!r} in {text[:80]!r}")
    if action.name == "scroll" and action.args["direction"] not in DIRECTIONS:
        raise ActionError("unparseable_action", f"bad scroll direction in {text[:80]!r}")
    if "content" in action.args and not isinstance(action.args["content"], str):
        action.args["content"] = str(action.args["content"])
    return action
