"""Atomic file writes: write beside the target, fsync, then ``os.replace``.

A crash mid-write leaves the previous file intact, never a half-written one. Every room
writes its state, results, checkpoints and caches through these.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    The temporary name keeps ``path``'s suffix, so format-by-extension writers (matplotlib's
    ``savefig``) work on it."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix
        )
    except OSError as exc:  # name the file meant, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing that replaces ``path`` only when the block succeeds."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_json_atomic(path: str | os.PathLike[str], obj: Any, **dumps_kwargs: Any) -> None:
    """Serialise ``obj`` as JSON atomically: strict (no NaN unless ``allow_nan=True``) and
    compact unless an ``indent`` is asked for (search states reach megabytes)."""
    dumps_kwargs.setdefault("allow_nan", False)
    if "indent" not in dumps_kwargs:
        dumps_kwargs.setdefault("separators", (",", ":"))
    text = json.dumps(obj, **dumps_kwargs)
    with atomic_open(path) as fh:
        fh.write(text)
