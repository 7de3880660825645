"""One-shot meets multi-trial: propose in the order a trained supernet ranks candidates, then
hand over to another strategy.

A supernet trial (``hparams.kind: supernet``, ``hwnas.trials.supernet``) scores candidates
with its shared weights and writes them best first to ``ranking.json`` beside its checkpoint.
This strategy proposes them in that order — at most ``top`` of them, skipping any whose
supernet accuracy is below ``min_accuracy`` — so the first trials of a multi-trial search
train the supernet's favourites stand-alone; afterwards it asks ``then`` (any registered
strategy), which has been told every result, including those of the supernet's picks.

Why not ``SearchMethod.warm_start``: warm-start records are results the search treats as
already trained (they are marked seen and never train), and the strategy would file supernet
scores as if they were stand-alone accuracies. Here the supernet only decides the order.

The searcher reads JSON only (no torch): the ranking file is read on the first ask, and the
candidate list is kept in the strategy's state, so a resumed search no longer needs the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from hwnas.searchers.strategies.base import STRATEGIES, Strategy, StrategyOptions
from hwnas.spaces.base import ArchitectureError

RANKING_FORMAT = "hwnas-supernet-ranking/1"


class SupernetOrderOptions(StrategyOptions):
    #: A supernet trial's ``ranking.json``.
    ranking: str = Field(min_length=1)
    #: Propose at most this many of the ranking (None: all of it).
    top: int | None = Field(None, ge=1)
    #: Skip candidates whose supernet accuracy is below this.
    min_accuracy: float | None = None
    #: The strategy that proposes once the ranking is used up, and its options.
    then: str = "evolution"
    then_options: dict[str, Any] = Field(default_factory=dict)


def read_ranking(path: str | Path, space_name: str) -> list[dict[str, Any]]:
    """The candidates of a ranking file, best first; ``ValueError`` naming the file."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"strategy supernet: cannot read ranking {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != RANKING_FORMAT:
        raise ValueError(f"strategy supernet: {path} is not a supernet ranking ({RANKING_FORMAT})")
    if data.get("space") != space_name:
        raise ValueError(
            f"strategy supernet: {path} ranks space {data.get('space')!r}, the search is "
            f"over {space_name!r}"
        )
    rows = data.get("candidates")
    if not isinstance(rows, list):
        raise ValueError(f"strategy supernet: {path} has no candidate list")
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("arch"), str)]


@STRATEGIES.register("supernet")
class SupernetOrder(Strategy):
    """The supernet's ranking first, then ``then``."""

    name = "supernet"
    Options = SupernetOrderOptions
    #: The ranking ignores the objectives; ``then`` is checked at construction.
    multi_objective = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts: SupernetOrderOptions = self.options  # type: ignore[assignment]
        if opts.then == self.name:
            raise ValueError("strategy supernet: 'then' must be another strategy")
        cls = STRATEGIES.get(opts.then)
        if not cls.multi_objective and self.objectives.is_multi_objective:
            raise ValueError(
                f"strategy supernet: then={opts.then!r} is single-objective and there are "
                f"{len(self.objectives.objectives)} objectives; set a scalarization or pick a "
                "multi-objective strategy"
            )
        # The fallback shares the space, objectives and random stream.
        self.fallback: Strategy = cls(self.space, self.objectives, self.rng, **opts.then_options)
        self.candidates: list[str] | None = None  # loaded on the first ask
        self.position = 0  # next candidate to propose

    def _load(self) -> list[str]:
        if self.candidates is None:
            opts: SupernetOrderOptions = self.options  # type: ignore[assignment]
            archs = []
            for row in read_ranking(opts.ranking, self.space.name):
                accuracy = row.get("supernet_accuracy")
                if opts.min_accuracy is not None and (
                    not isinstance(accuracy, (int, float)) or accuracy < opts.min_accuracy
                ):
                    continue
                try:
                    archs.append(self.space.validate(row["arch"]))
                except ArchitectureError:
                    continue
            self.candidates = archs[: opts.top] if opts.top is not None else archs
        return self.candidates

    @property
    def remaining(self) -> int:
        """Ranked candidates not yet proposed."""
        return len(self._load()) - self.position

    def ask(self) -> str:
        candidates = self._load()
        if self.position < len(candidates):
            self.position += 1
            return candidates[self.position - 1]
        return self.fallback.ask()

    def tell(self, arch: str, values: Mapping[str, float] | None) -> None:
        super().tell(arch, values)
        self.fallback.tell(arch, values)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "position": self.position,
            "fallback": self.fallback.state_dict(),
        }

    def _load_extra_state(self, extra: Mapping[str, Any]) -> None:
        candidates = extra.get("candidates")
        self.candidates = None if candidates is None else [str(a) for a in candidates]
        self.position = int(extra.get("position", 0))
        if "fallback" in extra:
            # Replays the same history into the fallback (base.load_state_dict replays only
            # ``_observe``, which this class does not override).
            self.fallback.load_state_dict(extra["fallback"], list(self.history))


__all__ = ["RANKING_FORMAT", "SupernetOrder", "SupernetOrderOptions", "read_ranking"]
