"""The inverted bottleneck of ReXNet / MobileNetV2 (and MobileNetV1's block as a special case)."""
from __future__ import annotations

import torch
from torch import nn

from ..spec import BlockSpec
from .layers import ConvBNAct, DropPath, SqueezeExcite, create_act

__all__ = ["InvertedBottleneck"]


class InvertedBottleneck(nn.Module):
    def __init__(self, spec: BlockSpec, drop_path: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = spec.in_chs, spec.out_chs
        self.use_shortcut = spec.has_shortcut
        self.conv_exp = (ConvBNAct(spec.in_chs, spec.mid_chs, 1, act=spec.act_exp)
                         if spec.has_expand else None)
        self.conv_dw = ConvBNAct(spec.mid_chs, spec.mid_chs, spec.kernel, spec.stride,
                                 groups=spec.mid_chs)
        self.se = SqueezeExcite(spec.mid_chs, spec.se_chs) if spec.se_chs else None
        self.act_dw = create_act(spec.act_dw)
        self.conv_pwl = ConvBNAct(spec.mid_chs, spec.out_chs, 1, act=spec.act_out)
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.use_shortcut else None
        # In-place add into the projection's BN output is safe for autograd
        # (BN's backward does not read its output); after an activation it is not.
        self._inplace_add = spec.act_out is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.conv_exp is not None:
            x = self.conv_exp(x)
        x = self.conv_dw(x)
        if self.se is not None:
            x = self.se(x)
        x = self.conv_pwl(self.act_dw(x))
        if not self.use_shortcut:
            return x
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.in_channels == self.out_channels:
            return x + shortcut
        # Partial shortcut: the input joins the first in_channels output channels.
        if self._inplace_add:
            x[:, : self.in_channels] += shortcut
            return x
        return torch.cat([x[:, : self.in_channels] + shortcut, x[:, self.in_channels:]], dim=1)
