"""The NAS-Bench-201 table with device latencies (``nb201_cifar.csv.gz``), loaded by path.

The table lives outside the repository (``../shared/data/nb201/``); nothing here copies it.
Loading uses only ``csv``, ``gzip`` and numpy and takes a fraction of a second.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Environment variable that overrides the table's location.
TABLE_ENV = "HWNAS_NB201_TABLE"
#: Location relative to a directory that sits next to ``shared/``.
_RELATIVE = Path("..") / "shared" / "data" / "nb201" / "nb201_cifar.csv.gz"
#: Columns holding ``;``-separated per-seed values.
SEED_COLUMNS = ("c10_valid_seeds", "c100_valid_seeds")
#: Columns every table must have.
REQUIRED_COLUMNS = ("idx", "arch_str", "c10_valid", "c10_valid_seeds", "params_mb")
LATENCY_PREFIX = "lat_ms_"


class TableError(ValueError):
    """The NB201 table is missing or malformed; the message names the file (and row/column)."""


def default_table_path() -> Path | None:
    """``$HWNAS_NB201_TABLE``, else ``../shared/data/nb201/nb201_cifar.csv.gz`` next to this
    repository or the current directory; ``None`` when no such file exists."""
    env = os.environ.get(TABLE_ENV)
    candidates = [Path(env)] if env else []
    repo_root = Path(__file__).resolve().parents[1]
    candidates += [repo_root / _RELATIVE, Path.cwd() / _RELATIVE]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None


class NB201Table(Mapping[str, Any]):
    """Columns of the NB201 table by name, plus lookup by architecture string or index.

    ``table["arch_str"]`` is a list of strings, ``table["<seed column>"]`` a list of float
    arrays (one per row, as many values as that row has seeds), ``table["idx"]`` an int array,
    every other column a float array (NaN where empty).
    """

    def __init__(self, path: Path, columns: dict[str, Any]) -> None:
        self.path = path
        self._columns = columns
        self.archs: list[str] = columns["arch_str"]
        self._row_of = {arch: i for i, arch in enumerate(self.archs)}

    # -- Mapping -----------------------------------------------------------------------------
    def __getitem__(self, column: str) -> Any:
        try:
            return self._columns[column]
        except KeyError:
            raise KeyError(
                f"{self.path}: no column {column!r}; columns: {', '.join(self._columns)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    # -- rows --------------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        """Number of architectures (15,625 for the full table)."""
        return len(self.archs)

    @property
    def devices(self) -> list[str]:
        """Device names with a ``lat_ms_<device>`` column, in file order."""
        return [c[len(LATENCY_PREFIX) :] for c in self._columns if c.startswith(LATENCY_PREFIX)]

    def index_of(self, arch: str) -> int:
        """Row of ``arch`` (NB201 string, outer whitespace ignored); ``KeyError`` if absent."""
        try:
            return self._row_of[arch.strip()]
        except KeyError:
            raise KeyError(f"{self.path}: architecture {arch!r} is not in the table") from None

    def row(self, key: str | int) -> dict[str, Any]:
        """All columns of one row, by architecture string or row index."""
        i = self.index_of(key) if isinstance(key, str) else int(key)
        if not 0 <= i < self.num_rows:
            raise IndexError(f"{self.path}: row {key} out of range 0..{self.num_rows - 1}")
        out: dict[str, Any] = {}
        for name, col in self._columns.items():
            value = col[i]
            out[name] = value.item() if isinstance(value, np.generic) else value
        return out

    def latency(self, device: str) -> np.ndarray:
        """Latency column (ms) of ``device``; ``KeyError`` lists the known devices."""
        name = LATENCY_PREFIX + device
        if name not in self._columns:
            raise KeyError(f"{self.path}: no device {device!r}; devices: {', '.join(self.devices)}")
        return self._columns[name]


def _float(text: str, path: Path, line: int, column: str) -> float:
    if text == "":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise TableError(f"{path}:{line}: column {column!r} has non-number {text!r}") from None


def _seed_arrays(values: tuple[str, ...], path: Path, name: str) -> list[np.ndarray]:
    """One float array per ``"a;b;c"`` cell (views into one parsed array, for speed)."""
    try:
        flat = np.array(";".join(values).split(";"), dtype=float)
        counts = [text.count(";") + 1 for text in values]
        if all(values):
            return np.split(flat, np.cumsum(counts)[:-1])
    except ValueError:
        pass  # fall back to the per-cell parse, which names the bad line
    return [
        np.array([_float(v, path, n, name) for v in text.split(";") if v], dtype=float)
        for n, text in enumerate(values, start=2)
    ]


def load_table(path: str | os.PathLike[str] | None = None) -> NB201Table:
    """Load the NB201 table from ``path`` (default: ``default_table_path()``)."""
    if path is None:
        path = default_table_path()
        if path is None:
            raise TableError(
                f"NB201 table not found: set ${TABLE_ENV} or place it at "
                "../shared/data/nb201/nb201_cifar.csv.gz"
            )
    path = Path(path)
    if not path.is_file():
        raise TableError(f"NB201 table {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise TableError(f"{path}: file is empty")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise TableError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"{path}: cannot read the table ({exc})") from exc
    if not rows:
        raise TableError(f"{path}: no data rows")
    width = len(header)
    for n, r in enumerate(rows, start=2):
        if len(r) != width:
            raise TableError(f"{path}:{n}: {len(r)} fields, header has {width}")
    cells = list(zip(*rows, strict=True))
    columns: dict[str, Any] = {}
    for name, values in zip(header, cells, strict=True):
        if name == "arch_str":
            columns[name] = list(values)
        elif name in SEED_COLUMNS:
            columns[name] = _seed_arrays(values, path, name)
        else:
            try:
                arr = np.array(values, dtype=float)  # fast path; empty strings fall through
            except ValueError:
                arr = np.array(
                    [_float(v, path, n, name) for n, v in enumerate(values, start=2)],
                    dtype=float,
                )
            columns[name] = arr.astype(np.int64) if name == "idx" else arr
    return NB201Table(path, columns)


__all__ = ["TABLE_ENV", "NB201Table", "TableError", "default_table_path", "load_table"]
