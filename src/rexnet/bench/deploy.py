"""Deploy form of our models: every BatchNorm folded into the convolution before it.

In eval mode BN is an affine map per channel, so ``bn(conv(x))`` equals one
convolution with scaled weights and a bias.  Folding removes every BN call
(about a third of ReXNet's kernels at batch 1) and changes nothing else: the
partial shortcut still adds the block input to the first ``in_chs`` channels of
the folded projection's output, exactly as in the training form.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..models.layers import ConvBNAct, SqueezeExcite

__all__ = ["fold_conv_bn", "fold_bn", "deploy_model"]


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (computed in float64)."""
    if not bn.track_running_stats or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it keeps no running statistics, so eval mode is not affine")
    dtype = conv.weight.dtype
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = bn.bias.double() if bn.bias is not None else torch.zeros_like(scale)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=dtype)
    fused.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
    fused.bias.copy_(((bias - bn.running_mean.double()) * scale + shift).to(dtype))
    return fused


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BN folded away (the original is untouched).

    Folds the BN of each :class:`ConvBNAct` (stem, blocks, penultimate conv, the
    lite head's hidden layer) and the BN inside :class:`SqueezeExcite`, which sits
    after ``fc1`` (a 1x1 conv with bias).  Raises ``ValueError`` if any BN is left,
    e.g. in a module that is not one of ours.
    """
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, ConvBNAct) and isinstance(m.bn, nn.BatchNorm2d):
            m.conv = fold_conv_bn(m.conv, m.bn)
            del m.bn  # ConvBNAct is a Sequential: it now runs conv -> act
        elif isinstance(m, SqueezeExcite) and isinstance(m.bn, nn.BatchNorm2d):
            m.fc1 = fold_conv_bn(m.fc1, m.bn)
            m.bn = nn.Identity()  # SE's forward calls self.bn by name
    left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fold_bn folds BN inside rexnet's ConvBNAct and SqueezeExcite only; "
                         f"{len(left)} BN layer(s) remain, e.g. {left[:3]}. Is this one of our models?")
    return model


def deploy_model(model: nn.Module, channels_last: bool = False, compile: bool | dict[str, Any] = False, *,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """An inference module equal to ``model`` in eval mode: BN folded, no gradients.

    ``channels_last`` converts the weights (inputs may stay NCHW: convolutions
    follow the weights' layout).  ``compile=True`` wraps the result in
    ``torch.compile``; a dict is passed to it as keyword arguments.  Folding is
    done in float64 before any cast to ``dtype`` so half precision loses nothing extra.
    """
    net = fold_bn(model).requires_grad_(False)
    net = net.to(device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if compile:
        net = torch.compile(net, **(compile if isinstance(compile, dict) else {}))
    return net
