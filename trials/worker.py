"""A warm trial worker: ``python -m hwnas.trials.worker --trials-dir DIR [--hold N] [--latency]``.

Serves the local backend's trial runs one after another in one process, so a run pays no
process start, no imports and no dataset decoding, and a promoted trial it still holds
continues without a rebuild or a restore (``hwnas.trials.session``). Each run is exactly the
trial child's (``python -m hwnas.trials.local``): the same request and result files, the same
code, the same metrics. The parent side is ``hwnas.driver.workers``.

Protocol, JSON lines. On stdin:

* ``{"op": "run", "request": REQ, "result": RES, "log": LOG}``: serve the request file REQ
  with the run's stdout and stderr appended to LOG, write RES atomically, then answer
  ``{"event": "done", "result": RES}``;
* ``{"op": "forget", "trial_id": 7}``: drop trial 7 from memory (no answer);
* ``{"op": "exit"}`` or the end of stdin: exit.

On stdout, first ``{"event": "ready", "pid": PID, "startup_s": S}`` once the imports are done.
Everything else the worker or a library prints goes to stderr (the worker's log), or during a
run to the run's LOG. ``--trials-dir`` names the search's trial folder so that a later runner
can recognise (and stop) a worker that outlived its parent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from hwnas.atomic import write_json_atomic

log = logging.getLogger("hwnas.trials.worker")


@contextlib.contextmanager
def output_to(path: str) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so libraries and
    child processes too) to ``path``, appending, for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (target, *saved):
            os.close(fd)


def warm_up(latency: bool) -> None:
    """Pay once, before the first run, what every run's first use would pay: torch's imports,
    the dynamo machinery its optimizers import on first construction (~2 s of CPU), the search
    spaces and, for latency, ONNX Runtime and the ONNX exporter."""
    import torch

    import hwnas.trials.loop
    from hwnas.spaces import SPACES

    SPACES.names()  # loads the built-in spaces
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    if latency:
        try:
            import onnxruntime  # noqa: F401

            import hwnas.latency.export  # noqa: F401
        except Exception as exc:  # a trial that needs them reports the problem itself
            log.warning("latency warm-up skipped: %s", exc)


def serve(commands: TextIO, answers: TextIO, session: Any) -> None:
    """Answer commands until ``exit`` or the end of ``commands``."""
    from hwnas.trials.local import run_request

    for line in commands:
        if not line.strip():
            continue
        command = json.loads(line)
        op = command.get("op")
        if op == "exit":
            return
        if op == "forget":
            session.forget(int(command["trial_id"]))
            continue
        if op != "run":
            log.error("unknown command %r", command)
            continue
        with output_to(command["log"]):
            result = run_request(command["request"], session)
        write_json_atomic(command["result"], result, indent=1)
        answers.write(json.dumps({"event": "done", "result": command["result"]}) + "\n")
        answers.flush()


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m hwnas.trials.worker", description=__doc__)
    parser.add_argument("--trials-dir", required=True, help="the search's trial folder")
    parser.add_argument("--hold", type=int, default=4, help="trained trials kept in memory")
    parser.add_argument("--latency", action="store_true", help="keep an ONNX timing process")
    args = parser.parse_args(argv)
    # The runner handles Ctrl-C and stops its workers; a worker prints no traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol channel clean: whatever else is printed goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    from hwnas.trials.session import TrialSession

    warm_up(args.latency)
    session = TrialSession(hold=args.hold, keep_data=True, keep_latency_worker=args.latency)
    if args.latency:
        try:
            session.start_latency_worker()
        except Exception as exc:
            log.warning("no ONNX timing process yet: %s", exc)
    startup = time.perf_counter() - started
    log.info("worker %d ready in %.1f s (trials in %s)", os.getpid(), startup, args.trials_dir)
    answers.write(json.dumps({"event": "ready", "pid": os.getpid(), "startup_s": startup}) + "\n")
    answers.flush()
    try:
        serve(sys.stdin, answers, session)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    from hwnas.trials.session import exit_without_teardown

    exit_without_teardown(main())
