"""One GPU check: every GPU path of hwnas once, one table of pass/fail and figures.

Run as ``scripts/gpu-check`` on a machine with a CUDA GPU (written for one H100/H200; the whole
run stays inside ``--budget-s``, 450 s by default). Paths: NVML facts; the torch-free CUDA
runtime the TensorRT backend uses (cuda-python buffers, stream, events); torch-cuda eager,
``torch.compile`` and CUDA graph; ONNX Runtime's CUDA and TensorRT execution providers; native
TensorRT fp16 / fp32 / int8; bf16 autocast vs fp32 training throughput on an NB201 cell; a
small local search whose trials run in a warm worker on the GPU.

Each check runs in its own child process with a time limit, so a crash or a hang costs one
row. A check whose runtime is not installed is skipped with the reason and with why it could
not be installed. Wheels in ``.whl/`` (``--fetch-wheels`` downloads the ones hwnas needs for
Python 3.12 x86_64) are installed into a temporary folder first, offline.

    scripts/gpu-check --dry-run            # what would run, what is importable here
    scripts/gpu-check --fetch-wheels       # here, with PyPI: hwnas's missing deps into .whl/
    scripts/gpu-check --out DIR            # on the GPU machine; DIR/gpu-check.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
MARK = "GPU-CHECK-RESULT "
#: NB201's best-known CIFAR cell at the benchmark's standard size (C=16, N=5).
NB201 = (
    {"C": 16, "N": 5},
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
    "nor_conv_3x3~1|nor_conv_3x3~2|",
)
#: Distributions hwnas imports on these paths that a stock CUDA+PyTorch image may lack
#: (the lent H200 image has none of them); ``--fetch-wheels`` downloads them for Python 3.12.
CARRIED = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")
#: Why a runtime may be impossible to install on the GPU machine (measured here, 2026-11).
WHY_NOT_INSTALLABLE = {
    "onnxruntime-gpu": "onnxruntime-gpu replaces onnxruntime; its 1.31.1 wheel holds a 284 MB "
    "CUDA provider library, too big to carry (64 MiB per device call) to a machine that reaches "
    "no package registry",
    "tensorrt": "TensorRT's libraries are not on PyPI: tensorrt-cu13-libs there is a stub that "
    "downloads them (GBs) from NVIDIA's own index at install time, which neither the project's "
    "machines nor the lent GPU machine can reach; put the real wheels in .whl/ to run this",
}


@dataclass(frozen=True)
class Check:
    name: str
    limit_s: int
    what: str
    needs: tuple[str, ...]  # importable modules this check needs


CHECKS = (
    Check("nvml", 30, "NVML facts of GPU 0 and the identity cache keys use", ("pynvml",)),
    Check(
        "cuda-runtime",
        45,
        "cuda-python buffers, stream, events (TensorRT backend's path)",
        ("cuda.bindings",),
    ),
    Check("torch-eager", 90, "measure NB201 C16N5 on torch-cuda, eager, CUDA events", ("torch",)),
    Check("torch-cuda-graph", 90, "the same replayed as a captured CUDA graph", ("torch",)),
    Check(
        "train-amp",
        150,
        "trial training images/s: fp32 vs bf16 autocast, NB201 C16N5",
        ("torch", "pydantic"),
    ),
    Check("torch-compile", 200, "the same NB201 cell under torch.compile (inductor)", ("torch",)),
    Check("ort-cuda", 90, "ONNX Runtime CUDA EP with IO binding, node placement", ("onnxruntime",)),
    Check(
        "ort-trt",
        180,
        "ONNX Runtime TensorRT EP (needs TensorRT 10 libs), node placement",
        ("onnxruntime", "tensorrt"),
    ),
    Check(
        "trt-fp16",
        150,
        "native TensorRT, fp16 ONNX, strongly typed engine",
        ("tensorrt", "cuda.bindings", "onnxruntime"),
    ),
    Check("trt-fp32", 120, "native TensorRT, fp32 engine", ("tensorrt", "cuda.bindings")),
    Check(
        "trt-int8",
        150,
        "native TensorRT, Q/DQ int8 ONNX from calibration images",
        ("tensorrt", "cuda.bindings", "onnxruntime"),
    ),
    Check(
        "warm-workers",
        150,
        "a 4-trial local search on GPU 0 in a warm worker: promotions in memory, fixed cost/rung",
        # the whole local search: hwnas's own dependencies, digits from scikit-learn's files
        ("torch", "pydantic", "yaml", "rich", "scipy", "moocore", "matplotlib", "sklearn"),
    ),
)
BY_NAME = {c.name: c for c in CHECKS}


class Skip(Exception):
    """The check's runtime is not installed: the message says what and why."""


# -- the checks (each runs in a child process) -----------------------------------------------


def _measure(backend: str, workdir: Path, **target: Any) -> dict[str, Any]:
    """``measure_architecture`` on the NB201 cell; the figures the table shows."""
    import numpy as np

    from hwnas.latency import MeasurementTarget, measure_architecture
    from hwnas.spaces import get_space

    options, arch = NB201
    calibration = None
    if backend == "trt-int8":
        calibration = np.random.default_rng(0).standard_normal((64, 3, 32, 32), dtype=np.float32)
    result = measure_architecture(
        get_space("nb201", **options),
        arch,
        MeasurementTarget(backend, input_shape=(3, 32, 32), **target),
        engine_cache_dir=str(workdir / "engines"),
        calibration=calibration,
    )
    metrics = result.to_metrics()
    out = {
        "median_ms": round(result.median_ms, 4),
        "p90_ms": round(result.stats.p90_ms, 4),
        "cv": round(result.stats.cv, 4),
        "host_median_ms": metrics.get("latency_host_median_ms"),
        "clock": metrics["latency_clock"],
        "device": result.device.get("name"),
    }
    for key in ("placement", "nodes_by_provider", "engine", "timing_cache", "onnx", "providers"):
        if key in result.info:
            out[key] = result.info[key]
    return out


def check_nvml(workdir: Path) -> dict[str, Any]:
    from hwnas.latency.device import gpu_facts, gpu_identity

    facts = gpu_facts(0)
    if "nvml_error" in facts:
        raise RuntimeError(facts["nvml_error"])
    keys = (
        "name",
        "compute_capability",
        "driver",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "temperature_c",
        "power_limit_w",
    )
    out = {k: facts.get(k) for k in keys}
    out["identity"] = gpu_identity(0)
    return out


def check_cuda_runtime(workdir: Path) -> dict[str, Any]:
    import statistics

    import numpy as np

    from hwnas.latency.backends import cuda_runtime as cr

    cudart = cr.import_cudart()
    cr.require_device(cudart, 0)
    buffers, timer = cr.DeviceBuffers(cudart), cr.EventTimer(cudart)
    try:
        buffers.upload(np.ones(1 << 18, np.float32))  # 1 MiB host -> device
        empty = [timer.time(lambda stream: None) * 1e3 for _ in range(20)]
        allocated = len(buffers)
    finally:
        timer.close()
        buffers.close()
    from hwnas.latency.device import gpu_identity

    return {
        "allocations": allocated,
        "freed": len(buffers) == 0,
        "empty_event_pair_ms": round(statistics.median(empty), 5),
        "identity": gpu_identity(0, cudart=cudart),
    }


def check_torch_eager(workdir: Path) -> dict[str, Any]:
    return _measure("torch-cuda", workdir)


def check_torch_cuda_graph(workdir: Path) -> dict[str, Any]:
    return _measure("torch-cuda", workdir, cuda_graph=True)


def check_torch_compile(workdir: Path) -> dict[str, Any]:
    return _measure("torch-cuda", workdir, compile=True)


def _ort_providers() -> tuple[str, list[str]]:
    import onnxruntime as ort

    return ort.__version__, list(ort.get_available_providers())


def check_ort_cuda(workdir: Path) -> dict[str, Any]:
    version, providers = _ort_providers()
    if "CUDAExecutionProvider" not in providers:
        raise Skip(
            f"onnxruntime {version} has no CUDAExecutionProvider ({', '.join(providers)}); "
            + WHY_NOT_INSTALLABLE["onnxruntime-gpu"]
        )
    return _measure("ort-cuda", workdir)


def check_ort_trt(workdir: Path) -> dict[str, Any]:
    import ctypes

    version, providers = _ort_providers()
    if "TensorrtExecutionProvider" not in providers:
        raise Skip(
            f"onnxruntime {version} has no TensorrtExecutionProvider; "
            + WHY_NOT_INSTALLABLE["onnxruntime-gpu"]
        )
    try:
        import tensorrt  # noqa: F401  (loads the pip wheel's libnvinfer, if that is how it came)

        ctypes.CDLL("libnvinfer.so.10")
    except (ImportError, OSError) as exc:
        raise Skip(
            f"ORT's TensorRT EP links libnvinfer.so.10 (TensorRT 10), not loadable: {exc}; "
            + WHY_NOT_INSTALLABLE["tensorrt"]
        ) from exc
    return _measure("ort-trt", workdir, precision="fp16")


def _native_trt(precision: str, workdir: Path) -> dict[str, Any]:
    from hwnas.latency.errors import BackendUnavailableError

    try:
        from hwnas.latency.backends.tensorrt import import_tensorrt

        import_tensorrt()
    except BackendUnavailableError as exc:
        raise Skip(f"{exc}; " + WHY_NOT_INSTALLABLE["tensorrt"]) from exc
    return _measure(f"trt-{precision}", workdir)


def check_trt_fp16(workdir: Path) -> dict[str, Any]:
    return _native_trt("fp16", workdir)


def check_trt_fp32(workdir: Path) -> dict[str, Any]:
    return _native_trt("fp32", workdir)


def check_trt_int8(workdir: Path) -> dict[str, Any]:
    return _native_trt("int8", workdir)


def check_train_amp(workdir: Path) -> dict[str, Any]:
    from benchmarks.train_throughput import run_config

    rates = {}
    for amp in ("off", "bf16"):
        cfg = {
            "net": "nb201",
            "amp": amp,
            "device": "cuda",
            "batch_size": 256,
            "steps": 20,
            "repeats": 3,
            "threads": None,
            "channels_last": False,
            "compile": False,
        }
        result = run_config(cfg)
        rates[amp] = result["images_per_second"]
        peak = result["peak_memory_mib"]
    return {
        "fp32_images_per_s": round(rates["off"]),
        "bf16_images_per_s": round(rates["bf16"]),
        "bf16_speedup": round(rates["bf16"] / rates["off"], 3),
        "bf16_peak_mib": round(peak),
    }


def check_warm_workers(workdir: Path) -> dict[str, Any]:
    """``experiment_yamls/local_smoke.yaml`` with its trials on the GPU (``devices: auto``: one
    warm worker per GPU) and latency on torch-cuda: every run must succeed, promoted trials
    continue in the worker's memory, and each rung's fixed cost (a run's wall time less
    training, validation and latency) is reported."""
    import statistics

    import torch
    import yaml

    if not torch.cuda.is_available():
        raise RuntimeError("no usable CUDA device: torch.cuda.is_available() is False")
    from hwnas.api import search

    config = yaml.safe_load((ROOT / "experiment_yamls" / "local_smoke.yaml").read_text())
    config["latency"] = {"backend": "torch-cuda"}
    config["budget"]["max_concurrent"] = 1
    config["runner"] = {"trial_timeout_s": 120, "devices": "auto", "warm_workers": True}
    started = time.perf_counter()
    result = search(config, workdir / "search", progress=False)
    wall = time.perf_counter() - started
    failed = [t for t in result.trials if t["status"] not in ("completed", "stopped")]
    if failed:
        raise RuntimeError(f"trials failed: {[(t['trial_id'], t['message']) for t in failed]}")
    trials = workdir / "search" / "trials"
    runs = [json.loads(p.read_text()) for p in sorted(trials.glob("*/result_*.json"))]
    fixed = [
        r["timings"]["run"] - sum(r["timings"][k] for k in ("train", "validate", "latency"))
        for r in runs
    ]
    logs = [p.read_text() for p in trials.glob("*/log.txt")]
    return {
        "trials": len(result.trials),
        "runs": len(runs),
        "continued_in_memory": sum(log.count("continuing in memory") for log in logs),
        "fixed_s_per_rung_median": round(statistics.median(fixed), 4),
        "latency_device": runs[0]["metrics"].get("latency_device"),
        "wall_s": round(wall, 1),
    }


RUNNERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "nvml": check_nvml,
    "cuda-runtime": check_cuda_runtime,
    "torch-eager": check_torch_eager,
    "torch-cuda-graph": check_torch_cuda_graph,
    "train-amp": check_train_amp,
    "torch-compile": check_torch_compile,
    "ort-cuda": check_ort_cuda,
    "ort-trt": check_ort_trt,
    "trt-fp16": check_trt_fp16,
    "trt-fp32": check_trt_fp32,
    "trt-int8": check_trt_int8,
    "warm-workers": check_warm_workers,
}


#: How to get a check's missing module (beside WHY_NOT_INSTALLABLE's reasons).
HOW_TO_GET = {
    "tensorrt": WHY_NOT_INSTALLABLE["tensorrt"],
    "onnxruntime": "install onnxruntime-gpu; " + WHY_NOT_INSTALLABLE["onnxruntime-gpu"],
    "cuda.bindings": "pip install cuda-bindings (major version = the CUDA driver's)",
    "pynvml": "pip install nvidia-ml-py",
    "pydantic": "carry it: scripts/gpu-check --fetch-wheels where PyPI is reachable",
    "torch": "install a CUDA build of torch",
    "sklearn": "pip install hwnas's dependencies (the local search needs all of them)",
    "moocore": "pip install hwnas's dependencies (the local search needs all of them)",
}


def run_child(name: str, workdir: Path) -> int:
    """One check in this process; its result is the last stdout line, after ``MARK``."""
    try:
        missing = [m for m in BY_NAME[name].needs if not _importable(m)]
        if missing:
            raise Skip(
                "not installed: "
                + "; ".join(f"{m} ({HOW_TO_GET.get(m, 'install it')})" for m in missing)
            )
        figures = RUNNERS[name](workdir)
        row = {"status": "pass", "figures": figures}
    except Skip as exc:
        row = {"status": "skip", "note": str(exc)}
    except Exception as exc:
        row = {"status": "fail", "note": f"{type(exc).__name__}: {exc}"}
    print(MARK + json.dumps(row, default=str), flush=True)
    return 0


# -- the parent: set-up, children, table ----------------------------------------------------


def install_carried_wheels(site: Path) -> list[str]:
    """Install ``.whl/*.whl`` (offline, no dependency resolution) into ``site``."""
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    if not wheels:
        return []
    marker = site / ".installed"
    names = [w.name for w in wheels]
    if not (marker.exists() and marker.read_text() == "\n".join(names)):
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--upgrade",
            "--target",
            str(site),
            *map(str, wheels),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:  # e.g. wheels for another Python: run with what is there
            tail = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"could not install .whl/ (pip exit {done.returncode}): {tail}", flush=True)
            return []
        marker.write_text("\n".join(names))
    return names


def child_env(site: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(site)] if site else [])
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before any onnxruntime import
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_check(check: Check, timeout_s: float, env: dict[str, str], workdir: Path) -> dict:
    start = time.perf_counter()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        check.name,
        "--workdir",
        str(workdir),
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        row = {"status": "fail", "note": f"timed out after {timeout_s:.0f} s"}
    else:
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith(MARK)]
        if lines:
            row = json.loads(lines[-1][len(MARK) :])
        else:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            row = {"status": "fail", "note": f"exit {done.returncode}: {tail}"}
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def headline(name: str, row: dict[str, Any]) -> str:
    """The one figure a row shows (the JSON has them all)."""
    f = row.get("figures") or {}
    if name == "nvml":
        return f"{f.get('name')} sm{str(f.get('compute_capability', '')).replace('.', '')}"
    if name == "cuda-runtime":
        return f"event pair {f.get('empty_event_pair_ms')} ms"
    if name == "train-amp":
        return (
            f"{f.get('fp32_images_per_s')} -> {f.get('bf16_images_per_s')} img/s "
            f"(x{f.get('bf16_speedup')})"
        )
    if "median_ms" in f:
        extra = f" placement {f['placement']}" if "placement" in f else ""
        return f"{f['median_ms']} ms (cv {f['cv']}){extra}"
    return ""


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    width = max(len(n) for n in rows)
    print(f"{'check':<{width}}  status  {'seconds':>7}  figure / note")
    for name, row in rows.items():
        text = headline(name, row) if row["status"] == "pass" else row.get("note", "")
        print(f"{name:<{width}}  {row['status']:<6}  {row.get('seconds', 0):>7}  {text}")
    counts = {s: sum(r["status"] == s for r in rows.values()) for s in ("pass", "fail", "skip")}
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")


def dry_run(selected: list[Check], budget_s: float) -> int:
    """What would run, in order, with limits, and which of its needs are importable here."""
    wheels = sorted(w.name for w in WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    print(f"python {sys.version.split()[0]} at {sys.executable}; budget {budget_s:.0f} s")
    print("wheels to install from .whl/: " + (", ".join(wheels) or "none"))
    for check in selected:
        missing = [m for m in check.needs if not _importable(m)]
        here = "all importable here" if not missing else "missing here: " + ", ".join(missing)
        print(f"would run {check.name:<16} limit {check.limit_s:>3} s  {check.what}  [{here}]")
    return 0


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def fetch_wheels() -> int:
    """Here (with PyPI): download CARRIED at this environment's versions for CPython 3.12."""
    platforms = [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    ]
    specs = [f"{dist}=={importlib.metadata.version(dist)}" for dist in CARRIED]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "-d",
        str(WHEELS),
    ]
    for platform in platforms:
        cmd += ["--platform", platform]
    print("downloading " + " ".join(specs), flush=True)
    return subprocess.run([*cmd, *specs]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list what would run; run none")
    parser.add_argument("--fetch-wheels", action="store_true", help="download .whl/ (PyPI)")
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME), help="run these checks")
    parser.add_argument("--budget-s", type=float, default=450.0, help="whole run (default 450)")
    parser.add_argument("--out", type=Path, help="write gpu-check.json into this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child, args.workdir)
    selected = [BY_NAME[n] for n in args.only] if args.only else list(CHECKS)
    if args.fetch_wheels:
        return fetch_wheels()
    if args.dry_run:
        return dry_run(selected, args.budget_s)

    deadline = time.perf_counter() + args.budget_s
    with tempfile.TemporaryDirectory(prefix="hwnas-gpu-check-") as tmp:
        site = Path(tmp) / "site"
        installed = install_carried_wheels(site)
        env = child_env(site if installed else None)
        print("installed from .whl/: " + (", ".join(installed) or "nothing"), flush=True)
        rows: dict[str, dict[str, Any]] = {}
        for check in selected:
            left = deadline - time.perf_counter()
            if left < 20:
                rows[check.name] = {"status": "skip", "note": "time budget spent"}
                continue
            rows[check.name] = run_check(check, min(check.limit_s, left), env, Path(tmp))
            row = rows[check.name]
            print(f"{check.name}: {row['status']} in {row['seconds']} s", flush=True)
    print_table(rows)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu-check.json").write_text(json.dumps(rows, indent=1, default=str))
    # Success is at least one path measured and none broken; skips alone prove nothing.
    statuses = [r["status"] for r in rows.values()]
    return 0 if "pass" in statuses and "fail" not in statuses else 1


if __name__ == "__main__":
    sys.exit(main())
