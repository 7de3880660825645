"""A cheap stand-in for ``hwnas.trials.loop.TrialRun`` that the real trial entrypoint drives.

The master simulation (custom searcher, 0.37) and the REST double (SDK backend) both run
``hwnas.trials.train.run_trial`` -- the code a Determined trial runs -- with
``trial_factory=FakeTrials(...)``: training is replaced by a learning curve per architecture,
everything else (operations or ``target_length``, checkpoints every epoch, progress, the
validation report, the failure report before ``det.InvalidHP``) is the trial's own code.

``FakeTrials`` also checks what a trial can only get right if the master side is right: the
hparams parse under the trial contract, and a new process resumes from exactly the epoch the
same architecture last checkpointed (``trained_to``), from a checkpoint of that architecture.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwnas.trials.errors import InvalidTrial, TrialError
from hwnas.trials.hparams import HParamsError, parse_hparams

#: Failure kinds a planned trial can show, as what its *process* does:
#: ``crash``: raises (non-zero exit; Determined restarts it up to ``max_restarts``);
#: ``invalid``: the architecture is rejected (the trial reports why, raises ``det.InvalidHP``
#: and exits 0 at once); ``invalid_hang``: the same but the process outlives the master's
#: 10 s grace period; ``exit``: the process exits 0 in the middle of its work without
#: reporting (what a user-requested stop looks like to the master).
FAILURE_KINDS = ("crash", "invalid", "invalid_hang", "exit")


class HangingInvalidTrial(InvalidTrial):
    """An invalid trial whose process does not exit after reporting ``InvalidHP``."""

    hang = True


def unit(arch: str) -> float:
    """A stable number in [0, 1) per architecture (its quality in the fake learning curve)."""
    return int(hashlib.sha256(arch.encode()).hexdigest()[:8], 16) / 2**32


def tradeoff_metrics(arch: str, epochs: int) -> dict[str, Any]:
    """Like ``curve_metrics`` but accuracy and latency independent per architecture (a real
    trade-off: fronts of several members, rungs whose order changes as results arrive)."""
    metrics = curve_metrics(arch, epochs)
    metrics["latency_ms"] = 1.0 + 6.0 * unit(arch + "/latency")
    return metrics


def conv_metrics(arch: str, epochs: int) -> dict[str, Any]:
    """NB201 only: convolutions raise accuracy and latency (a trade-off along the front), and
    rung order shifts with length (as tests/test_searchers_method.py's objective)."""
    from hwnas.spaces import get_space

    e = get_space("nb201").encode(arch, "onehot").reshape(6, 5)  # edges x (none..pool)
    acc = 0.3 + 0.4 * e[:, 3].sum() / 6 + 0.2 * e[:, 2].sum() / 6 + 0.1 * unit(arch)
    metrics = curve_metrics(arch, epochs)
    metrics["validation_accuracy"] = float(acc * (1 - 0.5 * 0.5**epochs))
    metrics["latency_ms"] = float(1.0 + e[:, 3].sum() + 0.4 * e[:, 2].sum() + 0.1 * e[:, 4].sum())
    return metrics


def curve_metrics(arch: str, epochs: int) -> dict[str, Any]:
    """What a trial reports at ``epochs``: floats, an int, a string, a bool, a NaN."""
    x = unit(arch)
    return {
        "validation_accuracy": 0.3 + 0.6 * x * (1.0 - 0.6**epochs),
        "validation_loss": 2.0 - x,
        "latency_ms": 1.0 + 6.0 * (1.0 - x),
        "latency_unstable": False,
        "latency_backend": "ort-cpu",
        "epochs": epochs,
        "params": 12345,
        "flops": float("nan") if x < 0.2 else 1.0e6,
        "arch": arch,
    }


class CurveTrial:
    """``TrialRun``'s surface (``epoch``, ``latency``, ``train_to``, ``metrics``, ``save``,
    ``restore``) over ``curve_metrics``."""

    def __init__(self, owner: FakeTrials, hparams: dict[str, Any]) -> None:
        self.owner = owner
        self.hp = parse_hparams(hparams)  # the trial contract, exactly as TrialRun checks it
        self.arch = self.hp.arch
        self.epoch = 0
        self.latency: dict[str, Any] | None = None
        owner.built.append(dict(hparams))
        if self.arch not in owner.order:
            owner.order.append(self.arch)

    def restore(self, directory: str | Path) -> bool:
        state = json.loads((Path(directory) / "fake_checkpoint.json").read_text())
        assert state["arch"] == self.arch, "resumed from another trial's checkpoint"
        self.epoch, self.latency = int(state["epoch"]), state["latency"]
        return True

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / "fake_checkpoint.json"
        state = {"arch": self.arch, "epoch": self.epoch, "latency": self.latency}
        path.write_text(json.dumps(state))
        self.owner.trained_to[self.arch] = self.epoch
        return path

    def train_to(self, target: int, *, after_epoch: Any = None, should_stop: Any = None) -> bool:
        # A new process starts from the architecture's last checkpoint, never from scratch.
        assert self.epoch == self.owner.trained_to.get(self.arch, 0), (
            self.arch,
            self.epoch,
            self.owner.trained_to,
        )
        if target > self.hp.training.max_epochs:
            raise HParamsError(f"length {target} > max_epochs {self.hp.training.max_epochs}")
        self.owner.runs.append((self.arch, self.epoch, target))
        kind = self.owner.failure_for(self.arch, target)
        if kind == "crash":
            raise RuntimeError(f"simulated crash of {self.arch} (CUDA error, node lost, ...)")
        if kind == "invalid":
            raise InvalidTrial(f"architecture {self.arch} rejected (simulated)")
        if kind == "invalid_hang":
            raise HangingInvalidTrial(f"architecture {self.arch} rejected (simulated, hangs)")
        if kind == "exit":
            raise SystemExit(0)
        if kind is not None:
            raise TrialError(f"unknown planned failure {kind!r}")
        while self.epoch < target:
            self.epoch += 1
            if after_epoch is not None:
                after_epoch(self.epoch, {"train_loss": 1.0 / self.epoch, "lr": 0.05})
        return True

    def metrics(self) -> dict[str, Any]:
        if self.latency is None:
            self.latency = {"latency_ms": self.owner.metrics(self.arch, 1)["latency_ms"]}
        return self.owner.metrics(self.arch, self.epoch)


class FakeTrials:
    """A ``trial_factory`` for ``run_trial``: ``FakeTrials(fail={n: kind})`` fails the n-th
    distinct architecture (0-based, in order of first build) with ``kind`` (see
    ``FAILURE_KINDS``) every time it trains; ``fail_once`` only the first time."""

    def __init__(
        self,
        fail: dict[int, str] | None = None,
        *,
        fail_once: dict[int, str] | None = None,
        metrics: Callable[[str, int], dict[str, Any]] = curve_metrics,
    ) -> None:
        for kind in [*(fail or {}).values(), *(fail_once or {}).values()]:
            assert kind in FAILURE_KINDS, kind
        self.metrics = metrics
        self.fail = dict(fail or {})
        self.fail_once = dict(fail_once or {})
        self.order: list[str] = []
        self.trained_to: dict[str, int] = {}
        self.runs: list[tuple[str, int, int]] = []  # (arch, from epoch, to epoch)
        self.built: list[dict[str, Any]] = []  # hparams of every process start
        self.failed: list[tuple[str, str]] = []
        #: Extra failures set by a test: arch -> kind (checked before the plan).
        self.override: dict[str, str] = {}

    def __call__(self, hparams: dict[str, Any]) -> CurveTrial:
        return CurveTrial(self, hparams)

    def failure_for(self, arch: str, target: int) -> str | None:
        index = self.order.index(arch)
        kind = self.override.pop(arch, None) or self.fail.get(index)
        if kind is None and index in self.fail_once:
            kind = self.fail_once.pop(index)
        if kind is not None:
            self.failed.append((arch, kind))
        return kind


__all__ = [
    "FAILURE_KINDS",
    "CurveTrial",
    "FakeTrials",
    "HangingInvalidTrial",
    "conv_metrics",
    "curve_metrics",
    "tradeoff_metrics",
    "unit",
]
