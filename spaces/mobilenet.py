"""A MobileNet-V2/V3-style macro space: per stage depth, kernel, expansion, width and SE.

The string form lists one stage per ``|``-separated group, fields joined by ``-``::

    d2-k5-e6-w1.0-se1|d3-k3-e4-w0.75-se0|...

``d`` depth (blocks in the stage; the first block carries the stage's stride), ``k`` depthwise
kernel size, ``e`` expansion ratio, ``w`` width multiplier of the stage's base channels
(channels rounded to a multiple of 8, as MobileNet does), ``se`` squeeze-excite off/on.
Fields may come in any order; ``validate`` returns them in the order above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas.spaces import SPACES
from hwnas.spaces.base import ArchitectureError, SearchSpace

if TYPE_CHECKING:  # torch is imported only when a model is built
    from torch import nn

#: Field names in string order.
FIELDS: tuple[str, ...] = ("d", "k", "e", "w", "se")
_FIELD_WORDS = {"d": "depth", "k": "kernel", "e": "expansion", "w": "width", "se": "se"}
ACTIVATIONS = ("relu", "relu6", "hswish")

Stage = tuple[int, int, int, float, int]  # (depth, kernel, expansion, width, se)


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: nearest multiple of ``divisor``, never 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _int_tuple(
    name: str, values: Sequence[Any], low: int = 1, unique: bool = True
) -> tuple[int, ...]:
    out = tuple(values)
    if not out or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in out):
        raise ArchitectureError(f"mobilenet option {name} must be ints >= {low}, got {values!r}")
    if unique and len(set(out)) != len(out):
        raise ArchitectureError(f"mobilenet option {name} has duplicates: {values!r}")
    return out


@SPACES.register("mobilenet")
class MobileNetSpace(SearchSpace):
    """Inverted-residual stages with searchable depth, kernel, expansion, width and SE.

    Fixed stem (3x3 conv, ``stem_stride``, BN, hswish) and head (1x1 conv to
    ``head_channels``, BN, hswish, global average pool, linear classifier). Each stage has a
    base channel count, a stride and an activation (defaults follow MobileNetV3/OFA:
    16/24/40/80/112/160, strides 1/2/2/2/1/2, ReLU6 in the first three stages and hswish after).
    A block is 1x1 expand (channels ``make_divisible(c_in * e)``), depthwise ``k x k``, optional
    SE (squeeze to a quarter, ReLU, excite with hard-sigmoid), 1x1 project, BN after each conv,
    and a residual when stride is 1 and channels match.

    Canonical key: the normalised string with each width replaced by the stage's actual channel
    count (``c24``), since different multipliers can round to the same channels.

    Nothing here is dead computation (unlike NB201's ``none`` edges): the network is a chain,
    a stage builds exactly ``depth`` blocks and SE only where ``se1``, so every module reaches
    the output; key-equal architectures build identical modules (the width enters the build
    only through the channel count). There is no ``prune`` option to offer.
    """

    name = "mobilenet"

    def __init__(
        self,
        stage_channels: Sequence[int] = (16, 24, 40, 80, 112, 160),
        stage_strides: Sequence[int] = (1, 2, 2, 2, 1, 2),
        stage_activations: Sequence[str] = (
            "relu6",
            "relu6",
            "relu6",
            "hswish",
            "hswish",
            "hswish",
        ),
        depths: Sequence[int] = (1, 2, 3, 4),
        kernels: Sequence[int] = (3, 5, 7),
        expansions: Sequence[int] = (3, 4, 6),
        widths: Sequence[float] = (0.75, 1.0, 1.25),
        se: Sequence[int] = (0, 1),
        stem_channels: int = 16,
        stem_stride: int = 2,
        head_channels: int = 960,
    ) -> None:
        self.stage_channels = _int_tuple("stage_channels", stage_channels, unique=False)
        n = len(self.stage_channels)
        self.stage_strides = _int_tuple("stage_strides", stage_strides, unique=False)
        if len(self.stage_strides) != n or not set(self.stage_strides) <= {1, 2}:
            raise ArchitectureError(
                f"mobilenet option stage_strides must be {n} values of 1 or 2, "
                f"got {stage_strides!r}"
            )
        self.stage_activations = tuple(stage_activations)
        if len(self.stage_activations) != n or not set(self.stage_activations) <= set(ACTIVATIONS):
            raise ArchitectureError(
                f"mobilenet option stage_activations must be {n} of {', '.join(ACTIVATIONS)}, "
                f"got {stage_activations!r}"
            )
        self.depths = _int_tuple("depths", depths)
        self.kernels = _int_tuple("kernels", kernels)
        if any(k % 2 == 0 for k in self.kernels):
            raise ArchitectureError(f"mobilenet option kernels must be odd, got {kernels!r}")
        self.expansions = _int_tuple("expansions", expansions)
        try:
            self.widths = tuple(float(w) for w in widths)
        except (TypeError, ValueError):
            raise ArchitectureError(
                f"mobilenet option widths must be numbers, got {widths!r}"
            ) from None
        if not self.widths or not all(0 < w < 100 for w in self.widths):
            raise ArchitectureError(f"mobilenet option widths must be in (0, 100), got {widths!r}")
        if len(set(self.widths)) != len(self.widths):
            raise ArchitectureError(f"mobilenet option widths has duplicates: {widths!r}")
        self.se = tuple(int(v) for v in se)
        if not self.se or not set(self.se) <= {0, 1} or len(set(self.se)) != len(self.se):
            raise ArchitectureError(f"mobilenet option se must be a subset of (0, 1), got {se!r}")
        self.stem_channels = _int_tuple("stem_channels", [stem_channels])[0]
        self.stem_stride = _int_tuple("stem_stride", [stem_stride])[0]
        self.head_channels = _int_tuple("head_channels", [head_channels])[0]
        self._choices: dict[str, tuple[Any, ...]] = {
            "d": self.depths,
            "k": self.kernels,
            "e": self.expansions,
            "w": self.widths,
            "se": self.se,
        }

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    # -- parsing ----------------------------------------------------------------------------
    def parse(self, arch: str) -> list[Stage]:
        """Per-stage ``(depth, kernel, expansion, width, se)``; errors name stage and field."""
        if not isinstance(arch, str):
            raise ArchitectureError(
                f"mobilenet architecture must be a string, got {type(arch).__name__}"
            )
        groups = arch.strip().split("|")
        if len(groups) != self.num_stages:
            raise ArchitectureError(
                f"mobilenet architecture {arch!r} has {len(groups)} stage(s) separated by '|', "
                f"expected {self.num_stages}"
            )
        return [self._parse_stage(i, g) for i, g in enumerate(groups, start=1)]

    def _parse_stage(self, stage: int, text: str) -> Stage:
        values: dict[str, Any] = {}
        for part in text.strip().split("-"):
            field = "se" if part.startswith("se") else part[:1]
            raw = part[len(field) :]
            if field not in _FIELD_WORDS or not raw:
                raise ArchitectureError(
                    f"stage {stage}: unknown field {part!r}; expected d<depth>, k<kernel>, "
                    "e<expansion>, w<width>, se<0|1>"
                )
            if field in values:
                raise ArchitectureError(f"stage {stage}: field {field!r} appears twice")
            values[field] = self._parse_value(stage, field, raw)
        missing = [f for f in FIELDS if f not in values]
        if missing:
            raise ArchitectureError(
                f"stage {stage}: missing field(s) {', '.join(missing)} in {text!r}"
            )
        return tuple(values[f] for f in FIELDS)  # type: ignore[return-value]

    def _parse_value(self, stage: int, field: str, raw: str) -> Any:
        word = _FIELD_WORDS[field]
        choices = self._choices[field]
        if field == "w":
            try:
                value: Any = float(raw)
            except ValueError:
                value = None
            match = [c for c in choices if value is not None and abs(c - value) < 1e-9]
        else:
            value = int(raw) if raw.isdigit() else None
            match = [c for c in choices if c == value]
        if not match:
            shown = ", ".join(_format_value(field, c) for c in choices)
            raise ArchitectureError(f"stage {stage}: {word} {raw!r} not in ({shown})")
        return match[0]

    def format(self, stages: Sequence[Sequence[Any]]) -> str:
        """The normalised string of per-stage ``(depth, kernel, expansion, width, se)``."""
        return "|".join(
            "-".join(f"{f}{_format_value(f, v)}" for f, v in zip(FIELDS, s, strict=True))
            for s in stages
        )

    def stage_out_channels(self, stage: int, width: float) -> int:
        """Output channels of stage ``stage`` (0-based) at width multiplier ``width``."""
        return make_divisible(self.stage_channels[stage] * width)

    # -- identity and validation -----------------------------------------------------------
    def validate(self, arch: str) -> str:
        return self.format(self.parse(arch))

    def canonical_key(self, arch: str) -> str:
        parts = []
        for i, (d, k, e, w, s) in enumerate(self.parse(arch)):
            parts.append(f"d{d}-k{k}-e{e}-c{self.stage_out_channels(i, w)}-se{s}")
        return "|".join(parts)

    # -- sampling and variation ------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> str:
        stages = []
        for _ in range(self.num_stages):
            stages.append(
                tuple(self._choices[f][int(rng.integers(len(self._choices[f])))] for f in FIELDS)
            )
        return self.format(stages)

    def _mutable_slots(self) -> list[tuple[int, int]]:
        return [
            (s, j)
            for s in range(self.num_stages)
            for j, f in enumerate(FIELDS)
            if len(self._choices[f]) > 1
        ]

    def mutate(self, arch: str, rng: np.random.Generator) -> str:
        stages = [list(s) for s in self.parse(arch)]
        slots = self._mutable_slots()
        if not slots:
            raise ArchitectureError("mobilenet space has a single architecture; nothing to mutate")
        stage, j = slots[int(rng.integers(len(slots)))]
        others = [c for c in self._choices[FIELDS[j]] if c != stages[stage][j]]
        stages[stage][j] = others[int(rng.integers(len(others)))]
        return self.format(stages)

    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        sa, sb = self.parse(a), self.parse(b)
        take_a = rng.random((self.num_stages, len(FIELDS))) < 0.5
        return self.format(
            [
                [x if take_a[i, j] else y for j, (x, y) in enumerate(zip(pa, pb, strict=True))]
                for i, (pa, pb) in enumerate(zip(sa, sb, strict=True))
            ]
        )

    def neighbours(self, arch: str) -> list[str]:
        """One-field changes, stage by stage, fields in ``FIELDS`` order, values in option order."""
        stages = [list(s) for s in self.parse(arch)]
        out = []
        for stage, j in self._mutable_slots():
            for value in self._choices[FIELDS[j]]:
                if value != stages[stage][j]:
                    changed = [list(s) for s in stages]
                    changed[stage][j] = value
                    out.append(self.format(changed))
        return out

    def size(self) -> int:
        per_stage = 1
        for f in FIELDS:
            per_stage *= len(self._choices[f])
        return per_stage**self.num_stages

    def options(self) -> dict[str, Any]:
        return {
            **self.space_options(),
            "fields": {f: _FIELD_WORDS[f] for f in FIELDS},
            "encodings": {"onehot": self.encoding_length(), "path": self.encoding_length()},
            "graph_nodes": self.num_stages * max(self.depths) + 2,
        }

    def space_options(self) -> dict[str, Any]:
        return {
            "stage_channels": list(self.stage_channels),
            "stage_strides": list(self.stage_strides),
            "stage_activations": list(self.stage_activations),
            "depths": list(self.depths),
            "kernels": list(self.kernels),
            "expansions": list(self.expansions),
            "widths": list(self.widths),
            "se": list(self.se),
            "stem_channels": self.stem_channels,
            "stem_stride": self.stem_stride,
            "head_channels": self.head_channels,
        }

    # -- encodings --------------------------------------------------------------------------
    def encoding_length(self) -> int:
        """Length of the one-hot encoding: stages x (sum of choices per field)."""
        return self.num_stages * sum(len(self._choices[f]) for f in FIELDS)

    def encode(self, arch: str, kind: str = "onehot") -> np.ndarray:
        """``"onehot"``: per stage, one one-hot block per field (``FIELDS`` order, values in
        option order), concatenated. ``"path"`` equals ``"onehot"`` here: the macro space is a
        chain, so its single input->output path is described by exactly these choices."""
        if kind not in ("onehot", "path"):
            raise ArchitectureError(f"unknown mobilenet encoding {kind!r}; known: onehot, path")
        vec = np.zeros(self.encoding_length(), dtype=np.float32)
        pos = 0
        for stage in self.parse(arch):
            for f, value in zip(FIELDS, stage, strict=True):
                vec[pos + self._choices[f].index(value)] = 1.0
                pos += len(self._choices[f])
        return vec

    def graph_op_names(self) -> list[str]:
        """``input``, one op per (kernel, expansion, se) choice named ``k{k}_e{e}[_se]``,
        ``none`` (a block slot the stage's depth leaves unused: identity), ``output``."""
        block_ops = [
            f"k{k}_e{e}" + ("_se" if s else "")
            for k in self.kernels
            for e in self.expansions
            for s in self.se
        ]
        return ["input", *block_ops, "none", "output"]

    def graph(self, arch: str) -> tuple[np.ndarray, np.ndarray]:
        """A chain ``input -> slot 1 -> ... -> slot S*max_depth -> output``: one node per
        possible block (stage-major); slots beyond a stage's depth are ``none`` (identity).
        The width multiplier is not part of the graph (``encode`` carries it)."""
        names = self.graph_op_names()
        max_depth = max(self.depths)
        labels = ["input"]
        for d, k, e, _w, s in self.parse(arch):
            op = f"k{k}_e{e}" + ("_se" if s else "")
            labels += [op] * d + ["none"] * (max_depth - d)
        labels.append("output")
        n = len(labels)
        adj = np.eye(n, k=1, dtype=np.float32)
        node_ops = np.zeros((n, len(names)), dtype=np.float32)
        for i, label in enumerate(labels):
            node_ops[i, names.index(label)] = 1.0
        return adj, node_ops

    # -- torch ------------------------------------------------------------------------------
    def build(
        self, arch: str, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)
    ) -> nn.Module:
        """A ``MobileNetNetwork`` (see ``hwnas.spaces.mobilenet_model``) for ``arch``."""
        from hwnas.spaces.mobilenet_model import MobileNetNetwork

        stages = self.parse(arch)
        return MobileNetNetwork(self, stages, num_classes=num_classes, input_shape=input_shape)


def _format_value(field: str, value: Any) -> str:
    return repr(float(value)) if field == "w" else str(int(value))


__all__ = ["ACTIVATIONS", "FIELDS", "MobileNetSpace", "make_divisible"]
