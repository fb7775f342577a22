"""The LoRA update added inside one matrix product: ``torch.addmm(result, lora_A(dropout(x)), B^T, alpha=scaling)``
in place of PEFT's ``result + lora_B(lora_A(dropout(x))) * scaling``.

PEFT's form writes the adapter's full-width output, multiplies it by the scaling in another pass and adds it to the
base output in a third, and backward pays the scaling again: four passes over a tensor as wide as the layer's output
and ~1,000 extra kernels a step for Qwen3-VL-8B's 252 adapted layers (torch.profiler, bench/RESULTS.md: the
``add`` and scalar ``mul`` kernels were ~35 ms of an H200 step). ``addmm`` does scale and add in the product's
epilogue, in float32 before its one rounding to bf16 (PEFT's form rounds three times); its backward applies the
scaling to the rank-r products only. The recipe is unchanged: same dropout (PEFT's module, its mask), same float32
adapter weights and gradients, same scaling.

``install()`` replaces ``peft.tuners.lora.layer.Linear.forward`` with a forward that takes this path only where it
is the same computation: autocast on for the input's device with a 16-bit input (training under bf16; the products
run in bf16 either way), the adapters active and not merged, plain LoRA (no DoRA or other variant, no bias on
``lora_B``), no extra arguments. Anything else (CPU float32 runs, eval, merged weights, mixed adapter batches) runs
PEFT's own forward. Switched by ``train.lora_fused_add`` (PIGG_LORA_FUSED_ADD, read by data_prep/patches/plugins/lora_fused.py
in the `swift sft` child). Imports torch only when installed.
"""
from __future__ import annotations

from .base import replace, restore

ENV = "PIGG_LORA_FUSED_ADD"


def install() -> None:
    import torch
    from peft.tuners.lora.layer import Linear

    half = (torch.bfloat16, torch.float16)

    def make(orig):
        def forward(self, x, *args, **kwargs):
            if (args or kwargs or self.disable_adapters or self.merged or x.dtype not in half
                    or not torch.is_autocast_enabled(x.device.type)):
                return orig(self, x, *args, **kwargs)
            active = [a for a in self.active_adapters if a in self.lora_A]
            if any(a in self.lora_variant or self.lora_B[a].bias is not None for a in active):
                return orig(self, x, *args, **kwargs)
            result = self.base_layer(x)
            shape = result.shape
            result = result.reshape(-1, shape[-1])
            for a in active:
                xa = self._cast_input_dtype(x, self.lora_A[a].weight.dtype)  # as PEFT (data_prep/patches/lora_inputs.py)
                h = self.lora_A[a](self.lora_dropout[a](xa))
                result = torch.addmm(result, h.reshape(-1, h.shape[-1]), self.lora_B[a].weight.t(),
                                     alpha=self.scaling[a])
            return result.view(shape)
        return forward

    replace(Linear, "forward", make)


def uninstall() -> None:
    from peft.tuners.lora.layer import Linear

    restore(Linear, "forward")
