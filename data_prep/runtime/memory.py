"""The card-memory model: how many eval rows fit on the GPU (``eval.batch_size: auto``) and what a card holds.

Below training and eval alike: eval sizes its batches with it, the training preflight (swift_configs/preflight.py)
reads the card's limit (``card_limit_bytes``) through it.

Usage: ``plan = batch_plan(text_config, prompt_tokens, new_tokens, free_bytes, card_bytes)``

Per row a generate call holds its KV cache (layers x KV heads x head dim x 2 (K and V) x dtype bytes
per token, for the prompt plus the answer tokens the cache reserves) and, at the prefill, its
activations (the vision tower's and the language model's transient tensors, proportional to the
prompt). The batch is the most rows whose sum leaves ``HEADROOM`` of the card free, capped at
``MAX_AUTO`` (larger batches were slower: bench/RESULTS.md, H200 batch 256 < 128). Numbers here are
estimates; eval/generation.py still halves a batch that meets a CUDA out-of-memory error and redoes it.
Imports no torch.
"""
from __future__ import annotations

import os

HEADROOM = 0.10  # share of the card left free by an auto-sized batch
MAX_AUTO = 128  # the best fixed batch measured on an H200 (bench/RESULTS.md, "Eval"); 256 was slower
MIN_AUTO = 1
# Prefill activations per row, in bytes per (prompt token x hidden size x dtype byte), beyond the KV cache.
# Measured with bench/memory_fit.py (prefill_act_coef), 8B-shaped Qwen3-VL, bf16, sdpa, Liger, GPU patches,
# one H100: peak allocated minus weights minus KV, per row and prompt token: 24.4 at batch 8, 20.5 at 32.
PREFILL_ACT_COEF = 24.0
# Qwen2.5-VL-7B shape (text model_type qwen2_5_vl_text; MLP 5.3x hidden, window-attention ViT), one H100:
# 61.5 at batch 8, 47.9 at 32 (bench/results/memory_fit_cuda_h100_q25vl7b.json): planned at 24 it took 97 %.
PREFILL_ACT_COEFS = {"qwen2_5_vl_text": 62.0}
PROMPT_SLACK = 32  # tokens above the encoded longest prompt (instructions differ in length)
# What the allocator reserves beyond the weights, against the rows' estimate (cached blocks, fragmentation,
# the next batch's patches from the prefetching thread), fitted on one H100, 8B shape, prompt 1,083 + 32
# (bench/results/memory_fit_cuda_h100*.json): reserved - weights = 4.80 GiB at 10 rows, 6.44 at 14, 42.19 at
# 112, 47.04-49.88 at 128; = 1.04 x rows x row_bytes + 1.13 GiB. Planned with margin:
ALLOC_FACTOR = 1.10
ALLOC_CONST = int(1.25 * 2**30)
CARD_ENV = "PIGG_GPU_MEMORY_GB"  # plan (and, in eval, cap) as if the card had this many GiB (nvidia-smi MiB / 1024)


def kv_bytes_per_token(text_config: dict, dtype_bytes: int = 2) -> int:
    """K and V of one token over all layers."""
    heads = text_config.get("num_key_value_heads") or text_config["num_attention_heads"]
    head_dim = text_config.get("head_dim") or text_config["hidden_size"] // text_config["num_attention_heads"]
    return 2 * text_config["num_hidden_layers"] * heads * head_dim * dtype_bytes


def act_bytes_per_row(text_config: dict, prompt_tokens: int, dtype_bytes: int = 2) -> int:
    coef = PREFILL_ACT_COEFS.get(text_config.get("model_type"), PREFILL_ACT_COEF)
    return int(coef * prompt_tokens * text_config["hidden_size"] * dtype_bytes)


def row_bytes(text_config: dict, prompt_tokens: int, new_tokens: int, dtype_bytes: int = 2) -> int:
    """What one row of a batch needs: its KV cache for prompt + new_tokens, and its prefill activations."""
    return kv_bytes_per_token(text_config, dtype_bytes) * (prompt_tokens + new_tokens) + \
        act_bytes_per_row(text_config, prompt_tokens, dtype_bytes)


def batch_plan(text_config: dict, prompt_tokens: int, new_tokens: int, free_bytes: int, card_bytes: int,
               dtype_bytes: int = 2, cap: int = MAX_AUTO) -> dict:
    """The largest batch (<= cap) that leaves HEADROOM of the card free, and the arithmetic behind it
    (``per_row_bytes``: what the allocator reserves for a row, ALLOC_FACTOR x its tensors, beside ALLOC_CONST)."""
    per_row = int(ALLOC_FACTOR * row_bytes(text_config, prompt_tokens, new_tokens, dtype_bytes))
    usable = free_bytes - HEADROOM * card_bytes - ALLOC_CONST
    rows = int(usable // per_row) if usable > 0 else 0
    batch = max(MIN_AUTO, min(cap, rows))
    if batch >= 16:
        batch -= batch % 8  # tidy sizes; no effect on speed worth a row
    return {"batch_size": batch, "per_row_bytes": per_row, "free_bytes": int(free_bytes),
            "card_bytes": int(card_bytes), "usable_bytes": int(max(usable, 0)), "prompt_tokens": prompt_tokens,
            "new_tokens": new_tokens, "fits_one_row": rows >= 1}


def card_limit_bytes() -> int | None:
    """PIGG_GPU_MEMORY_GB as bytes (None when unset); a clear error for a bad value. In GiB, as cards are
    sold: an "80 GB" H100 has 79.6 GiB, a "24 GB" RTX 4090 24.0 GiB."""
    raw = os.environ.get(CARD_ENV, "").strip()
    if not raw:
        return None
    try:
        gb = float(raw)
        assert gb > 0
    except (ValueError, AssertionError):
        raise ValueError(f"{CARD_ENV}={raw!r}: want a number of GB, e.g. 24") from None
    return int(gb * 2**30)


def gib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f} GiB"
