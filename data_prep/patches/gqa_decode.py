"""Decode-step attention that reads the KV cache once per group (GQA) instead of repeating it.

transformers' sdpa path (``sdpa_attention_forward``) repeats the KV heads to the query heads
(``repeat_kv``) whenever an attention mask is present, and a left-padded eval batch always has one:
for Qwen3-VL-8B (32 query heads, 8 KV heads) each generated token then copies the whole KV cache 4x
per layer (bench/RESULTS.md: a decode step of a 64 x 1,050-token batch took 65 ms on an H200).
``install()`` wraps the registered "sdpa" attention so that single-token steps of GQA layers are two
batched matmuls per KV group, with the numerics of transformers' eager attention (scores in the
model dtype, softmax in float32); prefill, training, and everything else go to transformers' sdpa
unchanged. eval.run installs it when the experiment says ``eval.gqa_decode: true``.
"""
from __future__ import annotations

_original = None


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    import torch

    groups = getattr(module, "num_key_value_groups", 1)
    if (query.shape[2] != 1 or groups == 1 or module.training or kwargs.get("position_bias") is not None
            or key.shape[-1] != value.shape[-1]):
        return _original(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                         is_causal=is_causal, **kwargs)
    b, h, _, d = query.shape
    g, n = key.shape[1], key.shape[2]
    scores = torch.matmul(query.reshape(b, g, h // g, d), key.transpose(-1, -2))  # (b, g, h/g, n)
    scores = scores.float() * (scaling if scaling is not None else d ** -0.5)
    if attention_mask is not None:
        m = attention_mask[:, :, -1:, :n]  # (b, 1, 1, n): broadcast over groups and heads
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    out = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)  # (b, g, h/g, d)
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


def install() -> None:
    """Route transformers' "sdpa" attention through the GQA decode step (idempotent)."""
    global _original
    from transformers.modeling_utils import AttentionInterface

    if _original is None:
        _original = AttentionInterface._global_mapping["sdpa"]
        AttentionInterface.register("sdpa", _attention)


def uninstall() -> None:
    global _original
    from transformers.modeling_utils import AttentionInterface

    if _original is not None:
        AttentionInterface.register("sdpa", _original)
        _original = None


def installed() -> bool:
    return _original is not None
