"""The GQA decode step equals transformers' sdpa (the one it replaces) and leaves other calls to it."""
from __future__ import annotations

import types

import pytest
import torch

from data_prep.patches import gqa_decode


@pytest.fixture
def installed():
    gqa_decode.install()
    yield gqa_decode._original
    gqa_decode.uninstall()


def _qkv(b=3, heads=8, kv=2, n=11, d=16, q=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, heads, q, d, generator=g), torch.randn(b, kv, n, d, generator=g),
            torch.randn(b, kv, n, d, generator=g))


def test_decode_step_equals_sdpa_with_left_padding(installed):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    q, k, v = _qkv()
    mask = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    mask[1, ..., :4] = False  # left padding of row 1
    mask[2, ..., :7] = False
    module = types.SimpleNamespace(num_key_value_groups=4, training=False)
    ours, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, q, k, v, mask, scaling=0.3)
    ref, _ = installed(module, q, k, v, mask, scaling=0.3)
    assert ours.shape == ref.shape == (3, 1, 8, 16)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # padding really is ignored: changing the padded keys changes nothing
    k2 = k.clone()
    k2[2, :, :7] += 100
    torch.testing.assert_close(ALL_ATTENTION_FUNCTIONS["sdpa"](module, q, k2, v, mask, scaling=0.3)[0], ours)
    additive = torch.zeros(3, 1, 1, 11).masked_fill(~mask, torch.finfo(torch.float32).min)
    torch.testing.assert_close(ALL_ATTENTION_FUNCTIONS["sdpa"](module, q, k, v, additive, scaling=0.3)[0], ours)


def test_prefill_and_non_gqa_calls_go_to_sdpa(installed, monkeypatch):
    seen = []
    monkeypatch.setattr(gqa_decode, "_original", lambda *a, **kw: seen.append(a[1].shape) or (None, None))
    gqa = types.SimpleNamespace(num_key_value_groups=4, training=False)
    gqa_decode._attention(gqa, *_qkv(q=5), None)  # prefill
    gqa_decode._attention(types.SimpleNamespace(training=False), *_qkv(kv=8), None)  # no GQA (vision)
    gqa_decode._attention(types.SimpleNamespace(num_key_value_groups=4, training=True), *_qkv(), None)
    assert [s[2] for s in seen] == [5, 1, 1]


def test_uninstall_restores_sdpa():
    from transformers.modeling_utils import AttentionInterface

    before = AttentionInterface._global_mapping["sdpa"]
    gqa_decode.install()
    gqa_decode.install()
    assert AttentionInterface._global_mapping["sdpa"] is gqa_decode._attention
    gqa_decode.uninstall()
    assert AttentionInterface._global_mapping["sdpa"] is before and not gqa_decode.installed()

