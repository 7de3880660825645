"""Why a trial ended without a result: the outcome kinds every runner maps to its own verdict."""

from __future__ import annotations


class TrialError(Exception):
    """A trial cannot produce metrics; ``kind`` is the outcome name the runners report."""

    kind = "error"


class InvalidTrial(TrialError):
    """The architecture (or its hyperparameters) cannot be trained: the space rejects it."""

    kind = "invalid"


class TrialOutOfMemory(InvalidTrial):
    """The model does not fit the device's memory at this batch size: invalid for this budget."""

    kind = "oom"


class TrainingDiverged(TrialError):
    """The loss became NaN or infinite; training further would only waste the device."""

    kind = "nan"


# CUDA says "out of memory"; torch's CPU allocator "can't allocate memory" (errno 12).
_OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/CPU allocator failures, which torch raises as several exception types."""
    import torch  # here, not at import: the trial processes' entry modules stay light

    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    message = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(p in message for p in _OOM_PHRASES)
