"""Qwen3-VL's RMSNorm as torch's fused operator (``torch.nn.functional.rms_norm``) in place of Liger's Triton kernel.

Why (bench/RESULTS.md, torch.profiler over three steps of an H200 person-LoRA fold, Qwen3-VL-8B shape): the step is
host-bound (GPU busy 54 %), and Liger's RMSNorm costs ~164 us of host time a call forward and ~163 us backward (its
Python launcher, a ``torch.cuda.device`` context, the Triton launch, a partial-sum buffer and a ``sum`` for the weight
gradient) on 290 calls a step: the language model's 36 layers x (input, post-attention, q and k norms) + the final
norm, ~45 ms of host time a step. torch 2.11's ``F.rms_norm`` on CUDA is one fused kernel each way
(``aten::_fused_rms_norm`` / ``_fused_rms_norm_backward``) behind one operator's dispatch.

Numerics: transformers' ``Qwen3VLTextRMSNorm`` computes ``x * rsqrt(mean(x^2) + eps)`` in float32, rounds it to the
input dtype, then multiplies by the weight (a second rounding); the fused operator multiplies by the weight in
float32 and rounds once. Autocast is held off around it (the residual stream stays in the model's dtype, as before).

``install()`` (1) replaces ``Qwen3VLTextRMSNorm.forward`` with the fused operator for CUDA inputs whose dtype is the
weight's (a bf16 model); anything else (the CPU float32 demo, mixed dtypes) runs transformers' forward, and
(2) asks Liger's per-model patch, which transformers' Trainer applies with ``use_liger_kernel``, to leave the
RMSNorm modules alone (``rms_norm=False``): its RoPE and fused linear + cross-entropy stay. Switched by
``train.native_rms_norm`` (PIGG_NATIVE_RMSNORM, read by data_prep/patches/plugins/rms_norm.py in the `swift sft` child).
Qwen3-VL only: for Qwen2.5-VL swift swaps the norm class itself before the model is built. Imports torch only when
installed.
"""
from __future__ import annotations

from .base import replace, restore

ENV = "PIGG_NATIVE_RMSNORM"


def _norm_class():
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRMSNorm

    return Qwen3VLTextRMSNorm


def install() -> None:
    import torch
    import torch.nn.functional as F

    def make(orig):
        def forward(self, hidden_states):
            if hidden_states.device.type != "cuda" or hidden_states.dtype != self.weight.dtype:
                return orig(self, hidden_states)
            with torch.autocast("cuda", enabled=False):
                return F.rms_norm(hidden_states, (hidden_states.shape[-1],), self.weight, self.variance_epsilon)
        return forward

    replace(_norm_class(), "forward", make)
    try:
        import liger_kernel.transformers as liger
    except ImportError:
        return

    def make_liger(orig):
        def apply(model, **kwargs):
            if getattr(getattr(model, "config", None), "model_type", None) == "qwen3_vl":
                kwargs = {**kwargs, "rms_norm": False}
            return orig(model=model, **kwargs)
        return apply

    replace(liger, "_apply_liger_kernel_to_instance", make_liger)


def uninstall() -> None:
    restore(_norm_class(), "forward")
    try:
        import liger_kernel.transformers as liger
    except ImportError:
        return
    restore(liger, "_apply_liger_kernel_to_instance")
