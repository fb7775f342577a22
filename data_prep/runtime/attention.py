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
