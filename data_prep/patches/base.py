"""Replacing a method of a library's class and putting it back: how every model patch here does it
(lora_inputs.py, lora_fused.py, vision_cache.py, window_attention.py, token_init.py).

Usage: ``replace(Cls, "forward", lambda original: new_forward)``; ``restore(Cls, "forward")``. The replacement keeps
the original as its ``_pigg_original``, so a second ``replace`` changes nothing and ``restore`` needs no state of its
own. Imports nothing.
"""
from __future__ import annotations

from typing import Callable


def replaced(owner, name: str) -> bool:
    return getattr(getattr(owner, name), "_pigg_original", None) is not None


def replace(owner, name: str, make: Callable) -> bool:
    """``owner.name = make(original)`` unless a replacement made here is already there; True if it was put in."""
    if replaced(owner, name):
        return False
    original = getattr(owner, name)
    new = make(original)
    new._pigg_original = original
    setattr(owner, name, new)
    return True


def restore(owner, name: str) -> bool:
    """Put the original back where ``replace`` put a replacement; True if it did."""
    original = getattr(getattr(owner, name), "_pigg_original", None)
    if original is None:
        return False
    setattr(owner, name, original)
    return True
