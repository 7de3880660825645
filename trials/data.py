"""Datasets by name, a seeded validation split, and epoch batches whose order depends only on
(seed, epoch), so a resumed trial sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import copy
import logging
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwnas.contract import DataSettings
from hwnas.trials.data_paths import cifar_dir, missing_cifar_message
from hwnas.trials.errors import TrialError

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_SIZE = 16  # the 8x8 digits are upsampled 2x so a few stride-2 stages still fit


class DataError(TrialError):
    """A dataset is missing, malformed or needs a package that is not installed."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data: ``(C, H, W)`` input and the class count."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int


def derive_seed(seed: int, *stream: int) -> int:
    """An independent 63-bit seed for one named stream (split, init, epoch e, ...)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(2, np.uint64)[0] >> 1)


# Stream ids for ``derive_seed``: each consumer of randomness gets its own. BN_STREAM draws the
# batches of BatchNorm recalibration (``trials.batchnorm``), apart from the training order.
SPLIT_STREAM, INIT_STREAM, TRAIN_STREAM, EPOCH_STREAM = 1, 2, 3, 4
#: The split of a training set into two halves (bi-level weight-sharing search).
HALVES_STREAM = 5
BN_STREAM = 6


def split_halves(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint positions ``0..n-1``: ``round(n * fraction)`` in the first part."""
    first = round(n * fraction)
    if not 0 < first < n:
        raise DataError(f"splitting {n} training images at {fraction} leaves a part empty")
    order = np.random.default_rng(derive_seed(seed, HALVES_STREAM)).permutation(n)
    return np.sort(order[:first]), np.sort(order[first:])


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index arrays; the validation part is held out from training."""
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise DataError(f"data.val_fraction={val_fraction} leaves no training images out of {n}")
    order = np.random.default_rng(derive_seed(seed, SPLIT_STREAM)).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class TrialData:
    """Training and validation batches for one trial."""

    info: DatasetInfo
    train_size: int
    val_size: int

    def train_batches(self, epoch: int, batch_size: int, device: torch.device) -> Iterator[Batch]:
        """Shuffled, augmented, normalised batches for ``epoch`` (drops the ragged last one)."""
        raise NotImplementedError

    def sample_batches(self, seed: int, batch_size: int, device: torch.device) -> Iterator[Batch]:
        """Training batches as ``train_batches`` makes them, in an order (and augmentation)
        drawn from ``seed`` instead of the epoch's: for BatchNorm recalibration."""
        raise NotImplementedError

    def val_batches(self, batch_size: int, device: torch.device) -> Iterator[Batch]:
        """Normalised validation batches in a fixed order."""
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in one epoch (the last partial batch is dropped)."""
        return self.train_size // batch_size

    def split_train(self, fraction: float, seed: int) -> tuple[TrialData, TrialData]:
        """Two views whose training sets are disjoint parts of this one's (``fraction`` in
        the first) and which share its validation set: the weight and architecture halves
        of a bi-level weight-sharing search."""
        raise NotImplementedError(f"{type(self).__name__} cannot split its training set")


class InMemoryData(TrialData):
    """A dataset held as one tensor: batches are gathered and augmented whole, on the device.

    Augmentation (random crop with zero padding, optional horizontal flip) draws its numbers
    from a CPU generator seeded by (seed, epoch), so it is identical on CPU and GPU and does
    not depend on the global RNG or on worker processes.
    """

    def __init__(
        self,
        info: DatasetInfo,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        settings: DataSettings,
        seed: int,
        pad: int,
        flip: bool,
    ) -> None:
        self.info = info
        self._seed = seed
        self._pad = pad
        self._flip = flip
        train_idx, val_idx = split_indices(len(labels), settings.val_fraction, seed)
        if settings.train_subset is not None:
            train_idx = train_idx[: settings.train_subset]
        self._train_x, self._train_y = images[train_idx], labels[train_idx]
        self._val_x, self._val_y = images[val_idx], labels[val_idx]
        self.train_size, self.val_size = len(train_idx), len(val_idx)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._on: torch.device | None = None

    def split_train(self, fraction: float, seed: int) -> tuple[InMemoryData, InMemoryData]:
        parts = []
        for idx in split_halves(self.train_size, fraction, seed):
            part = copy.copy(self)
            part._train_x, part._train_y = self._train_x[idx], self._train_y[idx]
            part.train_size = len(idx)
            parts.append(part)
        return parts[0], parts[1]

    def _to(self, device: torch.device) -> None:
        # Keep the whole (small) dataset on the training device: no loader, no host copies.
        if self._on == device:
            return
        for name in ("_train_x", "_train_y", "_val_x", "_val_y", "_mean", "_std"):
            setattr(self, name, getattr(self, name).to(device))
        self._on = device

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values in [0, 1] (uint8 images are stored raw to save memory)."""
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def train_batches(self, epoch: int, batch_size: int, device: torch.device) -> Iterator[Batch]:
        return self.sample_batches(derive_seed(self._seed, EPOCH_STREAM, epoch), batch_size, device)

    def sample_batches(self, seed: int, batch_size: int, device: torch.device) -> Iterator[Batch]:
        self._to(device)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.train_size, generator=g)
        _, h, w = self.info.input_shape
        for start in range(0, self.train_size - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            shifts = torch.randint(0, 2 * self._pad + 1, (len(idx), 2), generator=g)
            flips = torch.rand(len(idx), generator=g) < 0.5
            idx = idx.to(device)
            x = self._to_float(self._train_x[idx])
            if self._pad:
                x = _random_crop(x, shifts.to(device), self._pad, h, w)
            if self._flip:
                x = torch.where(flips.to(device).view(-1, 1, 1, 1), x.flip(3), x)
            yield (x - self._mean) / self._std, self._train_y[idx]

    def val_batches(self, batch_size: int, device: torch.device) -> Iterator[Batch]:
        self._to(device)
        for start in range(0, self.val_size, batch_size):
            x = self._to_float(self._val_x[start : start + batch_size])
            yield (x - self._mean) / self._std, self._val_y[start : start + batch_size]


@dataclass(frozen=True)
class DataSource:
    """A decoded dataset before its split: images, labels, normalisation and augmentation."""

    info: DatasetInfo
    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    flip: bool

    def split(self, settings: DataSettings, seed: int) -> InMemoryData:
        """This trial's view: the seeded train/validation split (copies; the source stays)."""
        return InMemoryData(
            self.info,
            self.images,
            self.labels,
            self.mean,
            self.std,
            settings=settings,
            seed=seed,
            pad=self.pad,
            flip=self.flip,
        )


def _random_crop(x: torch.Tensor, shifts: torch.Tensor, pad: int, h: int, w: int) -> torch.Tensor:
    """Zero-pad by ``pad`` and cut each image's ``h x w`` window at its own (dy, dx) shift."""
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = shifts[:, 0:1] + torch.arange(h, device=x.device)  # (B, h)
    cols = shifts[:, 1:2] + torch.arange(w, device=x.device)  # (B, w)
    batch = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
    # Advanced indexing gives (B, h, w, C); move channels back in front.
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


# -- digits ------------------------------------------------------------------------------------
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as (float 1797 x 8 x 8 in 0..16, int labels).

    Read straight from the CSV that scikit-learn ships (what ``load_digits`` parses): importing
    ``sklearn.datasets`` costs ~1 s of CPU in every fresh trial process (scipy and friends).
    Falls back to ``load_digits`` when that file is not where this scikit-learn keeps it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",")
            if table.shape == (1797, 65):
                return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def _digits_source() -> DataSource:
    images_8, targets = _digits_arrays()
    images = torch.tensor(images_8, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        images, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False
    )
    labels = torch.tensor(targets, dtype=torch.long)
    info = DatasetInfo("digits", (1, DIGITS_SIZE, DIGITS_SIZE), 10)
    # Fixed constants (the whole set's statistics) so normalisation does not depend on the split.
    return DataSource(info, images, labels, (0.3052,), (0.3188,), pad=1, flip=False)


def load_digits_data(settings: DataSettings, seed: int) -> InMemoryData:
    """scikit-learn's offline 8x8 digits (1,797 images), upsampled to 1x16x16; light shifts."""
    return _digits_source().split(settings, seed)


# -- CIFAR in the standard python-pickle format --------------------------------------------------
class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR python batches that refuses every global but numpy's array
    reconstruction: the public format is a pickle, and an allow-list keeps a planted file from
    running code."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name}: not a CIFAR batch file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 N x 3 x 32 x 32, int64 N)."""
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"cannot read CIFAR batch {path}: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"{path} is not a CIFAR python batch (no b'data'/{label_key!r} keys)")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: expected data of shape (N, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_dir(root: Path, name: str) -> Path:
    """The directory holding the batch files: ``root`` itself or the archive's subfolder."""
    folder = cifar_dir(root, name)
    if folder is None:
        raise DataError(missing_cifar_message(root, name))
    return folder


def _download_cifar(root: Path, name: str) -> None:
    try:
        import torchvision
    except ModuleNotFoundError:
        raise DataError(
            f"data.download: true needs torchvision to fetch {name}; install it or place the "
            f"extracted python batches under data.root={str(root)!r}"
        ) from None
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    cls(str(root), train=True, download=True)


def load_cifar_data(settings: DataSettings, seed: int) -> InMemoryData:
    """CIFAR-10/100 training set from ``data.root`` (python-pickle batches); crop+flip."""
    return _cifar_source(settings).split(settings, seed)


def _cifar_source(settings: DataSettings) -> DataSource:
    name = settings.dataset
    if settings.root is None:
        raise DataError(f"data.root is required for dataset {name!r}")
    root = Path(settings.root).expanduser()
    if settings.download:
        _download_cifar(root, name)
    folder = _cifar_dir(root, name)
    if name == "cifar10":
        parts = [_read_cifar_batch(folder / f"data_batch_{i}", b"labels") for i in range(1, 6)]
        num_classes = 10
    else:
        parts = [_read_cifar_batch(folder / "train", b"fine_labels")]
        num_classes = 100
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{folder}: labels outside 0..{num_classes - 1}")
    info = DatasetInfo(name, (3, 32, 32), num_classes)
    return DataSource(info, images, labels, CIFAR_MEAN[name], CIFAR_STD[name], pad=4, flip=True)


# -- ImageNet-style folders ----------------------------------------------------------------------
class FolderData(TrialData):
    """``root/train/<class>/*.jpg`` through torchvision, decoded in DataLoader workers."""

    def __init__(self, settings: DataSettings, seed: int) -> None:
        try:
            import torchvision
            from torchvision import transforms
        except ModuleNotFoundError:
            raise DataError(
                "dataset 'imagefolder' needs torchvision (not installed); install torchvision "
                "or convert the images to the CIFAR python format"
            ) from None
        if settings.root is None:
            raise DataError("data.root is required for dataset 'imagefolder'")
        train_dir = Path(settings.root).expanduser() / "train"
        if not train_dir.is_dir():
            raise DataError(f"no {train_dir} directory (expected root/train/<class>/<image>)")
        size = settings.image_size
        normalise = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalise,
            ]
        )
        val_tf = transforms.Compose(
            [
                transforms.Resize(int(size * 8 / 7)),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                normalise,
            ]
        )
        train_set = torchvision.datasets.ImageFolder(str(train_dir), transform=train_tf)
        val_set = torchvision.datasets.ImageFolder(str(train_dir), transform=val_tf)
        train_idx, val_idx = split_indices(len(train_set), settings.val_fraction, seed)
        if settings.train_subset is not None:
            train_idx = train_idx[: settings.train_subset]
        self._train = torch.utils.data.Subset(train_set, train_idx.tolist())
        self._val = torch.utils.data.Subset(val_set, val_idx.tolist())
        self.info = DatasetInfo("imagefolder", (3, size, size), len(train_set.classes))
        self.train_size, self.val_size = len(train_idx), len(val_idx)
        self._seed = seed
        self._workers = settings.num_workers

    def split_train(self, fraction: float, seed: int) -> tuple[FolderData, FolderData]:
        parts = []
        for idx in split_halves(self.train_size, fraction, seed):
            part = copy.copy(self)
            part._train = torch.utils.data.Subset(self._train, idx.tolist())
            part.train_size = len(idx)
            parts.append(part)
        return parts[0], parts[1]

    def _loader(
        self, dataset: torch.utils.data.Dataset, batch_size: int, device: torch.device, **kw
    ) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self._workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            worker_init_fn=_seed_worker,
            **kw,
        )

    def train_batches(self, epoch: int, batch_size: int, device: torch.device) -> Iterator[Batch]:
        return self.sample_batches(derive_seed(self._seed, EPOCH_STREAM, epoch), batch_size, device)

    def sample_batches(self, seed: int, batch_size: int, device: torch.device) -> Iterator[Batch]:
        # The generator fixes both the shuffle and each worker's base seed for this pass.
        g = torch.Generator().manual_seed(seed)
        loader = self._loader(
            self._train, batch_size, device, shuffle=True, drop_last=True, generator=g
        )
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def val_batches(self, batch_size: int, device: torch.device) -> Iterator[Batch]:
        for x, y in self._loader(self._val, batch_size, device, shuffle=False):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a loader worker from torch's per-worker seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def load_data(settings: DataSettings, seed: int, cache: DataCache | None = None) -> TrialData:
    """The dataset named by ``settings.dataset``, split and ready to batch; ``cache`` keeps
    the decoded images for the next trial of the same process (a warm worker)."""
    if cache is not None:
        return cache.load(settings, seed)
    if settings.dataset == "digits":
        return load_digits_data(settings, seed)
    if settings.dataset in ("cifar10", "cifar100"):
        return load_cifar_data(settings, seed)
    return FolderData(settings, seed)


class DataCache:
    """Decoded in-memory datasets kept across the trials of one process (a warm worker): the
    files are read and decoded once, while every trial still gets its own seeded split, so a
    trial sees exactly the batches a fresh process would give it. Folder datasets are read
    lazily by their loaders and are not kept."""

    def __init__(self, max_sources: int = 2) -> None:
        self.max_sources = max_sources
        self._sources: dict[tuple[str, str | None], DataSource] = {}

    def load(self, settings: DataSettings, seed: int) -> TrialData:
        if settings.dataset not in ("digits", "cifar10", "cifar100"):
            return FolderData(settings, seed)
        key = (settings.dataset, settings.root)
        source = self._sources.pop(key, None)
        if source is None:
            digits = settings.dataset == "digits"
            source = _digits_source() if digits else _cifar_source(settings)
        self._sources[key] = source  # most recently used last
        while len(self._sources) > self.max_sources:
            del self._sources[next(iter(self._sources))]
        return source.split(settings, seed)
