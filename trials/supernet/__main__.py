"""``python -m hwnas.trials.supernet``: run one supernet trial outside a search.

Two forms:

* ``--request REQ.json --result RES.json``: the local backend's trial contract, exactly as
  ``python -m hwnas.trials.local`` (which also runs supernets when ``hparams.kind`` is
  ``supernet``);
* ``--hparams HP.(json|yaml) --length N --checkpoint-dir DIR [--result RES.json]``: the same
  run from a hyperparameter file; prints the derived architecture, its scores and the
  ranking's head. Rerun with a larger ``--length`` to continue from the checkpoint.

Exit code 0 when a result was produced, 1 when the trial failed (the reason is printed and in
RES), 2 for unusable arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from hwnas.atomic import write_json_atomic
from hwnas.trials.local import main as local_main
from hwnas.trials.local import run_request


def _read_hparams(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SystemExit(f"hwnas.trials.supernet: cannot read --hparams {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"hwnas.trials.supernet: --hparams {path} must hold a mapping")
    data.setdefault("kind", "supernet")
    return data


def _summary(metrics: dict[str, Any]) -> str:
    lines = [
        f"derived architecture: {metrics['derived_arch']}",
        f"  supernet accuracy {metrics['supernet_accuracy']:.4f} (mixture "
        f"{metrics['mixed_accuracy']:.4f}), params {metrics['params']:,}, flops "
        f"{metrics['flops']:,}",
    ]
    for key in ("latency_ms", "expected_latency_ms", "predicted_latency_ms"):
        if metrics.get(key) is not None:
            lines.append(f"  {key} {metrics[key]:.4f}")
    lines.append(f"ranking ({metrics['ranked']} scored; {metrics.get('ranking_file', '')}):")
    for i, row in enumerate(metrics.get("ranking", [])[:5], start=1):
        lines.append(f"  {i}. {row['supernet_accuracy']:.4f}  {row['arch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwnas.trials.supernet", description=__doc__)
    parser.add_argument("--request", help="request JSON (the local backend's contract)")
    parser.add_argument("--result", help="where to write the result JSON")
    parser.add_argument("--hparams", help="hyperparameters file (JSON or YAML)")
    parser.add_argument("--length", type=int, help="train to this many epochs (cumulative)")
    parser.add_argument("--checkpoint-dir", help="checkpoint (and ranking.json) directory")
    args = parser.parse_args(argv)
    if args.request:
        if not args.result:
            parser.error("--request needs --result")
        return local_main(["--request", args.request, "--result", args.result])
    if not (args.hparams and args.length and args.checkpoint_dir):
        parser.error("give --request/--result, or --hparams, --length and --checkpoint-dir")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    folder = Path(args.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    request = {
        "hparams": _read_hparams(args.hparams),
        "length": args.length,
        "checkpoint_dir": str(folder),
    }
    request_path = folder / "request.json"
    write_json_atomic(request_path, request, indent=1)
    result = run_request(request_path)
    write_json_atomic(args.result or folder / "result.json", result, indent=1, allow_nan=False)
    if not result["ok"]:
        print(f"supernet trial failed ({result['kind']}): {result['message']}", file=sys.stderr)
        return 1
    print(_summary(result["metrics"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
