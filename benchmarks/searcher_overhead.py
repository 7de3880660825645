"""Search-method overhead: decision time per event and state size, with a fake objective.

Drives ``hwnas.searchers.method.SearchMethod`` with the driver loop over a function backend (no
training: a deterministic function of the architecture's encoding stands in for the trial) and
times every event handler call.
Reports median / p90 / p99 / max milliseconds per event (thread CPU time, which a busy shared
machine does not inflate; wall-clock median and p99 too), the same for validation events
alone (the ones that decide), the state's JSON size, and the time to save (``state_dict`` +
``json.dumps``) and restore (``json.loads`` + ``from_state``).

    python benchmarks/searcher_overhead.py                       # 1,000 and 10,000 trials
    python benchmarks/searcher_overhead.py --trials 1000 --strategy random --json out.json

Targets (issue 5): median under 5 ms per event at 10,000 trials, state under 20 MB.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from hwnas.atomic import write_json_atomic
from hwnas.driver.function import FunctionBackend
from hwnas.driver.loop import SearchLoop
from hwnas.searchers.config import parse_config
from hwnas.searchers.method import SearchMethod


def fake_objective(space: Any, seed: int = 0):
    """A deterministic (arch, length) -> metrics function with a real accuracy/latency
    trade-off: latency is a random per-choice cost sum; accuracy grows with latency
    (saturating), times a per-architecture factor, times a learning curve in ``length``."""
    rng = np.random.default_rng(seed)
    dim = len(space.encode(space.sample(np.random.default_rng(0)), "onehot"))
    w_acc, w_lat = rng.random(dim), rng.random(dim)
    probe = [space.encode(space.sample(rng), "onehot") for _ in range(200)]
    lat_scale = float(np.median([p @ w_lat for p in probe]))
    acc_lo, acc_hi = min(p @ w_acc for p in probe), max(p @ w_acc for p in probe)

    def metrics(arch: str, length: int) -> dict[str, Any]:
        e = space.encode(arch, "onehot")
        lat = float(e @ w_lat)
        quality = float(np.clip((e @ w_acc - acc_lo) / (acc_hi - acc_lo), 0.0, 1.0))
        acc = 0.95 * (1 - np.exp(-lat / lat_scale)) * (0.8 + 0.2 * quality)
        acc *= 1 - 0.5 ** (length + 1)
        return {
            "validation_accuracy": float(acc),
            "validation_loss": float(1.0 - acc),
            "latency_ms": 1.0 + lat,
            "epochs": length,
            "params": 1000 + int(1e4 * lat),
        }

    return metrics


def make_config(trials: int, strategy: str, space: str, concurrency: int, seed: int):
    options = {"population": 50} if strategy in ("nsga2", "evolution") else {}
    raw = {
        "name": "overhead",
        "seed": seed,
        "space": {"name": space, "options": {"C": 8, "N": 1} if space == "nb201" else {}},
        "objectives": [
            {"metric": "validation_accuracy", "goal": "maximize"},
            {"metric": "latency_ms", "goal": "minimize"},
        ],
        "constraints": ["latency_ms <= 60"],
        "strategy": {"name": strategy, "options": options},
        "early_stopping": {
            "name": "mo-asha",
            "min_length": 1,
            "max_length": 9,
            "reduction_factor": 3,
        },
        "budget": {"max_trials": trials, "max_concurrent": concurrency},
        "reference_point": {"validation_accuracy": 0.0, "latency_ms": 80.0},
    }
    if strategy == "evolution":
        raw["scalarization"] = {"kind": "mnasnet", "target": 20.0}
    return parse_config(raw)


class TimedMethod:
    """Forwards the loop's events to ``method``, timing each handler (thread CPU and wall)."""

    def __init__(self, method: SearchMethod) -> None:
        self.method = method
        self.times: list[float] = []
        self.wall_times: list[float] = []
        self.kinds: list[str] = []
        self.validation_times: list[float] = []

    def _timed(self, name: str, *args: Any) -> list[Any]:
        w0, t0 = time.perf_counter(), time.thread_time()
        ops = getattr(self.method, name)(*args)
        dt = time.thread_time() - t0
        self.wall_times.append(time.perf_counter() - w0)
        self.times.append(dt)
        self.kinds.append(name)
        if name == "on_validation_completed":
            self.validation_times.append(dt)
        return ops

    def initial_operations(self) -> list[Any]:
        return self._timed("initial_operations")

    def on_trial_created(self, trial_id: int) -> list[Any]:
        return self._timed("on_trial_created", trial_id)

    def on_validation_completed(self, trial_id: int, metrics: Any, length: int) -> list[Any]:
        return self._timed("on_validation_completed", trial_id, metrics, length)

    def on_trial_closed(self, trial_id: int) -> list[Any]:
        return self._timed("on_trial_closed", trial_id)

    def on_trial_exited_early(self, trial_id: int, reason: Any, message: str = "") -> list[Any]:
        return self._timed("on_trial_exited_early", trial_id, reason, message)


def run(trials: int, strategy: str, space_name: str, concurrency: int, seed: int) -> dict:
    cfg = make_config(trials, strategy, space_name, concurrency, seed)
    method = SearchMethod(cfg)
    timed = TimedMethod(method)
    loop = SearchLoop(timed, FunctionBackend(fake_objective(method.space, seed)))
    started = time.perf_counter()
    loop.start()
    loop.run()
    wall = time.perf_counter() - started
    times, kinds, wall_times = timed.times, timed.kinds, timed.wall_times
    validation_times = timed.validation_times

    t0 = time.perf_counter()
    text = json.dumps(method.state_dict(), allow_nan=False)
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    SearchMethod.from_state(json.loads(text))
    load_s = time.perf_counter() - t0

    ms = np.array(times) * 1e3
    slowest = [[kinds[i], round(float(ms[i]), 1)] for i in np.argsort(ms)[::-1][:5]]
    vms = np.array(validation_times) * 1e3
    wms = np.array(wall_times) * 1e3
    return {
        "trials": len(method.trials),
        "strategy": strategy,
        "space": space_name,
        "concurrency": concurrency,
        "events": len(times),
        "validations": sum(len(r.results) for r in method.records()),
        "front_size": len(method.front),
        "event_ms_median": float(np.median(ms)),
        "event_ms_p90": float(np.percentile(ms, 90)),
        "event_ms_p99": float(np.percentile(ms, 99)),
        "event_ms_max": float(ms.max()),
        "wall_event_ms_median": float(np.median(wms)),
        "wall_event_ms_p99": float(np.percentile(wms, 99)),
        "validation_event_ms_median": float(np.median(vms)),
        "validation_event_ms_p99": float(np.percentile(vms, 99)),
        "slowest_events_ms": slowest,
        "loop_wall_s": wall,
        "state_bytes": len(text.encode()),
        "state_save_s": save_s,
        "state_load_s": load_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--strategy", default="nsga2")
    parser.add_argument("--space", default="mobilenet", help="nb201 has only 6,466 unique cells")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    results = []
    for n in args.trials:
        r = run(n, args.strategy, args.space, args.concurrency, args.seed)
        results.append(r)
        print(
            f"{r['trials']:>6} trials ({r['strategy']}, {r['space']}, {r['events']} events): "
            f"event median {r['event_ms_median']:.3f} ms, p90 {r['event_ms_p90']:.3f} ms, "
            f"p99 {r['event_ms_p99']:.3f} ms, max {r['event_ms_max']:.1f} ms; validation events "
            f"median {r['validation_event_ms_median']:.3f} ms, "
            f"p99 {r['validation_event_ms_p99']:.3f} ms; wall-clock event median "
            f"{r['wall_event_ms_median']:.3f} ms, p99 {r['wall_event_ms_p99']:.3f} ms; "
            f"state {r['state_bytes'] / 1e6:.2f} MB (save {r['state_save_s']:.2f} s, "
            f"load {r['state_load_s']:.2f} s); front {r['front_size']}; "
            f"loop {r['loop_wall_s']:.1f} s; slowest {r['slowest_events_ms']}",
            flush=True,
        )
    if args.json:
        write_json_atomic(args.json, results, indent=2, allow_nan=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
