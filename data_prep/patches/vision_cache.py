"""The frozen vision tower's output kept per screenshot for the later epochs of a training run.

With ``freeze_vit`` and ``freeze_aligner`` (every template here) the vision tower and its merger are fixed for the
whole run, so a screenshot's image features in epoch 2 and 3 are those of epoch 1: on an H200 that recomputation
was ~77 ms of a ~540 ms Qwen3-VL-8B person-LoRA step (bench/RESULTS.md, "Where the time goes"). ``install()``
wraps the forward of transformers' Qwen3-VL and Qwen2.5-VL vision towers: during a training forward (the tower in
train mode, none of its parameters trainable, one process: a multi-GPU run, e.g. global FT under ZeRO-3, never uses
it) each screenshot of the batch is looked up by its grid and a checksum of its pixels, a hit is confirmed by
comparing the pixels exactly (``torch.equal`` on the stored copy), and when every screenshot of the batch hits,
the stored features are returned instead of running the tower. A
batch with any new screenshot runs the tower as before and stores what it returns per screenshot (``pooler_output``,
the merged image features, and Qwen3-VL's ``deepstack_features``; ``last_hidden_state``, which neither model reads,
is not kept and comes back as None on a hit).

The features come from the batch the screenshot was first seen in; a recomputation in another batch may differ
in the last bf16 bit (the tower's products on another row count). Memory: the pixels and features of each stored
screenshot on its device, ~44 MB per Qwen3-VL-8B screenshot at the 980-token budget, up to
``train.vision_cache_gib`` (PIGG_VISION_CACHE_GIB; 0 turns it off; swift_configs/preflight.py counts it); past that,
new screenshots are computed every time and one line says so. Eval (eval mode) never uses it. One line at exit says
how many batches hit. Read by data_prep/patches/plugins/vision_cache.py in the `swift sft` child; imports torch only when
installed.
"""
from __future__ import annotations

import atexit
import os
import sys

from .base import replace, restore

ENV = "PIGG_VISION_CACHE_GIB"
FIELDS = ("pooler_output", "deepstack_features")  # per merged token; last_hidden_state (per patch) is not read


def _classes():
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q25
    from transformers.models.qwen3_vl import modeling_qwen3_vl as q3

    return [q3.Qwen3VLVisionModel, q25.Qwen2_5_VisionTransformerPretrainedModel]


class Cache:
    """Per vision tower: key -> [(pixels, {field: tensor | [tensors]})], bytes held, counts."""

    def __init__(self, cap_bytes: int):
        self.cap, self.bytes, self.store = cap_bytes, 0, {}
        self.hit_batches = self.computed_batches = 0
        self.full_said = False

    @staticmethod
    def keys(pixels, grids: list, sizes: list) -> list:
        """(grid, two integer sums of each screenshot's pixel bits): where to look; ``find`` then compares exactly."""
        import torch

        ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[pixels.element_size()]
        sums = []
        for img in pixels.split(sizes):
            v = img.reshape(-1).view(ints)
            sums.append(torch.stack([v.sum(dtype=torch.int64), v[::997].sum(dtype=torch.int64)]))
        return [(tuple(g), *s) for g, s in zip(grids, torch.stack(sums).tolist())]

    def find(self, key, img):
        import torch

        for pix, feats in self.store.get(key, ()):
            if torch.equal(pix, img):
                return feats
        return None

    def put(self, key, img, feats: dict) -> None:
        size = img.numel() * img.element_size() + sum(
            t.numel() * t.element_size() for v in feats.values() for t in (v if isinstance(v, list) else [v]))
        if self.bytes + size > self.cap:
            if not self.full_said:
                print(f"[pigg] vision cache full at {len(self.store)} screenshots ({self.bytes / 2**30:.2f} GiB, "
                      f"train.vision_cache_gib={self.cap / 2**30:g}): later new screenshots are computed every "
                      f"epoch", file=sys.stderr, flush=True)
                self.full_said = True
            return
        self.bytes += size
        self.store.setdefault(key, []).append((img.clone(), feats))


def _applies(self) -> bool:
    if not self.training:  # (swift runs a frozen tower under no_grad: grad mode says nothing here)
        return False
    ok = self.__dict__.get("_pigg_cacheable")
    if ok is None:
        import torch.distributed as dist

        # one process only: under ZeRO-3 every rank gathers the tower's weights together, and a rank answering
        # from its store while another runs the tower would leave that one waiting for ever
        alone = not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)
        ok = self.__dict__["_pigg_cacheable"] = alone and not any(p.requires_grad for p in self.parameters())
    return ok


def _cached_forward(orig, self, hidden_states, grid_thw, kwargs):
    import torch

    cache = self.__dict__.get("_pigg_vision_cache")
    if cache is None:
        cache = self.__dict__["_pigg_vision_cache"] = Cache(int(float(os.environ.get(ENV, "0")) * 2**30))
        _CACHES.append(cache)
    grids = grid_thw.tolist()
    sizes = [t * h * w for t, h, w in grids]
    merged = [n // self.spatial_merge_size**2 for n in sizes]
    keys = Cache.keys(hidden_states, grids, sizes)
    imgs = hidden_states.split(sizes)
    found = [cache.find(k, img) for k, img in zip(keys, imgs)]
    if all(f is not None for f in found):
        cache.hit_batches += 1
        out = {}
        for name in found[0]:
            if isinstance(found[0][name], list):
                out[name] = [torch.cat([f[name][i] for f in found]) for i in range(len(found[0][name]))]
            else:
                out[name] = torch.cat([f[name] for f in found])
        return self.__dict__["_pigg_out_cls"](last_hidden_state=None, **out)
    cache.computed_batches += 1
    res = orig(self, hidden_states, grid_thw=grid_thw, **kwargs)
    self.__dict__["_pigg_out_cls"] = type(res)
    fields = {n: getattr(res, n) for n in FIELDS if getattr(res, n, None) is not None}
    parts = {n: [t.split(merged) for t in v] if isinstance(v, (list, tuple)) else v.split(merged)
             for n, v in fields.items()}
    for i, (key, img, f) in enumerate(zip(keys, imgs, found)):
        if f is None:
            cache.put(key, img, {n: [p[i].detach().clone() for p in v] if isinstance(fields[n], (list, tuple))
                                 else v[i].detach().clone() for n, v in parts.items()})
    return res


_CACHES: list = []


def _report() -> None:
    for c in _CACHES:
        print(f"[pigg] vision cache: {c.hit_batches} batches from stored features, {c.computed_batches} computed; "
              f"{sum(len(v) for v in c.store.values())} screenshots stored ({c.bytes / 2**30:.2f} GiB)",
              file=sys.stderr, flush=True)


def install() -> None:
    def make(orig):
        def forward(self, hidden_states, grid_thw=None, *args, **kwargs):
            if (args or grid_thw is None or kwargs.get("output_attentions") or kwargs.get("output_hidden_states")
                    or not _applies(self)):
                return orig(self, hidden_states, grid_thw, *args, **kwargs)
            return _cached_forward(orig, self, hidden_states, grid_thw, kwargs)
        return forward

    for cls in _classes():
        replace(cls, "forward", make)
    atexit.unregister(_report)  # registered once however often installed
    atexit.register(_report)


def uninstall() -> None:
    for cls in _classes():
        restore(cls, "forward")
    atexit.unregister(_report)
