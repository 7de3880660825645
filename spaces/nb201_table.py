"""The NAS-Bench-201 table with device latencies, and users' own tables in the same format.

hwnas ships the table as package data (``spaces/data/nb201_cifar.csv.gz``; provenance and
licences in ``spaces/data/NOTICE.md``) and loads it by default; ``$HWNAS_NB201_TABLE`` or an
explicit path selects another table. The format (``docs/tables.md``): one row per cell,
``arch_str``; per dataset prefix ``<p>``, ``<p>_valid`` (mean validation accuracy, %),
``<p>_valid_seeds`` (each training seed's, ``;``-separated) and ``<p>_test``; ``params_mb``,
``train_time_s``; one ``lat_ms_<device>`` column per device. Loading uses only ``csv``,
``gzip`` and numpy and takes a fraction of a second.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Environment variable that selects another table.
TABLE_ENV = "HWNAS_NB201_TABLE"
#: The table shipped with the package.
PACKAGED_TABLE = Path(__file__).resolve().parent / "data" / "nb201_cifar.csv.gz"
#: Suffix of the columns holding ``;``-separated per-seed values (``<prefix>_valid_seeds``).
SEED_SUFFIX = "_valid_seeds"
#: Suffixes of the columns one dataset prefix needs, in the order they are checked.
DATASET_SUFFIXES = ("_valid", "_valid_seeds", "_test")
#: Columns every table must have.
REQUIRED_COLUMNS = ("arch_str",)
LATENCY_PREFIX = "lat_ms_"
#: The network every NB201 table row describes (NB201's published one): its figures (params,
#: accuracies, device latencies) are of full cells (``prune: false``) at C=16, N=5, 3x32x32.
TABLE_NETWORK: dict[str, Any] = {
    "space": "nb201",
    "space_options": {"C": 16, "N": 5, "prune": False},
    "input_shape": [3, 32, 32],
}


class TableError(ValueError):
    """The NB201 table is missing or malformed; the message names the file (and row/column)."""


def default_table_path() -> Path | None:
    """``$HWNAS_NB201_TABLE`` when set (whether or not the file exists, so a wrong path is an
    error, not a silent fallback), else the packaged table; ``None`` if neither is there."""
    env = os.environ.get(TABLE_ENV)
    if env:
        path = Path(env).expanduser()
        return path.resolve() if path.is_file() else path
    return PACKAGED_TABLE if PACKAGED_TABLE.is_file() else None


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

    @property
    def datasets(self) -> list[str]:
        """Dataset prefixes with a ``<prefix>_valid_seeds`` column, in file order (each may
        still lack another column; ``dataset_columns`` names it)."""
        return [c[: -len(SEED_SUFFIX)] for c in self._columns if c.endswith(SEED_SUFFIX)]

    def dataset_columns(self, prefix: str) -> tuple[str, str, str]:
        """``(<p>_valid, <p>_valid_seeds, <p>_test)``; ``KeyError`` names the first missing."""
        return dataset_columns(self._columns, prefix, str(self.path))

    def index_of(self, arch: str) -> int:
        """Row of ``arch`` (any NB201 string of the cell); ``KeyError`` if absent."""
        row = self._row_of.get(arch.strip())
        if row is None:
            from hwnas.spaces.base import ArchitectureError
            from hwnas.spaces.nb201 import format_arch, parse_arch

            try:
                row = self._row_of.get(format_arch(parse_arch(arch)))
            except ArchitectureError:
                row = None
        if row is None:
            raise KeyError(f"{self.path}: architecture {arch!r} is not in the table")
        return row

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


def dataset_columns(
    columns: Mapping[str, Any], prefix: str, source: str = "NB201 table"
) -> tuple[str, str, str]:
    """The three columns of dataset ``prefix`` in ``columns``; ``KeyError`` names the first
    one missing and lists the prefixes the table has."""
    names = tuple(prefix + suffix for suffix in DATASET_SUFFIXES)
    for name in names:
        if name not in columns:
            have = [c[: -len(SEED_SUFFIX)] for c in columns if c.endswith(SEED_SUFFIX)]
            raise KeyError(
                f"{source}: dataset {prefix!r} needs column {name!r}, which the table lacks "
                f"(a dataset has {', '.join('<p>' + x for x in DATASET_SUFFIXES)}; "
                f"datasets with per-seed columns: {', '.join(have) or 'none'})"
            )
    return names  # type: ignore[return-value]


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


def _normalised_archs(values: tuple[str, ...], path: Path) -> list[str]:
    """``arch_str`` in NB201's normalised form; an invalid or repeated cell names its line."""
    from hwnas.spaces.base import ArchitectureError
    from hwnas.spaces.nb201 import format_arch, parse_arch

    archs: list[str] = []
    line_of: dict[str, int] = {}
    for line, text in enumerate(values, start=2):
        try:
            arch = format_arch(parse_arch(text))
        except ArchitectureError as exc:
            raise TableError(f"{path}:{line}: column 'arch_str': {exc}") from None
        if arch in line_of:
            raise TableError(f"{path}:{line}: cell {arch!r} repeats line {line_of[arch]}")
        line_of[arch] = line
        archs.append(arch)
    return archs


def load_table(path: str | os.PathLike[str] | None = None) -> NB201Table:
    """Load the NB201 table from ``path`` (default: ``default_table_path()``: the packaged
    table unless ``$HWNAS_NB201_TABLE`` names another)."""
    if path is None:
        path = default_table_path()
        if path is None:
            raise TableError(
                f"NB201 table not found: the packaged copy ({PACKAGED_TABLE}) is missing; "
                f"reinstall hwnas or set ${TABLE_ENV} to a table"
            )
    path = Path(path)
    if not path.is_file():
        where = f" (from ${TABLE_ENV})" if os.environ.get(TABLE_ENV) == str(path) else ""
        raise TableError(f"NB201 table {path}{where} does not exist")
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
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise TableError(f"{path}: column(s) {', '.join(repeated)} appear twice")
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
            columns[name] = _normalised_archs(values, path)
        elif name.endswith(SEED_SUFFIX):
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
    return NB201Table(path.resolve(), columns)


__all__ = [
    "PACKAGED_TABLE",
    "TABLE_ENV",
    "TABLE_NETWORK",
    "NB201Table",
    "TableError",
    "dataset_columns",
    "default_table_path",
    "load_table",
]
