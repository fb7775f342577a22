"""Qwen2.5-VL's vision tower with its window attention in a few batched calls per layer instead of one per window.

Usage: ``install()`` before the model runs (eval: eval/engine.py build_engine; training: the swift plugin
data_prep/patches/plugins/window_attention.py in every generated YAML); ``uninstall()`` restores transformers' own.
Experiment key ``model.batched_window_attention`` (default true); nothing changes for Qwen3-VL.

Why: Qwen2.5-VL's ViT (Qwen2.5-VL-7B, UI-TARS-1.5, OS-Atlas, GUI-Actor...) attends within 112 x 112-pixel windows
(64 patches) in 28 of its 32 layers. Without flash-attn, transformers 5.17 runs one attention call per window:
a 980-token screenshot has ~60 windows, so a batch of 128 screenshots makes ~7,700 sdpa calls per layer,
~215,000 per forward, each too small to fill the GPU. Here the windows (and, in the 4 full-attention layers, the
images) are grouped by length: equal lengths are one batched sdpa call ([windows, heads, length, head_dim]),
so a layer makes as many calls as there are distinct window lengths (interior windows are all 64; the edges of a
screen add a few more). Every window still attends to exactly its own tokens, with the same kernel and no
padding or mask: the outputs equal the per-window path up to the kernel's rounding (tests/test_window_attention.py
checks vision features and answers on the tiny Qwen2.5-VL; bench/window_attention.py on the 7B shape).
With flash attention (``attn_impl: flash_attn``) transformers' own varlen path runs unchanged.

Imports torch/transformers only when installed (data_prep itself imports no torch).
"""
from __future__ import annotations

from .base import replace, restore

ENV = "PIGG_BATCHED_WINDOWS"  # "1" (default) / "0": read by the swift plugin in a `swift sft` child


def attention_by_length(module, attention, q, k, v, cu_seqlens, **kwargs):
    """Attention within each segment [cu[i], cu[i+1]) of q, k, v ([1, heads, N, head_dim]), segments of one length
    batched into one ``attention`` call (transformers' interface); -> [1, N, heads, head_dim] as transformers'
    per-segment loop returns it."""
    import torch

    bounds = cu_seqlens.tolist()
    groups: dict[int, list[int]] = {}
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e > s:
            groups.setdefault(e - s, []).append(s)
    heads, dim, dev = q.shape[1], q.shape[3], q.device
    outs, order = [], []
    for length, starts in groups.items():
        n = len(starts)
        idx = (torch.tensor(starts, device=dev)[:, None] + torch.arange(length, device=dev)).reshape(-1)
        qq, kk, vv = (t[0][:, idx].reshape(heads, n, length, dim).transpose(0, 1).contiguous() for t in (q, k, v))
        o = attention(module, qq, kk, vv, attention_mask=None, is_causal=False, **kwargs)[0]  # [n, length, heads, dim]
        outs.append(o.reshape(n * length, heads, dim))
        order.append(idx)
    if len(outs) == 1 and len(groups[next(iter(groups))]) == 1:
        return outs[0].unsqueeze(0)  # one segment: already in order
    perm = torch.cat(order)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=dev)
    return torch.cat(outs)[inverse].unsqueeze(0)


def install() -> None:
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m

    def make(original):
        def forward(self, hidden_states, cu_seqlens, position_embeddings=None, max_seqlen=None, **kwargs):
            if m.is_flash_attention_requested(self.config):  # varlen flash attention: one call already
                return original(self, hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
            seq_length = hidden_states.shape[0]  # as transformers 5.17's forward, up to the attention call
            q, k, v = self.qkv(hidden_states).reshape(seq_length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
            cos, sin = position_embeddings
            q, k = m.apply_rotary_pos_emb_vision(q, k, cos, sin)
            q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
            attention = m.ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                                m.eager_attention_forward)
            out = attention_by_length(self, attention, q, k, v, cu_seqlens, scaling=self.scaling,
                                      dropout=0.0 if not self.training else self.attention_dropout, **kwargs)
            return self.proj(out.reshape(seq_length, -1).contiguous())
        return forward

    replace(m.Qwen2_5_VLVisionAttention, "forward", make)


def uninstall() -> None:
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m

    restore(m.Qwen2_5_VLVisionAttention, "forward")


def apply(on: bool) -> None:
    install() if on else uninstall()
