"""Model families: how each speaks coordinates. The one place a convention is defined.

Usage: ``fam = family(cfg)``; ``fam.answer_point(sample, budget)`` (training answer),
``fam.to_grid(point, width, height, budget)`` (a parsed answer -> PIGG's 0-1000 grid, for scoring)

- ``qwen3_vl`` (Qwen3-VL, default): answers on PIGG's 0-1000 grid of the screenshot (data_prep/schema.py);
  images in tokens of 32 x 32 pixels (patch 16, merge 2).
- ``qwen2_5_vl`` (Qwen2.5-VL and the grounding models built on it: UI-TARS-1.5, OS-Atlas, GUI-Actor):
  answers in absolute pixels of the screenshot *as the processor resized it*; images in tokens of 28 x 28
  pixels. The resize is qwen_vl_utils' ``smart_resize`` with factor 28 and max_pixels = budget x 784, the
  budget being the experiment's ``image_max_token_num`` (swift reads it from IMAGE_MAX_TOKEN_NUM).
  A point x_px of a W-wide screenshot is answered as round(x_px * W' / W), W' the resized width.

Whatever the family, metrics stay on PIGG's 0-1000 grid of the original screenshot and in its pixels,
so runs of different families compare directly. Imports no torch (smart_resize is copied here and checked
against qwen_vl_utils and the real processors by tests/test_family.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .schema import GRID, Sample

MIN_TOKENS = 4  # qwen_vl_utils' IMAGE_MIN_TOKEN_NUM (swift leaves it)
MAX_RATIO = 200  # qwen_vl_utils: screenshots are far from it


def smart_resize(height: int, width: int, factor: int, max_pixels: int, min_pixels: int) -> tuple[int, int]:
    """qwen_vl_utils.vision_process.smart_resize (0.0.14), byte for byte: (height', width'), multiples of factor."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.1f} above {MAX_RATIO}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class Family:
    name: str  # the experiment's model.family
    model_type: str  # swift's model_type (and template); also config.json's model_type of the HF folder
    patch: int  # ViT patch side in pixels
    coords: str  # "grid": 0-1000 of the original screenshot; "pixels": absolute pixels of the resized screenshot
    prompt: str  # the prompt id (data_prep.schema.PROMPTS) that says this convention
    merge: int = 2  # spatial merge: one image token = (patch * merge)^2 pixels
    template: str | None = None  # swift's template where its model_type alone is ambiguous (qwen2_5_vl / mimo_vl)

    @property
    def factor(self) -> int:
        return self.patch * self.merge

    def resized(self, width: int, height: int, budget: int) -> tuple[int, int]:
        """(width', height') of a screenshot as the processor feeds it to the model at ``budget`` tokens."""
        h, w = smart_resize(height, width, self.factor, budget * self.factor ** 2, MIN_TOKENS * self.factor ** 2)
        return w, h

    def answer_point(self, s: Sample, budget: int) -> tuple[int, int]:
        """The point written in a training answer for sample ``s``."""
        if self.coords == "grid":
            return s.x, s.y
        w2, h2 = self.resized(s.width, s.height, budget)
        return round(s.x_px * w2 / s.width), round(s.y_px * h2 / s.height)

    def to_grid(self, point, width: int, height: int, budget: int) -> tuple[float, float] | None:
        """A point in this family's coordinates -> PIGG's 0-1000 grid of the original, as floats, unclamped (an
        answer off the screen stays off it: eval/metrics.py scores it a miss)."""
        if point is None:
            return None
        x, y = float(point[0]), float(point[1])
        if self.coords == "pixels":
            w2, h2 = self.resized(width, height, budget)
            x, y = x / w2 * GRID, y / h2 * GRID
        return x, y

    def export_settings(self, budget: int) -> dict:
        """What an export's answers depend on beyond the folds (none for the grid: byte for byte as before)."""
        return {} if self.coords == "grid" else {"family": self.name, "image_max_token_num": budget}

    def swift_dir(self) -> str:
        """DATA/<this>: qwen3_vl keeps swift/; another family's answers live beside it."""
        return "swift" if self.name == DEFAULT else f"swift_{self.name}"


FAMILIES = {
    "qwen3_vl": Family("qwen3_vl", "qwen3_vl", patch=16, coords="grid", prompt="pigg"),
    "qwen2_5_vl": Family("qwen2_5_vl", "qwen2_5_vl", patch=14, coords="pixels", prompt="pigg_pixels",
                         template="qwen2_5_vl"),
}
DEFAULT = "qwen3_vl"


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model.family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def family(cfg: dict) -> Family:
    return get(cfg["model"]["family"])


def check_model_folder(path: str | Path, fam: Family, what: str = "paths.model") -> str | None:
    """A problem (text) when the model folder's config.json names another architecture; None if it matches
    or there is nothing to read (a hub id, a folder not there yet: whoever loads it says so)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        got = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None
    if got and got != fam.model_type:
        known = {f.model_type: f.name for f in FAMILIES.values()}
        hint = f"set model.family={known[got]}" if got in known else "no family of this harness reads it"
        return (f"{what}: {path} is a {got} model but model.family is {fam.name} ({hint}, or point {what} "
                f"at a {fam.model_type} model)")
    return None
