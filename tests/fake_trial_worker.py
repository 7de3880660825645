"""A warm trial worker whose trials are fake and can fail on purpose, for the pool's tests.

``python tests/fake_trial_worker.py [--crash ID] [--kill ID] [--hang ID] [--error ID]
[--invalid ID] [--sleep S] [--ledger FILE] --trials-dir DIR --hold N [--latency]`` (the pool
appends the last three). It is ``hwnas.trials.worker`` -- the same command loop (``serve``),
output redirection, result writing and protocol -- with ``TrialSession`` replaced by one that
"trains" as ``tests/test_local_runner_child.py`` does (a checkpoint file holding the reached
length, metrics derived from the architecture), so a search over it is quick and
reproducible. Per trial id: ``--crash`` exits the process with code 3 mid-run, ``--kill`` gets
it SIGKILLed (as the kernel's out-of-memory killer would), ``--hang`` sleeps forever,
``--error`` reports an unexpected error, ``--invalid`` an invalid trial. ``--ledger`` gets
``trial_id length from_length pid`` per finished run. It defines no tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_local_runner_child import fake_metrics

from hwnas.contract import failed_result, ok_result
from hwnas.trials.worker import serve


class FakeSession:
    """``TrialSession``'s surface (``run``, ``forget``, ``close``) over fake training."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.forgotten: list[int] = []

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        trial_id, length = int(request["trial_id"]), int(request["length"])
        print(f"fake trial {trial_id} to {length} in worker {os.getpid()}", flush=True)
        if trial_id in self.args.crash:
            print(f"fake crash of trial {trial_id}", file=sys.stderr, flush=True)
            os._exit(3)
        if trial_id in self.args.kill:
            os.kill(os.getpid(), signal.SIGKILL)
        if trial_id in self.args.hang:
            time.sleep(3600)
        time.sleep(self.args.sleep)
        if trial_id in self.args.error:
            return failed_result("error", f"RuntimeError: fake error of trial {trial_id}")
        if trial_id in self.args.invalid:
            return failed_result("invalid", f"trial {trial_id} is invalid")
        checkpoint = Path(request["checkpoint_dir"]) / "fake_checkpoint.json"
        start = json.loads(checkpoint.read_text())["length"] if checkpoint.exists() else 0
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(json.dumps({"length": length}))
        if self.args.ledger:
            with open(self.args.ledger, "a", encoding="utf-8") as fh:
                fh.write(f"{trial_id} {length} {start} {os.getpid()}\n")
        return ok_result(fake_metrics(request["hparams"]["arch"], length))

    def forget(self, trial_id: int) -> None:
        self.forgotten.append(trial_id)

    def close(self) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--crash", "--kill", "--hang", "--error", "--invalid"):
        parser.add_argument(flag, type=int, action="append", default=[])
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--ledger", default=None)
    parser.add_argument("--trials-dir", required=True)
    parser.add_argument("--hold", type=int, default=4)
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    answers.write(json.dumps({"event": "ready", "pid": os.getpid(), "startup_s": 0.0}) + "\n")
    answers.flush()
    serve(sys.stdin, answers, FakeSession(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
