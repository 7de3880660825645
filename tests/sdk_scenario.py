"""The SDK driver's side of the Determined SDK backend tests, runnable in another interpreter.

``tests/test_determined_sdk*.py`` start ``det_master_double.MasterDouble`` and run the driver
either in-process (with the project's determined 0.37.0) or as ``python tests/sdk_scenario.py
...`` in a virtualenv holding determined 0.38.1: the same code against both clients. The last
line printed is a JSON summary of the search (``summary``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def credentials(config_dir: Path) -> dict[str, str]:
    """The environment the SDK logs in with (its token cache kept in ``config_dir``)."""
    return {
        "DET_DEBUG_CONFIG_PATH": str(config_dir),
        "DET_USER": "determined",
        "DET_PASS": "Hwnas-test-1",
        "XDG_DATA_HOME": str(config_dir / "data"),
    }


def summary(out: Path, result: Any) -> dict[str, Any]:
    """What the tests compare across clients: the run summary and the method's records."""
    state = json.loads((out / "state.json").read_text())
    records = state["method"]["trials"]
    return {
        "finished": result.finished,
        "interrupted": result.interrupted,
        "reason": result.reason,
        "trials": result.trials,
        "records": [
            {
                "trial_id": r["trial_id"],
                "arch": r["arch"],
                "status": r["status"],
                "lengths": [x["length"] for x in r["results"]],
                "message": r["message"],
            }
            for r in records
        ],
        "warm": [w["arch"] for w in state["method"]["warm_start"]],
        "runs": state["backend"]["runs"],
        "killed": state["backend"]["killed"],
        "determined_version": _determined_version(),
    }


def _determined_version() -> str:
    import determined

    return determined.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--master", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config", default=str(REPO / "experiment_yamls" / "local_demo.yaml"))
    parser.add_argument(
        "--trial-experiment", default=str(REPO / "experiment_yamls" / "det_trials_cpu.yaml")
    )
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--warm-start", default=None)
    parser.add_argument("--stop-after-events", type=int, default=None)
    parser.add_argument("--report", action="store_true", help="write the Pareto report")
    args = parser.parse_args(argv)
    os.environ.update(credentials(args.out.parent / "det-config"))
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from hwnas.driver.determined.sdk_search import run_determined_search

    result = run_determined_search(
        None if args.resume else args.config,
        args.out,
        resume=args.resume,
        master=args.master,
        trial_experiment=args.trial_experiment,
        context_dir=REPO,
        warm_start=args.warm_start,
        poll_interval_s=0.0,
        stop_after_events=args.stop_after_events,
        write_report=args.report,
    )
    print(json.dumps(summary(args.out, result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
