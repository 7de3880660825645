"""One search per run folder at a time: an exclusive ``flock`` on ``DIR/.hwnas.lock``.

Two ``hwnas search --resume DIR`` at once would run the same trials in the same folders. The
lock is held for the whole run and released when the process exits however it exits (the
kernel drops a ``flock`` with the last descriptor, so ``kill -9`` leaves no stale lock; the
file itself stays and means nothing when unlocked). It holds the owner's pid for the message
the second process prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_FILE = ".hwnas.lock"


class RunBusyError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """``with RunLock(out_dir):`` holds the folder's lock, or raises ``RunBusyError``."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunBusyError(
                f"{self.path.parent} is in use by another hwnas search (pid {owner}; lock "
                f"{self.path}); wait for it to end or stop it, then retry"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def is_locked(out_dir: str | Path) -> bool:
    """Whether a process holds ``out_dir``'s run lock now (a search is running there);
    opens the lock file read-only and writes nothing."""
    try:
        fd = os.open(Path(out_dir) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


__all__ = ["LOCK_FILE", "RunBusyError", "RunLock", "is_locked"]
