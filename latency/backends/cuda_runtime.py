"""Device memory, a stream and event timing through cuda-python, without torch.

The native TensorRT backend runs in the torch-free timing worker, so it cannot borrow torch's
CUDA tensors. ``cuda.bindings.runtime`` (package ``cuda-bindings``; the module NVIDIA's own
TensorRT samples use since 10.13) is imported lazily. Every call returns ``(err, *results)``
and does not raise, even without a driver, so each result is checked (``call``).

``DeviceBuffers`` owns what ``set_tensor_address`` points at: TensorRT's ``enqueueV3`` makes
releasing that memory before the stream synchronises undefined behaviour, so the buffers live
until ``close()``, never just until the function that bound them returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.latency.errors import BackendUnavailableError, MeasurementError


def import_cudart() -> Any:
    """``cuda.bindings.runtime``, or one clear error naming the package to install."""
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise BackendUnavailableError(
            "native TensorRT backends need cuda-python for device memory and timing "
            "(pip install cuda-bindings, the major version matching the CUDA driver); "
            f"'cuda.bindings.runtime' could not be imported: {exc}"
        ) from exc
    return runtime


def call(cudart: Any, result: Any, what: str) -> Any:
    """The value(s) after the error code of a cuda-python call, or a ``MeasurementError``
    naming the call and the CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise MeasurementError(f"CUDA {what} failed: {error_name(cudart, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def error_name(cudart: Any, err: Any) -> str:
    """``cudaErrorNoDevice (100)``-style text for a CUDA error code."""
    try:
        _, name = cudart.cudaGetErrorName(err)
        name = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # the name is only for the message
        name = str(err)
    return f"{name} ({int(err)})"


def require_device(cudart: Any, index: int) -> None:
    """Select CUDA device ``index``, or raise ``BackendUnavailableError`` saying why not."""
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendUnavailableError(
            f"no usable CUDA device: cudaGetDeviceCount returned {error_name(cudart, err)}"
        )
    if not 0 <= index < count:
        raise BackendUnavailableError(f"CUDA device {index} does not exist ({count} visible)")
    (err,) = cudart.cudaSetDevice(index)
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendUnavailableError(f"cudaSetDevice({index}) failed: {error_name(cudart, err)}")


class DeviceBuffers:
    """Device allocations that stay alive until ``close()`` (idempotent)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self._pointers: list[int] = []

    def __len__(self) -> int:
        return len(self._pointers)

    def alloc(self, nbytes: int) -> int:
        """A new device allocation of ``nbytes`` (at least 1), owned by this object."""
        pointer = int(call(self._cudart, self._cudart.cudaMalloc(max(1, int(nbytes))), "malloc"))
        self._pointers.append(pointer)
        return pointer

    def upload(self, array: np.ndarray) -> int:
        """A new device allocation holding ``array``'s bytes."""
        host = np.ascontiguousarray(array)
        pointer = self.alloc(host.nbytes)
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        call(
            self._cudart,
            self._cudart.cudaMemcpy(pointer, host.ctypes.data, host.nbytes, kind),
            "memcpy host to device",
        )
        return pointer

    def close(self) -> None:
        while self._pointers:
            self._cudart.cudaFree(self._pointers.pop())


class EventTimer:
    """A non-default stream and two events; ``time(fn)`` returns ``fn``'s device seconds.

    TensorRT's docs advise a non-default stream for ``execute_async_v3`` (the default stream
    adds ``cudaDeviceSynchronize`` calls)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.stream = call(cudart, cudart.cudaStreamCreate(), "stream create")
        self._start = call(cudart, cudart.cudaEventCreate(), "event create")
        self._end = call(cudart, cudart.cudaEventCreate(), "event create")

    @property
    def handle(self) -> int:
        """The stream as the integer TensorRT's ``execute_async_v3`` takes."""
        return int(self.stream)

    def time(self, enqueue: Any) -> float:
        """Record, ``enqueue(stream_handle)``, record, wait: elapsed seconds between events."""
        cudart = self._cudart
        call(cudart, cudart.cudaEventRecord(self._start, self.stream), "event record")
        enqueue(self.handle)
        call(cudart, cudart.cudaEventRecord(self._end, self.stream), "event record")
        call(cudart, cudart.cudaEventSynchronize(self._end), "event synchronize")
        ms = call(cudart, cudart.cudaEventElapsedTime(self._start, self._end), "event elapsed")
        return float(ms) / 1e3

    def close(self) -> None:
        cudart = self._cudart
        if self.stream is not None:
            cudart.cudaStreamSynchronize(self.stream)
            cudart.cudaEventDestroy(self._start)
            cudart.cudaEventDestroy(self._end)
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
