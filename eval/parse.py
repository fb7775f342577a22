"""Turn a model's answer into a point on the 0-1000 grid: the corrected parser and PIGG's.

Usage: ``parse_point("```grounding\\n[512, 300]\\n```") -> (512.0, 300.0)``;
``parse_point_pigg(text) -> (x, y)`` (never None: PIGG's (0, 0) fallback)

The corrected parser accepts what models really emit, prefers the ``grounding`` block over
numbers elsewhere, takes a box's centre, reads floats and negatives, clamps to [0, 1000] (unless
asked not to: a family answering in pixels is converted first), and returns None when there is no point (counted as a parse failure, never scored as (0, 0)).
Imports no torch: usable on predictions produced anywhere.
"""
from __future__ import annotations

import re

from data_prep.schema import clamp_to_grid

Point = tuple[float, float]

NUM = r"[-+]?\d+(?:\.\d+)?"
_FENCE = re.compile(r"```\s*grounding\s*\n?(.*?)(?:```|$)", re.S | re.I)
_REFER = re.compile(r"```\s*referring\s*\n?(.*?)(?:```|$)", re.S | re.I)
_BOX_TOKENS = re.compile(r"<\|box_start\|>(.*?)<\|box_end\|>", re.S)
_POINT_2D = re.compile(rf"[\"']point_2d[\"']\s*:\s*[\[\(]\s*({NUM})\s*,\s*({NUM})\s*[\]\)]")
_BBOX_2D = re.compile(rf"[\"']bbox_2d[\"']\s*:\s*[\[\(]\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*[\]\)]")
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
    m = _START_BOX.search(text)
    if m:
        p = _from_numbers(_NUMS.findall(m.group(1)))
        if p is not None:
            return p
    m = _POINT_TAG.search(text)
    if m:
        return _from_numbers(list(m.groups()))
    return None


def parse_point(text: str | None, clamp: bool = True) -> Point | None:
    """The answer's point; ``clamp``: onto [0, 1000] (the grid); False: as written (a family that answers in
    pixels converts it first: data_prep/family.py)."""
    p = _parse(text)
    if p is None or not clamp:
        return p
    return clamp_to_grid(p[0]), clamp_to_grid(p[1])


def _parse(text: str | None) -> Point | None:
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


def parse_referring(text: str | None) -> str:
    m = _REFER.search(text or "")
    return m.group(1).strip() if m else ""


_PIGG_BLOCK = re.compile(r"```grounding(.*?)```", re.S)
_PIGG_PAIR = re.compile(r"(\d+)\s*,\s*(\d+)")


def parse_point_pigg(text: str | None) -> tuple[int, int]:
    """PIGG to the letter: first closed grounding block, first integer pair in it (a box gives its
    top-left corner, a float such as 12.5 is cut at the dot), no block or pair -> (0, 0), no clamping."""
    m = _PIGG_BLOCK.search(text or "")
    if not m:
        return 0, 0
    p = _PIGG_PAIR.search(m.group(1))
    return (int(p.group(1)), int(p.group(2))) if p else (0, 0)
