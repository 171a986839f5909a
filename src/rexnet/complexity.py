"""Analytic parameters and MACs of a NetSpec, and the counted check on a module.

MACs follow ``torch.utils.flop_counter.FlopCounterMode`` (total FLOPs / 2):
convolutions and linear layers only; BN, activations, pooling and the SE
multiply are not counted.  Tests hold the two together for every zoo model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from .spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__all__ = ["LayerCost", "Complexity", "complexity", "count_module", "interleaved_latency", "time_interleaved",
           "latency_stats"]


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


def interleaved_latency(models: dict, batch: int = 1, input_size: int = 224, runs: int = 30,
                        warmup: int = 5, threads: int | None = None) -> dict[str, dict[str, float]]:
    """CPU latency of several models on one random input, timed in turns so machine
    drift hits all alike.

    Returns per model: median, p10, p90, mean (milliseconds per batch) and images/s
    at the median.  Each model runs in eval mode under ``torch.inference_mode``.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    x = torch.randn(batch, 3, input_size, input_size)
    for m in models.values():
        m.eval()
    times = time_interleaved(models, dict.fromkeys(models, x), runs=runs, warmup=warmup)
    return {name: dict(latency_stats(ts, batch), batch=batch) for name, ts in times.items()}


def time_interleaved(models: Mapping[str, Callable], inputs: Mapping[str, Any], runs: int = 30,
                     warmup: int = 5, timer: Callable[[], float] = time.perf_counter,
                     sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Milliseconds per call of each model, timed in turns so machine drift falls on all alike.

    Every model is called ``warmup + runs`` times.  The order rotates each round
    so no model always runs first (right after a pause) or after the same
    neighbour.  ``sync`` (e.g. ``torch.cuda.synchronize``) brackets each call.
    """
    import torch

    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                models[n](inputs[n])
        for r in range(runs):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                if sync:
                    sync()
                t0 = timer()
                models[n](inputs[n])
                if sync:
                    sync()
                times[n].append((timer() - t0) * 1e3)
    return times


def latency_stats(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    """Median, p10, p90 (nearest rank), mean, and images/s at the median."""
    if not times_ms:
        raise ValueError("no timings to summarise")
    ts = sorted(times_ms)
    q = lambda p: ts[min(len(ts) - 1, int(round(p * (len(ts) - 1))))]  # noqa: E731
    return dict(median_ms=q(0.5), p10_ms=q(0.1), p90_ms=q(0.9), mean_ms=sum(ts) / len(ts),
                images_per_s=batch / (q(0.5) / 1e3), runs=len(ts))
