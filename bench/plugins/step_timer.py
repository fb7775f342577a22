"""ms-swift external plugin for bench/step_breakdown.py: where each training step's time goes, inside a real
`swift sft` run (the generated YAML, swift's trainer and data loader), timed with CUDA events.

Registers the trainer callback ``pigg_step_timer`` (``callbacks: [pigg_step_timer]`` in the YAML). Per optimizer
step (gradient accumulation 1):
- ``data_s``: host time from the previous step's end to this step's start (the data loader's next batch, collate,
  logging between steps); the GPU is idle then unless work is still queued;
- ``vision_s``: the vision tower's forward (events around ``model.visual``), frozen: no backward;
- ``lm_fwd_bwd_s``: the rest of forward + backward (language model, loss, LoRA), events from step start to the
  optimizer hook minus ``vision_s``;
- ``optimizer_s``: gradient clipping and AdamW (events around the optimizer step hooks);
- ``other_s``: scheduler, zero_grad, what swift does at step end;
- ``tokens`` / ``patches`` / ``samples`` of the step's batch (attention mask sum; pixel_values rows) and its
  ``flops`` (bench/flops.py: LoRA or full, recompute if gradient checkpointing is on; the vision tower's only where
  it ran: ``vision_cached`` says a step's features came from data_prep/patches/vision_cache.py).
At train end it writes {"peak_matmul_tflops" (bf16 8192^3, this card, measured at train start), "params",
"steps": [...]} to $PIGG_STEP_TIMER_OUT. With no GPU it records host times only (CPU tests).

$PIGG_STEP_TIMER_SYNC=0: no synchronization of its own. By default the timer synchronizes the GPU at each step's end
and reads the batch's token count from the GPU at its start: the host then cannot queue the next step while the GPU
finishes this one, which costs a host-bound step ~12-14 % (bench/RESULTS.md, "Person LoRA"). Without them the
events stay queued until train end, the token counts stay on the GPU, and each step's ``wall_s`` is the time between
its start event and the next step's on the GPU's own clock (the period the run sustains, GPU idle time included);
``data_s`` is then the host's time between issuing one step and the next.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from swift.callbacks import TrainerCallback, callbacks_map

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: flops.py
import flops  # noqa: E402

OUT = "PIGG_STEP_TIMER_OUT"
PROFILE = "PIGG_STEP_PROFILE"  # "A:B": torch.profiler over steps A..B-1, its kernel table in the output
SYNC = "PIGG_STEP_TIMER_SYNC"  # "0": no synchronization of the timer's own (see above)


class StepTimer(TrainerCallback):

    def __init__(self, args, trainer):
        super().__init__(args, trainer)
        import torch

        self.torch, self.cuda = torch, torch.cuda.is_available()
        self.steps, self.cur, self.last_end = [], None, None
        self.peak, self.params, self.hooked = None, None, False
        self.sync = os.environ.get(SYNC, "1") != "0" or not self.cuda
        self.pending = []  # no-sync mode: steps whose events are read at train end
        span = os.environ.get(PROFILE)
        self.prof_span = tuple(int(x) for x in span.split(":")) if span and self.sync else None  # sync mode only
        self.prof, self.prof_table = None, None

    def _event(self):
        if not self.cuda:
            return time.perf_counter()
        e = self.torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def _seconds(self, a, b) -> float:
        return (b - a) if not self.cuda else a.elapsed_time(b) / 1e3

    def _hook(self, model):
        m = model.get_base_model() if hasattr(model, "get_base_model") else model
        visual = getattr(getattr(m, "model", m), "visual", None)
        self.visual = visual
        if visual is not None:
            visual.register_forward_pre_hook(lambda mod, a: self.cur and self.cur["vis"].append([self._event(), None]))
            visual.register_forward_hook(lambda mod, a, out: self.cur and self.cur["vis"][-1].__setitem__(1, self._event()))

        def count(mod, args, kwargs):
            if self.cur is None:
                return
            am, pv = kwargs.get("attention_mask"), kwargs.get("pixel_values")
            ids = kwargs.get("input_ids")
            if am is not None and not self.sync:
                self.cur["tok_t"].append(am.sum())  # read at train end: no sync here
            else:
                self.cur["tokens"] += int(am.sum()) if am is not None else int(ids.numel()) if ids is not None else 0
            self.cur["patches"] += int(pv.shape[0]) if pv is not None else 0
            self.cur["samples"] += int(ids.shape[0]) if ids is not None and ids.dim() == 2 else 0

        model.register_forward_pre_hook(count, with_kwargs=True)
        self.params = flops.param_counts(model)
        self.model = model
        self.hooked = True

    def on_train_begin(self, args, state, control, model=None, **kw):
        if self.cuda:
            self.peak = flops.peak_matmul_tflops()
        if model is not None and not self.hooked:
            self._hook(model)

    def on_step_begin(self, args, state, control, **kw):
        if not self.hooked:
            self._hook(self.trainer.model)
        if self.prof_span and state.global_step + 1 == self.prof_span[0] and self.prof is None:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            self.prof = profile(activities=acts)
            self.prof.__enter__()
        now = time.perf_counter()
        self.cur = {"t0": self._event(), "vis": [], "tokens": 0, "tok_t": [], "patches": 0, "samples": 0, "hits0": self._hits(),
                    "data_s": None if self.last_end is None else now - self.last_end}

    def _hits(self) -> int:  # batches the vision cache answered so far (data_prep/patches/vision_cache.py)
        cache = self.visual.__dict__.get("_pigg_vision_cache") if getattr(self, "visual", None) is not None else None
        return cache.hit_batches if cache is not None else 0

    def on_pre_optimizer_step(self, args, state, control, **kw):
        if self.cur is not None:
            self.cur["t1"] = self._event()

    def on_optimizer_step(self, args, state, control, **kw):
        if self.cur is not None:
            self.cur["t2"] = self._event()

    def on_step_end(self, args, state, control, **kw):
        c = self.cur
        if c is None:
            return
        c["t3"] = self._event()
        c["step"], c["cached"] = state.global_step, self._hits() > c["hits0"]
        if not self.sync:  # read at train end
            self.pending.append(c)
            self.cur, self.last_end = None, time.perf_counter()
            return
        if self.cuda:
            self.torch.cuda.synchronize()
        self.last_end = time.perf_counter()
        rec = self._record(c, args)
        rec["wall_s"] = (rec["data_s"] or 0.0) + rec["gpu_step_s"]
        self.steps.append(rec)
        self.cur = None
        if self.prof is not None and state.global_step + 1 == self.prof_span[1]:
            self.prof.__exit__(None, None, None)
            key = "self_cuda_time_total" if self.cuda else "self_cpu_time_total"
            ev = self.prof.key_averages()
            self.prof_table = ev.table(sort_by=key, row_limit=45, max_name_column_width=90)
            if self.cuda:  # the GPU's busy share of the profiled steps: kernel time over their wall time
                busy = sum(e.self_device_time_total for e in ev if e.device_type.name == "CUDA") / 1e6
                walls = [r["wall_s"] for r in self.steps[self.prof_span[0] - 1:]]
                self.prof_table = (f"kernels {busy:.3f} s of {sum(walls):.3f} s wall over steps "
                                   f"{self.prof_span[0]}..{self.prof_span[1] - 1}\n" + self.prof_table
                                   + "\nthe host's side, operators by self CPU time (what issuing them costs):\n"
                                   + ev.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=90))
            self.prof = False

    def _record(self, c: dict, args) -> dict:
        """One step's figures from its events (the GPU's work done), token count and batch."""
        vis = sum(self._seconds(a, b) for a, b in c["vis"] if b is not None)
        t1, t2 = c.get("t1", c["t3"]), c.get("t2", c["t3"])
        fb = self._seconds(c["t0"], t1)
        tokens = c["tokens"] + sum(int(t) for t in c["tok_t"])
        rec = {"step": c["step"], "data_s": c["data_s"], "vision_s": vis, "lm_fwd_bwd_s": fb - vis,
               "optimizer_s": self._seconds(t1, t2), "other_s": self._seconds(t2, c["t3"]),
               "gpu_step_s": self._seconds(c["t0"], c["t3"]), "tokens": tokens, "patches": c["patches"],
               "samples": c["samples"]}
        n = c["samples"] or 1
        kind = "lora" if hasattr(self.model, "peft_config") else "full"
        rec["vision_cached"] = c["cached"]  # the tower did not run: its FLOPs are not counted
        patches = 0 if rec["vision_cached"] else c["patches"] / n
        rec["flops"] = n * flops.train_flops(self.model, tokens / n, patches, kind,
                                             bool(getattr(args, "gradient_checkpointing", False)))
        return rec

    def on_train_end(self, args, state, control, **kw):
        if self.pending:  # no-sync mode: every step's events are done now
            self.torch.cuda.synchronize()
            for i, c in enumerate(self.pending):
                rec = self._record(c, args)
                nxt = self.pending[i + 1]["t0"] if i + 1 < len(self.pending) else c["t3"]
                rec["wall_s"] = self._seconds(c["t0"], nxt)  # start to the next start, on the GPU's clock
                self.steps.append(rec)
            self.pending = []
        out = os.environ.get(OUT)
        if out and getattr(args, "process_index", 0) == 0:
            m = self.trainer.model
            tc = (m.get_base_model() if hasattr(m, "get_base_model") else m).config.get_text_config()
            Path(out).write_text(json.dumps(allow_nan=False, obj={
                "peak_matmul_tflops": self.peak, "params": self.params, "steps": self.steps,
                "profile": self.prof_table,
                "text_config": {k: getattr(tc, k, None) for k in ("num_hidden_layers", "hidden_size",
                                                                  "num_attention_heads", "head_dim")}}))


callbacks_map["pigg_step_timer"] = StepTimer
