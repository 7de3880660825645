"""The ``hwnas space`` command, run as the installed executable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HWNAS = Path(sys.executable).with_name("hwnas")
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"


def hwnas(*args: str) -> subprocess.CompletedProcess[str]:
    if not HWNAS.exists():
        pytest.skip(f"{HWNAS} is not installed (pip install -e .)")
    return subprocess.run([str(HWNAS), *args], capture_output=True, text=True, timeout=120)


def test_info_json_and_text() -> None:
    res = hwnas("space", "info", "nb201", "--json", "--option", "C=8")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["size"] == 15625 and info["unique"] == 5425
    assert info["space_options"] == {"C": 8, "N": 5, "prune": True}
    text = hwnas("space", "info", "mobilenet")
    assert text.returncode == 0 and "101,559,956,668,416" in text.stdout
    assert "(not computed)" in text.stdout


def test_sample_reproducible_and_valid() -> None:
    a = hwnas("space", "sample", "mobilenet", "--n", "4", "--seed", "3")
    b = hwnas("space", "sample", "mobilenet", "--n", "4", "--seed", "3")
    assert a.returncode == 0 and a.stdout == b.stdout
    lines = a.stdout.splitlines()
    assert len(lines) == 4 and len(set(lines)) == 4
    check = hwnas("space", "validate", "mobilenet", lines[0])
    assert check.returncode == 0 and check.stdout.strip() == lines[0]


def test_validate() -> None:
    ok = hwnas("space", "validate", "nb201", f" {NB201_ARCH} ")
    assert ok.returncode == 0 and ok.stdout.strip() == NB201_ARCH
    bad = hwnas("space", "validate", "nb201", NB201_ARCH.replace("none~2", "conv~2"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert "unknown op 'conv'" in bad.stderr and "node 3" in bad.stderr
    opt = hwnas("space", "info", "nb201", "--option", "depth=3")
    assert opt.returncode == 2 and "depth" in opt.stderr
