"""``python3 -m hwnas.driver.determined``: the searcher task of a Determined custom search.

Runs inside a ``searcher: single`` experiment (see ``experiment_yamls/det_*.yaml``). It reads
the hwnas search config and the trial experiment YAML (paths inside the uploaded context
directory), creates the multi-trial ``searcher: custom`` experiment whose trials run
``python3 -m hwnas.trials.train``, and answers its events until the search ends. When the searcher
task restarts (``max_restarts``), it resumes from its latest checkpoint instead.

Arguments come from the command line or, where not given there, from the searcher
experiment's ``hyperparameters`` (``search_config``, ``trial_experiment``, ``warm_start``), so
``det experiment create ... --config hyperparameters.warm_start=experiment:42`` works.
``--check`` validates the files and prints what would be submitted, without a cluster.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

#: The searcher experiment's hyperparameters this entrypoint reads.
HPARAM_KEYS = ("search_config", "trial_experiment", "warm_start")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m hwnas.driver.determined", description=__doc__)
    parser.add_argument("search_config", nargs="?", help="hwnas search config YAML")
    parser.add_argument(
        "--trial-experiment", help="Determined experiment YAML for the trials (searcher: custom)"
    )
    parser.add_argument(
        "--warm-start",
        help="earlier results to continue from: a results file/checkpoint directory in the "
        "context, or experiment:<id> of an earlier trial experiment",
    )
    parser.add_argument(
        "--context", default=".", help="context directory uploaded with the trial experiment"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="no cluster needed: validate both files, print the trial experiment config and "
        "the first trial's hparams as YAML, and exit",
    )
    return parser


def resolve_args(args: argparse.Namespace, hparams: dict[str, Any]) -> dict[str, Any]:
    """Command line first, then the searcher experiment's hyperparameters."""
    resolved = {
        "search_config": args.search_config or hparams.get("search_config"),
        "trial_experiment": args.trial_experiment or hparams.get("trial_experiment"),
        "warm_start": args.warm_start or hparams.get("warm_start"),
    }
    for key in ("search_config", "trial_experiment"):
        if not resolved[key]:
            raise SystemExit(
                f"hwnas.driver.determined: {key} is not set: pass it on the command line or as "
                f"hyperparameters.{key} of the searcher experiment"
            )
    return resolved


def print_check(trial_experiment: dict[str, Any], first_operations: list[Any]) -> None:
    """What the searcher would submit: the trial experiment and the first trial's hparams."""
    import yaml

    from hwnas.searchers.operations import Create

    create = next(op for op in first_operations if isinstance(op, Create))
    print("# trial experiment config (client.create_experiment)")
    print(yaml.safe_dump(trial_experiment, sort_keys=False), end="")
    print("---\n# hparams of the first trial (its Create operation)")
    print(yaml.safe_dump(create.hparams, sort_keys=False), end="")


def require_custom_searchers() -> None:
    """Exit with a clear message on a Determined without ``determined.searcher`` (0.38+)."""
    import determined as det

    try:
        import determined.searcher
    except ImportError:
        raise SystemExit(
            f"hwnas.driver.determined: Determined {det.__version__} has no custom searchers "
            "(determined.searcher was removed in 0.38). On a 0.38 cluster run the search "
            "through the SDK from any machine that reaches the master: hwnas search CONFIG "
            "--backend determined --master URL (docs/determined.md); custom searchers need a "
            "0.36-0.37 cluster and client"
        ) from None


def main(argv: list[str] | None = None) -> int:
    require_custom_searchers()
    import determined as det

    from hwnas.driver.determined.adapter import HwnasSearchMethod
    from hwnas.driver.determined.experiment_config import (
        build_trial_experiment,
        load_yaml_mapping,
    )
    from hwnas.driver.determined.progress import SearchReporter
    from hwnas.driver.determined.runner import HwnasSearchRunner
    from hwnas.driver.determined.warm_start import load_warm_start
    from hwnas.searchers.config import load_config
    from hwnas.searchers.method import SearchMethod

    logging.basicConfig(level=logging.INFO, format=det.LOG_FORMAT)
    args = build_parser().parse_args(argv)
    info = det.get_cluster_info()
    hparams = dict(info.trial.hparams) if info is not None and info.task_type == "TRIAL" else {}
    opts = resolve_args(args, hparams)

    search = load_config(opts["search_config"])
    trial_experiment = build_trial_experiment(
        load_yaml_mapping(opts["trial_experiment"]), search, source=opts["trial_experiment"]
    )
    method = SearchMethod(search)
    if args.check:
        print_check(trial_experiment, SearchMethod(search).initial_operations())
        return 0
    with det.core.init() as core_context:
        adapter = HwnasSearchMethod(method)
        reporter = SearchReporter(meta={"search": search.name})
        runner = HwnasSearchRunner.from_cluster(adapter, core_context, reporter=reporter)
        if runner.latest_checkpoint is None and opts["warm_start"]:
            records = load_warm_start(str(opts["warm_start"]))
            counts = method.warm_start(records)
            logging.getLogger("hwnas.determined").info(
                "warm start from %s: %d records, %s", opts["warm_start"], len(records), counts
            )
        runner.run(trial_experiment, model_dir=str(Path(args.context)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
