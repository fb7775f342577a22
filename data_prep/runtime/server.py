"""A kept child process that takes one JSON request per line on its stdin and answers each with one JSON line on a
pipe of its own (its stdout and stderr go to a log): the sweeps' eval process (eval/serve.py) and training process
(swift_configs/train_serve.py) are both driven through this.

Usage: ``srv = LineServer(); srv.start(cmd_for_fd, env, log); srv.read(); srv.ask({...}); srv.close()``
where ``cmd_for_fd(fd)`` is the child's command given the file descriptor it answers on (data_prep/runtime/procenv.py).
Imports no torch.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..config import ROOT
from ..io import dumps

POLL_S = 10  # how often a waiting reader looks whether the child still lives
START_TIMEOUT_S = 900  # a kept process's ready line: its imports (~60 s on a 2-core box) and a CUDA probe


class LineServer:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.replies = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, cmd_for_fd: Callable[[int], list[str]], env: dict, log: Path) -> None:
        """Start the child, its output appended to ``log``."""
        self.close()
        r, w = os.pipe()
        with open(log, "a", encoding="utf-8") as f:
            self.proc = subprocess.Popen(cmd_for_fd(w), env=env, stdin=subprocess.PIPE, stdout=f,
                                         stderr=subprocess.STDOUT, cwd=ROOT, pass_fds=(w,), text=True)
        os.close(w)
        self.replies = os.fdopen(r, "r", encoding="utf-8")

    def read(self, timeout: float | None = None) -> dict | None:
        """The child's next answer; None when it ended without one, or (``timeout`` s) gave none in time (then it is
        killed). Waiting, the child is looked at every POLL_S: one that died while something else holds its answer
        pipe open (a grandchild) does not leave the caller waiting for ever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.replies], [], [], POLL_S)
            if ready:
                break
            if not self.alive():
                ready, _, _ = select.select([self.replies], [], [], 0)  # an answer written just before it ended
                if not ready:
                    return None
                break
            if deadline is not None and time.monotonic() > deadline:
                print(f"[server] no answer from pid {self.proc.pid} in {timeout:.0f} s: stopped", flush=True)
                self.proc.kill()
                return None
        try:
            line = self.replies.readline()
        except OSError:
            line = ""
        return json.loads(line) if line.strip() else None

    def ask(self, req: dict, timeout: float | None = None) -> dict | None:
        """Send one request and wait for its answer (read); None when the child ended without one."""
        try:
            self.proc.stdin.write(dumps(req) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # it ended: an answer it left before (a start-up error) is still read
        return self.read(timeout)

    def exit_code(self) -> int | None:
        return self.proc.wait() if self.proc is not None else None

    def close(self, timeout: float = 60) -> None:
        """End of input, then wait for the child to end (killed after ``timeout`` s)."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.replies.close()
        self.proc = None
