"""Encoded eval batches: swift's template encode + collate, then the rest of swift's generate call.

swift's ``TransformersEngine.infer`` encodes a batch (a thread pool), collates it, and only then
generates, so the CPU work of every batch sits between two GPU batches. For a phone screenshot at the
980-token budget most of that work is the image processor's float32 rescale/normalise and patch cut
(24 MB per image), so ``eval.gpu_preprocess`` (eval/engine.py ``set_image_device``) runs it on the GPU:
the same ops on the same resized uint8 image, bit-identical patches (max |diff| 0.0 on an H200),
and an input wait per batch of 128 down from ~2.0 s to ~0.95 s (bench/RESULTS.md, "Eval").
``encoded_batches`` can also encode the next batches in ``eval.workers`` forked DataLoader processes
(the first batch in this process, so no job waits for a worker's whole batch); with CPU-made patches
that bought +11 % at batch 64 and +2 % at 128 (single-threaded workers, and the patches cross
shared memory), and workers cannot use the GPU, so the two exclude each other. ``eval.prefetch``
threads encode the next batch instead, in this process, GPU patch ops included (+4 % with 4
threads on top of CUDA-graph decoding; 16 threads slowed the thread that drives the GPU by as much
as they hid). ``infer_encoded`` is swift 4.6's ``TransformersEngine._infer`` after its encode +
collate (copy to the device, pre-forward hook, generate, decode); image patches travel in the
model's dtype (the vision tower's first op casts them to it anyway); with ``graphs`` its decode
steps come from a CUDA graph (eval/cuda_graphs.py).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from copy import deepcopy

SHM_HINT = ("eval workers pass batches through shared memory (/dev/shm); enlarge it (docker: --shm-size=16g) "
            "or set eval.workers=0")


def prepare_template(engine):
    """swift's template of the engine, set for encoding eval requests here (as TransformersEngine.infer does)."""
    tpl = engine.template
    tpl.set_mode("transformers")
    if tpl.use_model:  # qwen-vl collators ask the model for the rope index
        tpl.model = engine.model
    return tpl


class EncodeCollate:
    """requests -> (collated batch, template inputs without their images): the DataLoader's collate_fn.
    ``stream``: a CUDA stream for the GPU work of the image processor (a prefetching thread's own),
    waited for before the batch is returned."""

    def __init__(self, template, dtype=None, threads: int = 1, stream=None):
        self.template, self.dtype, self.threads, self.stream = template, dtype, max(1, threads), stream

    def _on_stream(self, fn, *a, **kw):
        if self.stream is None:
            return fn(*a, **kw)
        import torch

        with torch.cuda.stream(self.stream):  # the current stream is per thread: set in each
            return fn(*a, **kw)

    def _encode(self, req):
        return self._on_stream(self.template.encode, req, return_template_inputs=True)

    def _collate(self, enc):
        batch = self.template.data_collator(enc)
        if self.dtype is not None and "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return batch

    def __call__(self, reqs):
        if self.threads > 1 and len(reqs) > 1:
            with ThreadPoolExecutor(min(self.threads, len(reqs))) as ex:
                enc = list(ex.map(self._encode, reqs))
        else:
            enc = [self._encode(r) for r in reqs]
        tis = [e.pop("template_inputs") for e in enc]
        for ti in tis:  # decoding an answer reads the chat settings, not the (large) images
            ti.images = []
        batch = self._on_stream(self._collate, enc)
        if self.stream is not None:
            self.stream.synchronize()
        return batch, tis


def encoded_batches(engine, requests: list, batch_size: int, workers: int = 0, pin_memory: bool | None = None,
                    prefetch: int = 0):
    """Yield (indices into requests, collated batch, template inputs) for consecutive batches, in order.
    ``pin_memory`` (default: on a GPU): the workers' batches are copied to page-locked memory first.
    ``prefetch`` (with no workers): that many threads of this process encode the next batch while the
    caller works on this one (their GPU image processing on a stream of its own); few, so that the
    thread driving the GPU keeps a core and its share of the GIL."""
    from torch.utils.data import DataLoader

    tpl, model = prepare_template(engine), engine.model
    on_gpu = model.device.type == "cuda"
    dtype = getattr(model, "dtype", None)  # the vision tower's: its first op casts the patches to it
    chunks = [list(range(i, min(i + batch_size, len(requests)))) for i in range(0, len(requests), batch_size)]
    cpus = os.cpu_count() or 1
    here = EncodeCollate(tpl, dtype, threads=min(32, cpus))
    img_dev = getattr(tpl.processor.image_processor, "device", None)
    img_gpu = img_dev if img_dev is not None and str(img_dev) != "cpu" else None  # eval.gpu_preprocess
    if workers <= 0 and prefetch > 0 and len(chunks) > 1:
        yield from _prefetched(tpl, dtype, requests, chunks, prefetch, here, img_gpu)
        return
    if workers <= 0 or len(chunks) < 2:
        for c in chunks:
            yield c, *here([requests[i] for i in c])
        return
    if img_gpu is not None:
        raise ValueError(f"eval.workers={workers} encodes in forked processes, which cannot use the GPU the image "
                         f"processor is set to ({img_dev}, eval.gpu_preprocess: true): set one of them off")
    workers = min(workers, len(chunks) - 1)
    loader = DataLoader(requests, batch_sampler=chunks[1:], num_workers=workers, prefetch_factor=1,
                        collate_fn=EncodeCollate(tpl, dtype, threads=1),  # a core each: the GPU's thread needs one
                        pin_memory=on_gpu if pin_memory is None else pin_memory, multiprocessing_context="fork")
    it = iter(loader)  # the workers start on batches 1.. now
    yield chunks[0], *here([requests[i] for i in chunks[0]])
    for c in chunks[1:]:
        try:
            batch, tis = next(it)
        except RuntimeError as e:
            if "shared memory" in str(e) or "Bus error" in str(e):
                raise RuntimeError(f"{e}\n{SHM_HINT}") from e
            raise
        yield c, batch, tis


def encode_now(engine, requests: list):
    """(collated batch, template inputs) of ``requests``, encoded here and now (all cores)."""
    tpl = prepare_template(engine)
    return EncodeCollate(tpl, getattr(engine.model, "dtype", None), threads=min(32, os.cpu_count() or 1))(requests)


def _prefetched(tpl, dtype, requests, chunks, threads, first, img_gpu):
    """encoded_batches with the encoding of batch i+1 in ``threads`` threads while batch i is out;
    batch 0 by ``first`` (all cores: there is nothing to overlap with yet). ``img_gpu``: the GPU the
    image processor works on (None: the CPU), given a stream of the threads' own."""
    import torch

    stream = torch.cuda.Stream(device=img_gpu) if img_gpu is not None else None
    enc = EncodeCollate(tpl, dtype, threads=threads, stream=stream)
    with ThreadPoolExecutor(1, thread_name_prefix="eval-prefetch") as ex:
        ready = first([requests[i] for i in chunks[0]])
        for k, c in enumerate(chunks):
            nxt = ex.submit(enc, [requests[i] for i in chunks[k + 1]]) if k + 1 < len(chunks) else None
            yield c, *ready
            if nxt is not None:
                ready = nxt.result()  # the thread's exception, if any, is raised here


def infer_encoded(engine, batch: dict, template_inputs: list, request_config, graphs: bool = False,
                  stats: dict | None = None, capture: bool | None = None) -> list:
    """Answers of one collated batch: swift 4.6's TransformersEngine._infer after its encode + collate.
    ``graphs``: a static KV cache and the decode steps replayed from a CUDA graph (eval/cuda_graphs.py;
    ``capture`` False or off a GPU: the same path without the graph); ``stats`` accumulates its step counts."""
    import torch
    from swift.utils import to_device

    from .cuda_graphs import graphed_decode

    model = engine.model
    model.eval()
    with torch.inference_mode():
        inputs = to_device(batch, model.device, non_blocking=True)
        _, inputs = engine.template.pre_forward_hook(model, None, inputs)
        cfg = deepcopy(request_config)
        engine.set_default_max_tokens(cfg, inputs)
        gen = engine._prepare_generation_config(cfg)
        engine._add_stop_words(gen, cfg)
        if graphs:
            gen.cache_implementation = "static"
        capture = model.device.type == "cuda" if capture is None else capture
        with graphed_decode(model, capture=capture) if graphs else nullcontext() as runner:
            out = engine._infer_full(inputs=inputs, generation_config=gen, adapter_request=None,
                                     request_config=cfg, template_inputs=template_inputs)
        if runner is not None and stats is not None:
            for k, v in runner.stats.items():
                stats[k] = stats.get(k, 0) + v
        return out
