"""Channel schedules: per-block output widths as pure functions (no torch).

The paper's subject is the width of each block as a function of its index, so
the schedules are first-class here.  Each schedule returns *continuous* widths;
a rounding rule turns them into integers.  Continuous values are kept so the
search and the plots can see the parameterisation before rounding.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Sequence

__all__ = [
    "make_divisible", "round_width", "round_widths",
    "linear", "rexnet_widths", "stagewise", "piecewise_linear",
    "affine", "power_shape", "staircase_shape",
    "scale_depth", "ROUNDING_RULES",
]

ROUNDING_RULES = ("round", "divisible")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round to a multiple of ``divisor`` that is never more than 10% below ``value``.

    The TensorFlow/MobileNet rule, as used by timm and the ReXNet-lite code.
    """
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, got {divisor}")
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def round_width(value: float, rule: str = "round", divisor: int = 8) -> int:
    """One width to an integer: ``round`` (original ReXNet, Python's round-half-even)
    or ``divisible`` (round, then :func:`make_divisible` with the 10% rule)."""
    if rule == "round":
        return int(round(value))
    if rule == "divisible":
        return make_divisible(round(value), divisor)
    raise ValueError(f"unknown rounding rule {rule!r}; choose one of {ROUNDING_RULES}")


def round_widths(values: Sequence[float], rule: str = "round", divisor: int = 8) -> list[int]:
    return [round_width(v, rule, divisor) for v in values]


def linear(num_blocks: int, start: float = 16.0, increment: float = 180.0,
           span: float | None = None, multiplier: float = 1.0,
           keep_start_below_one: bool = True) -> list[float]:
    """The ReXNet rule: ``c_i = (start + i * increment / span) * multiplier``.

    ``span`` defaults to ``num_blocks`` (ReXNetV1 spreads ``increment`` over all
    blocks, so the last block gets ``start + increment * (d-1)/d``); ReXNet-lite
    uses ``num_blocks - 1``.  With ``keep_start_below_one`` the original code's
    rule for multipliers below 1 holds: the first width stays ``start`` and only
    the increment shrinks.  The sum is accumulated exactly as the original code
    does, so rounding ties fall the same way.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    if multiplier <= 0:
        raise ValueError(f"width multiplier must be positive, got {multiplier}")
    if increment < 0:
        raise ValueError(f"a linear schedule must not shrink: increment={increment} < 0")
    span = float(num_blocks if span is None else span)
    if span <= 0:
        raise ValueError(f"span must be positive, got {span}")
    base = start / multiplier if (keep_start_below_one and multiplier < 1.0) else start
    widths = []
    for _ in range(num_blocks):
        widths.append(base * multiplier)
        base += increment / span
    return widths


def rexnet_widths(multiplier: float = 1.0, depth_multiplier: float = 1.0,
                  start: float = 16.0, increment: float = 180.0) -> list[float]:
    """Continuous block widths of ReXNetV1 (16 blocks at depth x1.0)."""
    d = sum(scale_depth(REXNET_REPEATS, depth_multiplier))
    return linear(d, start, increment, span=d, multiplier=multiplier)


def stagewise(stages: Sequence[tuple[float, int]], multiplier: float = 1.0) -> list[float]:
    """The MobileNetV2 convention: ``(width, repeats)`` per stage, constant inside a stage."""
    widths: list[float] = []
    for width, repeats in stages:
        if repeats < 0:
            raise ValueError(f"stage repeats must be >= 0, got {repeats}")
        widths += [float(width) * multiplier] * int(repeats)
    return widths


def piecewise_linear(num_blocks: int, a: float, b: float,
                     knots: Sequence[tuple[float, float]]) -> list[float]:
    """The search parameterisation ``c_i = a * f(i) + b``.

    ``f`` interpolates the ``(x, y)`` knots linearly (x in block-index units,
    strictly increasing, covering ``0 .. num_blocks-1``) and must be
    non-decreasing, and ``a >= 0``, so widths never shrink with depth.  A
    straight line gives the ReXNet rule; a step between two adjacent indices
    (knots ``(k-1, y0), (k, y1)``) is exact at integer indices, so the
    stage-wise convention is a special case too.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    if len(knots) < 2:
        raise ValueError(f"piecewise_linear needs at least 2 knots, got {len(knots)}")
    xs = [float(x) for x, _ in knots]
    ys = [float(y) for _, y in knots]
    if any(x1 <= x0 for x0, x1 in zip(xs, xs[1:])):
        raise ValueError(f"knot positions must be strictly increasing, got {xs}")
    if any(y1 < y0 for y0, y1 in zip(ys, ys[1:])):
        raise ValueError(f"f must be non-decreasing (widths may not shrink), got knot values {ys}")
    if a < 0:
        raise ValueError(f"a must be >= 0 so widths grow with depth, got {a}")
    if xs[0] > 0 or xs[-1] < num_blocks - 1:
        raise ValueError(f"knots {xs[0]}..{xs[-1]} must cover block indices 0..{num_blocks - 1}")
    out = []
    for i in range(num_blocks):
        j = min(max(bisect_right(xs, i) - 1, 0), len(xs) - 2)
        t = (i - xs[j]) / (xs[j + 1] - xs[j])
        out.append(a * (ys[j] + t * (ys[j + 1] - ys[j])) + b)
    return out


def _check_shape(shape: Sequence[float]) -> None:
    if any(y1 < y0 for y0, y1 in zip(shape, shape[1:])):
        raise ValueError(f"a shape f must be non-decreasing (widths may not shrink), got {list(shape)}")


def affine(shape: Sequence[float], a: float, b: float) -> list[float]:
    """``c_i = a * f(i) + b`` for a shape ``f`` given per block (the search's
    parameterisation for any shape family: lines, curves, staircases)."""
    if a < 0:
        raise ValueError(f"a must be >= 0 so widths grow with depth, got {a}")
    _check_shape(shape)
    return [a * float(y) + b for y in shape]


def power_shape(num_blocks: int, power: float) -> list[float]:
    """``f(i) = (i / (d-1)) ** power`` on blocks ``0 .. d-1``: 0 to 1, a straight line at
    ``power == 1``, convex (output-heavy) above 1, concave (input-heavy) below."""
    if num_blocks < 2:
        raise ValueError(f"a shape needs at least 2 blocks, got {num_blocks}")
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    return [(i / (num_blocks - 1)) ** power for i in range(num_blocks)]


def staircase_shape(repeats: Sequence[int], levels: Sequence[float]) -> list[float]:
    """A stage-wise shape: ``levels[k]`` for every block of stage ``k`` (flat inside a
    stage, steps only at stage boundaries; equal neighbouring levels make a flat step)."""
    if len(repeats) != len(levels):
        raise ValueError(f"{len(levels)} levels for {len(repeats)} stages")
    _check_shape(levels)
    return stagewise(list(zip(levels, repeats)))


# Stage plan of ReXNetV1 / MobileNetV2's 16 inverted bottlenecks after the first.
REXNET_REPEATS = (1, 2, 2, 3, 3, 5)


def scale_depth(repeats: Sequence[int], depth_multiplier: float = 1.0) -> list[int]:
    """Repeats per stage times the depth multiplier, rounded up (as the original code)."""
    if depth_multiplier <= 0:
        raise ValueError(f"depth multiplier must be positive, got {depth_multiplier}")
    return [int(math.ceil(r * depth_multiplier)) for r in repeats]
