"""Draw predictions on screenshots: GT (blue), prediction (red), and the region that is scored.

Usage: python -m eval.visualize --config EXP [--run eval/vanilla | person_lora] [--user 1]
                                [--samples 0 1 2 | --all | --max 8]

The δ region is drawn as what the metric accepts: distance ≤ δ on the 0-1000 grid is an ellipse
of δ/1000 of the width by δ/1000 of the height around the GT point (PIGG drew a circle, which
does not match its own metric). Green if the prediction is a hit, red if not. A family that answers in
pixels of the resized screenshot (data_prep/family.py) also gets its answer as written, with that size.
Output:
runs/<exp>/visualizations/<run>/user<U>_<n>.png.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from data_prep.config import load_experiment
from data_prep.runtime.cli import nonneg_int, parser, positive_int, run
from data_prep.rundir import eval_outputs, run_dir, user_dir
from data_prep.family import Family, family
from data_prep.schema import from_grid, on_grid

from .metrics import corrected_l2, is_hit
from .profiles import PROFILES, Profile, get as get_profile, read_point


def draw(rec: dict, delta: float, out: Path, fam: Family | None = None, budget: int = 0,
         profile: Profile | None = None, long_press: bool = False) -> Path:
    """One record drawn: the scored δ region around the truth, the answer's point (an answer off the screen: a
    cross at the edge it points past, labelled; always a miss), and, for a family answering in pixels, the
    answer as the profile's parser read it (eval/profiles.py read_point)."""
    with Image.open(rec["image"]) as im:
        im = im.convert("RGB")
    w, h = im.size
    overlay = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(overlay)
    gx, gy = from_grid(rec["gt"][0], w), from_grid(rec["gt"][1], h)
    hit = is_hit(corrected_l2(rec["pred"], rec["gt"]), delta)
    rx, ry = delta / 1000 * w, delta / 1000 * h
    d.ellipse((gx - rx, gy - ry, gx + rx, gy + ry), fill=(0, 200, 0, 70) if hit else (220, 0, 0, 70),
              outline=(0, 160, 0, 255) if hit else (200, 0, 0, 255), width=max(1, w // 300))
    r = max(3, w // 60)
    d.ellipse((gx - r, gy - r, gx + r, gy + r), fill=(30, 90, 255, 255))
    off = rec["pred"] is not None and not on_grid(rec["pred"])
    if rec["pred"] is not None:
        px, py = from_grid(rec["pred"][0], w), from_grid(rec["pred"][1], h)
        if off:  # where it leaves the screen
            px, py = min(max(px, r), w - 1 - r), min(max(py, r), h - 1 - r)
            d.line((px - r, py - r, px + r, py + r), fill=(230, 20, 20, 255), width=max(2, r // 2))
            d.line((px - r, py + r, px + r, py - r), fill=(230, 20, 20, 255), width=max(2, r // 2))
        else:
            d.ellipse((px - r, py - r, px + r, py + r), fill=(230, 20, 20, 255))
    im = Image.alpha_composite(im.convert("RGBA"), overlay).convert("RGB")
    shown = rec["pred"] and [round(v, 1) for v in rec["pred"]]
    label = f"GT {rec['gt']} pred {shown} {'OFF SCREEN, MISS' if off else 'HIT' if hit else 'MISS'}"
    if fam is not None and fam.coords == "pixels":
        said = read_point(profile or PROFILES["harness"], rec.get("raw"), long_press)
        label += f"\n{fam.name} answer {said and [round(v) for v in said]} in {'x'.join(map(str, fam.resized(w, h, budget)))} px"
    ImageDraw.Draw(im).text((4, 4), label, fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out)
    return out


def load_records(cfg: dict, run: str, user: int) -> list[dict]:
    base = run_dir(cfg, *run.split("/"))
    files = eval_outputs(base, per_fold=False, user=user) or eval_outputs(base, per_fold=True, user=user)
    if not files:
        raise FileNotFoundError(f"{user_dir(base, user)}: no out.json (run that stage first)")
    recs = []
    for f in files:
        recs += json.loads(f.read_text(encoding="utf-8"))
    return recs


def main(argv=None) -> int:
    p = parser("python -m eval.visualize", __doc__)
    p.add_argument("--run", default="eval/vanilla", help="eval/<name> or person_lora (under runs/<exp>/)")
    p.add_argument("--user", type=positive_int, nargs="+", help="default: all test users")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--samples", type=nonneg_int, nargs="+", help="indices into the user's records")
    g.add_argument("--all", action="store_true")
    p.add_argument("--max", type=positive_int, default=4, help="first N samples per user (default 4)")
    p.add_argument("--dry-run", action="store_true", help="print where the records would be read and drawn")
    a = p.parse_args(argv)
    return run(lambda: visualize(a))


def visualize(a) -> int:
    cfg = load_experiment(a.config, a.overrides)
    written = []
    fam = family(cfg)
    profile = get_profile(cfg["eval"]["profile"], fam.name)
    if a.dry_run:
        for u in a.user or cfg["users"]["test"]:
            print(f"user {u}: {user_dir(run_dir(cfg, *a.run.split('/')), u)} -> "
                  f"{run_dir(cfg, 'visualizations', a.run.replace('/', '_'))}")
        return 0
    for u in a.user or cfg["users"]["test"]:
        recs = load_records(cfg, a.run, u)
        idx = range(len(recs)) if a.all else a.samples if a.samples else range(min(a.max, len(recs)))
        for i in idx:
            if not 0 <= i < len(recs):
                print(f"error: user {u} has {len(recs)} samples; no index {i}", file=sys.stderr)
                return 2
            out = run_dir(cfg, "visualizations", a.run.replace("/", "_"), f"user{u}_{i}.png")
            written.append(draw(recs[i], cfg["eval"]["delta"], out, fam, cfg["image_max_token_num"], profile,
                                "long_click" in cfg["data"]["actions"]))
    print(f"wrote {len(written)} images under {run_dir(cfg, 'visualizations')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
