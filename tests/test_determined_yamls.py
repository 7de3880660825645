"""Every file in experiment_yamls/ against what Determined 0.37 and hwnas accept, and the
repository root as a Determined context directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from determined.common import constants as det_constants
from determined.common import context as det_context

from hwnas.contract import TrialHParams
from hwnas.driver.determined.__main__ import HPARAM_KEYS
from hwnas.driver.determined.experiment_config import (
    build_run_experiment,
    build_trial_experiment,
    load_yaml_mapping,
)
from hwnas.searchers.config import load_config
from hwnas.searchers.method import SearchMethod
from hwnas.trials.hparams import parse_hparams

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted((REPO / "experiment_yamls").glob("*.yaml"))
DET_YAMLS = [p for p in YAMLS if p.name.startswith("det_")]
SEARCH_YAMLS = [p for p in YAMLS if not p.name.startswith("det_")]

# Determined 0.37's experiment config fields. The JSON schemas are not shipped in the
# determined 0.37.0 wheel (the master validates); these lists are taken from
# determined-ai/determined schemas/expconf/v0/*.json ("additionalProperties": false objects)
# and docs/reference/experiment-config-reference.rst.
EXPERIMENT_FIELDS = {  # experiment.json
    "bind_mounts", "checkpoint_policy", "checkpoint_storage", "data", "debug", "description",
    "entrypoint", "environment", "hyperparameters", "integrations", "internal", "labels",
    "log_policies", "max_restarts", "min_checkpoint_period", "min_validation_period", "name",
    "optimizations", "pbs", "perform_initial_validation", "preemption_timeout", "profiling",
    "project", "records_per_epoch", "reproducibility", "resources", "retention_policy",
    "scheduling_unit", "searcher", "security", "slurm", "tensorboard_storage", "workspace",
}  # fmt: skip
RESOURCES_FIELDS = {  # resources.json
    "agent_label", "devices", "is_single_node", "max_slots", "native_parallel", "priority",
    "resource_pool", "shm_size", "slots", "slots_per_trial", "weight",
}  # fmt: skip
ENVIRONMENT_FIELDS = {  # environment.json
    "add_capabilities", "drop_capabilities", "environment_variables", "force_pull_image",
    "image", "pod_spec", "ports", "proxy_ports", "registry_auth", "slurm", "pbs",
}  # fmt: skip
IMAGE_KEYS = {"cpu", "cuda", "rocm", "gpu"}  # environment-image-map.json
CHECKPOINT_STORAGE_FIELDS = {  # checkpoint-storage.json + shared-fs/s3/gcs/azure/directory
    "type", "save_experiment_best", "save_trial_best", "save_trial_latest", "host_path",
    "storage_path", "propagation", "container_path", "bucket", "prefix", "access_key",
    "secret_key", "endpoint_url", "container", "connection_string", "account_url", "credential",
}  # fmt: skip
BIND_MOUNT_FIELDS = {"host_path", "container_path", "read_only", "propagation"}  # bind-mount.json
SEARCHER_FIELDS = {  # searcher-single.json, searcher-custom.json (Determined 0.37 and 0.38)
    "single": {"name", "metric", "smaller_is_better", "max_length", "source_trial_id",
               "source_checkpoint_uuid"},
    "custom": {"name", "metric", "smaller_is_better", "unit"},
}  # fmt: skip
LENGTH_UNITS = {"batches", "records", "epochs"}  # searcher-length.json
CUSTOM_UNITS = {"batches", "records", "epochs", None}  # searcher-custom.json "unit" enum


def check_determined_config(config: dict[str, Any], source: str) -> None:
    """Raise AssertionError naming the first field Determined 0.37 would not accept."""
    assert set(config) <= EXPERIMENT_FIELDS, f"{source}: {set(config) - EXPERIMENT_FIELDS}"
    assert isinstance(config.get("entrypoint"), str), f"{source}: entrypoint"
    assert set(config.get("resources") or {}) <= RESOURCES_FIELDS, f"{source}: resources"
    slots = (config.get("resources") or {}).get("slots_per_trial", 1)
    assert isinstance(slots, int) and slots >= 0, f"{source}: resources.slots_per_trial"
    env = config.get("environment") or {}
    assert set(env) <= ENVIRONMENT_FIELDS, f"{source}: environment {set(env)}"
    image = env.get("image")
    assert image is None or isinstance(image, str) or set(image) <= IMAGE_KEYS, source
    for var in env.get("environment_variables") or []:
        assert isinstance(var, str) and "=" in var, f"{source}: environment_variables {var!r}"
    storage = config.get("checkpoint_storage") or {}
    assert set(storage) <= CHECKPOINT_STORAGE_FIELDS, f"{source}: checkpoint_storage"
    for mount in config.get("bind_mounts") or []:
        assert set(mount) <= BIND_MOUNT_FIELDS and {"host_path", "container_path"} <= set(mount)
        assert Path(mount["host_path"]).is_absolute(), f"{source}: bind_mounts.host_path"
    assert isinstance(config.get("max_restarts", 0), int) and config.get("max_restarts", 0) >= 0
    searcher = config["searcher"]
    name = searcher.get("name")
    assert name in SEARCHER_FIELDS, f"{source}: searcher.name {name!r}"
    assert set(searcher) <= SEARCHER_FIELDS[name], f"{source}: searcher {set(searcher)}"
    assert isinstance(searcher.get("metric"), str), f"{source}: searcher.metric"
    if name == "single" and "max_length" in searcher:  # 0.37 requires it, 0.38 deprecates it
        length = searcher["max_length"]
        assert isinstance(length, int) or (len(length) == 1 and set(length) <= LENGTH_UNITS), (
            f"{source}: searcher.max_length {length!r}"
        )
    else:
        assert searcher.get("unit") in CUSTOM_UNITS, f"{source}: searcher.unit"
    for key in ("labels",):
        assert all(isinstance(x, str) for x in config.get(key) or []), f"{source}: {key}"


def searcher_experiments() -> list[Path]:
    """The custom searcher's searcher experiments (users pass them to `det experiment
    create`; a trial YAML has no searcher, the SDK driver's runs another entrypoint)."""
    return [
        p
        for p in DET_YAMLS
        if "hwnas.driver.determined" in str(yaml.safe_load(p.read_text()).get("entrypoint"))
    ]


def trial_yamls() -> list[Path]:
    """The trials' Determined settings (no searcher: hwnas fills it in)."""
    return [p for p in DET_YAMLS if "searcher" not in yaml.safe_load(p.read_text())]


def test_the_expected_configs_exist() -> None:
    names = {p.name for p in YAMLS}
    assert {
        "det_nb201_cifar10_trt_fp16.yaml",
        "det_nb201_cifar10_ort_cpu.yaml",
        "det_mobilenet_cifar10.yaml",
        "det_recurring_sweep.yaml",
        "det_trials_gpu.yaml",
    } <= names


@pytest.mark.parametrize("path", DET_YAMLS, ids=lambda p: p.name)
def test_determined_yaml_uses_only_fields_determined_037_accepts(path: Path) -> None:
    config = load_yaml_mapping(path)
    if "searcher" not in config:  # a trial experiment: hwnas fills the searcher in
        config = {**config, "searcher": {"name": "custom", "metric": "validation_accuracy"}}
    check_determined_config(config, path.name)


@pytest.mark.parametrize("path", searcher_experiments(), ids=lambda p: p.name)
def test_searcher_experiment_builds_a_valid_trial_experiment_whose_hparams_the_trial_reads(
    path: Path,
) -> None:
    config = load_yaml_mapping(path)
    hp = config["hyperparameters"]
    assert set(hp) <= set(HPARAM_KEYS) and {"search_config", "trial_experiment"} <= set(hp)
    entry = config["entrypoint"].split()
    assert entry[:3] == ["python3", "-m", "hwnas.driver.determined"]
    assert importlib.util.find_spec("hwnas.driver.determined.__main__") is not None

    search = load_config(REPO / hp["search_config"])
    trial_yaml = REPO / hp["trial_experiment"]
    trial_experiment = build_trial_experiment(load_yaml_mapping(trial_yaml), search)
    check_determined_config(trial_experiment, f"{path.name} -> {trial_yaml.name}")
    assert trial_experiment["searcher"]["name"] == "custom"
    assert trial_experiment["searcher"]["unit"] == "epochs"
    module = trial_experiment["entrypoint"].split()[2]
    assert importlib.util.find_spec(module) is not None, module

    # The hparams a real search sends in its first Create: the trial parses every one of them,
    # and every field the trial requires is there.
    create = SearchMethod(search).initial_operations()[0]
    hparams = create.hparams
    parsed = parse_hparams(hparams)
    required = {n for n, f in TrialHParams.model_fields.items() if f.is_required()}
    assert required <= set(hparams)
    assert {"data", "training", "latency", "seed", "space_options"} <= set(hparams)
    assert parsed.training.max_epochs == search.early_stopping.max_length
    assert parsed.latency.backend == search.latency.backend


@pytest.mark.parametrize("path", SEARCH_YAMLS, ids=lambda p: p.name)
def test_hwnas_search_configs_load(path: Path) -> None:
    config = load_config(path)
    assert config.budget.max_trials >= 1


def test_recurring_sweep_warm_starts_from_its_own_previous_runs() -> None:
    config = load_yaml_mapping(REPO / "experiment_yamls" / "det_recurring_sweep.yaml")
    search = load_config(REPO / config["hyperparameters"]["search_config"])
    trial = build_trial_experiment(
        load_yaml_mapping(REPO / config["hyperparameters"]["trial_experiment"]), search
    )
    assert config["hyperparameters"]["warm_start"] == "latest:" + next(
        label for label in trial["labels"] if label.startswith("hwnas-sweep:")
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pathspec warns about Determined
def test_repository_root_is_a_small_determined_context() -> None:
    """Determined's own context reader with our .detignore: small, and what tasks need."""
    files = det_context.read_v1_context(REPO)
    paths = {f.path for f in files}
    size = sum(len(f.content or "") for f in files)
    assert size < det_constants.MAX_CONTEXT_SIZE / 10
    assert not any(p.startswith((".venv", ".git/", "runs/")) for p in paths)
    assert not any(p.startswith(".venv-det038") for p in paths)
    assert {
        "startup-hook.sh",
        "deploy/sdk-sweep.sh",
        "driver/determined/__main__.py",
        "driver/determined/sdk_backend.py",
        "trials/train.py",
        "experiment_yamls/det_trials_gpu.yaml",
        "spaces/base.py",
        "latency/__init__.py",
        "searchers/arch2vec/weights/nb201.pt",  # package data the searcher may load
        "spaces/data/nb201_cifar.csv.gz",  # the NB201 table (tabular backend, table:<device>)
    } <= paths


@pytest.mark.parametrize("path", trial_yamls(), ids=lambda p: p.name)
@pytest.mark.parametrize("max_length", [True, False], ids=["0.37", "0.38"])
def test_sdk_backend_run_experiments_are_valid_determined_configs(
    path: Path, max_length: bool
) -> None:
    """What the SDK backend submits for a run (here a promotion) from each trial YAML."""
    search = load_config(REPO / "experiment_yamls" / "search_nb201_cifar10_ort_cpu.yaml")
    method = SearchMethod(search)
    create = method.initial_operations()[0]
    config = build_run_experiment(
        load_yaml_mapping(path), search, search_id="s-1", trial_id=create.trial_id, length=3,
        hparams=create.hparams, source_trial_id=17, max_length=max_length,
    )  # fmt: skip
    check_determined_config(config, path.name)
    searcher = config["searcher"]
    assert searcher["name"] == "single" and searcher["source_trial_id"] == 17
    assert ("max_length" in searcher) is max_length
    assert config["hyperparameters"]["target_length"] == 3
    assert "hwnas-run:s-1:1:3" in config["labels"]


def test_the_sdk_driver_experiment_runs_the_sweep_script_on_a_shared_folder() -> None:
    config = load_yaml_mapping(REPO / "experiment_yamls" / "det_sdk_driver.yaml")
    check_determined_config(config, "det_sdk_driver.yaml")
    shell, script = config["entrypoint"].split()
    assert shell == "bash" and (REPO / script).is_file()
    env = dict(v.split("=", 1) for v in config["environment"]["environment_variables"])
    [mount] = config["bind_mounts"]
    assert env["HWNAS_SWEEP_DIR"] == mount["container_path"] and not mount["read_only"]
    assert config["resources"]["slots_per_trial"] == 0 and config["max_restarts"] >= 1


def test_supernet_experiment_trains_the_supernet_of_the_local_example() -> None:
    """det_supernet_*.yaml: a `searcher: single` experiment whose hyperparameters the master
    hands over unchanged and the supernet trial accepts, trained to the planned length."""
    from hwnas.driver.determined.experiment_config import exact_hyperparameters
    from hwnas.trials.supernet.settings import is_supernet, parse_supernet_hparams

    config = load_yaml_mapping(REPO / "experiment_yamls" / "det_supernet_darts_cifar10.yaml")
    hp = config["hyperparameters"]
    assert config["entrypoint"] == "python3 -m hwnas.trials.train"
    assert is_supernet(hp) and exact_hyperparameters(hp) == hp
    parsed = parse_supernet_hparams(hp)
    assert parsed.training.max_epochs == hp["target_length"]
    assert config["searcher"]["max_length"] == {"epochs": hp["target_length"]}
    local = yaml.safe_load((REPO / "experiment_yamls/supernet/darts_cifar10.yaml").read_text())
    assert {k: v for k, v in hp.items() if k != "target_length"} == local
