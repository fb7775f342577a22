"""The next epoch's batches made while this epoch trains: no stall at an epoch's first step.

Why (bench/RESULTS.md "Person LoRA", Qwen3-VL-8B person LoRA on an H200): a fold's epoch is ~9 batches of 4
phone screenshots, and the loader's 8 workers have all of an epoch's batches in flight from its first step. When the
epoch ends, nothing has started the next one: transformers' Trainer calls ``iter(train_dataloader)`` only then, new
workers start, and the first batch of the new order is encoded from scratch by one worker (4 screenshots x ~200 ms
of PNG decode and image processing): steps 10 and 19 waited 0.45-0.86 s for data against a ~0.42 s step. Persistent
workers and encoding every sample once before training (lazy_tokenize false) both left it there.

What ``install()`` changes (swift's own train loader, ``swift.dataloader.shard.DataLoaderShard`` over its
``BatchSamplerShard``): the loader's workers get one stream of batches spanning the run's remaining epochs, epoch
``e``'s order drawn from ``data_seed + e`` exactly as ``set_epoch(e)`` draws it, and each of the Trainer's epochs
takes its own epoch's batches from that stream. The workers (swift's default keeps them between epochs) go on
encoding the next epoch's first batches while this epoch's last steps train. The batches, their order, the main
process's random stream and every step are unchanged; only when the encoding happens moves. The loader's workers
are seeded once for the run (as persistent workers are; the encoding draws no random numbers). Where the Trainer
asks for something else (an epoch other than the stream's next, e.g. after a resume), the stream is dropped and
that epoch starts as before. Nothing changes with ``dataloader_num_workers: 0`` (nothing runs beside the step) or
for other samplers. The run's epoch count is the Trainer's (``num_train_epochs``, or ``max_steps`` over the
updates an epoch).

Switched by ``train.epoch_prefetch`` (PIGG_EPOCH_PREFETCH, read by data_prep/patches/plugins/epoch_prefetch.py in the
`swift sft` child). Imports torch and swift only when installed.
"""
from __future__ import annotations

import math

from .base import replace, restore

ENV = "PIGG_EPOCH_PREFETCH"
STREAM = "_pigg_stream"  # on the train loader: (the seed of the epoch it gives next, torch's iterator)
SPAN = "_pigg_span"  # on the batch sampler: the seeds of the epochs its next iteration chains
LAST_SEED = "_pigg_last_seed"  # on the train loader: the seed of the Trainer's last epoch
LOG = "[pigg] the batches of epoch"  # the line a run's log gets at each epoch started early


def epochs(args, batches: int) -> int:
    """How many epochs transformers' Trainer runs over a loader of ``batches`` batches (its
    ``set_initial_training_values``): ``max_steps`` over the optimizer updates an epoch when set, else
    ``ceil(num_train_epochs)``."""
    if args.max_steps > 0:
        per_epoch = max(batches // args.gradient_accumulation_steps
                        + int(batches % args.gradient_accumulation_steps > 0), 1)
        return math.ceil(args.max_steps / per_epoch)
    return math.ceil(args.num_train_epochs)


def _draw(loader) -> None:
    """One int64 drawn as torch's multi-process iterator draws its workers' base seed (``_BaseDataLoaderIter``)."""
    import torch

    torch.empty((), dtype=torch.int64).random_(generator=loader.generator)


def _classes():
    from swift.dataloader.shard import BatchSamplerShard, DataLoaderShard
    from swift.trainers.mixin import DataLoaderMixin

    return BatchSamplerShard, DataLoaderShard, DataLoaderMixin


def install() -> None:
    from torch.utils.data import DataLoader

    sampler_cls, loader_cls, mixin = _classes()

    def make_span(orig):
        def __iter__(self):
            seeds = self.__dict__.pop(SPAN, None)
            if seeds is None:
                yield from orig(self)
                return
            for seed in seeds:  # BatchSamplerShard draws an epoch's order from curr_seed when its iteration starts
                self.curr_seed = seed
                yield from orig(self)
        return __iter__

    def make_loader(orig):
        def get_train_dataloader(self, *args, **kwargs):
            dl = orig(self, *args, **kwargs)
            if isinstance(dl, loader_cls) and type(dl.batch_sampler) is sampler_cls and dl.num_workers > 0:
                setattr(dl, LAST_SEED, dl.batch_sampler.base_seed + epochs(self.args, len(dl)) - 1)
            return dl
        return get_train_dataloader

    def make_iter(orig):
        def __iter__(self):
            last = getattr(self, LAST_SEED, None)
            if last is None:  # not a train loader this module set up: swift's own iteration
                yield from orig(self)
                return
            from swift.utils import get_logger, to_device

            seed, n = self.batch_sampler.curr_seed, len(self)
            stream = self.__dict__.pop(STREAM, None)
            if stream is not None and stream[0] == seed:
                it = stream[1]
                if not self.persistent_workers:
                    _draw(self)  # the seed draw a new iterator would make here (persistent ones draw once)
                get_logger().info(f"{LOG} {seed - self.batch_sampler.base_seed + 1} were encoded during the epoch "
                                  "before it (train.epoch_prefetch)")
            else:
                self.batch_sampler.__dict__[SPAN] = list(range(seed, max(seed, last) + 1))
                it = DataLoader.__iter__(self)
            del stream  # one the Trainer did not continue: dropped (its workers end with it)
            for i in range(n):
                try:
                    item = next(it)
                except StopIteration:
                    return
                if i == n - 1:  # this epoch fully taken: the stream goes on with the next one
                    if seed < last:
                        self.__dict__[STREAM] = (seed + 1, it)
                    else:
                        next(it, None)  # the run's last batch: the iterator ends (non-persistent workers stop)
                if self.device:
                    item = to_device(item, self.device)
                yield item
        return __iter__

    replace(sampler_cls, "__iter__", make_span)
    replace(mixin, "get_train_dataloader", make_loader)
    replace(loader_cls, "__iter__", make_iter)


def uninstall() -> None:
    sampler_cls, loader_cls, mixin = _classes()
    restore(sampler_cls, "__iter__")
    restore(mixin, "get_train_dataloader")
    restore(loader_cls, "__iter__")
