"""data_prep/patches/vision_cache.py on the test run's tiny Qwen3-VL and Qwen2.5-VL: a training forward of a batch whose
screenshots were all seen returns the stored features (equal to the tower's), a batch with a new or changed
screenshot runs the tower, eval and a trainable tower never use the store, the byte cap holds."""
from __future__ import annotations

import pytest


def _tower(model_dir):
    import torch
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    m = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    v = m.model.visual
    v.requires_grad_(False)
    v.train()
    return v


def _batch(v, seed, grids):
    import torch

    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor(grids)
    dim = v.config.in_channels * v.config.temporal_patch_size * v.config.patch_size ** 2
    return torch.randn(int(grid.prod(-1).sum()), dim, generator=g), grid


def _fields(out):
    return [out.pooler_output] + list(getattr(out, "deepstack_features", None) or [])


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny25"])
def test_stored_features_equal_the_towers_and_are_used_only_when_every_screenshot_hits(fixture, request, monkeypatch):
    import torch

    from data_prep.patches import vision_cache

    v = _tower(request.getfixturevalue(fixture))
    a, ga = _batch(v, 1, [[1, 4, 8], [1, 8, 4]])
    b, gb = _batch(v, 2, [[1, 4, 4]])
    want_a, want_b = v(a, grid_thw=ga), v(b, grid_thw=gb)  # before install: the tower itself
    monkeypatch.setenv(vision_cache.ENV, "1")
    vision_cache.install()
    try:
        calls = []
        blk = v.blocks[0].register_forward_hook(lambda *x: calls.append(1))
        first = v(a, grid_thw=ga)  # computed and stored
        assert len(calls) == 1 and first.last_hidden_state is not None
        again = v(a.clone(), grid_thw=ga)  # same pixels, another tensor: from the store, tower not run
        assert len(calls) == 1 and again.last_hidden_state is None
        for got, want in zip(_fields(again), _fields(want_a)):
            assert torch.equal(got, want)
        # the second screenshot of a with one pixel changed: a miss (checked exactly), the tower runs
        a2 = a.clone()
        a2[-1, 0] += 1.0
        v(a2, grid_thw=ga)
        assert len(calls) == 2
        # a batch of stored screenshots in another order and grouping: from the store
        ab = torch.cat([b, a[:32]])
        gab = torch.tensor([[1, 4, 4], [1, 4, 8]])
        v(b, grid_thw=gb)
        assert len(calls) == 3
        mixed = v(ab, grid_thw=gab)
        assert len(calls) == 3
        m = v.spatial_merge_size ** 2
        assert torch.equal(mixed.pooler_output[:16 // m], want_b.pooler_output)
        assert torch.equal(mixed.pooler_output[16 // m:], want_a.pooler_output[:32 // m])
        # under no_grad (how swift runs a frozen tower in training) still from the store; eval mode: the tower runs
        with torch.no_grad():
            v(a, grid_thw=ga)
        assert len(calls) == 3
        v.eval()
        v(a, grid_thw=ga)
        assert len(calls) == 4
        cache = v.__dict__["_pigg_vision_cache"]
        assert (cache.hit_batches, cache.computed_batches) == (3, 3)
        blk.remove()
    finally:
        vision_cache.uninstall()


def test_a_trainable_tower_or_a_multi_gpu_run_is_never_cached_and_the_cap_holds(tiny_model, monkeypatch, capsys):
    from data_prep.patches import vision_cache

    v = _tower(tiny_model)
    a, ga = _batch(v, 1, [[1, 4, 8], [1, 8, 4]])
    monkeypatch.setenv(vision_cache.ENV, str(1.5 * 32 * 1536 * 4 / 2**30))  # room for the first screenshot only
    towers = vision_cache._classes()
    originals = [cls.forward for cls in towers]
    vision_cache.install()
    try:
        calls = []
        v.blocks[0].register_forward_hook(lambda *x: calls.append(1))
        v(a, grid_thw=ga)
        v(a, grid_thw=ga)
        assert len(calls) == 2  # the second screenshot did not fit: its batch computed both times
        assert "vision cache full at 1 screenshots" in capsys.readouterr().err
        import torch.distributed as dist  # a multi-GPU run (ZeRO-3 gathers the tower's weights on every rank): never
        v3 = _tower(tiny_model)
        v3.blocks[0].register_forward_hook(lambda *x: calls.append(1))
        with monkeypatch.context() as m:
            m.setattr(dist, "is_initialized", lambda: True)
            m.setattr(dist, "get_world_size", lambda *a: 2)
            v3(a, grid_thw=ga)
            v3(a, grid_thw=ga)
        assert len(calls) == 4 and "_pigg_vision_cache" not in v3.__dict__
        v2 = _tower(tiny_model)
        v2.patch_embed.requires_grad_(True)
        v2.blocks[0].register_forward_hook(lambda *x: calls.append(1))
        v2(a, grid_thw=ga)
        v2(a, grid_thw=ga)
        assert len(calls) == 6 and "_pigg_vision_cache" not in v2.__dict__
    finally:
        vision_cache.uninstall()
    assert [cls.forward for cls in towers] == originals  # transformers' own forwards back
