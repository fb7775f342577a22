"""Eval profiles: how to ask an off-the-shelf grounding model and read its answer (vanilla eval).

Usage: ``eval.profile: ui_tars`` in the experiment (or ``--set eval.profile=ui_tars``); default ``harness``.

A profile is a prompt (``{instruction}`` is the sample's intent; None keeps the exported row's own
prompt), a parser (text -> a point in the model's coordinates, or None; default the corrected parser,
unclamped) and the model family it is for, whose coordinate convention it answers in (data_prep/family.py:
``grid``, 0-1000 of the screenshot, or ``pixels`` of the screenshot as the processor resized it). Whatever
the profile, its points are turned into PIGG's 0-1000 grid of the original screenshot before scoring, so
rows compare across models.

Adding one: write its prompt, pick or write a parser (eval/parse.py already reads fenced ``grounding``
blocks, ``point_2d`` / ``bbox_2d`` JSON, ``click(start_box=...)``, ``<point>x y</point>`` and
``<|box_start|>`` tokens), set the family it needs, add it to PROFILES, and add a case to
tests/test_family.py (an answer in its format -> the expected grid point).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from .parse import parse_point

# UI-TARS-1.5 (Qwen2.5-VL based): its phone-use action space, one action asked; it answers
# "Thought: ...\nAction: click(point='<point>x y</point>')" in pixels of the image it was given.
UI_TARS = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. You need to "
    "perform the next action to complete the task.\n\n"
    "## Output Format\n```\nThought: ...\nAction: ...\n```\n\n"
    "## Action Space\n\n"
    "click(point='<point>x1 y1</point>')\n"
    "long_press(point='<point>x1 y1</point>')\n"
    "type(content='')\n"
    "scroll(point='<point>x1 y1</point>', direction='down or up or right or left')\n"
    "press_home()\npress_back()\nfinished(content='')\n\n"
    "## Note\n- Use English in `Thought` part.\n\n"
    "## User Instruction\n{instruction}"
)
# Qwen2.5-VL's own grounding format: JSON with point_2d in absolute pixels of the resized image.
QWEN25_NATIVE = ("Locate the element to tap for this instruction: {instruction}\n"
                 'Output its point in JSON format: {{"point_2d": [x, y], "label": "..."}}')
# Qwen3-VL's: the same JSON, on its 0-1000 grid.
QWEN3_NATIVE = ("Locate the element to tap for this instruction: {instruction}\n"
                'Output its point in JSON format: {{"point_2d": [x, y], "label": "..."}} with coordinates '
                "relative to the image, from 0 to 1000")


@dataclass(frozen=True)
class Profile:
    name: str
    family: str | None  # the model.family it needs, whose coordinates it answers in (None: any)
    prompt: str | None  # None: the exported row's prompt (what the harness trains)
    about: str
    parser: Callable[[str | None], tuple[float, float] | None] = partial(parse_point, clamp=False)


PROFILES = {
    "harness": Profile("harness", None, None, "the harness's own prompt and two-block answer, in the family's coordinates"),
    "ui_tars": Profile("ui_tars", "qwen2_5_vl", UI_TARS,
                       "UI-TARS-1.5: phone action space, click(point='<point>x y</point>'), resized-image pixels"),
    "qwen2_5_vl_native": Profile("qwen2_5_vl_native", "qwen2_5_vl", QWEN25_NATIVE,
                                 "Qwen2.5-VL's point_2d JSON, resized-image pixels"),
    "qwen3_vl_native": Profile("qwen3_vl_native", "qwen3_vl", QWEN3_NATIVE, "Qwen3-VL's point_2d JSON, 0-1000 grid"),
}


def get(name: str, family: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown eval.profile {name!r}; known: " +
                         ", ".join(f"{p.name} ({p.about})" for p in PROFILES.values()))
    p = PROFILES[name]
    if p.family is not None and p.family != family:
        raise ValueError(f"eval.profile {name} is for model.family {p.family}, the experiment's is {family}")
    return p


def user_text(profile: Profile, row: dict, instruction: str) -> list[dict]:
    """The messages to send for a row: the exported ones (harness) or the profile's prompt with the image."""
    msgs = [m for m in row["messages"] if m["role"] != "assistant"]
    if profile.prompt is None:
        return msgs
    return [{"role": "user", "content": "<image>" + profile.prompt.format(instruction=instruction)}]
