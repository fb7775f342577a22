"""ms-swift external plugin for bench/fold_overhead.py: the wall-clock time (epoch seconds) at which a `swift sft`
run reaches each phase, written to ``phase_clock.json`` in its output folder after every phase.

Registers the trainer callback ``pigg_phase_clock`` (``callbacks: [pigg_phase_clock]``): ``imported`` (this plugin
loaded: swift, torch and transformers imported, arguments parsed), ``trainer_built`` (model loaded, dataset encoded,
trainer constructed), ``train_begin``, ``first_step_end``, ``train_end``, ``saved`` (the last checkpoint written) and
``exit`` (the interpreter ending: swift's plots and clean-up done). The process start is the sweep's TRAINED
``started`` (before `swift.cli.main` starts swift's own child interpreter).
"""
from __future__ import annotations

import atexit
import json
import time
from pathlib import Path

from swift.callbacks import TrainerCallback, callbacks_map

T: dict = {"imported": time.time()}
OUT: list = []


def _write() -> None:
    if OUT:
        Path(OUT[0]).write_text(json.dumps(T, allow_nan=False))


def _at_exit() -> None:
    T["exit"] = time.time()
    _write()


atexit.register(_at_exit)


class PhaseClock(TrainerCallback):

    def __init__(self, args, trainer):
        super().__init__(args, trainer)
        T["trainer_built"] = time.time()
        if getattr(args, "process_index", 0) == 0:
            OUT.append(str(Path(args.output_dir) / "phase_clock.json"))
        _write()

    def on_train_begin(self, args, state, control, **kw):
        T["train_begin"] = time.time()
        _write()

    def on_step_end(self, args, state, control, **kw):
        if "first_step_end" not in T:
            T["first_step_end"] = time.time()
            _write()

    def on_save(self, args, state, control, **kw):
        T["saved"] = time.time()
        _write()

    def on_train_end(self, args, state, control, **kw):
        T["train_end"] = time.time()
        _write()


callbacks_map["pigg_phase_clock"] = PhaseClock
