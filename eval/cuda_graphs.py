"""Decode steps replayed from a CUDA graph (``eval.cuda_graphs``).

After the prefill, each decode step of a batch runs the 36-layer language model on one token per
row: ~1,000 small kernels launched from Python. On an H200 the 24 decode steps of a 128-batch took
0.91-0.99 s that way and 0.39-0.46 s from the graph, warm-up and capture included (+12 % samples/s;
bench/RESULTS.md, "Eval"). transformers' generate already has the seam for this: with
a static KV cache (fixed shapes; its write position is a device tensor) the decode steps go through
``model.get_compiled_call`` (normally torch.compile, minutes of compiling at 8B scale, again for every
new cache length). ``graphed_decode(model)`` points that seam at ``DecodeGraphs`` for one generate
call: the first decode step runs eagerly (the warm-up: Triton, cuBLAS), the second is captured into
a CUDA graph and replayed, and every later step only copies its inputs into the graph's static
buffers and replays. Inputs a decode step does not read (``mm_token_type_ids``, ``image_grid_thw``:
they grow by a column each step and would change the graph's shapes) are dropped while no image is
passed. Off a GPU (``capture=False``) the same static buffers feed the eager forward, so the input
handling is exercised by the CPU tests; the graph itself is checked against eager answers by
bench/gpu_bench.py on a GPU (max |Δ log-prob| 0.0). A step that cannot be captured is said once and
runs eagerly from then on.
"""
from __future__ import annotations

from contextlib import contextmanager

# read by Qwen3-VL only to place an image's tokens and positions: not at a decode step without an image
DECODE_UNUSED = ("mm_token_type_ids", "image_grid_thw", "video_grid_thw")
CAPTURE_ERROR: str | None = None  # set by a failed capture: later calls run eagerly


def _key(kw: dict) -> tuple:
    import torch

    out = []
    for k, v in sorted(kw.items()):
        if torch.is_tensor(v):
            out.append((k, tuple(v.shape), v.dtype, v.device))
        elif isinstance(v, dict):  # masks per layer type (Qwen2.5-VL: a new dict every step, same tensors' shapes)
            out.append((k, _key(v)))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out.append((k, v))
        else:  # the cache object: held by the runner, so its id is not reused meanwhile
            out.append((k, type(v).__name__, id(v)))
    return tuple(out)


def _clone(kw: dict) -> dict:
    import torch

    return {k: v.clone() if torch.is_tensor(v) else _clone(v) if isinstance(v, dict) else v for k, v in kw.items()}


class DecodeGraphs:
    """Callable in place of ``model.__call__`` for the decode steps of one generate call."""

    def __init__(self, model, capture: bool = True):
        self.model, self.capture = model, capture
        # new_inputs: static buffers built (once per generate call unless a step's shapes change)
        self.stats = {"new_inputs": 0, "eager": 0, "captures": 0, "replays": 0}
        self.release()

    def release(self) -> None:
        """Drop the graph, its buffers and the cache they point at."""
        self.key = self.static = self.graph = self.out = None

    def _copy_in(self, kw: dict, static: dict | None = None) -> None:
        import torch

        static = self.static if static is None else static
        for k, v in kw.items():
            if torch.is_tensor(v):
                static[k].copy_(v)
            elif isinstance(v, dict):
                self._copy_in(v, static[k])

    def __call__(self, **kw):
        import torch

        if kw.get("pixel_values") is None and kw.get("pixel_values_videos") is None:
            kw = {k: v for k, v in kw.items() if k not in DECODE_UNUSED}
        key = _key(kw)
        if key != self.key:  # first decode step of the call (or new shapes): eager, on buffers kept for the graph
            self.key, self.graph, self.out = key, None, None
            self.static = _clone(kw)
            self.stats["new_inputs"] += 1
            self.stats["eager"] += 1
            if not self.capture:
                return self.model(**self.static)
            side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graphs asks
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.model(**self.static)
            torch.cuda.current_stream().wait_stream(side)
            return out
        self._copy_in(kw)
        if not self.capture:
            self.stats["eager"] += 1
            return self.model(**self.static)
        if self.graph is None:
            try:
                self.graph = torch.cuda.CUDAGraph()
                # thread_local: a prefetching thread may use the GPU (eval.prefetch) while this one captures
                with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                    self.out = self.model(**self.static)
            except Exception as e:  # something in the step cannot be captured: eager from here on, said once
                global CAPTURE_ERROR
                torch.cuda.synchronize()
                self.capture, self.graph, CAPTURE_ERROR = False, None, repr(e)[:300]
                print(f"eval.cuda_graphs: the decode step could not be captured, it runs eagerly: {e!r}", flush=True)
                self.stats["eager"] += 1
                return self.model(**self.static)
            self.stats["captures"] += 1
        self.graph.replay()
        self.stats["replays"] += 1
        return self.out


def uses_static_cache(model_kwargs: dict) -> bool:
    cache = model_kwargs.get("past_key_values")
    return cache is not None and bool(getattr(cache, "is_compileable", False))


@contextmanager
def graphed_decode(model, capture: bool = True):
    """Within: the decode steps of ``model.generate`` with ``cache_implementation="static"`` run
    through a ``DecodeGraphs`` (yielded, for its stats). Everything else is generate as usual."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper
    runner = DecodeGraphs(base, capture and CAPTURE_ERROR is None)
    base.get_compiled_call = lambda compile_config=None: runner
    base._valid_auto_compile_criteria = lambda model_kwargs, generation_config: uses_static_cache(model_kwargs)
    try:
        yield runner
    finally:
        del base.get_compiled_call, base._valid_auto_compile_criteria
        runner.release()
