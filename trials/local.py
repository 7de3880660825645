"""The local backend's trial child process.

``python -m hwnas.trials.local --request REQ.json --result RES.json`` where REQ is
``{"hparams": {...}, "length": <cumulative epochs>, "checkpoint_dir": "<dir>", "trial_id": 7}``
and RES becomes ``{"ok": true, "metrics": {...}}`` or
``{"ok": false, "kind": "invalid"|"oom"|"nan"|"error", "message": "..."}``.
The exit code is 0 whenever RES was written, whatever the outcome; non-zero only if it was not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hwnas.atomic import write_json_atomic
from hwnas.contract import failed_result
from hwnas.trials.errors import TrialError
from hwnas.trials.session import TrialSession

log = logging.getLogger("hwnas.trials.local")


def read_request(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check the request file, naming the bad field."""
    try:
        request = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrialError(f"cannot read request {path}: {exc}") from exc
    if not isinstance(request, dict):
        raise TrialError(f"request {path} must be a JSON object")
    for key, kind in (("hparams", dict), ("length", int), ("checkpoint_dir", str)):
        if not isinstance(request.get(key), kind) or isinstance(request.get(key), bool):
            raise TrialError(
                f"request {path}: field {key!r} must be {kind.__name__}, got {request.get(key)!r}"
            )
    if request["length"] < 1:
        raise TrialError(f"request {path}: field 'length' must be >= 1, got {request['length']}")
    return request


def run_request(
    request_path: str | os.PathLike[str], session: TrialSession | None = None
) -> dict[str, Any]:
    """Run one request and return the result dict (never raises for a trial's own failure).
    ``session``: what a warm worker keeps between runs (``hwnas.trials.session``); a fresh
    process runs with a new one, so both train the same way. An ok result also carries
    ``"timings"``: where the run's time went."""
    try:
        request = read_request(request_path)
    except TrialError as exc:
        log.error("trial failed (%s): %s", exc.kind, exc)
        return failed_result(exc.kind, str(exc))
    log.info("trial %s: training to %d epochs", request.get("trial_id"), request["length"])
    return (session or TrialSession()).run(request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwnas.trials.local", description=__doc__)
    parser.add_argument("--request", required=True, help="request JSON file")
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    result = run_request(args.request)
    try:
        write_json_atomic(args.result, result, indent=1)
    except Exception as exc:
        print(f"hwnas.trials.local: cannot write result {args.result}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from hwnas.trials.session import exit_without_teardown

    exit_without_teardown(main())
