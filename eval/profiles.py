"""Eval profiles: how to ask an off-the-shelf grounding model and read its answer (vanilla eval).

Usage: ``eval.profile: ui_tars`` in the experiment (or ``--set eval.profile=ui_tars``); default ``harness``.
``parse_answer("ui_tars", text, width, height, budget)`` -> the click on PIGG's 0-1000 grid, or None: the one
way an answer is read (eval.run, the visualizer and the report all go through it or its records).

A profile is a prompt (``{instruction}`` is the sample's intent; None keeps the exported row's own
prompt), a parser (text -> a point in the model's coordinates, or None) and the model family it is for,
whose coordinate convention it answers in (data_prep/family.py: ``grid``, 0-1000 of the screenshot, or
``pixels`` of the screenshot as the processor resized it). Whatever the profile, its points are turned
into PIGG's 0-1000 grid of the original screenshot before scoring, unclamped (an answer off the screen
stays off it and is scored a miss), so rows compare across models.

Adding one: write its prompt, pick or write a parser (eval/parse.py: the corrected parser reads fenced
``grounding`` blocks, ``point_2d`` / ``bbox_2d`` JSON, Qwen2.5-VL's ``<points x1 y1>``, ``<point>x y</point>``
and ``<|box_start|>`` tokens; ``parse_ui_tars`` reads UI-TARS's actions), set the family it needs, add it to
PROFILES, and add vectors to tests/parse_vectors.json (an answer in its format -> the expected point, and
whose code the expectation follows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from data_prep.family import DEFAULT, get as get_family

from .parse import Point, parse_point, parse_ui_tars

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


def _corrected(text: str | None, long_press: bool = False) -> Point | None:
    return parse_point(text)


@dataclass(frozen=True)
class Profile:
    name: str
    family: str | None  # the model.family it needs, whose coordinates it answers in (None: any)
    prompt: str | None  # None: the exported row's prompt (what the harness trains)
    about: str
    # (text, long_press: whether a long press counts as the click) -> a point in the family's coordinates, or None
    parser: Callable[[str | None, bool], Point | None] = _corrected


PROFILES = {
    "harness": Profile("harness", None, None, "the harness's own prompt and two-block answer, in the family's coordinates"),
    "ui_tars": Profile("ui_tars", "qwen2_5_vl", UI_TARS,
                       "UI-TARS-1.5: phone action space, the last Action's click(point='<point>x y</point>') (long_press "
                       "too where data.actions has long_click), resized-image pixels", parse_ui_tars),
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


def read_point(profile: Profile, text: str | None, long_press: bool = False) -> Point | None:
    """The click of an answer in the model's own coordinates (its family's), as the profile's maker reads it."""
    return profile.parser(text, long_press)


def parse_answer(profile: Profile | str, text: str | None, width: int, height: int, budget: int,
                 family: str | None = None, long_press: bool = False) -> Point | None:
    """The click of an answer on PIGG's 0-1000 grid of the original ``width`` x ``height`` screen, as floats,
    unclamped (off the screen stays off it), or None where the answer holds no click. ``family``: the
    experiment's model.family (default: the profile's own, else qwen3_vl); ``budget``: its image_max_token_num
    (answers in pixels of the resized screenshot depend on it); ``long_press``: the experiment scores long clicks."""
    name = profile.name if isinstance(profile, Profile) else profile
    fam = get_family(family or (PROFILES[name].family if name in PROFILES else None) or DEFAULT)
    prof = profile if isinstance(profile, Profile) else get(name, fam.name)
    return fam.to_grid(read_point(prof, text, long_press), width, height, budget)


def user_text(profile: Profile, row: dict, instruction: str) -> list[dict]:
    """The messages to send for a row: the exported ones without the answer (harness; earlier turns of an in-context
    row stay, with their answers) or the profile's prompt with the image."""
    msgs = row["messages"][:-1] if row["messages"][-1]["role"] == "assistant" else list(row["messages"])
    if profile.prompt is None:
        return msgs
    return [{"role": "user", "content": "<image>" + profile.prompt.format(instruction=instruction)}]
