"""The search-space interface every room programs against.

An architecture travels between rooms as its *string form* (``str``): NB201's own
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` format, or the MobileNet space's compact format.
Strings are hashable, JSON-native and human-readable, so the searcher, the trial and the
latency cache can exchange them without sharing Python objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported only when a model is built
    from torch import nn


class ArchitectureError(ValueError):
    """An architecture string or genotype is malformed or outside its space.

    The message names the offending part (edge, op, stage, field) and the value.
    """


class SearchSpace(ABC):
    """A family of architectures: sampling, variation, identity, encodings and a builder."""

    #: Registry name, e.g. ``"nb201"``.
    name: str

    # -- identity and validation ---------------------------------------------------------
    @abstractmethod
    def validate(self, arch: str) -> str:
        """Return the normalised string form of ``arch`` or raise ``ArchitectureError``."""

    @abstractmethod
    def canonical_key(self, arch: str) -> str:
        """A key equal exactly for architectures whose builds are the same computation (the
        same function family, the same params, FLOPs and latency). The search's dedupe and
        the latency cache rely on it: two architectures with one key must never cost
        differently."""

    def is_valid(self, arch: str) -> bool:
        try:
            self.validate(arch)
        except ArchitectureError:
            return False
        return True

    # -- sampling and variation (all randomness from the caller's Generator) -------------
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> str:
        """One architecture drawn uniformly from the space."""

    @abstractmethod
    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        """A random neighbour: one choice changed to a different value."""

    @abstractmethod
    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        """A child taking each choice from one of the two parents."""

    @abstractmethod
    def neighbours(self, arch: str) -> list[str]:
        """Every architecture one choice away, in a deterministic order."""

    def enumerate(self) -> Iterator[str]:
        """All architectures, for spaces small enough to list; others raise."""
        raise NotImplementedError(f"space {self.name!r} is too large to enumerate")

    @abstractmethod
    def size(self) -> int:
        """Number of architectures (not deduplicated)."""

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The space's choices and settings, JSON-serialisable (for ``hwnas space info``)."""

    # -- Determined hyperparameters (JSON round trip) ------------------------------------
    def to_hparams(self, arch: str) -> dict[str, Any]:
        """Hyperparameters a trial needs to rebuild ``arch``."""
        return {"space": self.name, "space_options": self.space_options(), "arch": arch}

    def from_hparams(self, hparams: dict[str, Any]) -> str:
        """Inverse of ``to_hparams``; validates."""
        if hparams.get("space") != self.name:
            raise ArchitectureError(
                f"hparams name space {hparams.get('space')!r}, expected {self.name!r}"
            )
        if "arch" not in hparams:
            raise ArchitectureError("hparams lack the 'arch' field")
        return self.validate(str(hparams["arch"]))

    @abstractmethod
    def space_options(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this space (e.g. ``{"C": 16, "N": 5}``)."""

    # -- encodings for predictors ----------------------------------------------------------
    @abstractmethod
    def encode(self, arch: str, kind: str = "onehot") -> np.ndarray:
        """A fixed-length float vector: ``"onehot"`` or ``"path"`` (see each space)."""

    @abstractmethod
    def graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        """``(adjacency, node_ops)`` for graph models.

        ``adjacency`` is ``(n, n)`` upper-triangular 0/1; ``node_ops`` is ``(n, k)`` one-hot
        over ``self.graph_op_names()``. ``n`` and ``k`` are fixed for the space.
        """

    @abstractmethod
    def graph_op_names(self) -> list[str]:
        """Column labels of ``node_ops`` in ``graph``."""

    # -- torch ------------------------------------------------------------------------------
    @abstractmethod
    def build(
        self, arch: str, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> nn.Module:
        """A fresh, randomly initialised ``nn.Module`` for ``arch``: ``(B, *input_shape)``
        in, ``(B, num_classes)`` logits out."""
