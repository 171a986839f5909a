"""One builder: NetSpec -> nn.Module with timm's model interface."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..spec import NetSpec
from .blocks import InvertedBottleneck
from .layers import ConvBNAct

__all__ = ["Net", "ClassifierHead", "build"]


class ClassifierHead(nn.Module):
    """Global average pool -> [hidden 1x1 conv + BN + act] -> dropout -> linear."""

    def __init__(self, in_chs: int, num_classes: int, dropout: float = 0.0,
                 hidden_chs: int = 0, hidden_act: str | None = None) -> None:
        super().__init__()
        self.hidden = (ConvBNAct(in_chs, hidden_chs, 1, act=hidden_act, bias=True)
                       if hidden_chs else None)
        self.num_features = hidden_chs or in_chs
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3), keepdim=self.hidden is not None)
        if self.hidden is not None:
            x = self.hidden(x).flatten(1)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class Net(nn.Module):
    """A network built from a :class:`NetSpec`.

    Layout (timm's ReXNet): ``stem``, ``features`` (the blocks, then the
    penultimate 1x1 conv when the spec has one), ``head``.
    """

    def __init__(self, spec: NetSpec, drop_rate: float | None = None,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.spec = spec
        h = spec.head
        self.stem = ConvBNAct(spec.stem.in_chs, spec.stem.out_chs, spec.stem.kernel,
                              spec.stem.stride, act=spec.stem.act)
        n = len(spec.blocks)
        blocks: list[nn.Module] = []
        self.feature_info: list[dict] = []
        reduction, prev_chs = spec.stem.stride, spec.stem.out_chs
        for i, b in enumerate(spec.blocks):
            if b.stride > 1:
                module = "stem" if i == 0 else f"features.{i - 1}"
                self.feature_info.append(dict(num_chs=prev_chs, reduction=reduction, module=module))
            # stochastic depth grows linearly with depth (timm's rule)
            blocks.append(InvertedBottleneck(b, drop_path_rate * i / max(n - 1, 1)))
            reduction *= b.stride
            prev_chs = b.out_chs
        self.feature_info.append(dict(num_chs=prev_chs, reduction=reduction, module=f"features.{n - 1}"))
        if h.pen_chs:
            blocks.append(ConvBNAct(h.in_chs, h.pen_chs, 1, act=h.act))
        self.features = nn.Sequential(*blocks)
        self.num_features = h.pen_chs or h.in_chs
        self.num_classes = h.num_classes
        self.drop_rate = h.dropout if drop_rate is None else drop_rate
        self.head = ClassifierHead(self.num_features, h.num_classes, self.drop_rate,
                                   h.hidden_chs, h.hidden_act)
        self._stage_ends = [int(f["module"].split(".")[-1]) if f["module"] != "stem" else -1
                            for f in self.feature_info]
        _init_weights(self)

    # -- timm's interface ------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one (0 = no classifier)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.head.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            _init_linear(self.head.fc)
        self.spec = self.spec.with_head(num_classes=num_classes)

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Feature maps at the end of each stage (entries of ``feature_info``).

        ``indices`` picks entries of ``feature_info`` (default: all).  Used by
        detection / segmentation necks such as an FPN.
        """
        wanted = list(range(len(self.feature_info))) if indices is None else list(indices)
        for i in wanted:
            if not -len(self.feature_info) <= i < len(self.feature_info):
                raise ValueError(f"feature index {i} out of range: the model has "
                                 f"{len(self.feature_info)} feature levels")
        wanted = sorted({i % len(self.feature_info) for i in wanted})
        ends = {self._stage_ends[i]: i for i in wanted}
        out: dict[int, torch.Tensor] = {}
        x = self.stem(x)
        if -1 in ends:
            out[ends[-1]] = x
        last = max(ends)
        for j, block in enumerate(self.features):
            if j > last:
                break
            x = block(x)
            if j in ends:
                out[ends[j]] = x
        return [out[i] for i in wanted]


def _init_linear(fc: nn.Linear) -> None:
    bound = 1.0 / math.sqrt(fc.weight.shape[1])
    nn.init.uniform_(fc.weight, -bound, bound)
    nn.init.zeros_(fc.bias)


def _init_weights(model: nn.Module) -> None:
    """EfficientNet-style init (as timm uses for ReXNet)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            _init_linear(m)


def build(spec: NetSpec, **kwargs) -> Net:
    """Build ``spec`` into a module (kwargs: ``drop_rate``, ``drop_path_rate``)."""
    return Net(spec, **kwargs)
