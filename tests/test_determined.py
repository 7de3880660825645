"""The Determined adapter and runner, driven by Determined 0.37's real searcher classes through
``tests/master_simulation.py`` (no master can run here), with the real trial entrypoint
(``hwnas.trials.train``) serving each trial over ``tests/fake_trials.py``'s learning curves."""

from __future__ import annotations

import json
import logging
import math
import random
import uuid
from pathlib import Path
from typing import Any

import determined as det
import pytest

# The custom searcher needs determined.searcher: a 0.36-0.37 client (0.38 removed it; the SDK
# backend's tests cover 0.38).
pytest.importorskip("determined.searcher", reason="custom searchers need determined <= 0.37")
from determined import searcher as det_searcher
from determined.common.api import bindings
from fake_trials import FAILURE_KINDS, FakeTrials, conv_metrics, curve_metrics
from master_simulation import (
    ProtocolError,
    SearchStalled,
    SimulatedCrash,
    SimulatedMaster,
    SimulatedSearchRunner,
    to_struct_value,
)

from hwnas.driver.determined.adapter import (
    DET_EXIT_REASONS,
    EXIT_REASONS,
    METHOD_STATE_FILE,
    HwnasSearchMethod,
    decode_metrics,
)
from hwnas.driver.determined.experiment_config import build_trial_experiment, load_yaml_mapping
from hwnas.driver.determined.progress import SearchReporter
from hwnas.driver.determined.runner import (
    OPS_FILE,
    REPORT_DIR,
    det_operation_from_json,
    det_operation_to_json,
)
from hwnas.searchers import operations as ops
from hwnas.searchers.config import parse_config
from hwnas.searchers.method import SearchMethod

S = bindings.experimentv1State
__all__ = ["FakeTrials", "search_config"]  # used by test_determined_warm_start


def search_config(**overrides: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "det-test",
        "seed": 3,
        "space": {"name": "nb201", "options": {"C": 4, "N": 1}},
        "objectives": [
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "latency_ms", "goal": "minimize"},
        ],
        "constraints": ["latency_ms <= 5.5"],
        "early_stopping": {"name": "mo-asha", "min_length": 1, "max_length": 9},
        "budget": {"max_trials": 10, "max_concurrent": 3},
    }
    raw.update(overrides)
    return parse_config(raw)


class RecordingTrainContext(det.core.DummyTrainContext):
    """Determined's off-cluster train context, keeping what the searcher reports."""

    def __init__(self) -> None:
        super().__init__()
        self.validation: list[tuple[int, dict[str, Any]]] = []

    def report_validation_metrics(self, steps_completed: int, metrics: dict[str, Any]) -> None:
        self.validation.append((steps_completed, dict(metrics)))


@pytest.fixture
def core_context(tmp_path: Path) -> Any:
    ctx = det.core._dummy_init(checkpoint_storage=str(tmp_path / "storage"))
    ctx.train = RecordingTrainContext()
    return ctx


def make_runner(
    master: SimulatedMaster, config: Any, ctx: Any, **kwargs: Any
) -> SimulatedSearchRunner:
    return SimulatedSearchRunner(master, HwnasSearchMethod(SearchMethod(config)), ctx, **kwargs)


def outcome(method: SearchMethod) -> list[tuple[int, str, str, dict[str, Any]]]:
    return [(r.trial_id, r.arch, r.status, r.results) for r in method.records()]


def ignored_trial_ops(master: SimulatedMaster) -> list[dict[str, Any]]:
    """Work the master dropped (for a trial it no longer holds, or while stopping). A Close
    for a trial that already ended is harmless and not listed."""
    keys = ("createTrial", "trialOperation")
    return [op for op in master.ignored_ops if any(op.get(k) for k in keys)]


# -- translation ---------------------------------------------------------------------------
def test_operations_translate_to_determined_and_back_to_json() -> None:
    adapter = HwnasSearchMethod(SearchMethod(search_config()))
    hparams = {"space": "nb201", "arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"}
    out = adapter.to_determined(
        [ops.Create(4, hparams), ops.ValidateAfter(4, 3), ops.Close(4), ops.Shutdown(True)]
    )
    create, validate, close, shutdown = out
    assert isinstance(create, det_searcher.Create) and create.checkpoint is None
    assert json.loads(create.hparams) == hparams
    rid = create.request_id
    assert isinstance(rid, uuid.UUID) and adapter.trial_id(rid) == 4
    assert adapter.request_id(4) == rid
    assert (validate.request_id, validate.length) == (rid, 3)
    assert close.request_id == rid
    assert shutdown.failure is True and shutdown.cancel is False
    # What goes on the wire (Determined's own serialisation).
    wire = validate._to_searcher_operation().to_json(omit_unset=True)
    assert wire["trialOperation"]["validateAfter"] == {"requestId": str(rid), "length": "3"}
    # The pending-operations file round trip (JSON, never pickle).
    back = [det_operation_from_json(det_operation_to_json(op)) for op in out]
    assert [det_operation_to_json(op) for op in back] == [det_operation_to_json(op) for op in out]
    # And back, in the method's terms (Progress has no engine-neutral form).
    neutral = [ops.Create(4, hparams), ops.ValidateAfter(4, 3), ops.Close(4), ops.Shutdown(True)]
    assert adapter.from_determined([*out, det_searcher.Progress(0.5)]) == neutral
    with pytest.raises(ValueError, match="twice"):
        adapter.to_determined([ops.Create(4, hparams)])


def test_exit_reasons_map_one_to_one() -> None:
    assert set(EXIT_REASONS) == set(det_searcher.ExitedReason)
    assert set(DET_EXIT_REASONS) == set(ops.ExitReason)
    assert all(DET_EXIT_REASONS[EXIT_REASONS[r]] is r for r in det_searcher.ExitedReason)


def test_metrics_survive_the_masters_protobuf_trip() -> None:
    sent = {"validation_accuracy": 0.5, "params": 12, "flops": math.nan, "x": math.inf}
    got = decode_metrics(to_struct_value(sent))
    assert got["validation_accuracy"] == 0.5 and got["params"] == 12.0
    assert math.isnan(got["flops"]) and got["x"] == math.inf


# -- whole searches through the simulated master --------------------------------------------
def test_search_runs_to_shutdown_with_cumulative_lengths_and_resumed_trials(
    core_context: Any,
) -> None:
    config = search_config()
    trials = FakeTrials()
    master = SimulatedMaster(trials, seed=1)
    runner = make_runner(master, config, core_context)
    repo = Path(__file__).resolve().parents[1]
    trial_yaml = load_yaml_mapping(repo / "experiment_yamls" / "det_trials_gpu.yaml")
    runner.run_simulated(build_trial_experiment(trial_yaml, config), model_dir=str(repo))

    [(created, context_dir)] = runner.created_experiments  # the SDK call, once
    assert created["searcher"]["name"] == "custom" and created["entrypoint"].endswith("train")
    assert context_dir == str(repo)
    method = runner.search_method.method
    records = method.records()
    # The searcher's Shutdown stops the experiment; it ends once the last trial exited.
    assert runner.inactive_seen == [S.STOPPING_COMPLETED]
    assert master.finish() == S.COMPLETED
    assert len(records) == len(master.trials) == config.budget.max_trials
    assert all(t.closed and t.gone for t in master.trials.values())
    assert not ignored_trial_ops(master), "the master dropped operations of the searcher"
    # Every trial started at rung 1; promoted ones restarted (a process per ValidateAfter)
    # and resumed from their checkpoints (FakeTrials asserts the epoch it resumes from).
    lengths = {t.request_id: [v[0] for v in t.validations] for t in master.trials.values()}
    assert all(v[0] == 1 and v == sorted(set(v)) for v in lengths.values())
    promoted = [t for t in master.trials.values() if len(t.validations) > 1]
    assert promoted and all(t.process_starts == len(t.validations) for t in promoted)
    assert any(r.status == "completed" and r.length == 9 for r in records)
    # The metrics dict reached the method whole (numbers as floats, strings, bools, NaN).
    first = records[0].result_at(1)
    assert first["latency_backend"] == "ort-cpu" and first["latency_unstable"] is False
    assert first["params"] == 12345
    # Progress went to the master after each event, within [0, 1] and never going back.
    assert master.progress and master.progress == sorted(master.progress)
    assert master.progress[0] >= 0.0 and master.progress[-1] >= 0.9
    # Same seed, same search: a second run proposes the same architectures in the same order.
    again = make_runner(SimulatedMaster(FakeTrials(), seed=1), config, _fresh_context(core_context))
    again.run_simulated()
    assert outcome(again.search_method.method) == outcome(method)


def _fresh_context(ctx: Any) -> Any:
    storage = ctx.checkpoint._storage_manager._base_path
    fresh = det.core._dummy_init(checkpoint_storage=str(Path(storage).parent / "storage2"))
    fresh.train = RecordingTrainContext()
    return fresh


# -- how the 0.37 master ends trials and experiments (issue 12, part 1) -----------------------
@pytest.mark.parametrize(
    ("kind", "status", "events"),
    [
        # trial.go: past max_restarts -> ErrorState -> exit(Errored).
        ("crash", "failed", ["trialExitedEarly:UNSPECIFIED", "trialClosed"]),
        # InvalidHP and exit(0): UserRequestedStop -> CompletedState -> exit(nil): only
        # trialClosed; the searcher knows why from the trial's own report.
        ("invalid", "invalid", ["trialClosed"]),
        # Alive 10 s after InvalidHP: killed -> CanceledState -> exit(UserCanceled).
        ("invalid_hang", "invalid", ["trialExitedEarly:USER_CANCELED", "trialClosed"]),
        # A trial that stops on its own (exit 0 mid-operation): only trialClosed.
        ("exit", "canceled", ["trialClosed"]),
    ],
)
def test_trials_ending_early_are_filed_by_what_the_master_and_the_trial_report(
    core_context: Any, kind: str, status: str, events: list[str]
) -> None:
    config = search_config(budget={"max_trials": 6, "max_concurrent": 2})
    master = SimulatedMaster(FakeTrials(fail={1: kind}), seed=2)
    seen: list[tuple[str, str]] = []
    runner = make_runner(master, config, core_context)
    original = runner._get_operations

    def record(event: bindings.v1SearcherEvent) -> Any:
        if event.trialExitedEarly is not None:
            reason = event.trialExitedEarly.exitedReason.value.split("_REASON_")[1]
            seen.append((event.trialExitedEarly.requestId, f"trialExitedEarly:{reason}"))
        elif event.trialClosed is not None:
            seen.append((event.trialClosed.requestId, "trialClosed"))
        return original(event)

    runner._get_operations = record  # type: ignore[method-assign]
    runner.run_simulated()
    records = runner.search_method.method.records()
    assert master.finish() == S.COMPLETED
    assert [r.status for r in records].count(status) == 1
    assert len(records) == 6  # the failed trial's slot went to a new trial
    failed = next(r for r in records if r.status == status)
    assert failed.results == []
    failed_rid = str(runner.search_method.request_id(failed.trial_id))
    assert [e for rid, e in seen if rid == failed_rid] == events


def test_invalid_trials_count_toward_max_consecutive_failures(core_context: Any) -> None:
    """Filed as invalid (not canceled), two InvalidHP trials in a row end the search."""
    config = search_config(
        budget={"max_trials": 6, "max_concurrent": 1, "max_consecutive_failures": 2}
    )
    master = SimulatedMaster(FakeTrials(fail={0: "invalid", 1: "invalid_hang"}), seed=0)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    method = runner.search_method.method
    assert [r.status for r in method.records()] == ["invalid", "invalid"]
    assert "2 trials failed in a row" in method.abort_reason
    assert runner.inactive_seen == [S.STOPPING_ERROR]
    assert master.finish() == S.ERROR


def test_a_searcher_that_never_sends_shutdown_is_caught(core_context: Any) -> None:
    """0.37 skips its automatic shutdown for custom searches (searcher.go ``isCustom``): a
    searcher that forgets Shutdown leaves its experiment active forever."""

    class Forgetful(HwnasSearchMethod):
        def to_determined(self, operations: Any) -> list[det_searcher.Operation]:
            return [
                op for op in super().to_determined(operations)
                if not isinstance(op, det_searcher.Shutdown)
            ]  # fmt: skip

    config = search_config(budget={"max_trials": 3, "max_concurrent": 2})
    master = SimulatedMaster(FakeTrials(), seed=0)
    runner = SimulatedSearchRunner(master, Forgetful(SearchMethod(config)), core_context)
    with pytest.raises(SearchStalled, match="forget Shutdown"):
        runner.run_simulated()
    assert master.state == S.ACTIVE
    assert len(master.trials) == 3 and all(t.gone for t in master.trials.values())


def test_closing_finished_trials_at_once_cannot_end_the_search_early(core_context: Any) -> None:
    """One trial at a time, the second failing: every trial is closed as soon as it is done,
    and the search still runs all four (0.37 never ends a custom search on its own)."""
    config = search_config(
        early_stopping={"name": "none", "max_length": 9},
        budget={"max_trials": 4, "max_concurrent": 1},
    )
    master = SimulatedMaster(FakeTrials(fail={1: "crash"}))
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    statuses = [r.status for r in runner.search_method.method.records()]
    assert statuses == ["completed", "failed", "completed", "completed"]
    assert master.finish() == S.COMPLETED


def test_every_trial_failing_ends_the_search_as_an_error(core_context: Any) -> None:
    config = search_config(budget={"max_trials": 3, "max_concurrent": 2})
    master = SimulatedMaster(FakeTrials(fail={0: "crash", 1: "crash", 2: "crash"}))
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    # Every failure reached the searcher (nothing ends the experiment behind its back), and
    # its Shutdown says failure, as the master decides for its own searchers.
    assert [r.status for r in runner.search_method.method.records()] == ["failed"] * 3
    # No trial was left, so STOPPING_ERROR became ERROR at once (updateState -> canTerminate
    # -> stop, which unregisters the experiment): the runner posted nothing for the
    # trialClosed that came in the same batch as the last failure (a post would fail).
    assert master.state_history == [S.ACTIVE, S.STOPPING_ERROR, S.ERROR]
    assert runner.inactive_seen == [S.ERROR] and runner.shutdown_posted


def test_shutdown_passes_through_a_stopping_state_the_events_api_reports(
    core_context: Any,
) -> None:
    config = search_config(budget={"max_trials": 3, "max_concurrent": 2})
    master = SimulatedMaster(FakeTrials(), seed=4)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    # The runner stopped polling at the stopping state (0.37 SearchRunner.run_experiment ends
    # its loop on any inactive state but PAUSED); the experiment completes after it.
    assert runner.inactive_seen == [S.STOPPING_COMPLETED]
    assert master.state == S.STOPPING_COMPLETED
    assert master.get_events()[0].experimentInactive.experimentState == S.STOPPING_COMPLETED
    assert master.finish() == S.COMPLETED
    assert master.state_history == [S.ACTIVE, S.STOPPING_COMPLETED, S.COMPLETED]
    assert not runner.state.experiment_completed  # 0.37 sets it only for COMPLETED itself


def test_a_user_killing_the_experiment_stops_the_searcher(core_context: Any) -> None:
    config = search_config(budget={"max_trials": 6, "max_concurrent": 2})
    trials = FakeTrials()
    master = SimulatedMaster(trials, seed=3)
    starts: list[int] = []

    def main(ctx: Any, hparams: dict[str, Any], latest: str | None) -> None:
        starts.append(1)
        if len(starts) == 4:
            master.kill_experiment()
        from hwnas.trials.train import run_trial

        run_trial(ctx, hparams, latest, trial_factory=trials)

    master.trial_main = main
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    assert runner.inactive_seen == [S.STOPPING_KILLED]
    assert master.finish() == S.CANCELED
    assert len(runner.search_method.method.records()) < 6


def test_user_cancel_from_the_web_ui_does_not_crash_the_searcher(core_context: Any) -> None:
    """0.37's ExitedReason._from_bindings raises on EXITED_REASON_USER_CANCELED; the runner
    treats it as a user stop instead of dying into a restart loop."""
    config = search_config(budget={"max_trials": 4, "max_concurrent": 2})
    trials = FakeTrials()
    master = SimulatedMaster(trials, seed=0)
    cancelled: list[str] = []

    def main(ctx: Any, hparams: dict[str, Any], latest: str | None) -> None:
        if not cancelled:
            rid = next(iter(master.trials))
            cancelled.append(rid)
            master.kill_trial(rid)  # det trial kill, while another trial trains
        from hwnas.trials.train import run_trial

        run_trial(ctx, hparams, latest, trial_factory=trials)

    master.trial_main = main
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    statuses = [r.status for r in runner.search_method.method.records()]
    assert statuses[0] == "canceled" and len(statuses) == 4
    assert master.finish() == S.COMPLETED


def test_max_restarts_counts_per_trial(core_context: Any) -> None:
    """trial.go keeps ``restarts`` on each trial: with max_restarts 1, two trials that each
    crash once are both restarted (an experiment-wide count would fail the second)."""
    config = search_config(budget={"max_trials": 3, "max_concurrent": 1})
    trials = FakeTrials(fail_once={0: "crash", 1: "crash"})
    master = SimulatedMaster(trials, max_restarts=1)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    assert "failed" not in [r.status for r in runner.search_method.method.records()]
    assert [t.restarts for t in master.trials.values()] == [1, 1, 0]
    assert [kind for _, kind in trials.failed] == ["crash", "crash"]


def test_a_trial_crashing_past_its_max_restarts_fails(core_context: Any) -> None:
    config = search_config(budget={"max_trials": 3, "max_concurrent": 1})
    master = SimulatedMaster(FakeTrials(fail={0: "crash"}), max_restarts=2)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    assert runner.search_method.method.records()[0].status == "failed"
    first = next(iter(master.trials.values()))
    assert first.restarts == 3 and first.process_starts == 3


def test_one_progress_event_per_report_progress_call(core_context: Any) -> None:
    """The trial reports progress every epoch and once more after validating; the master
    forwards each call as one trialProgress event (custom_search.go ``trialProgress``), and the
    searcher checkpoints none of them."""
    config = search_config(
        early_stopping={"name": "none", "max_length": 4},
        budget={"max_trials": 2, "max_concurrent": 1},
    )
    master = SimulatedMaster(FakeTrials(), seed=0)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    for trial in master.trials.values():
        assert trial.progress_reports == [1.0, 2.0, 3.0, 4.0, 4.0]
    progress_events = sum(len(t.progress_reports) for t in master.trials.values())
    assert progress_events == 10
    # Determined's runner answers each event with a Progress op: one post per event.
    assert runner.posted == master.event_count
    storage = Path(core_context.checkpoint._storage_manager._base_path)
    assert len(list(storage.iterdir())) == master.event_count - progress_events + 1


def test_a_trial_the_master_fails_to_create_is_filed_as_failed_and_replaced(
    core_context: Any,
) -> None:
    """experiment.go processOperations: when newTrial fails the searcher gets exited-early and
    closed for a request id it never saw trialCreated for."""
    config = search_config(budget={"max_trials": 5, "max_concurrent": 2})
    archs: list[str] = []

    def fail_second(hparams: dict[str, Any]) -> bool:
        archs.append(hparams["arch"])
        return len(archs) == 2

    master = SimulatedMaster(FakeTrials(), seed=1, fail_create=fail_second)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    records = runner.search_method.method.records()
    assert len(master.failed_creates) == 1 and len(records) == 5
    assert [r.status for r in records].count("failed") == 1
    failed = next(r for r in records if r.status == "failed")
    assert failed.arch == archs[1] and "ERRORED" in failed.message
    assert master.finish() == S.COMPLETED


@pytest.mark.parametrize("failures", [{}, {3: "crash", 5: "invalid", 7: "exit"}])
def test_progress_never_goes_backwards_through_promotions_and_failures(
    core_context: Any, failures: dict[int, str]
) -> None:
    """The searcher's progress (a Progress op after every event) never moves back, also when
    the budget is spent and a paused trial is promoted while another continues (a count of
    non-running trials would drop there: seed 2 below does it)."""
    config = search_config(
        strategy={"name": "nsga2", "options": {"population": 8}},
        early_stopping={"name": "mo-asha", "min_length": 1, "max_length": 9, "reduction_factor": 3},
        budget={"max_trials": 12, "max_concurrent": 3},
        constraints=[],
        reference_point={"validation_accuracy": 0.0, "latency_ms": 10.0},
    )
    master = SimulatedMaster(FakeTrials(failures, metrics=conv_metrics), seed=2)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    method = runner.search_method.method
    assert any(len(r.results) > 1 for r in method.records())  # paused, then promoted
    assert master.progress == sorted(master.progress)
    assert master.progress[-1] == 1.0
    assert master.finish() == S.COMPLETED


def test_a_paused_experiment_keeps_the_searcher_waiting_then_continues(
    core_context: Any,
) -> None:
    config = search_config(budget={"max_trials": 4, "max_concurrent": 2})
    reference = make_runner(SimulatedMaster(FakeTrials(), seed=6), config, core_context)
    reference.run_simulated()

    trials = FakeTrials()
    master = SimulatedMaster(trials, seed=6)
    calls: list[int] = []

    def pause_once(ctx: Any, hparams: dict[str, Any], latest: str | None) -> None:
        calls.append(1)
        if len(calls) == 3:
            master.pause_for(polls=4)  # a user pauses, then activates the experiment
        from hwnas.trials.train import run_trial

        run_trial(ctx, hparams, latest, trial_factory=trials)

    master.trial_main = pause_once
    runner = make_runner(master, config, _fresh_context(core_context))
    runner.run_simulated()
    assert master.paused_polls == 0  # the runner kept polling through the pause
    assert S.PAUSED in runner.inactive_seen
    assert outcome(runner.search_method.method) == outcome(reference.search_method.method)


@pytest.mark.parametrize("crash_after_posts", [2, 9, 16, 23, 30])
def test_searcher_restart_mid_search_resumes_from_its_checkpoint(
    core_context: Any, crash_after_posts: int
) -> None:
    config = search_config()
    reference = make_runner(SimulatedMaster(FakeTrials(), seed=5), config, core_context)
    reference.run_simulated()

    ctx = _fresh_context(core_context)
    master = SimulatedMaster(FakeTrials(), seed=5)
    first = make_runner(master, config, ctx, crash_after_posts=crash_after_posts)
    with pytest.raises(SimulatedCrash):
        first.run_simulated()
    assert first.last_storage_id is not None
    # Determined restarts the searcher task with the latest checkpoint it reported.
    second = make_runner(master, config, ctx, latest_checkpoint=first.last_storage_id)
    second.run_simulated()

    # The restarted searcher resumed the experiment instead of creating another.
    assert len(first.created_experiments) == 1 and second.created_experiments == []
    assert master.finish() == S.COMPLETED
    # Nothing lost, nothing repeated: the same trials, archs, statuses and results as an
    # uninterrupted search (the master would have refused a duplicate request id or op).
    assert outcome(second.search_method.method) == outcome(reference.search_method.method)
    assert len(master.trials) == config.budget.max_trials
    assert not ignored_trial_ops(master)


def test_searcher_crashing_again_right_after_a_restart_still_resumes(core_context: Any) -> None:
    config = search_config(budget={"max_trials": 6, "max_concurrent": 2})
    reference = make_runner(SimulatedMaster(FakeTrials(), seed=8), config, core_context)
    reference.run_simulated()

    ctx = _fresh_context(core_context)
    master = SimulatedMaster(FakeTrials(), seed=8)
    latest = None
    for crash in (7, 1, 1, None):  # the 2nd and 3rd die at their first post
        runner = make_runner(master, config, ctx, latest_checkpoint=latest, crash_after_posts=crash)
        try:
            runner.run_simulated()
        except SimulatedCrash:
            latest = runner.last_storage_id
    assert outcome(runner.search_method.method) == outcome(reference.search_method.method)
    assert runner.created_experiments == []  # resumed, never a second experiment


def test_restart_before_the_event_was_handled_reprocesses_it(core_context: Any) -> None:
    """A crash inside the event handler (before the state was saved) replays that event."""
    config = search_config(budget={"max_trials": 5, "max_concurrent": 2})
    reference = make_runner(SimulatedMaster(FakeTrials(), seed=4), config, core_context)
    reference.run_simulated()

    ctx = _fresh_context(core_context)
    master = SimulatedMaster(FakeTrials(), seed=4)
    first = make_runner(master, config, ctx)
    original = first.search_method.on_validation_completed
    calls: list[int] = []

    def crash_on_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise SimulatedCrash("searcher died while handling a validation")
        return original(*args, **kwargs)

    first.search_method.on_validation_completed = crash_on_third  # type: ignore[method-assign]
    with pytest.raises(SimulatedCrash):
        first.run_simulated()
    second = make_runner(master, config, ctx, latest_checkpoint=first.last_storage_id)
    second.run_simulated()
    assert outcome(second.search_method.method) == outcome(reference.search_method.method)


def test_checkpoints_hold_json_state_and_the_report_and_metrics_chart_the_search(
    core_context: Any,
) -> None:
    config = search_config(budget={"max_trials": 5, "max_concurrent": 2})
    master = SimulatedMaster(FakeTrials(), seed=3)
    reporter = CountingReporter()
    runner = make_runner(master, config, core_context, reporter=reporter)
    runner.run_simulated()
    # The files are drawn at the start and when the search shuts down (the default interval
    # of 30 s is longer than this search); the metrics follow every result.
    assert reporter.writes == 2

    with core_context.checkpoint.restore_path(runner.last_storage_id) as path:
        names = {p.name for p in Path(path).iterdir()}
        assert {"state", METHOD_STATE_FILE, OPS_FILE, REPORT_DIR} <= names
        assert "ops" not in names  # Determined's pickle file is not written
        state = json.loads((Path(path) / METHOD_STATE_FILE).read_text())
        assert len(state["request_ids"]) == 5
        assert SearchMethod.from_state(state["method"]).records() == (
            runner.search_method.method.records()
        )
        report = Path(path) / REPORT_DIR
        assert {"pareto.json", "trials.csv", "pareto.png"} <= {p.name for p in report.iterdir()}
        pareto = json.loads((report / "pareto.json").read_text())
        assert pareto["n_trials"] == 5  # the final results, not the first drawing
        assert pareto["front"] and all(m["metrics"]["latency_ms"] <= 5.5 for m in pareto["front"])

    # A checkpoint per event, except trial-progress events (they change no search state).
    storage = Path(core_context.checkpoint._storage_manager._base_path)
    progress_events = sum(len(t.progress_reports) for t in master.trials.values())
    assert len(list(storage.iterdir())) <= master.event_count - progress_events + 1

    reported = core_context.train.validation
    assert reported, "the searcher reported no metrics for the web UI"
    steps = [s for s, _ in reported]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    last = reported[-1][1]
    assert last["trials_created"] == 5 and last["trials_done"] == 5
    assert last["front_size"] >= 1 and last["hypervolume"] > 0
    assert 0 < last["best_feasible_accuracy"] <= 1
    done = [m["trials_done"] for _, m in reported]
    assert done == sorted(done)


class CountingReporter(SearchReporter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes = 0

    def write(self, method: Any, directory: Path) -> None:
        self.writes += 1
        super().write(method, directory)


def test_report_files_are_redrawn_when_due(core_context: Any) -> None:
    config = search_config(budget={"max_trials": 2, "max_concurrent": 1})
    reporter = CountingReporter()
    runner = make_runner(
        SimulatedMaster(FakeTrials()), config, core_context, reporter=reporter, report_interval_s=0
    )
    runner.run_simulated()
    distinct = {json.dumps(m, sort_keys=True) for _, m in core_context.train.validation}
    assert reporter.writes >= len(distinct) > 2


def test_a_bare_number_from_report_completed_fails_that_trial_only(core_context: Any) -> None:
    """A trial entrypoint not written for hwnas (a user's own) completing with a number."""
    config = search_config(budget={"max_trials": 3, "max_concurrent": 1})
    archs: list[str] = []

    def scalar_first(ctx: Any, hparams: dict[str, Any], latest: str | None) -> None:
        archs.append(hparams["arch"])
        for op in ctx.searcher.operations():
            metrics = curve_metrics(hparams["arch"], op.length)
            op.report_completed(metrics["validation_accuracy"] if len(archs) == 1 else metrics)

    master = SimulatedMaster(FakeTrials(), trial_main=scalar_first)
    runner = make_runner(master, config, core_context)
    runner.run_simulated()
    statuses = [r.status for r in runner.search_method.method.records()]
    assert statuses[0] == "failed" and len(statuses) == 3


def test_simulated_master_rejects_protocol_violations() -> None:
    master = SimulatedMaster(FakeTrials())
    [event] = master.get_events()
    rid = str(uuid.uuid4())
    hp = {"arch": "a", "training": {"max_epochs": 9}}
    create = det_searcher.Create(uuid.UUID(rid), hp, None)
    body = bindings.v1PostSearcherOperationsRequest(
        experimentId=7,
        searcherOperations=[create._to_searcher_operation()],
        triggeredByEvent=event,
    )
    master.post_operations(body.to_json())
    [created] = master.get_events()
    again = bindings.v1PostSearcherOperationsRequest(
        experimentId=7,
        searcherOperations=[det_searcher.ValidateAfter(uuid.UUID(rid), 0)._to_searcher_operation()],
        triggeredByEvent=created,
    )
    with pytest.raises(ProtocolError, match="cumulative"):
        master.post_operations(again.to_json())
    with pytest.raises(ProtocolError, match="not found"):
        master.post_operations(body.to_json())  # event 1 was already acknowledged


def test_unknown_request_ids_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    adapter = HwnasSearchMethod(SearchMethod(search_config()))
    state = det_searcher.SearcherState()
    with caplog.at_level(logging.WARNING, logger="hwnas.determined"):
        assert adapter.on_trial_closed(state, uuid.uuid4()) == []
    assert "unknown request id" in caplog.text


# -- the real trial entrypoint, with hparams from a shipped config ---------------------------
class _CompletedOp(det.core.DummySearcherOperation):
    def report_completed(self, searcher_metric: Any) -> None:
        super().report_completed(searcher_metric)
        self.metric = json.loads(det.util.json_encode(searcher_metric))  # the trial's wire


class _OneOperation(det.core.DummySearcherContext):
    def __init__(self, dist: Any, length: int) -> None:
        super().__init__(dist)
        self.op = _CompletedOp(length, is_chief=True)

    def operations(self, *args: Any, **kwargs: Any) -> Any:
        yield self.op


@pytest.mark.slow  # ~15 s of CPU: one epoch of training plus an ONNX Runtime measurement
def test_trial_entrypoint_serves_a_create_from_a_shipped_config(tmp_path: Path) -> None:
    """hwnas.trials.train under the real Core API (off-cluster) runs the hparams the searcher built
    from experiment_yamls/search_nb201_cifar10_ort_cpu.yaml, and what it reports back goes
    through the master's protobuf trip into the adapter as that trial's result."""
    from hwnas.searchers.config import load_config
    from hwnas.trials.train import run_trial

    repo = Path(__file__).resolve().parents[1]
    search = load_config(repo / "experiment_yamls" / "search_nb201_cifar10_ort_cpu.yaml")
    # CIFAR-10 is not on this machine and C=16/N=5 is slow on CPU: same config otherwise.
    search = search.model_copy(
        update={
            "space": search.space.model_copy(update={"options": {"C": 4, "N": 1}}),
            "data": search.data.model_copy(
                update={"dataset": "digits", "root": None, "num_workers": 0}
            ),
            "training": search.training.model_copy(
                update={"batch_size": 64, "amp": "off", "channels_last": False}
            ),
            "early_stopping": search.early_stopping.model_copy(update={"min_length": 1}),
        }
    )
    adapter = HwnasSearchMethod(SearchMethod(search))
    create, validate = adapter.initial_operations(det_searcher.SearcherState())[:2]
    assert validate.length == 1
    hparams = json.loads(create.hparams)
    assert hparams["latency"]["backend"] == "ort-cpu"

    ctx = det.core._dummy_init(checkpoint_storage=str(tmp_path))
    ctx.searcher = _OneOperation(ctx.distributed, length=1)
    with ctx:
        run_trial(ctx, hparams, latest_checkpoint=None)
    metric = ctx.searcher.op.metric
    assert metric["epochs"] == 1 and metric["latency_backend"] == "ort-cpu"
    assert metric["latency_ms"] > 0 and 0 <= metric["validation_accuracy"] <= 1

    state = det_searcher.SearcherState()
    adapter.on_trial_created(state, create.request_id)
    adapter.on_validation_completed(state, create.request_id, to_struct_value(metric), 1)
    record = adapter.method.records()[0]
    assert record.result_at(1)["latency_ms"] == pytest.approx(metric["latency_ms"])


@pytest.mark.parametrize("seed", range(6))
def test_random_failures_pauses_and_searcher_crashes(core_context: Any, seed: int) -> None:
    """Seeded mixes of every early exit, pauses, master-side restarts, ASHA variants and
    searcher crashes: the protocol holds (the simulation raises on any violation or stall)
    and the search spends its whole budget exactly once."""
    rnd = random.Random(seed)
    early_stopping = rnd.choice(
        [
            {"name": "mo-asha", "min_length": 1, "max_length": 9},
            {"name": "asha", "min_length": 1, "max_length": 9, "reduction_factor": 2},
            {"name": "none", "max_length": 9},
        ]
    )
    config = search_config(
        early_stopping=early_stopping,
        budget={"max_trials": rnd.randint(3, 10), "max_concurrent": rnd.randint(2, 4)},
        strategy={"name": rnd.choice(["random", "nsga2"])},
    )
    trials = FakeTrials()
    master = SimulatedMaster(trials, seed=seed, max_restarts=rnd.randint(0, 2))

    def chaotic(ctx: Any, hparams: dict[str, Any], latest: str | None) -> None:
        r = rnd.random()
        if r < 0.08:
            trials.override[hparams["arch"]] = rnd.choice(FAILURE_KINDS)
        elif r < 0.1:
            master.pause_for(rnd.randint(1, 3))
        elif r < 0.12:
            others = [t for t in master.trials.values() if t.hparams["arch"] != hparams["arch"]]
            if others:
                master.kill_trial(rnd.choice(others).request_id)  # a user, from the web UI
        from hwnas.trials.train import run_trial

        run_trial(ctx, hparams, latest, trial_factory=trials)

    master.trial_main = chaotic
    latest, crash = None, rnd.choice([None, rnd.randint(1, 30)])
    for _ in range(6):
        runner = make_runner(master, config, core_context, latest_checkpoint=latest,
                             crash_after_posts=crash)  # fmt: skip
        try:
            runner.run_simulated()
            break
        except SimulatedCrash:
            latest, crash = runner.last_storage_id, rnd.choice([None, rnd.randint(1, 30)])
    assert master.state != S.ACTIVE
    assert master.finish() in (S.COMPLETED, S.ERROR)
    assert len(runner.search_method.method.records()) == config.budget.max_trials
    assert len(master.trials) == config.budget.max_trials
    assert not ignored_trial_ops(master)


def test_closes_held_back_by_an_older_hwnas_are_sent_with_the_next_batch() -> None:
    """States saved before closes went out at once (``deferred_closes``) still close those
    trials; otherwise they would stay open after the search ends."""
    config = search_config()
    adapter = HwnasSearchMethod(SearchMethod(config))
    first = adapter.to_determined(adapter.method.initial_operations())
    rid = first[0].request_id
    state = adapter.state_dict()
    state["deferred_closes"] = [adapter.trial_id(rid)]
    restored = HwnasSearchMethod(SearchMethod(config))
    restored.load_state_dict(json.loads(json.dumps(state)))
    [close] = restored.to_determined([])
    assert isinstance(close, det_searcher.Close) and close.request_id == rid
    assert restored.to_determined([]) == []
