"""The one definition of a click sample, the 0-1000 coordinate grid, and PIGG's prompt/answer text.

(The 0-1000 grid is what every metric is computed on; which coordinates a model *answers* in is its
family's business: data_prep/family.py.)

Usage: ``from data_prep.schema import Sample, to_grid, prompt_text, answer_text``

Everything that reads or writes samples (build, import, export, eval) goes through this module,
so the field list, the grid convention and the exact text the model sees live in one place.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields

GRID = 1000  # coordinates the model reads and writes: 0..1000 of the original screenshot


def on_grid(point) -> bool:
    """Whether a point on the grid lies on the screen (0..1000 both ways); an answer off it is a miss."""
    return 0 <= point[0] <= GRID and 0 <= point[1] <= GRID


def to_grid(px: float, size: int) -> int:
    """PIGG's convention: int(px / size * 1000) (truncation, not rounding)."""
    return int(px / size * GRID)


def from_grid(g: float, size: int) -> float:
    """Grid value back to pixels (the centre of the grid cell is not attempted: PIGG doesn't)."""
    return g / GRID * size


@dataclass
class Sample:
    """One click step of one episode of one user."""

    id: str  # "<raw_user>/<episode>/<step>": stable across runs
    user: int  # re-indexed user 1..N (raw ids sorted numerically)
    raw_user: str  # the folder name in the raw dataset
    episode: str  # YYYYMMDD_HHMMSS (or a synthetic id for imported data)
    step: int  # 0-based line number of the action in action.jsonl
    action: str  # click | long_click
    image: str  # absolute path of the screenshot
    width: int
    height: int
    instruction: str  # the episode's intentDescription
    content: str  # the tapped element's text/description (the "referring" answer)
    x_px: float
    y_px: float
    x: int  # to_grid(x_px, width)
    y: int  # to_grid(y_px, height)
    app: str = ""
    tree: str = ""  # absolute path of the accessibility tree XML, "" if none

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Sample":
        names = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in d]
        if missing:
            raise ValueError(f"sample {d.get('id', '?')}: missing fields {missing}")
        return cls(**{k: v for k, v in d.items() if k in names})


SAMPLE_FIELDS = [f.name for f in fields(Sample)]

# --- PIGG's prompt and answer (protocol notes, "From raw data to samples") -------------------

_PIGG_PROMPT = (
    "Given a GUI image, what are the {coords} point coordinates for the element "
    "corresponding to the following instruction: {instruction}\n"
    "Think step-by-step, provide referring for the element first and then the grounded point "
    "coordinates.\n"
    "Example output:\n"
    "```referring\nleft arrow\n```\n"
    "```grounding\n(100, 200)\n```"
)
# pigg: PIGG's own (0-1000 grid); pigg_pixels: the same, for families that answer in absolute pixels of the
# image they see (data_prep/family.py)
PROMPTS = {"pigg": _PIGG_PROMPT.replace("{coords}", "relative (0-1000) pixel"),
           "pigg_pixels": _PIGG_PROMPT.replace("{coords}", "absolute pixel")}
PROMPT_COORDS = {"pigg": "grid", "pigg_pixels": "pixels"}  # the convention each prompt asks for


def prompt_text(instruction: str, prompt: str = "pigg") -> str:
    if prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {prompt!r}; known: {sorted(PROMPTS)}")
    return PROMPTS[prompt].format(instruction=instruction)


def answer_text(content: str, x: int, y: int) -> str:
    """Two fenced blocks: referring (the element) then grounding ([x, y] on the 0-1000 grid)."""
    return f"```referring\n{content}\n```\n```grounding\n[{x}, {y}]\n```"


# --- who is asking: the user-token method (one model for all test users) ---------------------------
# special: a new token per user (swift's new_special_tokens; its embedding row trained); text: existing
# tokens (nothing new to train); pooled: no tag (the control: the same data, without knowing who asks).
USER_TAGS = {"special": "<user_{user}> ", "text": "User {user}: ", "pooled": ""}


def user_tag(kind: str, user: int) -> str:
    if kind not in USER_TAGS:
        raise ValueError(f"unknown user-tag kind {kind!r}; known: {sorted(USER_TAGS)}")
    return USER_TAGS[kind].format(user=user)


def user_special_tokens(users) -> list[str]:
    return [user_tag("special", u).strip() for u in users]


def swift_row(sample: Sample, prompt: str = "pigg", tag: str = "", point: tuple[int, int] | None = None) -> dict:
    """A swift-format training/eval row: image before text in the user turn, no system prompt; ``tag``
    (the user-token method) starts the text; ``point``: the answer's point in the model family's
    coordinates (data_prep/family.py; default the 0-1000 grid)."""
    x, y = point if point is not None else (sample.x, sample.y)
    return {
        "messages": [
            {"role": "user", "content": "<image>" + tag + prompt_text(sample.instruction, prompt)},
            {"role": "assistant", "content": answer_text(sample.content, x, y)},
        ],
        "images": [sample.image],
    }
