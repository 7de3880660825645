"""The same pretrained bits on every x86-64 machine with AVX2: which CPU kernels training uses.

Seeds, one thread and deterministic algorithms make a pretraining repeat itself on one machine,
but not across machines: with torch 2.13's CPU build, the shipped NB201 weights came out
``3b5bec…`` on an AVX-512 CPU and ``83fe2d…`` on an AVX2-only one. Two things pick the
floating-point code path by CPU:

* ATen dispatches its vectorised kernels by CPU capability (AVX-512, AVX2, default):
  ``ATEN_CPU_CAPABILITY=avx2`` on the AVX-512 machine gives the AVX2 machine's ``83fe2d…``;
* MKL (torch's BLAS) picks its own code path by CPU: ``MKL_CBWR`` (conditional numerical
  reproducibility) fixes it; ``MKL_CBWR=COMPATIBLE`` alone changed the digest again.

Both are read once, when torch and MKL load, so they must be in the environment before
``import torch``: ``python -m hwnas.searchers.arch2vec pretrain`` sets them first thing, and a
search that needs a model trains it in such a child process. This module imports no torch.
Not covered: CPUs without AVX2, other architectures (ARM: no MKL), other torch or MKL
versions; the sidecar records what was in force (``training.numerics``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: Environment that fixes the CPU code paths of a pretraining (see the module docstring).
PINNED_NUMERICS: Mapping[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}


def pin_numerics() -> bool:
    """Set ``PINNED_NUMERICS`` in this process's environment; False (nothing set) when torch
    is already loaded, since then it is too late to take effect."""
    if "torch" in sys.modules:
        return False
    os.environ.update(PINNED_NUMERICS)
    return True


def numerics_in_force() -> dict[str, str]:
    """What this process's pretraining runs with, for the weights' sidecar."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "MKL_CBWR": os.environ.get("MKL_CBWR", ""),
    }


__all__ = ["PINNED_NUMERICS", "numerics_in_force", "pin_numerics"]
