"""hwnas: hardware-aware neural architecture search for the Determined training platform.

Every module lives under ``hwnas.``: ``hwnas.spaces``, ``hwnas.searchers``, ``hwnas.trials``,
``hwnas.latency``, ``hwnas.driver``. In the repository those rooms are top-level folders
(``spaces/``, ``searchers/``, ...); an installed wheel maps them into this package
(``[tool.setuptools] package-dir`` in ``pyproject.toml``). A source checkout that is not
installed — a Determined task started from the context directory, ``python -m hwnas...`` run
from the repository root — finds them through ``__path__`` below, so the same
``python3 -m hwnas.trials.train`` works in both places and no generic top-level name
(``spaces`` is also Hugging Face's) is ever importable from hwnas.

From Python: ``hwnas.search(config, out)`` runs a local search and ``hwnas.open_run(out)`` reads
one; both return a ``SearchResult`` with ``.front`` and ``.trials`` (``hwnas.api``, imported on
first use: ``import hwnas`` itself loads nothing heavy).
"""

from pathlib import Path as _Path

__version__ = "0.2.0"

#: The Python API (``hwnas.api``), loaded on first use so ``import hwnas`` stays light.
_API = ("search", "open_run", "SearchResult")

#: The rooms that live beside this folder in a source checkout.
ROOMS = ("spaces", "searchers", "trials", "latency", "driver")


def _source_checkout_rooms() -> None:
    here = _Path(__file__).resolve().parent
    root = here.parent
    if (here / ROOMS[0]).is_dir():  # installed: the rooms are inside this package already
        return
    if (
        all((root / room / "__init__.py").is_file() for room in ROOMS)
        and (root / "pyproject.toml").is_file()
    ):
        __path__.append(str(root))


_source_checkout_rooms()


def __getattr__(name: str) -> object:
    if name in _API:
        from hwnas import api

        return getattr(api, name)
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")
