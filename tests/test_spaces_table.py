"""NB201 table loader: columns, lookups, devices, speed and errors that name the file."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from hwnas.spaces import get_space
from hwnas.spaces.nb201_table import (
    PACKAGED_TABLE,
    NB201Table,
    TableError,
    default_table_path,
    load_table,
)

#: Two valid cells for small hand-written tables.
A = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
B = "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


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
    assert table.datasets == ["c10", "c100"]
    assert table.dataset_columns("c100") == ("c100_valid", "c100_valid_seeds", "c100_test")
    with pytest.raises(KeyError, match=r"dataset 'in16' needs column 'in16_valid'.*c10, c100"):
        table.dataset_columns("in16")


def test_the_package_ships_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaded by default, with its notice beside it; the environment variable overrides it."""
    monkeypatch.delenv("HWNAS_NB201_TABLE", raising=False)
    assert default_table_path() == PACKAGED_TABLE
    assert (PACKAGED_TABLE.parent / "NOTICE.md").read_text().count("MIT") >= 2
    assert load_table().num_rows == 15625
    monkeypatch.setenv("HWNAS_NB201_TABLE", "/no/such/table.csv.gz")
    with pytest.raises(TableError, match=r"table\.csv\.gz \(from \$HWNAS_NB201_TABLE\) does not"):
        load_table()


def test_rows_and_lookup(table: NB201Table) -> None:
    space = get_space("nb201")
    assert set(table["arch_str"]) == set(space.enumerate())
    arch = table["arch_str"][1]
    assert table.index_of(arch) == 1 == table.index_of(f"  {arch} ")
    reordered = "|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|skip_connect~0|"
    assert table.index_of(reordered + "nor_conv_3x3~1|") == 1
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
    bad = _write(tmp_path / "cols.csv.gz", "idx,arch\n0,x\n")
    with pytest.raises(TableError, match=r"cols\.csv\.gz: missing column\(s\) arch_str"):
        load_table(bad)
    twice = _write(tmp_path / "twice.csv.gz", "arch_str,c10_valid,c10_valid\n")
    with pytest.raises(TableError, match=r"twice\.csv\.gz: column\(s\) c10_valid appear twice"):
        load_table(twice)
    header = "idx,arch_str,c10_valid,c10_valid_seeds,params_mb\n"
    short = _write(tmp_path / "short.csv.gz", header + f"0,{A},1.0,1;2\n")
    with pytest.raises(TableError, match=r"short\.csv\.gz:2: 4 fields"):
        load_table(short)
    word = _write(tmp_path / "word.csv.gz", header + f"0,{A},high,1;2,0.1\n")
    with pytest.raises(TableError, match=r"word\.csv\.gz:2: column 'c10_valid'"):
        load_table(word)
    seeds = _write(tmp_path / "seeds.csv.gz", header + f"0,{A},1.0,1;x,0.1\n")
    with pytest.raises(TableError, match=r"seeds\.csv\.gz:2: column 'c10_valid_seeds'"):
        load_table(seeds)
    arch = _write(tmp_path / "arch.csv.gz", header + f"0,{A},1.0,1,0.1\n1,|conv~0|,1.0,1,0.1\n")
    with pytest.raises(TableError, match=r"arch\.csv\.gz:3: column 'arch_str': .*'\|conv~0\|'"):
        load_table(arch)
    again = _write(tmp_path / "again.csv.gz", header + f"0,{A},1.0,1,0.1\n1,{A},1.0,1,0.1\n")
    with pytest.raises(TableError, match=r"again\.csv\.gz:3: cell .* repeats line 2"):
        load_table(again)
    notgz = tmp_path / "plain.csv.gz"
    notgz.write_text(header)
    with pytest.raises(TableError, match=r"plain\.csv\.gz: cannot read"):
        load_table(notgz)
    ok = _write(tmp_path / "ok.csv.gz", header + f"0,{A},1.0,1;2,0.1\n1,{B},,3,0.2\n")
    small = load_table(ok)
    assert small.num_rows == 2 and np.isnan(small["c10_valid"][1])
    assert [list(s) for s in small["c10_valid_seeds"]] == [[1.0, 2.0], [3.0]]


def test_any_dataset_prefix_with_per_seed_values(tmp_path: Path) -> None:
    """A third dataset's ``<prefix>_valid_seeds`` is parsed like the others (it used to fail
    with "non-number '28.333;27.367;28.933'"), and any ``lat_ms_<device>`` is a device."""
    header = "arch_str,in16_valid,in16_valid_seeds,in16_test,lat_ms_my_board\n"
    rows = f"{A},28.2,28.333;27.367;28.933,28.5,3.5\n{B},20.0,20.0,19.5,1.25\n"
    table = load_table(_write(tmp_path / "mine.csv.gz", header + rows))
    assert table.datasets == ["in16"] and table.devices == ["my_board"]
    assert list(table["in16_valid_seeds"][0]) == [28.333, 27.367, 28.933]
    assert list(table.latency("my_board")) == [3.5, 1.25]
