"""Attention implementations that need a flash-attention package, checked before any model loads.

Usage: ``flash_problems(swift_args, where)`` -> [message] (empty when the run can start).

The shipped default everywhere is ``attn_impl: sdpa`` (PyTorch's fused attention: cuDNN / flash kernels on
Hopper, no extra package). A user with flash-attn installed turns it on per run: ``attn_impl: flash_attn`` in a
template or ``--set train.person_overrides.attn_impl=flash_attn`` (training), ``eval.overrides: {attn_impl:
flash_attn}`` (eval); ms-swift's ``padding_free: true`` / ``packing: true`` need one of these implementations.
Imports nothing heavy (importlib only).
"""
from __future__ import annotations

# attn_impl values backed by a flash-attention package (ms-swift 4.6's padding_free/packing accept only these), and
# the module each needs: flash-attn 2 (`pip install flash-attn --no-build-isolation`), 3 (Hopper build), 4 (CuTe DSL)
FLASH_IMPLS = {"flash_attn": ("flash_attn",), "flash_attention_2": ("flash_attn",),
               "flash_attention_3": ("flash_attn_interface",),
               "flash_attention_4": ("flash_attn.cute", "cutlass.cute")}  # cutlass.cute: nvidia-cutlass-dsl-libs-core


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing or broken
        return False


def flash_problems(args: dict, where: str) -> list[str]:
    """What ``attn_impl`` / ``padding_free`` / ``packing`` ask of a flash-attention package this Python lacks,
    said before any model loads (swift would fail in the child, after the model loaded, or not at all)."""
    out, impl = [], args.get("attn_impl")
    feature = "packing" if args.get("packing") else "padding_free" if args.get("padding_free") else None
    if feature and impl not in FLASH_IMPLS:
        out.append(f"{feature}: true ({where}) needs attn_impl one of {sorted(FLASH_IMPLS)} (got {impl!r}) and that "
                   "package installed (README: flash attention); or set it false (the shipped default: sdpa)")
    missing = [m for m in FLASH_IMPLS.get(impl, ()) if not _importable(m)]
    if missing:
        out.append(f"attn_impl: {impl} ({where}) needs the {', '.join(missing)} module, not installed here: pip install "
                   "-e '.[flash]' (flash-attn 2 builds from source, needs nvcc), or attn_impl: sdpa (the default)")
    return out


def int_varlen_lengths() -> bool:
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
    fau._lazy_imports = _lazy_imports
    return True
