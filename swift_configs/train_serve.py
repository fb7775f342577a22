"""One training process per sweep worker that imports torch, transformers and swift once, then forks each run.

swift_configs/sweep.py starts one per worker when ``train.keep_loaded`` is true; each person fold / user-token run
is then `swift sft RUN.yaml` (swift_configs/sft_main.py) in a child forked from it instead of a fresh interpreter:
the same code on the same arguments in the same environment, without paying the imports again (11-13 s of every
run on the 2-core box, see bench/fold_overhead.py for a GPU card).

Usage: python -m swift_configs.train_serve --reply-fd N   (started by the sweep, in the runs' environment)

Why a fork is the same run: this process is started with exactly the environment a fresh run would get
(``child_env`` of the run, data_prep/runtime/procenv.py; a run whose environment differs gets a new server), does nothing
but the imports a run does first, and never touches a GPU (it checks: CUDA not initialised; torch's CUDA check goes
through NVML while it imports, so the driver is not started either). Where GPUs are visible it first forks a probe
that starts CUDA and adds on the GPU: if that fails it says why and the sweep runs each run fresh. Each child then
starts where a fresh run would be after its imports: it chdirs to the run folder, appends its output to the run's
log, reads nothing from stdin, and runs sft_main with the YAML. Seeds come from the YAML (swift sets them), as in a fresh process.

Fork-safety rules (what keeps a forked run the same as a fresh one; where one cannot hold, runs start fresh):
- this process never starts CUDA: checked after its imports (cuda_started); GPUs are counted through NVML, and
  bitsandbytes' capability query is answered by NVML (data_prep/runtime/procenv.py _nvml_capability);
- a child forked from it must be able to use the GPU: a forked probe adds on the GPU before the first run
  (forked_cuda_problem); if it cannot, the sweep is told why and starts every run fresh;
- it does nothing but imports before forking: no model, no data, no experiment; everything a run uses comes from
  its YAML after the fork, and seeds are set by swift from the YAML, as in a fresh process;
- the child drops what it inherited that a run must not share: the answer pipe (closed), stdin (/dev/null), the
  working folder and log (the run's own);
- its environment is the run's own; a run whose environment differs gets a new server.

Protocol: first a line on file descriptor N: {"ready": true, "preload_s"} (or {"ready": false, "error"}: the sweep
then starts each run fresh). Then one JSON request per line on stdin: {"yaml", "cwd", "log"}; each answered on N
with {"rc": exit code of the run's child (negative: killed by that signal)}. Ends at the end of its input. It and its
running child share the launcher's process group: Ctrl-C in tmux, or killing the group, stops both (the run then
resumes from its last checkpoint at the next launch).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from data_prep.runtime.procenv import preload

# what swift.cli.sft imports before it parses a run's arguments (sft_main runs it), beside data_prep/procenv.PRELOAD
SFT_MODULES = ("swift.cli.main", "swift.cli.utils", "swift.ray_utils", "swift.pipelines.train.sft")


def cuda_started() -> bool:
    import torch

    return torch.cuda.is_initialized()


def gpus_counted() -> int:
    """GPUs torch sees; 0 on a box without a driver. torch.cuda.device_count() asks NVML first and starts no CUDA
    where NVML answers (its own note: it does not poison a fork then)."""
    import torch

    return torch.cuda.device_count()


def forked_cuda_problem() -> str | None:
    """Where GPUs are visible: whether a child forked from this process can use CUDA (it starts a context, adds on
    the GPU and exits); the reason it cannot, None if it can or no GPU is visible."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():  # the sweep's CPU runs: every GPU hidden
        return None
    if visible is None and not gpus_counted():
        return None
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        msg = b""
        try:
            import torch

            x = torch.ones(1, device="cuda") + 1
            torch.cuda.synchronize()
            if x.item() != 2:
                msg = b"a forked child computed a wrong value on the GPU"
        except BaseException as e:  # noqa: BLE001 - said to the parent
            msg = f"{type(e).__name__}: {e}".encode()[:2000]
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if not msg and os.waitstatus_to_exitcode(status) != 0:
        msg = f"the CUDA probe ended with exit {os.waitstatus_to_exitcode(status)}"
    return msg or None


def run_child(req: dict) -> None:
    """In the forked child: become the run's process (folder, log, no stdin) and run it; never returns."""
    code = 1
    try:
        os.chdir(req["cwd"])
        fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(0, closefd=False)
        from .sft_main import main

        sys.argv = [sys.argv[0], req["yaml"]]
        main()  # ends the process itself after a finished run (os._exit(0))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the run's traceback goes to its log, its exit code to the sweep
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(requests, reply) -> int:
    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            reply.close()
            run_child(req)
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m swift_configs.train_serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reply-fd", type=int, required=True)
    a = p.parse_args(argv)
    reply = os.fdopen(a.reply_fd, "w", encoding="utf-8")
    try:
        took = preload(*SFT_MODULES)
        if cuda_started():
            raise RuntimeError("CUDA was initialised while importing: runs cannot be forked from this process")
        problem = forked_cuda_problem()
        if problem:
            raise RuntimeError(f"a child forked from this process cannot use CUDA ({problem})")
    except Exception as e:  # noqa: BLE001 - said to the sweep, which then starts each run fresh
        reply.write(json.dumps({"ready": False, "error": f"{type(e).__name__}: {e}"}) + "\n")
        reply.flush()
        return 1
    reply.write(json.dumps({"ready": True, "preload_s": round(took, 2)}) + "\n")
    reply.flush()
    try:
        return serve(sys.stdin, reply)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
