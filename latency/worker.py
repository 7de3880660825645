"""Time ONNX models in a process that does no torch compute: ``python -m hwnas.latency.worker``.

DESIGN.md: ORT CPU figures are steadiest in a process where torch is not computing (torch's
thread pools perturb ORT's). So the trial exports in-process and the timing runs here: this
module never imports torch. The protocol is JSON lines on stdin/stdout, one request per line,
so one worker can serve many measurements (profiling) or just one (a trial). Every request
opens a fresh ORT session.

Request: ``{"onnx_path", "backend", "batch", "input_shape", "options": {...}, "timing": {...},
"reference_onnx_path": optional}``; with a reference the two models are timed alternately
(``hwnas.latency.timing.time_paired``) and the reply's ``reference`` holds the ratio.
Reply: ``{"ok": true, "stats": {...}, "device": {...}, "versions": {...}, "info": {...},
"load_s": float}`` or ``{"ok": false, "kind": "unavailable"|"measurement"|"error", "message"}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from hwnas.latency.errors import BackendUnavailableError, LatencyError, MeasurementError
from hwnas.latency.ort_runtime import TELEMETRY_VARIABLE, telemetry_off


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Measure one request; never raises (errors become ``ok: false`` replies)."""
    from hwnas.latency.backends import BackendOptions, get_backend
    from hwnas.latency.device import device_facts
    from hwnas.latency.timing import TimingConfig, time_callable, time_paired

    cpu_start = time.process_time()
    try:
        options = BackendOptions(**request.get("options", {}))
        backend = get_backend(request["backend"], options)
        start = time.perf_counter()
        loaded = backend.load(
            request["onnx_path"],
            batch=int(request["batch"]),
            input_shape=tuple(request["input_shape"]),
        )
        load_s = time.perf_counter() - start
        config = TimingConfig.from_dict(request.get("timing", {}))
        paired = None
        try:
            if request.get("reference_onnx_path"):
                reference = backend.load(
                    request["reference_onnx_path"],
                    batch=int(request["batch"]),
                    input_shape=tuple(request["input_shape"]),
                )
                try:
                    paired = time_paired(loaded.run, reference.run, config)
                finally:
                    reference.close()
                stats = paired.candidate
            else:
                stats = time_callable(loaded.run, config)
        finally:
            loaded.close()
        timing_s = time.perf_counter() - start - load_s
        return {
            "ok": True,
            "stats": stats.to_dict(),
            "device": device_facts(
                backend.device_kind, threads=options.threads, index=options.device_index
            ),
            "versions": backend.versions(),
            "info": loaded.info,
            "load_s": load_s,
            "timing_s": timing_s,
            "cpu_s": time.process_time() - cpu_start,  # this process's CPU for the request
            "reference": None
            if paired is None
            else {
                "ratio": paired.ratio,
                "ratio_cv": paired.ratio_cv,
                "median_ms": paired.reference.median_ms,
            },
        }
    except BackendUnavailableError as exc:
        return {"ok": False, "kind": "unavailable", "message": str(exc)}
    except MeasurementError as exc:
        return {"ok": False, "kind": "measurement", "message": str(exc)}
    except Exception as exc:
        return {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"}


def serve(stdin: Any, stdout: Any) -> None:
    """Answer JSON-line requests until stdin closes."""
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            reply = {"ok": False, "kind": "error", "message": f"bad request JSON: {exc}"}
        else:
            reply = handle(request)
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main() -> None:
    # Before anything can import onnxruntime (see hwnas.latency.ort_runtime).
    os.environ.setdefault(TELEMETRY_VARIABLE, "1")
    # Ctrl-C at a terminal reaches the whole process group: the parent handles it and stops
    # this worker (OnnxWorker.kill), so the worker prints no traceback of its own. Group
    # kills (a trial's timeout) and SIGTERM still end it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol channel clean: anything a library prints goes to stderr.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, protocol)


class OnnxWorker:
    """Parent side: a ``python -m hwnas.latency.worker`` child measuring ONNX files on request."""

    def __init__(self, python: str | None = None) -> None:
        env = telemetry_off()
        # One ORT thread setting at a time: keep OpenMP/MKL from grabbing every core.
        env.setdefault("OMP_NUM_THREADS", "1")
        self._proc = subprocess.Popen(
            [python or sys.executable, "-m", "hwnas.latency.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def measure(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; return the reply or raise the error it names."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            raise MeasurementError(f"latency worker died: {exc}") from exc
        if not line:
            code = self._proc.poll()
            raise MeasurementError(f"latency worker exited (code {code}) without a reply")
        reply = json.loads(line)
        if not reply.get("ok"):
            kind = reply.get("kind")
            error: type[LatencyError] = (
                BackendUnavailableError if kind == "unavailable" else MeasurementError
            )
            raise error(reply.get("message", "unknown worker error"))
        return reply

    def kill(self) -> None:
        """Stop the worker now, mid-measurement if need be (an interrupted caller)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.close()

    def close(self) -> None:
        """Let the worker finish and exit (it ends when its stdin closes)."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> OnnxWorker:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.kill()


if __name__ == "__main__":
    main()
