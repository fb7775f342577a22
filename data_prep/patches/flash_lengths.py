"""Int lengths for flash-attn-4's variable-length kernel (``attn_impl: flash_attention_4`` with ``padding_free``).
Imports transformers only when installed.
"""
from __future__ import annotations


def install() -> bool:
    """flash-attn-4 (4.0.0b36) with ``padding_free``: transformers 5.17 hands the variable-length kernel its longest
    row as a 0-d tensor (``cu_seq_lens.diff().max()``), which flash-attn 2 accepts and flash-attn-4's CuTe DSL refuses
    ("Expected IntTuple, whose leaves are integers, but got 1080"; bench/RESULTS.md). Wraps the varlen function
    transformers loads for flash_attention_4 so that those lengths arrive as ints. Only where flash-attn-4 is
    installed (transformers' own check, no CuTe import); the other implementations are untouched. True if applied."""
    import functools

    from transformers import modeling_flash_attention_utils as fau
    from transformers.utils import is_flash_attn_4_available

    if not is_flash_attn_4_available() or getattr(fau._lazy_imports, "_pigg_int_lengths", False):
        return False
    lazy = fau._lazy_imports

    def _lazy_imports(implementation, *args, **kwargs):
        fns = lazy(implementation, *args, **kwargs)
        if implementation != "flash_attention_4":
            return fns
        varlen = fns[1]

        @functools.wraps(varlen)  # transformers reads the kernel's keyword arguments from its signature
        def varlen_int_lengths(*a, **kw):
            for key in ("max_seqlen_q", "max_seqlen_k"):
                if hasattr(kw.get(key), "item"):
                    kw[key] = int(kw[key].item())
            return varlen(*a, **kw)

        return (fns[0], varlen_int_lengths, *fns[2:])

    _lazy_imports._pigg_int_lengths = True
    _lazy_imports._pigg_original = lazy
    fau._lazy_imports = _lazy_imports
    return True


def uninstall() -> None:
    from transformers import modeling_flash_attention_utils as fau

    original = getattr(fau._lazy_imports, "_pigg_original", None)
    if original is not None:
        fau._lazy_imports = original
