"""The inverted bottleneck of ReXNet / MobileNetV2 (and MobileNetV1's block as a special case)."""
from __future__ import annotations

import torch
from torch import nn

from ..spec import BlockSpec
from timm.layers import DropPath

from .layers import ConvBNAct, SqueezeExcite, create_act

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
        # The partial shortcut adds the input into the first in_chs output channels.
        # In place into the projection's BN output is safe for autograd (BN's backward
        # does not read its output; after an activation it would not be).  index_add_
        # is that in-place add written as one op that returns the whole tensor, so
        # torch.fx, torch.export and TorchScript trace it (a slice assignment does not
        # trace, and a dead-code pass drops a bare narrow().add_()).
        self._inplace_add = spec.act_out is None
        self._partial = self.use_shortcut and spec.in_chs != spec.out_chs
        self.register_buffer("shortcut_index", torch.arange(spec.in_chs) if self._partial else None,
                             persistent=False)

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
        if self.shortcut_index is None:
            return x + shortcut
        if self._inplace_add:
            return x.index_add_(1, self.shortcut_index, shortcut)
        return torch.cat([x[:, : self.in_channels] + shortcut, x[:, self.in_channels:]], dim=1)
