"""FLOPs of the work a bench times, and the MFU that follows: the one formula every throughput here is read with.

Usage: ``mfu(flops_per_s, peak)``, ``peak_matmul_tflops()`` (bf16 8192^3 products on this card, this run),
``eval_flops(model, prompt_tokens, new_tokens, patches)``, ``train_flops(model, tokens, patches, kind)``.

Counted (multiply-add = 2 FLOPs; params: the model's own tensors, measured from the loaded model):
- language model, per token: 2 x P_lm (P_lm: every language-model weight except the embedding table, which
  is a lookup, plus lm_head); attention scores and values: 4 x layers x hidden x context per token (prefill:
  causal, context = position; decode: the whole cache).
- vision tower, per patch: 2 x P_vit; attention 4 x layers x hidden x span per patch (span: the window's
  tokens in a windowed layer, the image's in a full one).
- training: forward 1x, backward 2x for the language model with full fine-tuning; LoRA: the frozen base
  weights need no weight gradients, so backward 1x (input gradients only, LoRA's own matrices are < 0.5 %
  of the base and not counted); gradient checkpointing (recompute) adds one more forward. The vision tower
  is frozen (forward only).
MFU = counted FLOPs per second / the bf16 matrix-product rate measured on the same card in the same run.
"""
from __future__ import annotations


def peak_matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    """Median bf16 TFLOP/s of an n^3 matrix product on random data (after warm-up), timed with CUDA events."""
    import statistics

    import torch

    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 / statistics.median(times) / 1e12


def param_counts(model) -> dict:
    """{'lm': P_lm, 'vit': P_vit} of a loaded Qwen-VL (PEFT wrappers looked through)."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    vit = sum(p.numel() for n, p in m.named_parameters() if ".visual." in f".{n}")
    emb = sum(p.numel() for n, p in m.named_parameters() if "embed_tokens" in n)
    total = sum(p.numel() for p in m.parameters())
    tied = getattr(m.config.get_text_config(), "tie_word_embeddings", False)
    return {"lm": total - vit - emb + (emb if tied else 0), "vit": vit}  # lm_head counts; a tied one shares the table


def _text_cfg(model):
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    return m.config.get_text_config(), m.config.vision_config


def vit_flops(model, patches: float, window_tokens: int = 64) -> float:
    """Forward FLOPs of the vision tower over ``patches`` patches of one image (before merging)."""
    _, v = _text_cfg(model)
    p = param_counts(model)["vit"]
    depth, hidden = v.depth, v.hidden_size
    full = len(getattr(v, "fullatt_block_indexes", []) or []) or depth  # Qwen3-VL: every layer is full attention
    windowed = depth - full if getattr(v, "fullatt_block_indexes", None) else 0
    return 2 * p * patches + 4 * hidden * patches * (windowed * window_tokens + full * patches)


def lm_forward_flops(model, prompt_tokens: float, new_tokens: float = 0) -> float:
    t, _ = _text_cfg(model)
    p = param_counts(model)["lm"]
    layers, hidden = t.num_hidden_layers, t.num_attention_heads * getattr(t, "head_dim", t.hidden_size // t.num_attention_heads)
    attn_prefill = 4 * layers * hidden * prompt_tokens * prompt_tokens / 2
    attn_decode = 4 * layers * hidden * new_tokens * (prompt_tokens + new_tokens / 2)
    return 2 * p * (prompt_tokens + new_tokens) + attn_prefill + attn_decode


def eval_flops(model, prompt_tokens: float, new_tokens: float, patches: float) -> float:
    """One sample's eval: its screenshot through the vision tower, prefill of the prompt, ``new_tokens`` decode steps."""
    return vit_flops(model, patches) + lm_forward_flops(model, prompt_tokens, new_tokens)


def train_flops(model, tokens: float, patches: float, kind: str = "lora", recompute: bool = False) -> float:
    """One sample's training step: ``kind`` lora (backward = 1 forward) or full (2 forwards); recompute adds 1."""
    fwd = lm_forward_flops(model, tokens)
    mult = 1 + (1 if kind == "lora" else 2) + (1 if recompute else 0)
    return vit_flops(model, patches) + mult * fwd


def mfu(flops_per_s: float | None, peak_tflops: float | None) -> float | None:
    return None if not flops_per_s or not peak_tflops else flops_per_s / (peak_tflops * 1e12)
