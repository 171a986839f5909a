"""Analytic parameters and MACs of a NetSpec, and the counted check on a module.

MACs follow ``torch.utils.flop_counter.FlopCounterMode`` (total FLOPs / 2):
convolutions and linear layers only; BN, activations, pooling and the SE
multiply are not counted.  Tests hold the two together for every zoo model.
"""
from __future__ import annotations

from dataclasses import dataclass

from .spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__all__ = ["LayerCost", "Complexity", "complexity", "count_module"]


@dataclass(frozen=True)
class LayerCost:
    name: str
    in_chs: int
    out_chs: int
    stride: int
    size_in: int
    size_out: int
    params: int
    macs: int
    expansion: float = 1.0
    se_chs: int = 0


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    layers: tuple[LayerCost, ...]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def _out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _conv(cin: int, cout: int, k: int, size_out: int, groups: int = 1, bias: bool = False) -> tuple[int, int]:
    weights = cout * (cin // groups) * k * k
    return weights + (cout if bias else 0), weights * size_out * size_out


def _stem(s: StemSpec, size: int) -> LayerCost:
    out = _out(size, s.kernel, s.stride)
    p, m = _conv(s.in_chs, s.out_chs, s.kernel, out)
    return LayerCost("stem", s.in_chs, s.out_chs, s.stride, size, out, p + 2 * s.out_chs, m)


def _block(i: int, b: BlockSpec, size: int) -> LayerCost:
    params = macs = 0
    if b.has_expand:
        p, m = _conv(b.in_chs, b.mid_chs, 1, size)
        params, macs = params + p + 2 * b.mid_chs, macs + m
    out = _out(size, b.kernel, b.stride)
    p, m = _conv(b.mid_chs, b.mid_chs, b.kernel, out, groups=b.mid_chs)
    params, macs = params + p + 2 * b.mid_chs, macs + m
    if b.se_chs:
        p1, m1 = _conv(b.mid_chs, b.se_chs, 1, 1, bias=True)
        p2, m2 = _conv(b.se_chs, b.mid_chs, 1, 1, bias=True)
        params, macs = params + p1 + p2 + 2 * b.se_chs, macs + m1 + m2
    p, m = _conv(b.mid_chs, b.out_chs, 1, out)
    params, macs = params + p + 2 * b.out_chs, macs + m
    return LayerCost(f"block{i}", b.in_chs, b.out_chs, b.stride, size, out, params, macs,
                     b.expansion, b.se_chs)


def _head(h: HeadSpec, size: int) -> list[LayerCost]:
    rows = []
    chs = h.in_chs
    if h.pen_chs:
        p, m = _conv(chs, h.pen_chs, 1, size)
        rows.append(LayerCost("pen", chs, h.pen_chs, 1, size, size, p + 2 * h.pen_chs, m))
        chs = h.pen_chs
    if h.hidden_chs:
        p, m = _conv(chs, h.hidden_chs, 1, 1, bias=True)
        rows.append(LayerCost("hidden", chs, h.hidden_chs, 1, 1, 1, p + 2 * h.hidden_chs, m))
        chs = h.hidden_chs
    if h.num_classes:
        rows.append(LayerCost("classifier", chs, h.num_classes, 1, 1, 1,
                              chs * h.num_classes + h.num_classes, chs * h.num_classes))
    return rows


def complexity(spec: NetSpec, input_size: int | None = None) -> Complexity:
    """Params and MACs of ``spec`` at a square ``input_size`` (default: the spec's)."""
    size = spec.input_size if input_size is None else int(input_size)
    if size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    layers = [_stem(spec.stem, size)]
    size = layers[0].size_out
    for i, b in enumerate(spec.blocks):
        layers.append(_block(i, b, size))
        size = layers[-1].size_out
    layers += _head(spec.head, size)
    return Complexity(sum(r.params for r in layers), sum(r.macs for r in layers), tuple(layers))


def count_module(module, input_size: int = 224, in_chans: int = 3) -> tuple[int, int]:
    """(params, MACs) of a built module as PyTorch counts them (FlopCounterMode / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    was_training = module.training
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, in_chans, input_size, input_size))
    module.train(was_training)
    return params, counter.get_total_flops() // 2
