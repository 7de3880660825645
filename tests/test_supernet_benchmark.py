"""The supernet ranking benchmark end to end at toy size (slow: it trains ~20 networks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.supernet_ranking import main


@pytest.mark.slow
def test_quick_run_writes_the_table_and_reuses_its_caches(tmp_path: Path, capsys) -> None:
    args = ["--quick", "--out", str(tmp_path), "--predictor", "", "--jobs", "1"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "supernet_ranking.json").read_text())
    names = [row["name"] for row in summary["supernets"]]
    assert names == ["gaea", "gaea+landmarks", "darts", "darts+landmarks"]
    for row in summary["supernets"]:
        assert len(row["kendall"]) == 1 and -1.0 <= row["kendall"][0] <= 1.0
    assert summary["ground_truth"]["cells"] == 8
    table = (tmp_path / "table.md").read_text()
    assert "| gaea+landmarks |" in table
    capsys.readouterr()
    assert main(args) == 0  # everything cached: nothing retrains
    err = capsys.readouterr().err
    assert "ground truth: cached" in err and "4 cached, 0 to train" in err
