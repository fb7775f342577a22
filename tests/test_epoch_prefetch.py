"""data_prep/patches/epoch_prefetch.py on swift's own train loader (DataLoaderShard + BatchSamplerShard, 2 worker processes),
iterated as transformers' Trainer iterates it (``set_epoch(e)``, ``iter``, then exactly one epoch's batches):
the same batches in the same order and the same main-process random stream as without it, the next epoch's
iterator started while the current one still has batches to give, none after the last epoch. The real `swift sft`
path (a fold trained with 2 loader workers and the plugin, logging the same losses as a workers-0 run) is
tests/test_end_to_end.py::test_forked_run_trains_as_a_fresh_process."""
from __future__ import annotations

import types

import pytest

from data_prep.patches import epoch_prefetch

EPOCHS, N, BATCH = 3, 10, 3  # 4 batches an epoch (the last one short), 2 workers x prefetch 2 = 4 in flight


def _loader(persistent: bool):
    from swift.dataloader.shard import BatchSamplerShard, DataLoaderShard

    sampler = BatchSamplerShard(N, batch_size=BATCH, shuffle=True, drop_last=False, data_seed=42)
    return DataLoaderShard(list(range(N)), batch_sampler=sampler, num_workers=2, collate_fn=list,
                           persistent_workers=persistent)


def _train(loader, install: bool):
    """The Trainer's epochs over ``loader`` (set_initial_training_values + _run_epoch, one CPU random draw a step as
    CPU LoRA dropout makes): batches per epoch; after each epoch, the next epoch's batches already handed to the
    workers; the CPU random state at the end."""
    import torch

    torch.manual_seed(0)
    args = types.SimpleNamespace(max_steps=-1, num_train_epochs=EPOCHS, gradient_accumulation_steps=1)
    if install:
        epoch_prefetch.install()
    try:
        if install:  # what the patched get_train_dataloader marks on the train loader
            setattr(loader, epoch_prefetch.LAST_SEED, 42 + epoch_prefetch.epochs(args, len(loader)) - 1)
        out, ahead = [], []
        for e in range(EPOCHS):
            loader.set_epoch(e)
            it = iter(loader)
            batches = []
            for _ in range(len(loader)):
                batches.append(next(it))
                torch.rand(1)
            out.append(batches)
            stream = getattr(loader, epoch_prefetch.STREAM, None)
            ahead.append(None if stream is None else (stream[0], stream[1]._send_idx - (e + 1) * len(loader)))
        return out, ahead, torch.get_rng_state()
    finally:
        epoch_prefetch.uninstall()


@pytest.mark.parametrize("persistent", [True, False])  # swift's default keeps the workers (True)
def test_next_epoch_is_encoded_during_this_one_with_the_same_batches_and_random_stream(persistent):
    import torch

    plain, none_ahead, rng_plain = _train(_loader(persistent), install=False)
    fetched, ahead, rng = _train(_loader(persistent), install=True)
    assert fetched == plain
    assert [sorted(sum(b, [])) for b in plain] == [list(range(N))] * EPOCHS
    assert plain[0] != plain[1] != plain[2]  # a new order each epoch (data_seed + epoch)
    assert none_ahead == [None] * EPOCHS
    # when epoch 0 ends, the stream gives epoch 1 (seed 42 + 1) next, its first batches already with the workers;
    # nothing after the last epoch
    assert [a and a[0] for a in ahead] == [43, 44, None] and all(a[1] >= 2 for a in ahead[:2])
    assert torch.equal(rng, rng_plain)


@pytest.mark.parametrize("max_steps,batches,epochs", [(-1, 4, 3), (9, 4, 5), (8, 4, 4), (1, 4, 1), (4, 5, 2)])
def test_epochs_the_trainer_runs(max_steps, batches, epochs):
    """transformers' count (Trainer.set_initial_training_values), gradient accumulation 2: 4 batches -> 2 updates an
    epoch, 5 -> 3; without max_steps, ceil(num_train_epochs 2.5)."""
    args = types.SimpleNamespace(max_steps=max_steps, num_train_epochs=2.5, gradient_accumulation_steps=2)
    assert epoch_prefetch.epochs(args, batches) == epochs
