"""Qwen2.5-VL's window attention batched by window length (data_prep/patches/window_attention.py) computes what
transformers' one-call-per-window loop computes: the same vision features of screenshots of several sizes (so
windows of several lengths), in far fewer attention calls, and the same greedy answers through eval's engine."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from data_prep.patches import window_attention


@pytest.fixture()
def restore():
    yield
    window_attention.install()  # the default everywhere else


def vision_inputs(model_dir, sizes):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(model_dir)
    imgs = [Image.effect_noise(s, 64).convert("RGB") for s in sizes]
    out = proc.image_processor(images=imgs, return_tensors="pt", max_pixels=256 * 28 * 28)
    return out["pixel_values"], out["image_grid_thw"]


def test_batched_windows_give_the_per_window_features(tiny25, monkeypatch, restore):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny25, dtype=torch.float32).eval()
    pixels, grid = vision_inputs(tiny25, [(392, 868), (540, 1200), (300, 300)])  # phone screens + a square
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(a[0].shape[0]) or sdpa(*a, **k))
    with torch.no_grad():
        window_attention.uninstall()
        ref = model.model.visual(pixels, grid_thw=grid)
        per_window = len(calls)
        calls.clear()
        window_attention.install()
        got = model.model.visual(pixels, grid_thw=grid)
    ref, got = (getattr(x, "pooler_output", x) for x in (ref, got))
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-5
    # tiny model: 2 blocks (1 windowed, 1 full attention); per window one call before, one per length after
    print(f"attention calls: {per_window} per window, {len(calls)} batched; max |diff| {(got - ref).abs().max().item():.2e}")
    assert per_window > 20 and len(calls) <= 8 and sum(calls) == per_window


def test_batched_windows_give_the_same_answers(tiny25, exp, restore):
    """Greedy answers of eval's engine on real exported rows, windows batched or not."""
    import os
    from pathlib import Path

    from swift.infer_engine import InferRequest, RequestConfig

    from data_prep.family import get
    from eval.engine import build_engine
    from eval.job import load_rows

    fam = get("qwen2_5_vl")
    os.environ["IMAGE_MAX_TOKEN_NUM"] = "256"  # several windows per screenshot
    rows = load_rows(Path(exp["cfg"]["paths"]["data"]) / "swift" / "user_1" / "all.jsonl")[:6]
    reqs = [InferRequest(messages=r["messages"][:1], images=r["images"]) for _, r in rows]
    texts = {}
    for batched in (False, True):
        engine = build_engine(str(tiny25), [], 6, "cpu", model_type=fam.model_type, template_type=fam.template,
                              batched_windows=batched)
        out = engine.infer(reqs, RequestConfig(max_tokens=12, temperature=0), use_tqdm=False)
        texts[batched] = [o.choices[0].message.content for o in out]
    assert texts[True] == texts[False]
