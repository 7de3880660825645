"""Datasets: seeded splits, epoch batches that depend only on (seed, epoch), CIFAR's format."""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.contract import DataSettings
from hwnas.trials.data import (
    DataError,
    _random_crop,
    load_data,
    split_indices,
)

CPU = torch.device("cpu")


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(100, 0.2, seed=1)
    assert len(val) == 20 and len(train) == 80
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    again = split_indices(100, 0.2, seed=1)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, split_indices(100, 0.2, seed=2)[1])


def test_digits_shape_and_epoch_batches_depend_only_on_seed_and_epoch() -> None:
    data = load_data(DataSettings(dataset="digits"), seed=4)
    assert data.info.input_shape == (1, 16, 16) and data.info.num_classes == 10
    assert data.train_size + data.val_size == 1797
    first = list(data.train_batches(3, 64, CPU))
    assert len(first) == data.train_size // 64  # ragged last batch dropped
    # Another loader instance (as in a resumed process) yields the same epoch-3 batches.
    again = list(load_data(DataSettings(dataset="digits"), seed=4).train_batches(3, 64, CPU))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    other = next(data.train_batches(4, 64, CPU))
    assert not torch.equal(first[0][1], other[1])
    x, _ = next(data.val_batches(500, CPU))
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # normalised


def test_random_crop_shifts_each_image_by_its_own_offset() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    shifts = torch.tensor([[2, 2], [0, 1]])  # pad 2: (2, 2) is the identity crop
    out = _random_crop(x, shifts, pad=2, h=4, w=4)
    assert torch.equal(out[0], x[0])
    # (0, 1): two zero rows on top, one zero column on the left.
    assert torch.equal(out[1, 0, :2], torch.zeros(2, 4))
    assert torch.equal(out[1, 0, 2:, 1:], x[1, 0, :2, :3])


def _write_batch(path: Path, n: int, label_key: bytes, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, classes, n).tolist(),
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}", 20, b"labels", 10, seed=i)
    data = load_data(DataSettings(dataset="cifar10", root=str(tmp_path)), seed=0)
    assert data.info.input_shape == (3, 32, 32) and data.info.num_classes == 10
    assert (data.train_size, data.val_size) == (80, 20)
    x, y = next(data.train_batches(0, 16, CPU))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long


def test_cifar100_python_batches(tmp_path: Path) -> None:
    _write_batch(tmp_path / "train", 50, b"fine_labels", 100, seed=0)
    data = load_data(DataSettings(dataset="cifar100", root=str(tmp_path), val_fraction=0.1), 0)
    assert data.info.num_classes == 100 and data.val_size == 5


def test_cifar_loader_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo owned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_data(DataSettings(dataset="cifar10", root=str(tmp_path)), seed=0)


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.root is required"):
        load_data(DataSettings(dataset="cifar10"), seed=0)
    with pytest.raises(DataError, match="no cifar10 python batches"):
        load_data(DataSettings(dataset="cifar10", root=str(tmp_path)), seed=0)


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed"
)
def test_imagefolder_without_torchvision_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs torchvision"):
        load_data(DataSettings(dataset="imagefolder", root=str(tmp_path)), seed=0)
