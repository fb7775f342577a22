"""data_prep/patches/lora_inputs.py: under bf16 autocast a LoRA layer takes its bf16 input as is (no float32 copy), gives
the output PEFT's cast gives (both products run in bf16 under autocast either way), and keeps float32 adapter
weights and gradients; off autocast nothing changes."""
from __future__ import annotations

import pytest


@pytest.fixture()
def lora_layer():
    from conftest import bf16_lora

    from data_prep.patches import lora_inputs

    yield bf16_lora([64, 64], dropout=0.0)
    lora_inputs.uninstall()


def test_lora_input_stays_bf16_under_autocast_with_the_same_output(lora_layer):
    import torch

    from data_prep.patches import lora_inputs

    x = torch.randn(16, 64, dtype=torch.bfloat16)
    layer = lora_layer.base_model.model[0]
    seen = []
    layer.lora_A["default"].register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = lora_layer(x)
    lora_inputs.install()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = lora_layer(x)
    assert seen == [torch.float32, torch.bfloat16]  # PEFT's float32 copy, then none
    assert got.dtype == want.dtype and torch.allclose(got.float(), want.float(), atol=1e-2, rtol=1e-2)
    got.float().sum().backward()
    a = layer.lora_A["default"].weight
    assert a.dtype == torch.float32 and a.grad is not None and a.grad.dtype == torch.float32
    seen.clear()
    lora_layer(x)  # off autocast: PEFT's cast as before (a bf16 input would not meet the float32 weight otherwise)
    assert seen == [torch.float32]
