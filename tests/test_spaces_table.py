"""NB201 table loader: columns, lookups, devices, speed and errors that name the file."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from hwnas.spaces import get_space
from hwnas.spaces.nb201_table import NB201Table, TableError, default_table_path, load_table


@pytest.fixture(scope="module")
def table(nb201_table_file: Path) -> NB201Table:
    return load_table(nb201_table_file)


def test_loads_fast_and_complete(nb201_table_file: Path) -> None:
    start = time.process_time()
    table = load_table(nb201_table_file)
    assert time.process_time() - start < 2.0
    assert table.num_rows == 15625
    assert np.array_equal(table["idx"], np.arange(15625))
    assert "raspi4" in table.devices and "gold_6226" in table.devices
    assert len(table.devices) == 15
    assert table["c10_valid"].dtype == float and table["c10_valid"].shape == (15625,)


def test_rows_and_lookup(table: NB201Table) -> None:
    space = get_space("nb201")
    assert set(table["arch_str"]) == set(space.enumerate())
    arch = table["arch_str"][1]
    assert table.index_of(arch) == 1 == table.index_of(f"  {arch} ")
    row = table.row(arch)
    assert row == {**table.row(1)} and row["idx"] == 1
    seeds = row["c10_valid_seeds"]
    assert len(seeds) >= 2 and abs(np.mean(seeds) - row["c10_valid"]) < 0.01
    assert table.latency("raspi4")[1] == row["lat_ms_raspi4"]
    with pytest.raises(KeyError, match="not in the table"):
        table.index_of("|none~0|")
    with pytest.raises(KeyError, match="devices: 1080ti_1"):
        table.latency("tpu")
    with pytest.raises(IndexError):
        table.row(15625)


def test_default_path_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "t.csv.gz"
    fake.write_bytes(b"")
    monkeypatch.setenv("HWNAS_NB201_TABLE", str(fake))
    assert default_table_path() == fake.resolve()


def _write(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as f:
        f.write(text)
    return path


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="does not exist"):
        load_table(tmp_path / "missing.csv.gz")
    bad = _write(tmp_path / "cols.csv.gz", "idx,arch_str\n0,x\n")
    with pytest.raises(TableError, match=r"cols\.csv\.gz: missing column"):
        load_table(bad)
    header = "idx,arch_str,c10_valid,c10_valid_seeds,params_mb\n"
    short = _write(tmp_path / "short.csv.gz", header + "0,a,1.0,1;2\n")
    with pytest.raises(TableError, match=r"short\.csv\.gz:2: 4 fields"):
        load_table(short)
    word = _write(tmp_path / "word.csv.gz", header + "0,a,high,1;2,0.1\n")
    with pytest.raises(TableError, match=r"word\.csv\.gz:2: column 'c10_valid'"):
        load_table(word)
    seeds = _write(tmp_path / "seeds.csv.gz", header + "0,a,1.0,1;x,0.1\n")
    with pytest.raises(TableError, match=r"seeds\.csv\.gz:2: column 'c10_valid_seeds'"):
        load_table(seeds)
    notgz = tmp_path / "plain.csv.gz"
    notgz.write_text(header)
    with pytest.raises(TableError, match=r"plain\.csv\.gz: cannot read"):
        load_table(notgz)
    ok = _write(tmp_path / "ok.csv.gz", header + "0,a,1.0,1;2,0.1\n1,b,,3,0.2\n")
    small = load_table(ok)
    assert small.num_rows == 2 and np.isnan(small["c10_valid"][1])
    assert [list(s) for s in small["c10_valid_seeds"]] == [[1.0, 2.0], [3.0]]
