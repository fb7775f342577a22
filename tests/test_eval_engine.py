"""eval.run's engine options that need no model: a missing optional package is named, not a stack."""
from __future__ import annotations

import sys

import pytest


def test_liger_for_eval_names_the_missing_package(monkeypatch):
    from eval.run import apply_liger

    monkeypatch.setitem(sys.modules, "liger_kernel", None)  # as if not installed: its import fails
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)
    with pytest.raises(SystemExit, match=r"eval.liger_kernel: true needs the liger-kernel package"):
        apply_liger(object())
