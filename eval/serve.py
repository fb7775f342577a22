"""One eval process that answers many jobs on one device, the base model loaded once (the sweeps' hold-outs:
swift_configs/sweep.py starts one per worker when ``eval.keep_loaded`` is true).

Usage: python -m eval.serve --config EXP [--set k=v ...] --devices D --reply-fd N   (started by the sweep)

Imports torch, swift's inference engine and the model classes first (data_prep/procenv.preload: the sweep starts it
while a worker's first run trains), then reads one JSON request per line on stdin: {"model", "adapters": [...],
"pairs": [[data, out], ...], "log": file, "park": bool (the base to host memory after the job; false: it stays on
the card)}.
Each is ``eval.job.evaluate`` on the kept engines (eval/engine.py ``Engines``: the base built once, each job's
LoRA adapter put on and taken off, the base parked as the request says); the process's own output goes to the
request's log (the engine's load time: the job's eval_stats.json). Answers each request with one JSON line on file
descriptor N: {"ok": true, "seconds", "park_s", "engine"} or {"ok": false, "error"}; after a failure it exits (the
next job starts a fresh one).
Ends at the end of its input.
"""
from __future__ import annotations

import json
import os
import sys
import time

from data_prep.config import ConfigError, load_experiment
from data_prep.io import dumps
from data_prep.runtime.procenv import preload

from .engine import Engines
from .job import evaluate

from data_prep.runtime.cli import EXPECTED, parser


def to_log(path: str) -> None:
    """This process's stdout and stderr (file descriptors 1 and 2, children's too) appended to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(cfg: dict, device: str, requests, reply) -> int:
    engines = Engines()
    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        to_log(req["log"])
        t = time.time()
        try:
            evaluate(cfg, req["model"], req["adapters"], req["pairs"], [device], engines=engines)
            ans = {"ok": True, "seconds": round(time.time() - t, 2), "engine": engines.last}
            ans["park_s"] = engines.park(req.get("park", True))
        except Exception as e:  # noqa: BLE001 - said to the sweep (with the log), then this process ends
            kind = "" if isinstance(e, EXPECTED) else f"{type(e).__name__}: "
            print(f"error: {kind}{e}", file=sys.stderr, flush=True)
            reply.write(dumps({"ok": False, "error": f"{kind}{e}"}) + "\n")
            reply.flush()
            if not isinstance(e, EXPECTED):
                import traceback

                traceback.print_exc()
            return 1
        sys.stdout.flush()
        sys.stderr.flush()
        reply.write(dumps(ans) + "\n")
        reply.flush()
    return 0


def main(argv=None) -> int:
    p = parser("python -m eval.serve", __doc__)
    p.add_argument("--devices", required=True, help="one device: cpu or a GPU id (already the visible one)")
    p.add_argument("--reply-fd", type=int, required=True)
    a = p.parse_args(argv)
    reply = os.fdopen(a.reply_fd, "w", encoding="utf-8")
    try:
        cfg = load_experiment(a.config, a.overrides)
    except ConfigError as e:
        reply.write(dumps({"ok": False, "error": str(e)}) + "\n")
        return 2
    took = preload("swift.infer_engine")  # while the sweep's first run trains (it starts this process then)
    print(f"[eval] kept eval process ready on {a.devices} (imports {took:.1f} s)", flush=True)
    return serve(cfg, a.devices, sys.stdin, reply)


if __name__ == "__main__":
    sys.exit(main())
