"""`swift sft RUN.yaml` in one Python process: what every training run of the harness executes.

swift's CLI (``swift.cli.main``) reads the YAML into arguments (its ENV into the environment) and then starts a
second interpreter for ``swift.cli.sft``, which imports torch, transformers and swift again: 3-4 s more per run on
the 2-core box (bench/fold_overhead.py; 30 personalized folds pay it 30 times). This does the same reading
(``swift.cli.main.parse_yaml_args``) and runs ``swift.cli.sft`` as ``__main__`` in this interpreter: same
arguments, same code. A run that needs torchrun (NPROC_PER_NODE / NNODES set: global training on several GPUs)
goes through swift's own CLI, which starts it. When the run has returned (checkpoints, logging.jsonl and plots
written and closed), the process runs its exit handlers, flushes its output and ends without the interpreter's
teardown of every module and object (``os._exit``), its data-loader workers stopped first (``end_children``:
waiting for them took 40 s after every 8B LoRA fold on an H200, bench/fold_overhead.py); a run that raises ends
the normal way, with its traceback.

Usage: python -m swift_configs.sft_main RUN.yaml   (as ``swift sft RUN.yaml``)
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import runpy
import sys


def end_children(timeout: float = 5.0) -> int:
    """Stop the child processes still running once the run is over (the data loader's workers: they are waited for
    5 s each at exit, 8 x 5 = 40 s after every 8B fold on an H200, bench/fold_overhead.py). Training is done and
    saved; a worker told to stop by its parent ends at once (torch's SIGTERM handler). Returns how many."""
    import multiprocessing

    kids = multiprocessing.active_children()
    for p in kids:
        p.terminate()
    for p in kids:
        p.join(timeout)
    return len(kids)


def main() -> None:
    from swift.cli.main import cli_main, parse_yaml_args, use_torchrun

    argv = sys.argv[1:]
    if use_torchrun():
        sys.argv = [sys.argv[0], "sft", *argv]
        cli_main()
        return
    parse_yaml_args(argv)
    sys.argv = [importlib.util.find_spec("swift.cli.sft").origin, *argv]
    runpy.run_module("swift.cli.sft", run_name="__main__", alter_sys=True)
    n = end_children()
    if n:
        print(f"[pigg] the run is over: stopped {n} child processes still running (data-loader workers)", flush=True)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
