"""The tiny model is deterministic: seed 0 gives the weights README.md's demo table was measured on."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file


def test_seed_0_tiny_model_is_the_demo_one(tiny_model):
    # A change of how the weights are drawn (e.g. initialising directly in bf16) changes the demo's
    # figures while every ordering test still passes; this pins them.
    w = load_file(tiny_model / "model.safetensors")
    gate = w["model.language_model.layers.0.mlp.gate_proj.weight"]
    qkv = w["model.visual.blocks.0.attn.qkv.weight"]
    assert gate.dtype == qkv.dtype == torch.bfloat16
    assert float(gate.float().abs().sum()) == pytest.approx(131.45895385742188, rel=1e-6)
    assert float(qkv.float().abs().sum()) == pytest.approx(49.60528564453125, rel=1e-6)
