"""Where hwnas keeps what it can rebuild: the user's cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """``$HWNAS_CACHE_DIR`` or ``$XDG_CACHE_HOME/hwnas`` or ``~/.cache/hwnas``."""
    if os.environ.get("HWNAS_CACHE_DIR"):
        return Path(os.environ["HWNAS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hwnas"


__all__ = ["user_cache_dir"]
