"""Shared fixtures: the NB201 table (the packaged copy, or ``$HWNAS_NB201_TABLE``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.spaces.nb201_table import default_table_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def nb201_table_path() -> Path | None:
    """``$HWNAS_NB201_TABLE`` if set, else the table shipped in ``spaces/data/``."""
    return default_table_path()


@pytest.fixture(scope="session")
def nb201_table_file() -> Path:
    path = nb201_table_path()
    if path is None or not path.is_file():
        pytest.fail(f"NB201 table not found at {path}: spaces/data/nb201_cifar.csv.gz ships it")
    return path


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is faster than two on a shared 2-core machine; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
