"""The Determined entrypoint under determined 0.37.0's real Core API, off-cluster.

The master's side is played by subclasses of Determined's own dummy contexts (the classes
``det.core.init()`` returns off-cluster), overriding only what a master would drive: the
operation stream, preemption, and where reports and checkpoints are recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import determined as det
import pytest
import torch
from determined import core

from hwnas.trials.loop import TIMING_KEYS  # wall-clock metrics, never equal across runs
from hwnas.trials.train import run_trial

REPO = Path(__file__).resolve().parents[1]
NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Trials set torch's thread count for their process; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def hparams(max_epochs: int, arch: str = NB201_ARCH) -> dict[str, Any]:
    return {
        "space": "nb201",
        "space_options": {"C": 8, "N": 1},
        "arch": arch,
        "seed": 5,
        "data": {"dataset": "digits", "train_subset": 256},
        "training": {"max_epochs": max_epochs, "batch_size": 64, "cpu_threads": 1},
        "latency": {"enabled": False},
    }


class RecordingOperation(core.DummySearcherOperation):
    """Determined's dummy operation, keeping what the trial reported."""

    def __init__(self, length: int) -> None:
        super().__init__(length, is_chief=True)
        self.progress: list[float] = []
        self.completed: Any = None

    def report_progress(self, length: float) -> None:
        super().report_progress(length)
        self.progress.append(length)

    def report_completed(self, searcher_metric: Any) -> None:
        super().report_completed(searcher_metric)
        # What reaches the custom searcher's on_validation_completed: JSON through the master.
        self.completed = json.loads(det.util.json_encode(searcher_metric))


class ScriptedSearcher(core.DummySearcherContext):
    """Stands in for the master's operation stream: ValidateAfter lengths in order."""

    def __init__(self, dist: core.DistributedContext, lengths: list[int]) -> None:
        super().__init__(dist)
        self.ops = [RecordingOperation(n) for n in lengths]

    def operations(self, *args: Any, **kwargs: Any) -> Iterator[core.SearcherOperation]:
        for op in self.ops:
            yield op
            if not op._completed:  # the real SearcherContext's own check
                raise RuntimeError("you must call op.report_completed() on each operation")


class RecordingTrain(core.DummyTrainContext):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[tuple[str, int, dict[str, Any]]] = []
        self.progress: list[float] = []

    def _report_trial_metrics(self, group: str, steps_completed: int, metrics: dict, *a) -> None:
        if group == "validation":
            self._get_serializable_metrics(metrics)  # the real context's check: no None values
        json.loads(det.util.json_encode(metrics))  # what goes on the wire
        self.reports.append((group, steps_completed, metrics))

    def report_progress(self, progress: float) -> None:
        # The real TrainContext (0.37 and 0.38) refuses progress outside [0, 1].
        assert 0.0 <= progress <= 1.0, progress
        self.progress.append(progress)


class NoSearcher:
    """What a 0.38 trial without ``searcher.max_length`` gets: any use is an error
    (``SearcherContextMissing`` in determined 0.38.1's core/_searcher.py)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the trial used core_context.searcher.{name}")


class RecordingCheckpoint(core.DummyCheckpointContext):
    def __init__(self, dist: core.DistributedContext, storage_manager: Any) -> None:
        super().__init__(dist, storage_manager)
        self.stored: list[tuple[str, dict[str, Any]]] = []

    def _report_checkpoint(self, storage_id: str, resources=None, metadata=None) -> None:
        super()._report_checkpoint(storage_id, resources, metadata)
        self.stored.append((storage_id, dict(metadata or {})))


class PreemptAfter(core.DummyPreemptContext):
    """Preemption signalled after ``calls`` checks (as the master would, mid-operation)."""

    def __init__(self, dist: core.DistributedContext, calls: int) -> None:
        super().__init__(dist)
        self.calls_left = calls

    def should_preempt(self, auto_ack: bool = True) -> bool:
        super().should_preempt(auto_ack)
        self.calls_left -= 1
        return self.calls_left < 0


def core_context(
    storage: Path, lengths: list[int], preempt_after: int | None = None
) -> core.Context:
    """``det.core.init()`` off-cluster, with the master's side scripted."""
    assert det.get_cluster_info() is None
    ctx = det.core.init(checkpoint_storage=str(storage))
    ctx.searcher = ScriptedSearcher(ctx.distributed, lengths)
    ctx.train = RecordingTrain()
    ctx.checkpoint = RecordingCheckpoint(ctx.distributed, ctx.checkpoint._storage_manager)
    if preempt_after is not None:
        ctx.preempt = PreemptAfter(ctx.distributed, preempt_after)
    return ctx


def untimed(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def test_operations_of_increasing_length(tmp_path: Path) -> None:
    ctx = core_context(tmp_path, [1, 3, 5])
    with ctx:
        run_trial(ctx, hparams(max_epochs=5), latest_checkpoint=None)
    ops = ctx.searcher.ops
    assert [op.completed["epochs"] for op in ops] == [1, 3, 5]
    assert [op.progress for op in ops] == [[1.0, 1.0], [2.0, 3.0, 3.0], [4.0, 5.0, 5.0]]
    for op in ops:
        metrics = op.completed
        assert 0.0 <= metrics["validation_accuracy"] <= 1.0
        assert metrics["params"] > 0 and metrics["flops"] > 0
        assert metrics["arch"] == NB201_ARCH
    reports = ctx.train.reports
    assert [s for g, s, _ in reports if g == "training"] == [1, 2, 3, 4, 5]
    assert [s for g, s, _ in reports if g == "validation"] == [1, 3, 5]
    assert [m["steps_completed"] for _, m in ctx.checkpoint.stored] == [1, 2, 3, 4, 5]
    # Each stored checkpoint is a directory under the storage path with our checkpoint file.
    for storage_id, _ in ctx.checkpoint.stored:
        assert (tmp_path / storage_id / "checkpoint.pt").is_file()


def test_preempted_trial_resumes_from_core_api_checkpoint_bitwise(tmp_path: Path) -> None:
    straight = core_context(tmp_path / "straight", [3])
    with straight:
        run_trial(straight, hparams(max_epochs=3), latest_checkpoint=None)

    first = core_context(tmp_path / "preempted", [3], preempt_after=0)
    with first:
        run_trial(first, hparams(max_epochs=3), latest_checkpoint=None)
    assert first.searcher.ops[0].completed is None  # stopped after epoch 1, op not completed
    assert [m["steps_completed"] for _, m in first.checkpoint.stored] == [1]

    latest = first.checkpoint.stored[-1][0]
    second = core_context(tmp_path / "preempted", [3])
    with second:
        run_trial(second, hparams(max_epochs=3), latest_checkpoint=latest)
    assert [s for g, s, _ in second.train.reports if g == "training"] == [2, 3]
    assert untimed(second.searcher.ops[0].completed) == untimed(straight.searcher.ops[0].completed)


BAD_ARCH = "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"


def test_invalid_architecture_reports_why_then_exits_through_invalid_hp(tmp_path: Path) -> None:
    ctx = core_context(tmp_path, [1])
    # core.Context.__exit__ reports the early exit and converts InvalidHP into exit(0).
    with pytest.raises(SystemExit) as info, ctx:
        run_trial(ctx, hparams(max_epochs=1, arch=BAD_ARCH), latest_checkpoint=None)
    assert info.value.code == 0
    # The 0.37 master forwards no reason for an InvalidHP exit (only trialClosed): the trial
    # completes its operation with the failed result dict first, so the searcher learns why.
    completed = ctx.searcher.ops[0].completed
    assert completed["ok"] is False and completed["kind"] == "invalid"
    assert "bogus" in completed["message"]


def result_reports(ctx: core.Context) -> list[tuple[int, dict[str, Any]]]:
    """The run's result reports (group hwnas_result), decoded."""
    return [(s, json.loads(m["result"])) for g, s, m in ctx.train.reports if g == "hwnas_result"]


def test_target_length_from_hparams_trains_once_without_the_searcher(tmp_path: Path) -> None:
    """The SDK backend's runs: the length comes from hparams, core.searcher is never used."""
    ctx = core_context(tmp_path, [])
    ctx.searcher = NoSearcher()
    with ctx:
        run_trial(ctx, {**hparams(max_epochs=3), "target_length": 2}, latest_checkpoint=None)
    reports = ctx.train.reports
    assert [s for g, s, _ in reports if g == "training"] == [1, 2]
    assert [s for g, s, _ in reports if g == "validation"] == [2]
    assert ctx.train.progress == [0.5, 1.0]
    [(steps, result)] = result_reports(ctx)
    assert steps == 2 and result["ok"] is True
    metrics = result["metrics"]
    assert metrics["epochs"] == 2 and metrics["arch"] == NB201_ARCH
    [validation] = [m for g, _, m in reports if g == "validation"]
    assert metrics["validation_accuracy"] == validation["validation_accuracy"]

    # The next run of the same trial (a promotion) resumes from the first run's checkpoint.
    latest = ctx.checkpoint.stored[-1][0]
    again = core_context(tmp_path, [])
    again.searcher = NoSearcher()
    with again:
        run_trial(again, {**hparams(max_epochs=3), "target_length": 3}, latest_checkpoint=latest)
    assert [s for g, s, _ in again.train.reports if g == "training"] == [3]
    assert again.train.progress == [1.0]
    assert result_reports(again)[0][1]["metrics"]["epochs"] == 3


def test_target_length_run_reports_an_invalid_architecture_as_its_result(tmp_path: Path) -> None:
    ctx = core_context(tmp_path, [])
    ctx.searcher = NoSearcher()
    bad = {**hparams(max_epochs=1, arch=BAD_ARCH), "target_length": 1}
    with pytest.raises(SystemExit) as info, ctx:
        run_trial(ctx, bad, latest_checkpoint=None)
    assert info.value.code == 0
    [(steps, result)] = result_reports(ctx)
    assert steps == 0 and result["ok"] is False and result["kind"] == "invalid"


def test_entrypoint_runs_off_cluster_as_a_process(tmp_path: Path) -> None:
    hp_file = tmp_path / "hparams.json"
    hp_file.write_text(json.dumps(hparams(max_epochs=2)))
    storage = tmp_path / "checkpoints"
    command = [sys.executable, "-m", "hwnas.trials.train", "--hparams", str(hp_file)]
    command += ["--checkpoint-storage", str(storage), "--length", "2"]
    proc = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    marker = "SearcherOperation Complete: searcher_metric="
    line = next(ln for ln in proc.stderr.splitlines() if marker in ln)
    metrics = json.loads(line.split(marker, 1)[1])
    assert metrics["epochs"] == 2
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0
    steps = sorted(
        json.loads(p.read_text())["steps_completed"] for p in storage.glob("*/metadata.json")
    )
    assert steps == [1, 2]


def test_off_cluster_flags_need_hparams() -> None:
    from hwnas.trials.train import main

    with pytest.raises(SystemExit) as info:
        main(["--length", "1"])
    assert info.value.code == 2  # argparse usage error naming --hparams
