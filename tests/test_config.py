"""Config validation: every kind of mistake fails before any trial, naming file and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hwnas.searchers.config import ConfigError, load_config, parse_config

GOOD: dict[str, Any] = {
    "name": "nb201-digits-demo",
    "seed": 0,
    "space": {"name": "nb201", "options": {"C": 8, "N": 1}},
    "data": {"dataset": "digits", "val_fraction": 0.2},
    "training": {"batch_size": 64, "lr": 0.05},
    "latency": {"backend": "ort-cpu", "batch": 1, "threads": 1, "predictor": None, "cache": None},
    "objectives": [
        {"metric": "validation_accuracy", "goal": "maximize"},
        {"metric": "latency_ms", "goal": "minimize"},
    ],
    "constraints": ["latency_ms <= 5"],
    "scalarization": None,
    "strategy": {"name": "nsga2", "options": {"population": 20}},
    "early_stopping": {"name": "mo-asha", "min_length": 1, "max_length": 9, "reduction_factor": 3},
    "budget": {"max_trials": 30, "max_concurrent": 2},
    "reference_point": {"validation_accuracy": 0.0, "latency_ms": 50.0},
}


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def with_change(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


def test_good_config_loads_and_derives(tmp_path: Path):
    cfg = load_config(write(tmp_path, GOOD))
    obj = cfg.to_objectives()
    assert obj.metrics == ("validation_accuracy", "latency_ms")
    assert [str(c) for c in obj.constraints] == ["latency_ms <= 5"]
    base = cfg.trial_hparams_base()
    assert base["training"]["max_epochs"] == 9 and base["training"]["lr"] == 0.05
    assert "predictor" not in base["latency"]


@pytest.mark.parametrize(
    ("path", "value", "field", "shown"),
    [
        ("seeed", 1, "seeed", "unknown key"),  # typo'd top-level key
        ("budget.max_trails", 3, "budget.max_trails", "unknown key"),  # typo'd nested key
        ("budget.max_trials", "many", "budget.max_trials", "'many'"),  # wrong type
        ("data.val_fraction", 1.5, "data.val_fraction", "1.5"),
        ("strategy.name", "evolutoin", "strategy.name", "'evolutoin'"),  # unknown strategy
        ("strategy.options", {"populaton": 5}, "strategy.options.populaton", "unknown key"),
        ("strategy.options", {"population": "x"}, "strategy.options.population", "'x'"),
        ("constraints", ["latency_ms <= -1"], "constraints.0", "impossible"),
        ("constraints", ["validation_accuracy >= 1.5"], "constraints.0", "impossible"),
        ("constraints", ["latency_ms < 0"], "constraints.0", "impossible"),
        ("constraints", ["latency_ms <= 5; rm -rf"], "constraints.0", "cannot parse"),
        ("constraints", ["latenc_ms <= 5"], "constraints.0", "unknown metric"),
        ("objectives.1.metric", "latency", "objectives.1.metric", "unknown metric"),
        ("objectives.1.metric", "latency_backend", "objectives.1.metric", "not numeric"),
        ("objectives.1.goal", "lower", "objectives.1.goal", "'lower'"),
        ("objectives.1.metric", "validation_accuracy", "objectives.1.metric", "duplicate"),
        ("reference_point", {"params": 1.0}, "reference_point.params", "not an objective"),
        ("space.name", "nb101", "space.name", "unknown space"),
        ("early_stopping.max_length", 0, "early_stopping.max_length", "0"),
        ("early_stopping.name", "hyperband", "early_stopping.name", "'hyperband'"),
        ("training.max_epochs", 5, "training.max_epochs", "early_stopping.max_length"),
    ],
)
def test_bad_config_names_file_field_and_value(
    tmp_path: Path, path: str, value: Any, field: str, shown: str
):
    cfg_path = write(tmp_path, with_change(path, value))
    with pytest.raises(ConfigError) as err:
        load_config(cfg_path)
    message = str(err.value)
    assert str(cfg_path) in message
    assert f": {field}:" in message
    assert shown in message


def test_single_objective_strategy_needs_scalarization():
    raw = with_change("strategy", {"name": "evolution"})
    with pytest.raises(ConfigError, match="scalarization"):
        parse_config(raw)
    raw["scalarization"] = {"kind": "mnasnet", "target": 5.0}
    assert parse_config(raw).to_objectives().scalarization.target == 5.0


def test_max_length_below_min_length():
    raw = with_change("early_stopping.min_length", 10)
    with pytest.raises(ConfigError, match=r"early_stopping: min_length \(10\) must be <= max"):
        parse_config(raw)


def test_early_stopper_by_name_with_its_own_options():
    with pytest.raises(ConfigError, match=r"early_stopping\.name: unknown early stopper"):
        parse_config(with_change("early_stopping.name", "hyperband"))
    raw = with_change("early_stopping.name", "none")
    with pytest.raises(
        ConfigError, match=r"early_stopping\.min_length: not an option of early stopper 'none'"
    ):
        parse_config(raw)
    del raw["early_stopping"]["min_length"], raw["early_stopping"]["reduction_factor"]
    assert parse_config(raw).early_stopping.options() == {}
    with pytest.raises(ConfigError, match=r"early_stopping\.reduction_factor: .*greater than"):
        parse_config(with_change("early_stopping.reduction_factor", 1))


def test_unreadable_and_non_mapping_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_yaml_tags_are_not_executed(tmp_path: Path):
    (tmp_path / "evil.yaml").write_text("seed: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_the_documented_example_is_valid():
    import hwnas.searchers.config as config_module

    block = config_module.__doc__.split("::", 1)[1]
    raw = yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))
    cfg = parse_config(raw, "docstring")
    assert cfg.strategy.name == "nsga2" and cfg.early_stopping.name == "mo-asha"


def test_forwarded_sections_are_the_trial_contract():
    """The config's data/training/latency sections are the trial contract's own models, and
    the hparams a search sends validate as the trial's hparams."""
    from hwnas.contract import DataSettings, LatencySettings, TrainingSettings, TrialHParams
    from hwnas.searchers.config import SearchConfig

    fields = SearchConfig.model_fields
    assert fields["data"].annotation is DataSettings
    assert fields["training"].annotation is TrainingSettings
    assert issubclass(fields["latency"].annotation, LatencySettings)
    # And the hparams a search sends validate as the trial's own model.
    cfg = SearchConfig.model_validate(GOOD)
    hp = {
        **cfg.trial_hparams_base(),
        "space": "nb201",
        "space_options": {"C": 8, "N": 1},
        "arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "seed": 1,
    }
    TrialHParams.model_validate(hp)
