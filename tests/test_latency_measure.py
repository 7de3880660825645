"""measure_architecture end to end on ONNX Runtime CPU (torch-free worker) and torch CPU,
the SQLite cache (hit path, concurrent writers) and the trial metrics contract."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from hwnas.latency import (
    LatencyResult,
    MeasurementTarget,
    TimingConfig,
    cached_latency,
    measure_architecture,
)
from hwnas.latency.cache import LatencyCache, cache_key
from hwnas.latency.cli import main
from hwnas.latency.worker import OnnxWorker
from hwnas.spaces import get_space

QUICK = TimingConfig(warmup_s=0.02, min_runs=5, min_duration_s=0.02, max_attempts=1)
TINY_MOBILENET = {
    "stage_channels": [8, 16],
    "stage_strides": [1, 2],
    "stage_activations": ["relu6", "hswish"],
    "stem_channels": 8,
    "head_channels": 32,
}
SMALL = MeasurementTarget(input_shape=(3, 16, 16))
METRIC_KEYS = {"latency_ms", "latency_p90_ms", "latency_cv", "latency_unstable", "latency_backend"}


class CountingWorker(OnnxWorker):
    """A real worker that counts the measurements it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def measure(self, request):
        self.count += 1
        return super().measure(request)


@pytest.fixture(scope="module")
def worker():
    with CountingWorker() as w:
        yield w


@pytest.mark.parametrize(
    ("space_name", "options"), [("nb201", {"C": 4, "N": 1}), ("mobilenet", TINY_MOBILENET)]
)
def test_random_architectures_measure_on_ort_cpu(space_name, options, worker):
    space = get_space(space_name, **options)
    rng = np.random.default_rng(3)
    for arch in [space.sample(rng) for _ in range(2)]:
        result = measure_architecture(space, arch, SMALL, timing=QUICK, worker=worker)
        metrics = result.to_metrics()
        assert set(metrics) >= METRIC_KEYS
        assert metrics["latency_backend"] == "ort-cpu"
        assert 0 < metrics["latency_ms"] <= metrics["latency_p90_ms"]
        assert result.device["kind"] == "cpu" and result.device["threads"] == 1
        assert result.info["providers"] == ["CPUExecutionProvider"]
        assert result.export["max_abs_diff"] <= 1e-4
        assert result.stats.runs >= QUICK.min_runs
        json.dumps(metrics)  # flat JSON for the searcher


def test_one_shot_worker():
    arch = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
    result = measure_architecture(get_space("nb201", C=4, N=1), arch, SMALL, timing=QUICK)
    assert result.arch == arch and result.median_ms > 0 and not result.cached


def test_cache_hit_path_measures_nothing_twice(tmp_path, worker):
    space = get_space("nb201", C=4, N=1)
    arch = "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|"
    cache = tmp_path / "lat.sqlite"
    kwargs = {"timing": QUICK, "worker": worker, "cache_path": cache}
    before = worker.count
    first = measure_architecture(space, arch, SMALL, **kwargs)
    assert worker.count == before + 1 and not first.cached
    # Same function under another spelling (canonical key): served from the cache.
    again = measure_architecture(space, arch, SMALL, **kwargs)
    assert worker.count == before + 1 and again.cached
    assert again.stats == first.stats and again.to_metrics()["latency_cached"] is True
    # The searcher's pre-filter reads the cache without ever measuring.
    peek = cached_latency(space, arch, SMALL, cache_path=cache)
    assert peek is not None and peek.stats == first.stats
    batch4 = replace(SMALL, batch=4)
    assert cached_latency(space, arch, batch4, cache_path=cache) is None
    assert cached_latency(space, arch, SMALL, cache_path=tmp_path / "none.sqlite") is None
    # Another target (batch 2) is a different key and is measured.
    measure_architecture(space, arch, replace(SMALL, batch=2), **kwargs)
    assert worker.count == before + 2
    with LatencyCache(cache) as db:
        assert len(db) == 2


# A writer process imports only latency.cache (no torch), so three start in well under a second.
_WRITER = """
import sys
from hwnas.latency.cache import LatencyCache, cache_key
from hwnas.latency.cli import main
path, start = sys.argv[1], int(sys.argv[2])
written = 0
with LatencyCache(path, timeout_s=30) as db:
    for i in range(start, start + 60):
        key = cache_key({"i": i})
        written += db.put(key, {"i": i}, {"median_ms": float(i)})
        assert db.get(key) == {"median_ms": float(i)}
print(written)
"""


def test_cache_is_safe_for_concurrent_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, path, str(start)], stdout=subprocess.PIPE, text=True
        )
        for start in (0, 30, 60)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum(int(o) for o in outputs) == 120  # keys 0..119, each written exactly once
    with LatencyCache(path) as db:
        assert len(db) == 120
        assert db.get(cache_key({"i": 45})) == {"median_ms": 45.0}


def test_corrupt_cache_file_is_named(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match=r"bad\.sqlite"):
        LatencyCache(bad)


def test_torch_cpu_backend_in_process_keeps_caller_rng_and_threads():
    space = get_space("nb201", C=4, N=1)
    arch = space.sample(np.random.default_rng(0))
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    result = measure_architecture(space, arch, replace(SMALL, backend="torch-cpu"), timing=QUICK)
    assert torch.equal(torch.rand(3), expected)  # a trial's RNG stream is untouched
    assert torch.get_num_threads() == threads
    assert result.backend == "torch-cpu" and result.median_ms > 0 and result.export is None


def test_result_round_trips_through_json():
    arch = "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
    space = get_space("nb201", C=4, N=1)
    result = measure_architecture(space, arch, replace(SMALL, backend="torch-cpu"), timing=QUICK)
    back = LatencyResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result


def test_cli_measure_json(capsys):
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"
    code = main(
        ["measure", "--space", "nb201", "--arch", arch, "--option", "C=4", "--option", "N=1",
         "--input", "3x16x16", "--json"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["median_ms"] > 0 and summary["device"]["kind"] == "cpu"
    assert {"p90_ms", "cv", "unstable", "versions"} <= set(summary)


def test_cli_bad_architecture_is_one_clear_error(capsys):
    assert main(["measure", "--space", "nb201", "--arch", "|oops~0|"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error:") and "|oops~0|" in err


def test_cli_bad_target_is_one_clear_error_before_any_work(tmp_path, capsys):
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"
    args = ["--space", "nb201", "--backend", "trt-fp16", "--precision", "fp32"]
    assert main(["measure", *args, "--arch", arch]) == 2
    assert main(["profile", *args, "--out", str(tmp_path / "p.json")]) == 2
    assert not (tmp_path / "p.json").exists()
    for line in capsys.readouterr().err.splitlines():
        assert line.startswith("hwnas: error: MeasurementTarget.precision='fp32' contradicts")


def test_cpu_clock_is_thread_cpu_on_one_thread_and_wall_on_request(worker):
    space = get_space("nb201", C=4, N=1)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"
    kwargs = {"timing": QUICK, "worker": worker}
    auto = measure_architecture(space, arch, SMALL, **kwargs)
    metrics = auto.to_metrics()
    assert metrics["latency_clock"] == "thread_cpu"
    # CPU time of the inference cannot exceed the wall time around it (tiny slack for clocks).
    assert auto.stats.median_ms <= auto.stats.host_median_ms * 1.05
    # The wall clock is a trial metric too, beside the thread-CPU figure.
    assert metrics["latency_host_median_ms"] == auto.stats.host_median_ms > 0
    assert auto.info["placement"] == "full"  # every node on the CPU provider asked for
    wall = measure_architecture(space, arch, replace(SMALL, clock="wall"), **kwargs)
    assert wall.to_metrics()["latency_clock"] == "wall"
    assert wall.stats.median_ms == wall.stats.host_median_ms


def test_cli_profile_measures_fits_and_saves(tmp_path, capsys):
    from hwnas.latency.predictor import LatencyPredictor

    out = tmp_path / "predictor.json"
    measurements = tmp_path / "m.jsonl"
    code = main(
        ["profile", "--space", "nb201", "--option", "C=4", "--option", "N=1", "--input",
         "3x8x8", "--n", "8", "--out", str(out), "--measurements", str(measurements),
         "--warmup", "0.01", "--min-duration", "0.02", "--min-runs", "5", "--max-attempts", "1"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "lookup" in printed and "ridge" in printed and "saved lookup predictor" in printed
    rows = [json.loads(line) for line in measurements.read_text().splitlines()]
    assert len(rows) == 8 and all(r["median_ms"] > 0 for r in rows)
    predictor = LatencyPredictor.load(out)
    assert predictor.kind == "lookup" and predictor.meta["n_train"] == 8
    assert predictor.predict(rows[0]["arch"]) > 0


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_measures_a_given_model_and_leaves_it_as_it_was(compiled, worker):
    space = get_space("nb201", C=4, N=1)
    arch = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|"
    model = space.build(arch, input_shape=(3, 16, 16))
    model.train()
    # A trial may hand over its torch.compile'd module (never called here; importing dynamo
    # alone takes ~10 s on a loaded 2-core box, hence slow).
    given = torch.compile(model) if compiled else model
    result = measure_architecture(space, arch, SMALL, model=given, timing=QUICK, worker=worker)
    assert result.median_ms > 0 and result.export["max_abs_diff"] <= 1e-4
    assert model.training


def test_reference_pairing_adds_a_ratio_and_its_own_cache_key(tmp_path, worker):
    space = get_space("nb201", C=4, N=1)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|"
    kwargs = {"timing": QUICK, "worker": worker, "cache_path": tmp_path / "c.sqlite"}
    paired = measure_architecture(space, arch, replace(SMALL, reference=True), **kwargs)
    metrics = paired.to_metrics()
    assert metrics["latency_ref_ratio"] > 0 and metrics["latency_ref_ms"] > 0
    plain = measure_architecture(space, arch, SMALL, **kwargs)
    assert not plain.cached and "latency_ref_ratio" not in plain.to_metrics()
    again = measure_architecture(space, arch, replace(SMALL, reference=True), **kwargs)
    assert again.cached and again.to_metrics()["latency_ref_ratio"] == metrics["latency_ref_ratio"]


def test_cli_mounts_under_another_parser_as_hwnas_latency():
    import argparse

    from hwnas.latency.cli import add_parser, run_profile

    parser = argparse.ArgumentParser(prog="hwnas")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["latency", "profile", "--space", "nb201", "--out", "p.json"])
    assert args.handler.__wrapped__ is run_profile and args.n == 200 and args.backend == "ort-cpu"
