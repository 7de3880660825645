"""The local backend's progress display: a live ``rich`` panel on a terminal, log lines otherwise.

On a TTY the panel shows trials running / done / failed, the best feasible accuracy, the front
size and the hypervolume, refreshed as events arrive, with log lines scrolling above it. When
the output is not a terminal (CI, a pipe, a log file) it prints plain timestamped lines only,
plus one status line after each new result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass(frozen=True)
class SearchStatus:
    """A snapshot of the search for display."""

    running: int = 0
    waiting: int = 0
    created: int = 0
    closed: int = 0
    failed: int = 0
    events: int = 0
    evaluations: int = 0
    elapsed_s: float = 0.0
    progress: float = 0.0
    front: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One plain-text line."""
        parts = [
            f"trials {self.created} (running {self.running}, queued {self.waiting}, "
            f"closed {self.closed}, failed {self.failed})",
            f"evaluations {self.evaluations}",
            f"progress {100 * self.progress:.0f}%",
        ]
        parts += [f"{k} {v}" for k, v in _front_fields(self.front)]
        parts.append(f"elapsed {self.elapsed_s:.0f} s")
        return " | ".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def _front_fields(front: dict[str, Any]) -> list[tuple[str, str]]:
    if "error" in front:
        return [("front", f"unavailable ({front['error']})")]
    out = []
    if "best_feasible" in front:
        out.append(
            (f"best feasible {front.get('best_metric', '')}".strip(), _fmt(front["best_feasible"]))
        )
    if "front_size" in front:
        out.append(("front size", _fmt(front["front_size"])))
    if "hypervolume" in front:
        out.append(("hypervolume", _fmt(front["hypervolume"])))
    return out


class ProgressView:
    """Context manager showing ``SearchStatus`` updates and log lines."""

    def __init__(self, stream: TextIO, *, live: bool, quiet: bool = False) -> None:
        self.console = Console(file=stream, force_terminal=live if live else None, highlight=False)
        self.stream = stream
        self.live_enabled = live
        self.quiet = quiet
        self._live: Live | None = None
        self._last_counts: tuple[int, ...] | None = None
        self._status = SearchStatus()

    @classmethod
    def for_stream(cls, stream: TextIO, *, quiet: bool = False) -> ProgressView:
        """A live panel when ``stream`` is a terminal, plain lines otherwise."""
        is_tty = bool(getattr(stream, "isatty", lambda: False)())
        return cls(stream, live=is_tty and not quiet, quiet=quiet)

    def __enter__(self) -> ProgressView:
        if self.live_enabled:
            self._live = Live(
                self._render(), console=self.console, refresh_per_second=2, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self._live = None

    def _render(self) -> Table:
        s = self._status
        table = Table(title="hwnas search", show_header=False, expand=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        table.add_row("trials", f"{s.created} created, {s.running} running, {s.waiting} queued")
        table.add_row(
            "results", f"{s.evaluations} evaluations, {s.closed} trials closed, {s.failed} failed"
        )
        table.add_row(
            "progress", f"{100 * s.progress:.0f}%  ({s.events} events, {s.elapsed_s:.0f} s)"
        )
        for name, value in _front_fields(s.front):
            table.add_row(name, value)
        return table

    def log(self, message: str) -> None:
        """One log line (above the live panel on a terminal)."""
        if self.quiet:
            return
        stamp = time.strftime("%H:%M:%S")
        if self._live is not None:
            self._live.console.print(f"[dim]{stamp}[/dim] {message}", markup=True, highlight=False)
        else:
            print(f"{stamp} {message}", file=self.stream, flush=True)

    def update(self, status: SearchStatus) -> None:
        """New numbers: redraw the panel, or print a status line after new results."""
        self._status = status
        if self._live is not None:
            self._live.update(self._render())
            return
        # Only results change what is worth a line; launches are logged on their own.
        counts = (status.evaluations, status.closed, status.failed)
        if counts != self._last_counts and not self.quiet:
            self._last_counts = counts
            print(f"{time.strftime('%H:%M:%S')} {status.line()}", file=self.stream, flush=True)


__all__ = ["ProgressView", "SearchStatus"]
