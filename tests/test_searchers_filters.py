"""The constraint pre-filter on *measured* latency: a real ONNX Runtime figure in a real cache."""

from __future__ import annotations

import pytest

from hwnas.contract import DATASET_SHAPES
from hwnas.searchers.filters import CachedLatency, CandidateFilter
from hwnas.searchers.objectives import make_objectives
from hwnas.spaces import get_space

SPACE = get_space("nb201", C=8, N=1)
CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|none~2|"
OTHER = "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"


class Constant:
    def predict(self, arch: str) -> float:
        return 0.001


def test_dataset_shapes_match_the_trials():
    from hwnas.trials.data import DIGITS_SIZE

    assert DATASET_SHAPES["digits"] == ((1, DIGITS_SIZE, DIGITS_SIZE), 10)


def test_cached_measurement_drives_the_prefilter(tmp_path):
    pytest.importorskip("onnxruntime")
    from hwnas import latency

    cache = tmp_path / "latency.sqlite"
    shape, classes = DATASET_SHAPES["digits"]
    target = latency.MeasurementTarget("ort-cpu", input_shape=shape, num_classes=classes)
    measured = latency.measure_architecture(SPACE, CONV, target, cache_path=str(cache)).median_ms
    cost = CachedLatency(
        SPACE,
        str(cache),
        backend="ort-cpu",
        batch=1,
        threads=1,
        input_shape=shape,
        num_classes=classes,
    )
    assert cost.predict(CONV) == pytest.approx(measured)
    assert cost.predict(OTHER) is None  # never measured here, and it is not measured now
    cost.fallback = Constant()
    assert cost.predict(OTHER) == 0.001

    bound = make_objectives([("latency_ms", "minimize")], [f"latency_ms <= {measured / 2}"])
    flt = CandidateFilter(SPACE, bound, cost)
    assert flt.check(CONV)[1] == "constraint"  # the measured figure breaks the bound
    assert flt.check(OTHER)[1] == "accepted"
    missing = CachedLatency(
        SPACE,
        str(tmp_path / "none.sqlite"),
        backend="ort-cpu",
        batch=1,
        threads=1,
        input_shape=shape,
        num_classes=classes,
    )
    assert missing.predict(CONV) is None
    # Settings the latency module rejects (an unknown backend) are a miss too, never a crash.
    unknown = CachedLatency(
        SPACE,
        str(cache),
        backend="ort-gpu",
        batch=1,
        threads=1,
        input_shape=shape,
        num_classes=classes,
    )
    assert unknown.predict(CONV) is None


def test_the_method_puts_the_cache_in_front_of_the_predictor(tmp_path):
    from test_searchers_method import LatencyStub, make_config

    from hwnas.searchers.method import SearchMethod

    cfg = make_config(latency={"cache": str(tmp_path / "c.sqlite")})
    stub = LatencyStub()
    method = SearchMethod(cfg, cost_predictor=stub)
    assert isinstance(method.filter.cost_predictor, CachedLatency)
    assert method.filter.cost_predictor.fallback is stub
