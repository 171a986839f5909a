"""Small building blocks: activations by name, conv + BN + act, squeeze-excitation.

Child names (``conv``, ``bn``, ``fc1``/``bn``/``fc2``) follow timm so that timm's
ReXNet state dicts load without renaming.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["create_act", "ConvBNAct", "SqueezeExcite"]

_ACTS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "hard_swish": lambda: nn.Hardswish(inplace=True),
    "sigmoid": nn.Sigmoid,
    "elu": lambda: nn.ELU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def create_act(name: str | None) -> nn.Module:
    """An activation module by name; ``None`` gives ``nn.Identity``."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTS)}") from None


class ConvBNAct(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, act: str | None = None, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = create_act(act)

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels


class SqueezeExcite(nn.Module):
    """SE with BN and ReLU inside the bottleneck, as in the original ReXNet."""

    def __init__(self, chs: int, rd_chs: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.bn = nn.BatchNorm2d(rd_chs)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_chs, chs, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.bn(self.fc1(s))))
        return x * self.gate(s)
