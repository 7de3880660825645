"""The trial's hyperparameters (the searcher -> trial JSON contract, ``hwnas.contract``),
validated once at the edge."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hwnas.contract import TrialHParams
from hwnas.trials.errors import TrialError


class HParamsError(TrialError):
    """The hyperparameters are malformed; the message names the field and the value."""


def parse_hparams(raw: dict[str, Any]) -> TrialHParams:
    """Validate a hyperparameter dict, raising one ``HParamsError`` that names each bad field."""
    if isinstance(raw, TrialHParams):
        return raw
    if not isinstance(raw, dict):
        raise HParamsError(f"trial hparams must be a JSON object, got {type(raw).__name__}")
    try:
        return TrialHParams.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"hparams.{'.'.join(str(p) for p in err['loc'])}: {err['msg']} "
            f"(got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise HParamsError(f"invalid trial hparams: {problems}") from None


__all__ = ["HParamsError", "parse_hparams"]
