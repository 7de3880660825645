"""A fast stand-in for ``python -m hwnas.trials.local`` used by the local backend's tests.

Run as ``python tests/test_local_runner_child.py [--crash ID] [--hang ID] [--sleep S]
[--ledger FILE] --request REQ --result RES`` (the runner appends the last two). It speaks the
trial child contract: reads the request, "trains" by recording the reached length in a
checkpoint file in ``checkpoint_dir`` (resuming from it), and writes deterministic metrics
derived from the architecture string, so a search over it is reproducible. ``--crash ID``
makes trial ID exit with a traceback and no result, ``--hang ID`` makes it sleep forever (for
the timeout), ``--invalid ID`` reports it invalid, ``--sleep S`` makes each run take S
seconds, and ``--ledger`` appends ``trial_id length from_length`` for each finished run so
tests can check that nothing trained twice. It defines no tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path


def fake_metrics(arch: str, length: int) -> dict[str, float | int | str | bool]:
    """Deterministic metrics: accuracy grows with length, latency depends on the arch only."""
    digest = hashlib.sha256(arch.encode()).digest()
    u1, u2 = digest[0] / 255.0, digest[1] / 255.0
    return {
        "validation_accuracy": round(0.3 + 0.6 * u1 * length / (length + 1), 6),
        "validation_loss": round(2.0 - u1, 6),
        "train_loss": round(2.0 - u1, 6),
        "epochs": length,
        "params": 1000 + digest[2],
        "flops": 10000 + digest[3],
        "latency_ms": round(0.1 + u2, 6),
        "latency_p90_ms": round(0.12 + u2, 6),
        "latency_cv": 0.01,
        "latency_unstable": False,
        "latency_backend": "fake",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crash", type=int, action="append", default=[])
    parser.add_argument("--hang", type=int, action="append", default=[])
    parser.add_argument("--invalid", type=int, action="append", default=[])
    parser.add_argument("--ledger", default=None)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds of fake training")
    parser.add_argument("--request", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    request = json.loads(Path(args.request).read_text())
    trial_id, length = int(request["trial_id"]), int(request["length"])
    if trial_id in args.crash:
        raise RuntimeError(f"fake crash of trial {trial_id}")
    if trial_id in args.hang:
        time.sleep(3600)
    time.sleep(args.sleep)
    if trial_id in args.invalid:
        result = {"ok": False, "kind": "invalid", "message": f"trial {trial_id} is invalid"}
        Path(args.result).write_text(json.dumps(result))
        return 0
    checkpoint = Path(request["checkpoint_dir"]) / "fake_checkpoint.json"
    start = json.loads(checkpoint.read_text())["length"] if checkpoint.exists() else 0
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_text(json.dumps({"length": length}))
    arch = request["hparams"]["arch"]
    result = {"ok": True, "metrics": fake_metrics(arch, length)}
    tmp = Path(args.result).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, args.result)
    if args.ledger:
        with open(args.ledger, "a", encoding="utf-8") as fh:
            fh.write(f"{trial_id} {length} {start}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
