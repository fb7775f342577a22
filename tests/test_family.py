"""Model families (data_prep/family.py) and eval profiles (eval/profiles.py): each convention against the real
processor (swift's template encode: the pixel array the model is fed), qwen_vl_utils, export, eval reading."""
from __future__ import annotations

import re
import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import write_experiment
from data_prep.config import ConfigError, load_experiment
from data_prep.family import FAMILIES, get
from data_prep.schema import GRID, Sample, from_grid, to_grid

PHONES = [(1080, 2340), (1080, 2400), (1440, 3200), (720, 1600), (1170, 2532)]


def test_smart_resize_is_qwen_vl_utils():
    from qwen_vl_utils.vision_process import smart_resize

    for fam in FAMILIES.values():
        for budget in (32, 256, 980, 1280):
            for w, h in PHONES + [(270, 585), (64, 64), (2000, 300)]:
                want = smart_resize(h, w, fam.factor, min_pixels=4 * fam.factor ** 2, max_pixels=budget * fam.factor ** 2)
                assert fam.resized(w, h, budget) == (want[1], want[0]), (fam.name, budget, w, h)
    assert get("qwen2_5_vl").resized(1080, 2400, 980) == (588, 1288)  # 28-multiples, <= 980 x 784 pixels


def _unpatchify(pixel_values, thw, patch: int, merge: int = 2, tp: int = 2) -> np.ndarray:
    """Qwen2VLImageProcessor's patch rows back to the (H', W', 3) array it cut them from (normalised)."""
    t, gh, gw = (int(v) for v in thw)
    x = pixel_values.float().numpy().reshape(t, gh // merge, gw // merge, merge, merge, 3, tp, patch, patch)
    # the processor's transpose was (0, 3, 6, 4, 7, 2, 1, 5, 8) of (t, tp, C, gh/m, m, p, gw/m, m, p)
    x = x.transpose(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * tp, 3, gh * patch, gw * patch)
    return x[0].transpose(1, 2, 0)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
def test_exported_point_lands_on_the_element_the_model_sees(name, tmp_path, tiny_model, tiny25, monkeypatch):
    """Screens of several phones: the point in the exported answer, drawn on the pixel array swift's template
    feeds the model, is on the element's box; original px -> family coords -> grid -> px within one pixel of
    the resized image (the model's own unit)."""
    import torch
    from swift.infer_engine import InferRequest, TransformersEngine

    from data_prep.schema import swift_row
    from eval.parse import parse_point

    from qwen_vl_utils import vision_process

    fam, budget = get(name), 256
    monkeypatch.setenv("IMAGE_MAX_TOKEN_NUM", str(budget))
    # swift copies the env into qwen_vl_utils once per process: an earlier test's budget would stick
    monkeypatch.setattr(vision_process, "IMAGE_MAX_TOKEN_NUM", budget)
    model = tiny25 if name == "qwen2_5_vl" else tiny_model
    engine = TransformersEngine(str(model), model_type=fam.model_type, template_type=fam.template,
                                torch_dtype=torch.float32, device_map="cpu")
    tpl = engine.template
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(PHONES):
        w, h = w // 2, h // 2
        box = (int(w * 0.61), int(h * 0.37), int(w * 0.61) + max(12, w // 12), int(h * 0.37) + max(12, h // 40))
        im = Image.new("RGB", (w, h), (250, 250, 250))
        im.paste((200, 20, 20), box)
        path = tmp_path / f"s{i}.png"
        im.save(path)
        for _ in range(4):
            x_px = float(rng.uniform(box[0] + 3 * w / 200, box[2] - 3 * w / 200))
            y_px = float(rng.uniform(box[1] + 3 * h / 400, box[3] - 3 * h / 400))
            s = Sample(id="u/e/0", user=1, raw_user="1", episode="e", step=0, action="click", image=str(path),
                       width=w, height=h, instruction="tap it", content="red", x_px=x_px, y_px=y_px,
                       x=to_grid(x_px, w), y=to_grid(y_px, h))
            row = swift_row(s, fam.prompt, "", fam.answer_point(s, budget))
            point = parse_point(row["messages"][-1]["content"])
            enc = tpl.encode(InferRequest(messages=row["messages"][:1], images=row["images"]))
            thw = enc["image_grid_thw"][0]
            arr = _unpatchify(enc["pixel_values"], thw, fam.patch)
            h2, w2 = arr.shape[:2]
            assert (w2, h2) == fam.resized(w, h, budget), (name, w, h)
            if fam.coords == "pixels":
                px, py = point
            else:
                px, py = point[0] / GRID * w2, point[1] / GRID * h2
            r, g, b = arr[min(int(py), h2 - 1), min(int(px), w2 - 1)]
            assert r > g + 0.5 and r > b + 0.5, (name, w, h, x_px, y_px, point)  # the red element, normalised
            gx, gy = fam.to_grid(point, w, h, budget)
            back = from_grid(gx, w), from_grid(gy, h)
            one = (w / w2, h / h2)  # one pixel of the image the model sees, in original pixels
            assert abs(back[0] - x_px) <= one[0] + w / GRID and abs(back[1] - y_px) <= one[1] + h / GRID


def test_config_family_and_prompt(tmp_path):
    cfg = load_experiment(write_experiment(tmp_path))
    assert cfg["model"]["family"] == "qwen3_vl" and cfg["data"]["prompt"] == "pigg"
    cfg = load_experiment(write_experiment(tmp_path), ["model.family=qwen2_5_vl"])
    assert cfg["data"]["prompt"] == "pigg_pixels"
    with pytest.raises(ConfigError, match="model.family"):
        load_experiment(write_experiment(tmp_path), ["model.family=llava"])
    with pytest.raises(ConfigError, match="asks for grid coordinates"):
        load_experiment(write_experiment(tmp_path), ["model.family=qwen2_5_vl", "data.prompt=pigg"])


def test_profiles_read_their_models_answers():
    from eval.profiles import get as profile
    from eval.generation import Reader

    fam, budget = get("qwen2_5_vl"), 980
    meta = {"width": 1080, "height": 2400, "instruction": "open wifi"}  # resized: 588 x 1288
    tars = Reader(fam, budget, profile("ui_tars", "qwen2_5_vl"))
    pred, pigg = tars.points("s", "Thought: the WLAN switch, top right.\nAction: click(point='<point>294 644</point>')", meta)
    assert pred == pytest.approx((500.0, 500.0)) and pigg == [0.0, 0.0]  # PIGG's parser: its own block or (0, 0)
    pred, _ = tars.points("s", "Action: click(start_box='(588,2000)')", meta)
    assert pred == pytest.approx((1000.0, 2000 / 1288 * 1000))  # past the image: kept off the grid (a miss)
    native = Reader(fam, budget, profile("qwen2_5_vl_native", "qwen2_5_vl"))
    assert native.points("s", '{"point_2d": [147, 322], "label": "wifi"}', meta)[0] == pytest.approx((250.0, 250.0))
    assert native.points("s", "no idea", meta)[0] is None
    q3 = Reader(get("qwen3_vl"), budget, profile("qwen3_vl_native", "qwen3_vl"))
    assert q3.points("s", '[{"point_2d": [250, 750]}]', meta)[0] == (250.0, 750.0)
    harness = Reader(fam, budget)
    assert harness.points("s", "```referring\nx\n```\n```grounding\n[294, 644]\n```", meta)[0] == pytest.approx((500.0, 500.0))
    msgs = tars.messages({"messages": [{"role": "user", "content": "<image>harness prompt"},
                                       {"role": "assistant", "content": "a"}], "images": ["x.png"]}, meta)
    assert msgs[0]["content"].startswith("<image>You are a GUI agent") and msgs[0]["content"].endswith("open wifi")
    with pytest.raises(ValueError, match="is for model.family qwen2_5_vl"):
        profile("ui_tars", "qwen3_vl")
    with pytest.raises(ValueError, match="unknown eval.profile"):
        profile("seeclick", "qwen3_vl")


def test_export_in_the_familys_coordinates(exp):
    """qwen2_5_vl: its own folder, answers in resized pixels; validate checks them; qwen3_vl's untouched."""
    from data_prep.export import export, swift_dir
    from data_prep.store import load_samples
    from data_prep.io import read_jsonl
    from data_prep.validate import validate

    base = exp["cfg"]
    cfg = {**base, "model": {"family": "qwen2_5_vl"}, "data": {**base["data"], "prompt": "pigg_pixels"}}
    budget = base["image_max_token_num"]
    before = (swift_dir(base) / "user_1" / "all.jsonl").read_bytes()
    man = export(cfg)
    assert man["settings"]["family"] == "qwen2_5_vl" and man["settings"]["image_max_token_num"] == budget
    d = swift_dir(cfg)
    assert d.name == "swift_qwen2_5_vl" and (swift_dir(base) / "user_1" / "all.jsonl").read_bytes() == before
    samples = {s.id: s for s in load_samples(base["paths"]["data"])[1]}
    ids = (d / "user_1" / "all.ids").read_text().splitlines()
    for sid, row in zip(ids, read_jsonl(d / "user_1" / "all.jsonl")):
        s = samples[sid]
        w2, h2 = get("qwen2_5_vl").resized(s.width, s.height, budget)
        assert f"[{round(s.x_px * w2 / s.width)}, {round(s.y_px * h2 / s.height)}]" in row["messages"][1]["content"]
        assert "absolute pixel" in row["messages"][0]["content"]
    assert validate(base["paths"]["data"], progress=False)["errors"] == {}
    # an answer that no longer matches its image is found
    rows = (d / "user_1" / "all.jsonl").read_text(encoding="utf-8").splitlines()
    bad = json.loads(rows[0])
    bad["messages"][1]["content"] = bad["messages"][1]["content"].replace("[", "[1")
    (d / "user_1" / "all.jsonl").write_text("\n".join([json.dumps(bad, ensure_ascii=False)] + rows[1:]) + "\n",
                                            encoding="utf-8")
    assert validate(base["paths"]["data"], progress=False)["errors"] == {"export_answer_mismatch": 1}
    import shutil

    shutil.rmtree(d)


def test_model_folder_must_match_the_family(exp, tiny_model):
    from swift_configs.generate import render

    base = {**exp["cfg"], "paths": {**exp["cfg"]["paths"], "model": str(tiny_model)}}
    with pytest.raises(ConfigError, match="is a qwen3_vl model but model.family is qwen2_5_vl"):
        render({**base, "model": {"family": "qwen2_5_vl"}}, "global")
    run = render(base, "global")
    assert list(run.args)[:2] == ["model_type", "check_model"] and run.args["model_type"] == "qwen3_vl"
    assert "template" not in run.args  # qwen3_vl: swift matches it (the generated YAML as before)
    with pytest.raises(ConfigError, match=r"'model_type' is set from the experiment \(model.family\)"):
        render({**base, "train": {**base["train"], "global_overrides": {"model_type": "qwen2_5_vl"}}}, "global")


def test_qwen25_decode_steps_reuse_their_static_inputs(tmp_path, tiny25, monkeypatch):
    """Qwen2.5-VL passes its decode-step mask as a dict per layer type, a new dict each step: the CUDA-graph
    runner (eval/cuda_graphs.py; off a GPU, the same static buffers, eager) must still see one set of
    inputs per generate call, and answer as the plain path does."""
    from eval.engine import build_engine
    from eval.generation import generate

    monkeypatch.setenv("IMAGE_MAX_TOKEN_NUM", "32")
    fam = get("qwen2_5_vl")
    engine = build_engine(str(tiny25), [], 2, "cpu", model_type=fam.model_type, template_type=fam.template)
    im = Image.new("RGB", (270, 585), (240, 240, 240))
    im.paste((20, 20, 200), (150, 200, 240, 260))
    im.save(tmp_path / "s.png")
    rows = [(f"r{i}", {"messages": [{"role": "user", "content": f"<image>tap {w}"}, {"role": "assistant", "content": "x"}],
                       "images": [str(tmp_path / "s.png")]}) for i, w in enumerate(["search", "wifi"])]
    got = {}
    for graphs in (True, False):
        out = tmp_path / f"p{graphs}.jsonl"
        st = generate(engine, rows, out, 2, 6, {}, progress=False, graphs=graphs)
        got[graphs] = [json.loads(x)["raw"] for x in out.read_text().splitlines()]
        if graphs:
            assert st["decode_steps"]["new_inputs"] == 1 and st["decode_steps"]["eager"] >= 3
    assert got[True] == got[False]


def test_pixel_answers_need_their_sample_records(exp, tmp_path, monkeypatch, capsys):
    """A row with no sample record cannot be converted from resized-image pixels: said before any model loads.
    And eval takes the image budget from the experiment, not from an inherited IMAGE_MAX_TOKEN_NUM."""
    from eval.run import main

    monkeypatch.setenv("IMAGE_MAX_TOKEN_NUM", "999")

    data = tmp_path / "orphan.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "<image>x"},
                                             {"role": "assistant", "content": "[1, 2]"}], "images": ["x.png"]}) + "\n")
    data.with_suffix(".ids").write_text("nobody/20250101_000000/0\n")
    assert main(["--config", str(exp["path"]), "--set", f"paths.data={exp['cfg']['paths']['data']}",
                 "--set", "model.family=qwen2_5_vl", "--model", str(tmp_path / "no-model"),
                 "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    assert re.search("1 eval rows have no sample record.*model.family qwen2_5_vl", capsys.readouterr().err)
    assert os.environ["IMAGE_MAX_TOKEN_NUM"] == str(exp["cfg"]["image_max_token_num"])
