"""GPU memory arithmetic with no GPU: the eval batch plan (eval/memory.py) and the training
preflight (swift_configs/preflight.py) on the real 8B shapes, against the figures measured on H100s."""
from __future__ import annotations

import pytest

from data_prep.runtime.memory import ALLOC_CONST, ALLOC_FACTOR, HEADROOM, MAX_AUTO, batch_plan, card_limit_bytes, kv_bytes_per_token, row_bytes

QWEN3_VL_8B_TEXT = {"num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                    "hidden_size": 4096}
GB = 10**9


def test_kv_bytes_of_the_8b_shape():
    # 2 (K, V) x 36 layers x 8 KV heads x 128 x 2 bytes (bf16) = 147,456 bytes a token
    assert kv_bytes_per_token(QWEN3_VL_8B_TEXT) == 147456
    # the old default: a static cache of prompt 1,084 + 512 answer tokens, 128 rows = 30.1 GB of KV alone
    assert 147456 * (1084 + 512) * 128 == pytest.approx(30.1 * GB, rel=0.01)


def test_batch_plan_against_the_h100_measurements():
    """bench/results/memory_fit_cuda_h100*.json (weights 16.33 GiB, prompt 1,083 + 32 answer tokens): the
    plan, from the free memory measured there, picks 128 rows on the 79.6 GiB card (measured: 63.4-66.2 GiB
    reserved, 80-83 %) and 10 on the card capped to 24 GiB (measured: 21.1 GiB, 88 %); both leave 10 % free."""
    gib = 2**30
    full = batch_plan(QWEN3_VL_8B_TEXT, 1083, 32, 62.19 * gib, 79.6 * gib)
    assert full["batch_size"] == 128
    capped = batch_plan(QWEN3_VL_8B_TEXT, 1083, 32, 7.61 * gib, 24 * gib)
    assert capped["batch_size"] == 10
    # what the plan assumes a batch reserves covers what was measured at 10, 14, 112 and 128 rows
    for rows, reserved in ((10, 4.80), (14, 6.44), (112, 42.19), (128, 49.88)):
        assert rows * full["per_row_bytes"] + ALLOC_CONST >= reserved * gib, rows


QWEN25_VL_7B_TEXT = {"model_type": "qwen2_5_vl_text", "num_hidden_layers": 28, "num_attention_heads": 28,
                     "num_key_value_heads": 4, "hidden_size": 3584}


def test_batch_plan_of_qwen25_uses_its_own_prefill_coefficient():
    """bench/results/memory_fit_cuda_h100_q25vl7b_{b,d}.json: with Qwen3-VL's prefill figure the 7B filled the
    H100 to 97 % at 128 rows; with its own (62) the plan picks 96 rows from the free memory measured there
    (measured: 59.4-62.9 GiB reserved, 75-79 %)."""
    plan = batch_plan(QWEN25_VL_7B_TEXT, 1087, 32, 67740303360, 85017493504)
    assert plan["batch_size"] == 96 and plan["per_row_bytes"] == 601972940
    as_qwen3 = batch_plan({**QWEN25_VL_7B_TEXT, "model_type": "qwen3_vl_text"}, 1087, 32, 67740303360, 85017493504)
    assert as_qwen3["batch_size"] == MAX_AUTO


def test_batch_plan_leaves_the_headroom_free():
    card, weights = 79.6 * GB, 17.5 * GB
    free = card - weights
    plan = batch_plan(QWEN3_VL_8B_TEXT, 1084, 64, free, card)
    b = plan["batch_size"]
    assert 1 <= b <= MAX_AUTO and plan["fits_one_row"]
    used = weights + b * plan["per_row_bytes"] + ALLOC_CONST
    assert used <= (1 - HEADROOM) * card  # >= 10 % of the card left
    if b < MAX_AUTO:  # and not much more than a tidy step: 8 more rows would not fit
        assert weights + (b + 8) * plan["per_row_bytes"] + ALLOC_CONST > (1 - HEADROOM) * card
    # reserving 512 answer tokens per row fits fewer rows than 64
    assert batch_plan(QWEN3_VL_8B_TEXT, 1084, 512, free, card)["batch_size"] < b or b == MAX_AUTO


def test_batch_plan_on_a_small_card_and_one_that_cannot_hold_a_row():
    per_row = int(ALLOC_FACTOR * row_bytes(QWEN3_VL_8B_TEXT, 1084, 64))
    card = 24 * GB
    plan = batch_plan(QWEN3_VL_8B_TEXT, 1084, 64, card - 17.5 * GB, card)
    assert plan["batch_size"] == int((card - 17.5 * GB - HEADROOM * card - ALLOC_CONST) // per_row) >= 1
    none = batch_plan(QWEN3_VL_8B_TEXT, 1084, 64, 1 * GB, 10 * GB)
    assert not none["fits_one_row"] and none["batch_size"] == 1


def test_card_limit_env(monkeypatch):
    monkeypatch.delenv("PIGG_GPU_MEMORY_GB", raising=False)
    assert card_limit_bytes() is None
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "24")
    assert card_limit_bytes() == 24 * 2**30
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "lots")
    with pytest.raises(ValueError, match="PIGG_GPU_MEMORY_GB='lots': want a number of GB"):
        card_limit_bytes()


@pytest.fixture(scope="module")
def shape8b(tmp_path_factory):
    """config.json + safetensors header of the real 8B shape (no weights): what the preflight reads."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from build_tiny_model import write_shapes

    return write_shapes(tmp_path_factory.mktemp("shape") / "8b", "8b")


def _template(name: str, model) -> dict:
    import yaml

    from conftest import ROOT

    return {**yaml.safe_load((ROOT / "swift_configs/templates" / f"{name}.yaml").read_text()), "model": str(model)}


# peaks measured with swift sft on the 8B shape (bench/RESULTS.md): (template, changes, GPUs, GiB)
MEASURED = [
    ("person_lora", {}, 1, 54.0),  # b4, no checkpointing, Liger (H200; 54-56 on H100)
    ("person_lora", {"per_device_train_batch_size": 8}, 1, 92.5),
    ("person_lora", {"use_liger_kernel": False}, 1, 57.9),
    ("person_lora", {"use_liger_kernel": False, "per_device_train_batch_size": 8}, 1, 100.7),
    ("person_lora", {"use_liger_kernel": False, "gradient_checkpointing": True}, 1, 20.2),
    ("global_full", {"deepspeed": "zero3"}, 2, 73.2),  # 4 x 2, checkpointing (H200 and H100 alike)
    ("global_full", {"deepspeed": "zero3", "per_device_train_batch_size": 1}, 2, 69.4),
    ("global_full", {"deepspeed": "zero2"}, 2, 100.3),
]


@pytest.mark.parametrize("template,changes,gpus,gib", MEASURED)
def test_preflight_estimate_within_15_percent_of_measured(shape8b, template, changes, gpus, gib):
    from swift_configs.preflight import GIB, estimate

    est = estimate({**_template(template, shape8b), **changes}, gpus, 980)
    assert est["params"] == 8_767_123_696 and est["tokens_per_sample"] == 1073
    assert est["per_gpu_bytes"] / GIB == pytest.approx(gib, rel=0.15)


def test_preflight_counts_the_trained_embedding_of_special_user_tokens(shape8b):
    """modules_to_save [embed_tokens] (the user-token method's special kind) trains a bf16 copy of the
    151,936 x 4,096 embedding with fp32 gradients and AdamW states: 2 + 4 + 12 bytes a parameter more.
    Measured on one H100 at 8B shape: 58.16 GiB against 53.77 for the plain fold (bench/RESULTS.md)."""
    from swift_configs.preflight import GIB, estimate

    plain = estimate(_template("person_lora", shape8b), 1, 980)
    special = estimate({**_template("person_lora", shape8b), "modules_to_save": ["embed_tokens"]}, 1, 980)
    assert special["per_gpu_bytes"] - plain["per_gpu_bytes"] == 18 * 151936 * 4096
    assert special["per_gpu_bytes"] / GIB == pytest.approx(58.16, rel=0.15)


def test_preflight_stops_a_run_that_does_not_fit_and_names_what_fits(shape8b, monkeypatch):
    from swift_configs import preflight as pf

    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "24")
    with pytest.raises(pf.PreflightError) as e:
        pf.check(_template("person_lora", shape8b), ["0"], 980, "none", "person_lora")
    msg = str(e.value)
    assert "does not fit 1 GPU(s) of 24.0 GiB" in msg
    assert "QLoRA: --set train.person_template=person_qlora" in msg
    assert "gradient_checkpointing=true" not in msg.split("Settings that would fit:")[1] or \
        pf.estimate({**_template("person_lora", shape8b), "gradient_checkpointing": True}, 1, 980)["per_gpu_bytes"] \
        <= pf.FIT * 24 * pf.GIB
    est, line = pf.check(_template("person_qlora", shape8b), ["0"], 980, "none", "person_qlora")
    assert est["qlora"] and est["per_gpu_bytes"] < 20 * pf.GIB and "QLoRA" in line
    # global full FT on 2 x 80 GB: fits (the default); on one: offload or more GPUs are named
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "80")
    full = {**_template("global_full", shape8b), "deepspeed": "zero3"}
    assert pf.check(full, ["0", "1"], 980, "none", "global_full")[0]["zero"] == 3
    with pytest.raises(pf.PreflightError) as e:  # ZeRO-3 on one card: fp32 master + moments alone are 91 GiB
        pf.check(full, ["0"], 980, "none", "global_full")
    assert "train.offload=optimizer" in str(e.value) and "2 GPUs (ZeRO-3)" in str(e.value)


def test_preflight_counts_the_vision_cache_per_distinct_screenshot(shape8b, tmp_path, monkeypatch):
    """data_prep/patches/vision_cache.py keeps each distinct training screenshot's bf16 pixels and features on the GPU.
    Measured on one H200 at 8B shape (bench/RESULTS.md): 15 screenshots held 0.61 GiB (swift's count at exit)."""
    import json

    from swift_configs import preflight as pf

    data = tmp_path / "train.jsonl"
    rows = [{"messages": [], "images": [f"/s/{i % 15}.png"]} for i in range(33)]  # 33 samples, 15 screenshots
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = {**_template("person_lora", shape8b), "dataset": [str(data)]}
    off = pf.estimate(args, 1, 980)
    on = pf.estimate(args, 1, 980, vision_cache_gib=8.0)
    assert off["parts"]["vision_cache"] == 0
    assert on["parts"]["vision_cache"] / pf.GIB == pytest.approx(0.61, rel=0.05)
    assert pf.estimate(args, 1, 980, vision_cache_gib=0.25)["parts"]["vision_cache"] == int(0.25 * pf.GIB)  # the cap
    assert pf.estimate({**args, "freeze_vit": False}, 1, 980, vision_cache_gib=8.0)["parts"]["vision_cache"] == 0
    assert pf.estimate(args, 2, 980, vision_cache_gib=8.0)["parts"]["vision_cache"] == 0  # multi-GPU: never cached
    many = {**args, "dataset": [str(tmp_path / "missing.jsonl")]}  # unreadable: the cap is counted
    assert pf.estimate(many, 1, 980, vision_cache_gib=8.0)["parts"]["vision_cache"] == 8 * pf.GIB
    # the shipped fold with the whole 8 GiB cap still fits an 80 GB card with >= 10 % free
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "80")
    est, line = pf.check(many, ["0"], 980, "none", "person_lora", vision_cache_gib=8.0)
    assert est["per_gpu_bytes"] <= 0.9 * 80e9 and "vision_cache 8.0" in line
    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "64")  # too much with the cache: turning it off is named
    with pytest.raises(pf.PreflightError) as e:
        pf.check(many, ["0"], 980, "none", "person_lora", vision_cache_gib=8.0)
    assert "train.vision_cache_gib=0" in str(e.value)


@pytest.mark.parametrize("gpus,gib,want", [
    (2, 80, ("zero3", 8, False)),  # the measured 2 x H100 recipe: 69.4 GiB (87 %)
    (4, 80, ("zero3", 8, False)),  # 4 x H100: 44.8 GiB measured
    (8, 80, ("zero2", 8, False)),  # parameters + sharded gradients and AdamW fit: no gathers
    (2, 141, ("zero2", 8, False)),  # 2 x H200 (ZeRO-2 4 x 2 measured at 100.3 GiB there)
])
def test_the_global_recipe_is_the_fastest_that_fits(shape8b, gpus, gib, want):
    """train.global_recipe: auto (swift_configs/preflight.py choose_recipe): the largest micro-batch, then ZeRO-2,
    then checkpointing off, that fits; PIGG's 8 samples per GPU kept; keys the user set stay."""
    from swift_configs.preflight import GIB, choose_recipe

    args = {**_template("global_full", shape8b), "deepspeed": "zero3"}
    chosen, why = choose_recipe(args, gpus, gib * GIB, 980)
    zero, micro, gc_off = want
    assert (chosen["deepspeed"], chosen["per_device_train_batch_size"]) == (zero, micro)
    assert chosen["per_device_train_batch_size"] * chosen["gradient_accumulation_steps"] == 8
    assert chosen["gradient_checkpointing"] is (not gc_off) and why.startswith(f"recipe: ZeRO-{zero[-1]} {micro} x")
    kept, _ = choose_recipe({**args, "gradient_checkpointing": False}, 2, 141 * GIB, 980,
                            keep=("gradient_checkpointing",))
    assert kept["gradient_checkpointing"] is False and kept["per_device_train_batch_size"] < 8  # it fits with fewer
    none, why = choose_recipe(args, 2, 24 * GIB, 980)
    assert none == {} and "nothing in the search fits" in why


def test_the_launcher_says_the_recipe_before_it_starts(exp, tiny_model, monkeypatch):
    """On 2 GPUs (here: said to hold 141 GiB each) the global full run gets the chosen recipe and the line saying why;
    the experiment's own settings (the demo's per-device batch) are kept and named; train.global_recipe: template
    keeps the template and train.zero_stage."""
    from data_prep.config import load_experiment
    from swift_configs.generate import render

    monkeypatch.setenv("PIGG_GPU_MEMORY_GB", "141")
    ov = [f"paths.model={tiny_model}", f"paths.data={exp['cfg']['paths']['data']}"]
    run = render(load_experiment(exp["path"], ov), "global", gpus="0,1")
    assert run.recipe.startswith("recipe: ZeRO-2") and "kept as set: per_device_train_batch_size" in run.recipe
    assert run.args["deepspeed"] == "zero2" and run.args["per_device_train_batch_size"] == 4
    run = render(load_experiment(exp["path"], ov + ["train.global_recipe=template"]), "global", gpus="0,1")
    assert run.recipe is None and run.args["deepspeed"] == "zero3"
