"""LoRA inputs in the autocast dtype: PEFT casts a layer's input to the adapter's weight dtype before
``lora_B(lora_A(dropout(x)))``; with bf16 base weights and float32 adapter weights (PEFT's default for training)
under bf16 autocast that is a float32 copy of every adapted layer's input, float32 dropout, then autocast's copy
back to bf16 for the two small matrix products. Measured on an H200 (bench/step_breakdown.py, Qwen3-VL-8B shape,
person_lora): these copies and the float32 dropout were about a quarter of the GPU kernel time of a step.

``install()`` skips that cast only where it changes nothing but the copy: autocast is on for the input's device
(so both products run in the autocast dtype anyway) and the input is already in a 16-bit float. The dropout then
runs on the bf16 input (the same mask semantics; one rounding of the 1/(1-p) scale), the adapter's weights and
their gradients stay float32 (AdamW's master weights), the recipe (rank, alpha, dropout, lr) is unchanged. Off
autocast (CPU float32 runs, eval) nothing changes. Switched by ``train.lora_autocast_inputs`` (PIGG_LORA_AUTOCAST_INPUTS,
read by data_prep/patches/plugins/lora_inputs.py in the `swift sft` child). Imports torch only when installed.
"""
from __future__ import annotations

from .base import replace, restore

ENV = "PIGG_LORA_AUTOCAST_INPUTS"


def install() -> None:
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    half = (torch.bfloat16, torch.float16)

    def make(original):
        def _cast_input_dtype(self, x, dtype):
            if (x is not None and dtype == torch.float32 and x.dtype in half
                    and torch.is_autocast_enabled(x.device.type)):
                return x
            return original(self, x, dtype)
        return _cast_input_dtype

    replace(BaseTunerLayer, "_cast_input_dtype", make)


def uninstall() -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    restore(BaseTunerLayer, "_cast_input_dtype")
