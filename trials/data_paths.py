"""Where each dataset's files live, checked without loading them.

Torch-free, so a search can check before any trial that its trials will find their data
(``hwnas.driver.preflight``); ``hwnas.trials.data`` loads from the same places.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hwnas.contract import DataSettings

#: The archive's folder name of each CIFAR dataset, and the batch file that marks it.
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_MARKERS = {"cifar10": "data_batch_1", "cifar100": "train"}


def cifar_dir(root: Path, name: str) -> Path | None:
    """The directory holding ``name``'s python batches: ``root`` itself or the archive's
    subfolder; ``None`` when neither has them."""
    for candidate in (root, root / CIFAR_FOLDERS[name]):
        if (candidate / CIFAR_MARKERS[name]).is_file():
            return candidate
    return None


def missing_cifar_message(root: Path, name: str) -> str:
    return (
        f"no {name} python batches under {root} (looked for {root}/{CIFAR_FOLDERS[name]}); "
        "set data.root to the extracted archive, or data.download: true with torchvision"
    )


def data_problem(settings: DataSettings) -> tuple[str, str] | None:
    """``(field, why)`` when a trial could not find its data here, else ``None``."""
    name = settings.dataset
    if name == "digits":  # ships with scikit-learn, a dependency
        return None
    needs_torchvision = name == "imagefolder" or settings.download
    if needs_torchvision and importlib.util.find_spec("torchvision") is None:
        field = "data.dataset" if name == "imagefolder" else "data.download"
        return field, f"dataset {name!r} needs torchvision here, which is not installed"
    if settings.root is None:
        return "data.root", f"data.root is required for dataset {name!r}"
    root = Path(settings.root).expanduser()
    if name in CIFAR_FOLDERS:
        if settings.download or cifar_dir(root, name) is not None:
            return None
        return "data.root", missing_cifar_message(root, name)
    train_dir = root / "train"
    if not train_dir.is_dir():
        return "data.root", f"no {train_dir} directory (expected root/train/<class>/<image>)"
    return None


__all__ = ["CIFAR_FOLDERS", "cifar_dir", "data_problem", "missing_cifar_message"]
