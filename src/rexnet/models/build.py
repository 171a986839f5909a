"""One builder: NetSpec -> nn.Module with timm's model interface."""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from timm.models._features import feature_take_indices
from torch import nn

from ..complexity import complexity
from ..spec import NetSpec
from .blocks import InvertedBottleneck
from .layers import ConvBNAct

__all__ = ["Net", "ClassifierHead", "build", "pretrained_cfg", "IMAGENET_MEAN", "IMAGENET_STD",
           "CIFAR_MEAN", "CIFAR_STD"]

# Normalisation statistics (the data code reads them from here).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class ClassifierHead(nn.Module):
    """Global average pool -> [hidden 1x1 conv + BN + act] -> dropout -> linear.

    ``pool=False`` (a model pruned to a feature extractor) passes feature maps through.
    """

    def __init__(self, in_chs: int, num_classes: int, dropout: float = 0.0,
                 hidden_chs: int = 0, hidden_act: str | None = None, pool: bool = True) -> None:
        super().__init__()
        self.pool = pool
        self.hidden = (ConvBNAct(in_chs, hidden_chs, 1, act=hidden_act, bias=True)
                       if hidden_chs and pool else None)
        self.num_features = (hidden_chs or in_chs) if pool else in_chs
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.pool:
            return x
        x = x.mean((2, 3), keepdim=self.hidden is not None)
        if self.hidden is not None:
            x = self.hidden(x).flatten(1)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class Net(nn.Module):
    """A network built from a :class:`NetSpec`, with timm's model contract.

    Layout (timm's ReXNet): ``stem``, ``features`` (the blocks, then the
    penultimate 1x1 conv when the spec has one), ``head``.  ``num_features`` is
    the width of ``forward_features``' output, ``head_hidden_size`` the width
    the classifier reads (1024 for ReXNet-lite, whose head has a hidden layer).
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
        self.feature_info = []
        reduction, prev_chs = spec.stem.stride, spec.stem.out_chs
        for i, b in enumerate(spec.blocks):
            if b.stride > 1:  # a stage ends where the next block downsamples (timm's rule)
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
        # index into ``features`` of each feature_info entry; the stem is -1
        self.stage_ends = [-1 if f["module"] == "stem" else int(f["module"].split(".")[-1])
                           for f in self.feature_info]
        self.num_features = h.pen_chs or h.in_chs
        self.num_classes = h.num_classes
        self.drop_rate = h.dropout if drop_rate is None else drop_rate
        self.head = ClassifierHead(self.num_features, h.num_classes, self.drop_rate,
                                   h.hidden_chs, h.hidden_act)
        self.head_hidden_size = self.head.num_features
        self.pretrained_cfg = pretrained_cfg(spec)
        _init_weights(self)

    # -- timm's interface ------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
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
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def _take(self, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
        """timm's ``feature_take_indices`` over ``feature_info``, with a ValueError for bad input."""
        n = len(self.stage_ends)
        try:
            return feature_take_indices(n, indices)
        except AssertionError as e:
            raise ValueError(f"feature indices {indices!r}: {e}; the model has {n} feature levels "
                             f"(feature_info), an int n takes the last n") from None

    @torch.jit.ignore
    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Feature maps at the ends of stages (entries of ``feature_info``), as timm defines it.

        ``indices``: None = all, an int n = the last n, a sequence = those entries
        (negative from the end).  Returns ``(final features, maps)``, or only the
        maps with ``intermediates_only``.  ``stop_early`` skips the blocks after the
        last map asked for.  ``norm`` is accepted for timm's signature (these
        models have no final norm layer).
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = self._take(indices)
        take_ends = [self.stage_ends[i] for i in take]
        max_end = self.stage_ends[max_index]
        intermediates = []
        x = self.stem(x)
        if -1 in take_ends:
            intermediates.append(x)
        stages = self.features
        if stop_early and max_end != self.stage_ends[-1]:
            stages = self.features[:max_end + 1]
        for j, stage in enumerate(stages):
            x = stage(x)
            if j in take_ends:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the blocks after the last wanted feature level (and the head); timm's semantics."""
        take, max_index = self._take(indices)
        max_end = self.stage_ends[max_index]
        if not (prune_norm or prune_head or max_end < self.stage_ends[-1]):
            return take
        num_chs = self.feature_info[max_index]["num_chs"]
        self.features = self.features[:max_end + 1]
        self.num_features = self.head_hidden_size = num_chs
        self.num_classes = 0
        self.head = ClassifierHead(num_chs, 0, pool=False)
        blocks = self.spec.blocks[:max_end + 1]
        self.spec = self.spec.replace(
            blocks=blocks, head=dataclasses.replace(self.spec.head, in_chs=num_chs, pen_chs=0, hidden_chs=0,
                                                    num_classes=0),
            meta={**self.spec.meta, "pruned_to_feature_level": max_index})
        return take


def pretrained_cfg(spec: NetSpec) -> dict:
    """timm's ``pretrained_cfg`` for a spec, so ``timm.data.resolve_model_data_config`` works.

    ImageNet-sized models use timm's ReXNet evaluation settings; models on the
    CIFAR stride plan (input_size <= 32) use the CIFAR statistics our data code uses.
    """
    small = spec.input_size <= 32
    size = spec.input_size
    return dict(architecture=spec.name, input_size=(spec.stem.in_chs, size, size),
                interpolation="bicubic", crop_pct=1.0 if small else 0.875, crop_mode="center",
                mean=CIFAR_MEAN if small else IMAGENET_MEAN, std=CIFAR_STD if small else IMAGENET_STD,
                num_classes=spec.head.num_classes, first_conv="stem.conv", classifier="head.fc",
                pool_size=(complexity(spec).layers[len(spec.blocks)].size_out,) * 2)  # stem, then blocks


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
