"""New user tokens (``<user_U>``, the user-token method's special kind) start from distinct embedding rows.

Usage: installed in every `swift sft` child by the plugin data_prep/patches/plugins/token_init.py; experiment key
``train.tokens_init`` (``vocab``, default; ``none``: swift's behaviour).

Why: swift adds ``new_special_tokens`` to the tokenizer and, where the embedding matrix already has spare rows
(Qwen's checkpoints do: vocab_size 151,936 for ~151,665 tokens), puts them on those rows untouched. Spare rows
were never trained as inputs: whatever they hold (an initialiser's draw, zeros, or, after a tied-embedding
fine-tune, the drift the output softmax gave them) is no user's identity, and where they are equal every tag
starts as the same vector. Measured on the tiny demo's global checkpoint: spare rows point the way every row
does (mean pairwise cosine 0.9957; the trained rows' is 0.996 too, a common direction) and lie as far apart
as trained rows (median distance 0.210 vs 0.213), so there this changes little; it guarantees distinct,
in-distribution starts on any checkpoint.

``vocab``: each new token's row is drawn from the distribution of the trained rows, per dimension: mean plus
Gaussian noise with their standard deviation (rows 0 .. len(tokenizer) before the new tokens). So the tags are
distinct, at the scale of real tokens (norms the model's layers expect), and carry no meaning of their own.
(The alternative, the embedding of the text tag "User U: " plus noise, would give users 1 and 10 nearly the same
start.) Deterministic: token j of a run takes generator seed ``seed + j``. The rows go into the model before
PEFT wraps it, so ``modules_to_save: [embed_tokens]`` copies them, training moves them, and the checkpoint saves
them; eval loads that copy (tests/test_user_tokens.py checks the draw; tests/test_demo.py a real run's rows, the
checkpoint's copy and the rows eval loads).
Imports torch only when installed.
"""
from __future__ import annotations

from .base import replace

ENV = "PIGG_TOKEN_INIT"  # "vocab" | "none"
CHOICES = ("vocab", "none")


def init_rows(weight, new_ids: list[int], n_trained: int, seed: int = 0, chunk: int = 16384) -> None:
    """Rows ``new_ids`` of ``weight`` ([vocab, hidden]) := mean + std * N(0, 1) of rows 0..n_trained, per dimension."""
    import torch

    with torch.no_grad():
        s1 = torch.zeros(weight.shape[1], dtype=torch.float64, device=weight.device)
        s2 = torch.zeros_like(s1)
        for i in range(0, n_trained, chunk):  # no full float copy of a 151,936 x 4,096 matrix
            block = weight[i:min(i + chunk, n_trained)].double()
            s1 += block.sum(0)
            s2 += (block * block).sum(0)
        mean = s1 / n_trained
        std = (s2 / n_trained - mean * mean).clamp_min(0).sqrt()
        for j, row in enumerate(new_ids):
            g = torch.Generator().manual_seed(seed + j)
            noise = torch.randn(weight.shape[1], generator=g, dtype=torch.float64).to(weight.device)
            weight[row] = (mean + std * noise).to(weight.dtype)


def install(seed: int = 0) -> None:
    """Wrap swift's ModelLoader._add_new_special_tokens: after it adds the tokens, their rows are drawn as above."""
    from swift.model.register import ModelLoader
    from swift.utils import get_logger

    def make(original):
        def add_new_special_tokens(self, model, processor, config):
            tokenizer = self._get_tokenizer(processor)
            before = len(tokenizer)
            original(self, model, processor, config)
            new_ids = sorted(tokenizer.convert_tokens_to_ids(t) for t in (self.new_special_tokens or []))
            new_ids = [i for i in new_ids if i >= before]
            if model is not None and new_ids:
                emb = model.get_input_embeddings().weight
                init_rows(emb, new_ids, before, seed)
                get_logger().info(f"[pigg] user tokens: rows {new_ids} drawn from the trained rows' distribution "
                                  f"(data_prep/patches/token_init.py)")
        return add_new_special_tokens

    replace(ModelLoader, "_add_new_special_tokens", make)
