"""The registry of library patches (data_prep/patches/__init__.py): every entry's targets exist on the pinned stack,
it names a test of its equivalence that exists, it steps aside (library code kept, one warning) under a version
outside its range, and every library a patch touches is pinned."""
from __future__ import annotations

import importlib
import re
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from data_prep.patches import PATCHES, REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def _resolve(target: str):
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.parametrize("p", REGISTRY, ids=[p.name for p in REGISTRY])
def test_every_target_exists_on_the_pinned_stack(p):
    assert p.mismatch() is None, p.mismatch()  # this box runs the tested versions
    for target in p.replaces:
        assert re.fullmatch(r"[\w.]+:[\w.]+", target), target
        if target.startswith("liger_kernel") and not _installed("liger-kernel"):
            continue  # Liger is a GPU extra
        _resolve(target)


@pytest.mark.parametrize("p", REGISTRY, ids=[p.name for p in REGISTRY])
def test_every_patch_names_an_equivalence_test_that_exists(p):
    assert p.covered_by, f"{p.name}: no test named"
    for ref in p.covered_by:
        file, _, name = ref.partition("::")
        text = (ROOT / "tests" / file).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(name)}\(", text, re.M), f"{p.name}: {ref} not found"


@pytest.mark.parametrize("p", [p for p in REGISTRY if p.module], ids=[p.name for p in REGISTRY if p.module])
def test_outside_its_tested_versions_a_patch_steps_aside(p, monkeypatch, capsys):
    import data_prep.patches as reg

    before = {t: _resolve(t) for t in p.replaces if not t.startswith("liger_kernel") or _installed("liger-kernel")}
    dist = next(iter(p.tested))
    real = metadata.version
    monkeypatch.setattr(reg.metadata, "version", lambda d: "0.0.1" if d == dist else real(d))
    monkeypatch.setattr(reg, "_WARNED", set())
    args = {"remote_code": (False,), "pad_multiple": (64,), "liger_instance": (object(),)}.get(p.name, ())
    with pytest.warns(RuntimeWarning, match=rf"patch '{p.name}' .* stays out: {dist} 0.0.1 is installed"):
        assert p.apply(*args) is False
    assert p.apply(*args) is False
    assert {t: _resolve(t) for t in before} == before  # the library's own code in place
    assert capsys.readouterr().err.count(f"patch '{p.name}'") == 1  # said once


def test_every_library_a_patch_touches_is_pinned():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for dist in sorted({d for p in REGISTRY for d in p.tested}):
        spec = PATCHES[next(p.name for p in REGISTRY if dist in p.tested)].tested[dist]
        assert f'"{dist}{spec}"' in text, f"{dist}{spec} not pinned in pyproject.toml"


def test_the_liger_wrappers_on_the_cpu(monkeypatch):
    """Liger's per-instance patch is Triton (GPU); its two wrappers are checked here with a stand-in Liger: the
    training one asks it to leave Qwen3-VL's RMSNorm alone (the native operator's), the eval one patches the base
    model under a PEFT wrapper."""
    from data_prep.patches import rms_norm

    calls = []
    fake = types.ModuleType("liger_kernel.transformers")
    fake._apply_liger_kernel_to_instance = lambda model, **kw: calls.append((model, kw))
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", fake)
    qwen3 = types.SimpleNamespace(config=types.SimpleNamespace(model_type="qwen3_vl"))
    other = types.SimpleNamespace(config=types.SimpleNamespace(model_type="qwen2_5_vl"))
    rms_norm.install()
    try:
        fake._apply_liger_kernel_to_instance(model=qwen3, rope=True)
        fake._apply_liger_kernel_to_instance(model=other, rope=True)
    finally:
        rms_norm.uninstall()
    assert calls == [(qwen3, {"rope": True, "rms_norm": False}), (other, {"rope": True})]
    calls.clear()
    base = object()
    peft_model = types.SimpleNamespace(get_base_model=lambda: base)
    assert PATCHES["liger_instance"].apply(peft_model) is True and calls == [(base, {})]
