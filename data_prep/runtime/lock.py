"""One process per folder: a lock the kernel holds (``flock`` on ``<folder>/.lock``), so a killed holder frees it.

Usage: ``with FolderLock(folder): ...`` (or ``lock = FolderLock(folder).acquire()``, released at exit); a second
process on the same folder stops at once with ``LockedError`` naming the holder's pid and command. The lock file
holds the holder's pid and command line for that message; it is left in place (an unlocked file is no lock).
Locks are advisory between harness processes and held by the stage's own process (the descriptor is not
inherited: O_CLOEXEC); its children run under it. Dry-runs take none. Imports no torch.
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from ..errors import HarnessError

LOCK_NAME = ".lock"
_HELD: dict[str, "FolderLock"] = {}  # folders this process holds (re-entry by the same process is a no-op)


class LockedError(HarnessError, RuntimeError):
    pass


class FolderLock:
    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder, self.what, self.fd, self.nested = Path(folder).resolve(), what, None, False

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> "FolderLock":
        key = str(self.folder)
        if key in _HELD:  # this process holds it already (a stage calling another stage's function)
            self.nested = True
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(f"{self.folder}: this {self.what} is in use by another process ({holder}); wait for it "
                              f"to finish or stop it (a killed process frees the lock)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv) or sys.executable}\n".encode(), 0)
        self.fd = fd
        _HELD[key] = self
        return self

    def release(self) -> None:
        if self.nested or self.fd is None:
            return
        _HELD.pop(str(self.folder), None)
        os.close(self.fd)  # closing the descriptor drops the flock (children holding a copy keep it until they end)
        self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
