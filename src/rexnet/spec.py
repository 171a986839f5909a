"""NetSpec: the network as plain, frozen data (stem, blocks, head).

Every model in this project (ReXNet, ReXNet-lite, ReXNet-plain, the MobileNet
baselines and every searched network) is a NetSpec; one builder turns it into a
module and one function counts its complexity.  No torch import here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import write_text

__all__ = ["ACTIVATIONS", "SHORTCUTS", "StemSpec", "BlockSpec", "HeadSpec", "NetSpec"]

# Activation names a spec may use (built in models/layers.py).  None means no activation.
ACTIVATIONS = ("relu", "relu6", "silu", "swish", "hard_swish", "sigmoid", "elu",
               "leaky_relu", "softplus", "gelu", "identity")
# partial: add the input to the first in_chs output channels (ReXNet);
# full: add only when in_chs == out_chs (MobileNetV2); none: never.
SHORTCUTS = ("partial", "full", "none")


def _check_act(owner: str, name: str | None) -> None:
    if name is not None and name not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {name!r}; use one of {ACTIVATIONS} or null")


def _check_positive(owner: str, **values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {key} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class StemSpec:
    """kxk conv (stride 2 by default) + BN + act."""
    out_chs: int
    in_chs: int = 3
    kernel: int = 3
    stride: int = 2
    act: str | None = "silu"

    def __post_init__(self) -> None:
        _check_positive("stem", out_chs=self.out_chs, in_chs=self.in_chs,
                        kernel=self.kernel, stride=self.stride)
        _check_act("stem", self.act)


@dataclass(frozen=True)
class BlockSpec:
    """An inverted bottleneck: [1x1 expand + BN + act_exp] -> kxk depthwise + BN
    -> [SE] -> act_dw -> 1x1 project + BN [+ act_out] -> shortcut.

    The expand conv exists when ``mid_chs != in_chs``.  ``act_dw`` is applied
    after the SE module when there is one (the ReXNet order).  A MobileNetV1
    depthwise-separable block is the case ``mid_chs == in_chs``,
    ``act_dw='relu'``, ``act_out='relu'``, ``shortcut='none'``.
    """
    in_chs: int
    out_chs: int
    mid_chs: int
    stride: int = 1
    kernel: int = 3
    se_chs: int = 0
    act_exp: str | None = "silu"
    act_dw: str | None = "relu6"
    act_out: str | None = None
    shortcut: str = "partial"

    def __post_init__(self) -> None:
        _check_positive("block", in_chs=self.in_chs, out_chs=self.out_chs,
                        mid_chs=self.mid_chs, stride=self.stride, kernel=self.kernel)
        if not isinstance(self.se_chs, int) or self.se_chs < 0:
            raise ValueError(f"block: se_chs must be an integer >= 0, got {self.se_chs!r}")
        for key in ("act_exp", "act_dw", "act_out"):
            _check_act(f"block.{key}", getattr(self, key))
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"block: unknown shortcut {self.shortcut!r}; use one of {SHORTCUTS}")

    @property
    def expansion(self) -> float:
        return self.mid_chs / self.in_chs

    @property
    def has_expand(self) -> bool:
        return self.mid_chs != self.in_chs

    @property
    def has_shortcut(self) -> bool:
        if self.stride != 1 or self.shortcut == "none":
            return False
        if self.shortcut == "full":
            return self.in_chs == self.out_chs
        return self.in_chs <= self.out_chs


@dataclass(frozen=True)
class HeadSpec:
    """[1x1 conv to pen_chs + BN + act] -> global avg pool -> [1x1 conv (bias) to
    hidden_chs + BN + hidden_act] -> dropout -> linear classifier.

    ``pen_chs=0`` drops the penultimate conv (MobileNetV1); ``hidden_chs`` is the
    extra 1024-wide layer of ReXNet-lite.  ``num_classes=0`` gives a model that
    returns pooled features.
    """
    in_chs: int
    pen_chs: int = 1280
    act: str | None = "silu"
    hidden_chs: int = 0
    hidden_act: str | None = "relu6"
    dropout: float = 0.2
    num_classes: int = 1000

    def __post_init__(self) -> None:
        _check_positive("head", in_chs=self.in_chs)
        for key in ("pen_chs", "hidden_chs", "num_classes"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"head: {key} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head: dropout must be in [0, 1), got {self.dropout}")
        _check_act("head.act", self.act)
        _check_act("head.hidden_act", self.hidden_act)

    @property
    def head_hidden_size(self) -> int:
        """Width of the pooled features fed to the classifier (timm's ``head_hidden_size``)."""
        return self.hidden_chs or self.pen_chs or self.in_chs


@dataclass(frozen=True)
class NetSpec:
    name: str
    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec
    input_size: int = 224
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError(f"{self.name}: a NetSpec needs at least one block")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        prev = self.stem.out_chs
        for i, b in enumerate(self.blocks):
            if b.in_chs != prev:
                raise ValueError(f"{self.name}: block {i} takes {b.in_chs} channels but the "
                                 f"previous layer gives {prev}; make in_chs match")
            prev = b.out_chs
        if self.head.in_chs != prev:
            raise ValueError(f"{self.name}: head takes {self.head.in_chs} channels but the last "
                             f"block gives {prev}")
        _check_positive(self.name, input_size=self.input_size)

    # -- derived views -------------------------------------------------------
    @property
    def widths(self) -> list[int]:
        return [b.out_chs for b in self.blocks]

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def replace(self, **changes: Any) -> "NetSpec":
        return dataclasses.replace(self, **changes)

    def with_head(self, **changes: Any) -> "NetSpec":
        return dataclasses.replace(self, head=dataclasses.replace(self.head, **changes))

    # -- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = [dict(b) for b in d["blocks"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetSpec":
        if not isinstance(d, dict):
            raise ValueError(f"a NetSpec must be a mapping, got {type(d).__name__}")
        d = dict(d)
        try:
            stem = _build(StemSpec, d.pop("stem"), "stem")
            blocks = tuple(_build(BlockSpec, b, f"blocks[{i}]") for i, b in enumerate(d.pop("blocks")))
            head = _build(HeadSpec, d.pop("head"), "head")
        except KeyError as e:
            raise ValueError(f"NetSpec is missing the section {e}; it needs stem, blocks and head") from None
        unknown = set(d) - {"name", "input_size", "meta"}
        if unknown:
            raise ValueError(f"NetSpec has unknown keys {sorted(unknown)}")
        return cls(name=d.get("name", "custom"), stem=stem, blocks=blocks, head=head,
                   input_size=d.get("input_size", 224), meta=dict(d.get("meta") or {}))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "NetSpec":
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "NetSpec":
        import yaml
        return cls.from_dict(yaml.safe_load(text))

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON or YAML (by extension) atomically."""
        path = Path(path)
        return write_text(path, self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NetSpec":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no NetSpec file at {path}")
        text = path.read_text()
        try:
            return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: not a valid NetSpec: {e}") from None

    def hash(self) -> str:
        """Stable 16-hex-digit hash of the architecture (name and meta excluded)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("meta")
        canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None
