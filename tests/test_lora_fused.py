"""data_prep/patches/lora_fused.py: under bf16 autocast a LoRA layer adds its update inside one addmm and gives PEFT's
output and gradients (same dropout mask for the same seed) to bf16 rounding; off autocast PEFT's forward runs."""
from __future__ import annotations

import pytest


@pytest.fixture()
def lora_model():
    from conftest import bf16_lora

    from data_prep.patches import lora_fused

    yield bf16_lora([64, 96, 32], dropout=0.1)
    lora_fused.uninstall()


def _run(model, x, seed=1):
    import torch

    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    (y.float() ** 2).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return y.detach(), grads


def test_fused_add_gives_pefts_output_and_gradients(lora_model):
    import torch

    from data_prep.patches import lora_fused

    x = torch.randn(3, 40, 64, dtype=torch.bfloat16)
    want, want_g = _run(lora_model, x)
    calls = []
    lora_model.base_model.model[0].base_layer.register_forward_hook(lambda *a: calls.append(1))
    lora_fused.install()
    got, got_g = _run(lora_model, x)
    assert calls == [1]  # the base product still runs once
    assert got.shape == want.shape and got.dtype == want.dtype == torch.bfloat16
    # one bf16 rounding instead of three: equal within bf16 rounding of the output's scale (another dropout mask
    # would move it by ~10 %: the fused path draws PEFT's mask)
    assert torch.allclose(got.float(), want.float(), atol=0.05 * want.abs().max().item(), rtol=0.02)
    assert set(got_g) == set(want_g) and len(got_g) == 4  # lora_A and lora_B of both layers, float32
    for n in want_g:
        assert got_g[n].dtype == torch.float32
        rel = (got_g[n] - want_g[n]).norm() / want_g[n].norm()
        assert rel < 0.03, (n, float(rel))


def test_fused_add_leaves_other_paths_to_peft(lora_model):
    import torch
    from peft.tuners.lora.layer import Linear

    from data_prep.patches import lora_fused

    x = torch.randn(5, 64, dtype=torch.bfloat16)
    peft_forward = Linear.forward
    lora_fused.install()
    lora_fused.install()  # a second install changes nothing
    assert Linear.forward._pigg_original is peft_forward
    seen = []
    orig_addmm = torch.addmm

    def spy(*a, **k):
        seen.append(1)
        return orig_addmm(*a, **k)

    torch.addmm = spy
    try:
        lora_model.eval()
        lora_model(x)  # no autocast: PEFT's forward, no addmm
        assert seen == []
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lora_model(x)
        assert len(seen) == 2  # both adapted layers fused
    finally:
        torch.addmm = orig_addmm
    lora_fused.uninstall()
    assert Linear.forward is peft_forward  # PEFT's own forward back
