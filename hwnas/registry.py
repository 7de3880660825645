"""One registry style for everything chosen by name: spaces, strategies, early stoppers and
latency backends.

A room makes one ``Registry`` and lists the modules that hold its built-in entries; each entry
registers itself with the ``@REGISTRY.register("name")`` decorator when its module is imported.
The modules are imported on the first lookup, so naming a registry costs nothing, and a module
must stay cheap to import (heavy runtimes such as torch, TensorRT or CUDA load inside methods).
A user's own entry is one decorator in their own module, imported before the search starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """No entry is registered under the requested name; the message lists the known ones."""


class Registry(Generic[T]):
    """Named entries of one kind (classes or factories), filled by decorators."""

    def __init__(self, kind: str, builtin_modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._builtin_modules = tuple(builtin_modules)
        self._loaded = False
        self._entries: dict[str, T] = {}
        self._fixed: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **fixed: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name``. ``fixed`` keyword arguments
        are passed to it on every ``create`` (one class serving several names, e.g. TensorRT
        at fp16 and int8). Registering a name twice with another object is an error."""

        def decorate(obj: T) -> T:
            current = self._entries.get(name)
            if current is not None and current is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({current!r}, {obj!r})")
            self._entries[name] = obj
            self._fixed[name] = dict(fixed)
            return obj

        return decorate

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True  # first, so a module that looks itself up does not recurse
            for module in self._builtin_modules:
                importlib.import_module(module)

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted."""
        self._load_builtins()
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``UnknownNameError`` naming the known ones."""
        self._load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def fixed(self, name: str) -> dict[str, Any]:
        """The keyword arguments ``name`` was registered with."""
        self.get(name)
        return dict(self._fixed[name])

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the entry registered as ``name`` with ``args``, its fixed and ``kwargs``."""
        factory: Any = self.get(name)
        return factory(*args, **{**self._fixed[name], **kwargs})


__all__ = ["Registry", "UnknownNameError"]
