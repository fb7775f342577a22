"""Turn a model's answer into a point in its own coordinates: the corrected parser, UI-TARS's and PIGG's.

Usage: ``parse_point("```grounding\\n[512, 300]\\n```") -> (512.0, 300.0)``;
``parse_ui_tars("Thought: ...\\nAction: click(point='<point>71 393</point>')") -> (71.0, 393.0)``;
``parse_point_pigg(text) -> (x, y)`` (PIGG's own scorer step for step; never None: its (0, 0) fallback)

Every point is returned as written, never clamped: an answer off the screen stays off it and is scored a
miss (eval/metrics.py). eval/profiles.py ``parse_answer`` is the one entry that picks the parser of an eval
profile and turns its point into PIGG's grid. Which maker's code each form follows:
tests/parse_vectors.json. Imports no torch: usable on predictions produced anywhere.

- ``parse_point`` (the harness's and the Qwen profiles'): text inside ``<think>...</think>`` is ignored (a
  thinking model's draft is not its answer); the ``grounding`` block first, then unambiguous formats
  (``<|box_start|>``, ``point_2d`` / ``bbox_2d`` JSON with numbers or numeric strings, Qwen2.5-VL's XML
  ``<points x1=.. y1=..>``, ``start_box=``, ``<point>x y</point>``), then the first bracketed group; a box
  gives its centre; None when there is no point (a parse failure, never scored as (0, 0)).
- ``parse_ui_tars``: as UI-TARS's own action parser (``parse_action_to_structure_output``) reads an answer:
  only the action after the last ``Action:``; a click only for click-type actions (``click``,
  ``left_single``, ``left_double``; ``long_press`` where long clicks are scored); ``point=`` /
  ``start_box=`` / ``start_point=``, a box gives its centre. Anything else (``scroll``, ``drag``,
  ``press_back()``, ``finished(...)``, a Thought without an Action) is no click.
"""
from __future__ import annotations

import re

Point = tuple[float, float]

NUM = r"[-+]?\d+(?:\.\d+)?"
_QNUM = rf"[\"']?\s*({NUM})\s*[\"']?"  # a number, or a number written as a JSON string
_FENCE = re.compile(r"```\s*grounding\s*\n?(.*?)(?:```|$)", re.S | re.I)
_REFER = re.compile(r"```\s*referring\s*\n?(.*?)(?:```|$)", re.S | re.I)
_BOX_TOKENS = re.compile(r"<\|box_start\|>(.*?)<\|box_end\|>", re.S)
_POINT_2D = re.compile(rf"[\"']point_2d[\"']\s*:\s*[\[\(]\s*{_QNUM}\s*,\s*{_QNUM}\s*[\]\)]")
_BBOX_2D = re.compile(rf"[\"']bbox_2d[\"']\s*:\s*[\[\(]\s*{_QNUM}\s*,\s*{_QNUM}\s*,\s*{_QNUM}\s*,\s*{_QNUM}\s*[\]\)]")
_XML_POINTS = re.compile(rf"<points?\b[^>]*?\bx1\s*=\s*{_QNUM}[^>]*?\by1\s*=\s*{_QNUM}", re.I)
_START_BOX = re.compile(r"start_box\s*=\s*['\"]?\s*[\[\(]?([^'\"]*?)[\]\)]?\s*['\"]?\s*\)", re.S)
_POINT_TAG = re.compile(rf"<point>\s*({NUM})[\s,]+({NUM})\s*</point>", re.I)
_GROUP = re.compile(rf"[\[\(]\s*({NUM}(?:\s*,\s*{NUM}){{1,3}})\s*[\]\)]")
_NUMS = re.compile(NUM)


def _from_numbers(nums: list[str]) -> Point | None:
    """2 numbers -> point; 4 -> box centre; anything else -> None."""
    vals = [float(n) for n in nums]
    if len(vals) == 2:
        return vals[0], vals[1]
    if len(vals) == 4:
        return (vals[0] + vals[2]) / 2, (vals[1] + vals[3]) / 2
    return None


def _first_group(text: str) -> Point | None:
    """First bracketed/parenthesised group of 2 or 4 numbers."""
    for m in _GROUP.finditer(text):
        p = _from_numbers(_NUMS.findall(m.group(1)))
        if p is not None:
            return p
    return None


def _structured(text: str) -> Point | None:
    """Formats that say unambiguously where the point is."""
    m = _BOX_TOKENS.search(text)
    if m:
        p = _from_numbers(_NUMS.findall(m.group(1)))
        if p is not None:
            return p
    m = _POINT_2D.search(text)
    if m:
        return _from_numbers(list(m.groups()))
    m = _BBOX_2D.search(text)
    if m:
        return _from_numbers(list(m.groups()))
    m = _XML_POINTS.search(text)
    if m:
        return _from_numbers(list(m.groups()))
    m = _START_BOX.search(text)
    if m:
        p = _from_numbers(_NUMS.findall(m.group(1)))
        if p is not None:
            return p
    m = _POINT_TAG.search(text)
    if m:
        return _from_numbers(list(m.groups()))
    return None


def strip_thinking(text: str | None) -> str:
    """The answer without its reasoning: text after the last ``</think>``; an unclosed ``<think>`` runs to the end."""
    text = text or ""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    return text.split("<think>", 1)[0]


def parse_point(text: str | None) -> Point | None:
    """The answer's point as written (in the model's own coordinates), or None."""
    text = strip_thinking(text)
    if not text:
        return None
    for m in _FENCE.finditer(text):  # PIGG's answer format first
        block = m.group(1)
        p = _structured(block) or _first_group(block)
        if p is None:
            nums = _NUMS.findall(block)
            p = _from_numbers(nums[:2]) if len(nums) in (2, 3) else _from_numbers(nums[:4]) if nums else None
        if p is not None:
            return p
    text_wo_ref = _REFER.sub(" ", text)  # numbers inside the element's description are not the point
    return _structured(text_wo_ref) or _first_group(text_wo_ref)


UI_TARS_CLICKS = ("click", "left_single", "left_double")  # taps in UI-TARS's action spaces
UI_TARS_LONG = "long_press"  # a tap too, where the experiment scores long clicks (data.actions: long_click)
_ACTION = re.compile(r"^\s*(\w+)\s*\((.*)", re.S)
_BOX_ARG = re.compile(r"\b(?:start_box|start_point|point)\s*=\s*(['\"])(.*?)\1", re.S)


def parse_ui_tars(text: str | None, long_press: bool = False) -> Point | None:
    """The tap of a UI-TARS answer in its pixels, as UI-TARS's own parser reads it, or None (no tap)."""
    text = strip_thinking(text)
    if "Action:" not in text:
        return None  # a Thought with no Action: UI-TARS's parser asserts one
    action = text.split("Action:")[-1].split(")\n\n")[0]  # the last Action's (first) action
    m = _ACTION.match(action)
    if not m or m.group(1) not in UI_TARS_CLICKS + ((UI_TARS_LONG,) if long_press else ()):
        return None
    box = _BOX_ARG.search(m.group(2))
    return _from_numbers(_NUMS.findall(box.group(2))) if box else None


def parse_referring(text: str | None) -> str:
    m = _REFER.search(text or "")
    return m.group(1).strip() if m else ""


# PIGG's reading (hoonably/PIGG src/utils/eval.py ``parse_inference(text, is_gt=False)``, commit f904593): its
# patterns, tried in this order over the whole block, the first that matches gives the point (its first two numbers)
_PIGG_PATTERNS = tuple(re.compile(p) for p in (
    r"\(?(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\)?",  # four numbers anywhere
    r"\(?(\d+)\s*,\s*(\d+)\)?\s*to\s*\(?(\d+)\s*,\s*(\d+)\)?",  # (x1, y1) to (x2, y2)
    r"(?:Top-left|Bottom-right)[^:]*:\s*\(?(\d+)\s*,\s*(\d+)\)?",  # Top-left / Bottom-right ...: (x, y)
    r"\[?(\d+)\s*,\s*(\d+)\]?",  # [x, y]
    r"\(?(\d+)\s*,\s*(\d+)\)?",  # (x, y)
))


def parse_point_pigg(text: str | None, is_gt: bool = False) -> tuple[int, int]:
    """The point PIGG's own scorer reads, step for step (an answer: ``is_gt`` False, as PIGG reads predictions):
    1. only the text after the last ``assistant`` (PIGG decodes prompt and answer together and cuts there);
    2. split on the grounding fence opener; each piece after the first is a block, and the first block holding a
       closing fence is the one read, up to that fence (a block never closed is skipped, not closed by the next);
    3. its patterns in order (_PIGG_PATTERNS) over the whole block; the first that matches gives its first two
       integers (a box: its top-left corner; 12.5 is read from its 5); no block or no match: (0, 0), unclamped."""
    text = text or ""
    if not is_gt:
        text = text.split("assistant")[-1]
    blocks = text.split("```grounding")[1:] if "grounding" in text else []
    closed = next((b.split("```")[0] for b in blocks if "```" in b), None)
    if closed is None:
        return 0, 0
    for pattern in _PIGG_PATTERNS:
        m = pattern.search(closed)
        if m:
            nums = [int(g) for g in m.groups() if g and g.isdigit()]
            return (nums[0], nums[1]) if len(nums) >= 2 else (0, 0)
    return 0, 0
