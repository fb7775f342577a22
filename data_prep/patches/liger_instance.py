"""Liger's Triton kernels put into an eval model's modules (``eval.liger_kernel``): Liger's own per-instance patch
(``_apply_liger_kernel_to_instance``) on the base model under a PEFT wrapper. GPU only (Triton). Imports Liger only
when installed.
"""
from __future__ import annotations


class MissingLiger(ImportError):
    pass


def install(model) -> None:
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        raise MissingLiger("eval.liger_kernel: true needs the liger-kernel package (pip install -e '.[gpu]'); "
                           "or set it false in the experiment") from None
    _apply_liger_kernel_to_instance(model=model.get_base_model() if hasattr(model, "get_base_model") else model)


def uninstall() -> None:
    """Liger patches the instance in place: the model is rebuilt to be without it."""
