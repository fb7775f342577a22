"""data_prep/patches/pad_multiple.py's switch on swift's trainer (SwiftMixin._get_data_collator): the batch is padded to a
multiple only for a CUDA run without padding-free rows and without a length swift already pads to (longlora); the
padding itself (rows, pads, the model's loss) is tests/test_end_to_end.py::test_batch_padded_to_a_multiple_keeps_the_loss."""
from __future__ import annotations

import types

import pytest

from data_prep.patches import pad_multiple


@pytest.mark.parametrize("device,tuner,padding_free,padded", [
    ("cuda", "lora", False, True), ("cpu", "lora", False, False), ("cuda", "lora", True, False),
    ("cuda", "longlora", False, False)])
def test_collator_pads_only_where_it_should(device, tuner, padding_free, padded):
    import torch
    from swift.trainers.mixin import SwiftMixin

    seen = []
    template = types.SimpleNamespace(padding_free=padding_free, max_length=4096,
                                     data_collator=lambda batch, padding_to=None: seen.append(padding_to))
    args = types.SimpleNamespace(device=torch.device(device), tuner_type=tuner)
    pad_multiple.install(64)
    try:
        collator = SwiftMixin._get_data_collator(None, args, template)
    finally:
        pad_multiple.uninstall()
    collator([{"input_ids": [0] * 65}, {"input_ids": [0] * 3}])
    assert seen == [128 if padded else 4096 if tuner == "longlora" else None]
    assert pad_multiple.padded_length([{"input_ids": [0] * 64}], 64) == 64
    assert pad_multiple.padded_length([{"pixel_values": 0}], 64) is None
