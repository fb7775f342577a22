"""A training batch padded to a multiple of ``train.pad_to_multiple`` tokens on CUDA: few distinct sequence lengths.

Why (bench/RESULTS.md "Person LoRA", torch.profiler over epoch-1 steps of an 8B person-LoRA fold on an H200):
torch's SDPA runs cuDNN's attention there, and cuDNN builds an execution plan for each new sequence length (2.7 ms
of host time a backward call, 575 us a forward call while they are new). Swift pads a batch to its longest row, so
nearly every batch of epoch 1 brings a new length (4 rows of ~1,075 tokens: 1,075-1,080) and epoch 1's steps take
1.5-1.6x the median. Padded to a multiple of 64, a fold sees one or two lengths.

What ``install()`` changes: swift's trainer gets its data collator from ``SwiftMixin._get_data_collator``; where the
run trains on CUDA (``args.device``), without padding-free rows and without a length swift already pads to
(longlora), the collator passes swift's own ``padding_to`` (the batch padded to that length: pad ids, labels -100,
attention mask 0, position ids as swift pads them) as the longest row rounded up to the multiple. The loss and the
gradients are the same sums over the same tokens (padded rows are masked and carry no labels); the tokens counted by
the benches are the attention mask's. On CPU nothing changes (no plans; the CPU demo's numbers stay). Switched by
``train.pad_to_multiple`` (PIGG_PAD_TO_MULTIPLE; 0 or 1: off), read by data_prep/patches/plugins/pad_multiple.py in the
`swift sft` child. Imports swift only when installed.
"""
from __future__ import annotations

import math
import os
from functools import partial

from .base import replace, restore

ENV = "PIGG_PAD_TO_MULTIPLE"
LOG = "[pigg] training batches padded to a multiple of"


def padded_length(batch: list[dict], multiple: int) -> int | None:
    """The longest row's token count rounded up to ``multiple`` (None where the rows carry no input ids)."""
    lens = [len(b["input_ids"]) for b in batch if b.get("input_ids") is not None]
    return math.ceil(max(lens) / multiple) * multiple if lens else None


def collate(data_collator, multiple: int, batch: list[dict]) -> dict:
    """``data_collator(batch, padding_to=...)`` with the batch's length rounded up to ``multiple``."""
    return data_collator(batch, padding_to=padded_length(batch, multiple))


def _mixin():
    from swift.trainers.mixin import SwiftMixin

    return SwiftMixin


def install(multiple: int) -> None:
    def make(orig):
        def _get_data_collator(self, args, template):
            collator = orig(self, args, template)
            if (multiple <= 1 or getattr(args.device, "type", "cpu") != "cuda" or template.padding_free
                    or getattr(collator, "keywords", {}).get("padding_to") is not None):
                return collator
            from swift.utils import get_logger

            get_logger().info(f"{LOG} {multiple} tokens (train.pad_to_multiple)")
            return partial(collate, template.data_collator, multiple)
        return _get_data_collator

    replace(_mixin(), "_get_data_collator", make)


def uninstall() -> None:
    restore(_mixin(), "_get_data_collator")


def from_env() -> int:
    return int(os.environ.get(ENV, "0") or 0)
