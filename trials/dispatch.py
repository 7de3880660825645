"""Which trial a hyperparameter dict asks for: a stand-alone architecture (``TrialRun``) or a
weight-sharing supernet (``kind: supernet``, ``SupernetRun``). Both have the same interface,
so the local backend's child and the Core API entrypoint serve either."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_run(hparams: dict[str, Any]) -> Any:
    """A ``TrialRun`` or a ``SupernetRun`` for ``hparams``."""
    from hwnas.trials.supernet.settings import is_supernet

    if is_supernet(hparams):
        from hwnas.trials.supernet.run import SupernetRun

        return SupernetRun(hparams)
    from hwnas.trials.loop import TrialRun

    return TrialRun(hparams)


def train_to(
    hparams: dict[str, Any], target_epochs: int, checkpoint_dir: str | Path
) -> dict[str, Any]:
    """Resume from ``checkpoint_dir``, train to ``target_epochs``, return the metrics dict."""
    from hwnas.trials.supernet.settings import is_supernet

    if is_supernet(hparams):
        from hwnas.trials.supernet.run import train_supernet_to

        return train_supernet_to(hparams, target_epochs, checkpoint_dir)
    from hwnas.trials.loop import train_to as train_architecture_to

    return train_architecture_to(hparams, target_epochs, checkpoint_dir)


__all__ = ["make_run", "train_to"]
