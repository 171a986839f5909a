"""The static solver: the largest design under analytic MACs / params bounds.

For each depth multiplier of the family (:data:`~rexnet.design.families.DEPTHS` for ReXNet)
the largest width multiplier meeting every bound is bisected
(:func:`rexnet.budget.bisect` on the figures of :mod:`rexnet.complexity`); with two bounds
and a free final width, the final width is bisected too, towards the point where both
budgets are used alike.  Every design is scored by its *least-used* budget (achieved /
bound); the best score wins, and among designs within :data:`TIE` of it the one nearest
the published rule (depth x1, the family's own final width) is taken, so a single bound
reproduces the zoo's scaling (``--macs 0.40G`` gives rexnet_100).  ``fill`` is a lower
bound on every budget's use: a design that cannot reach it (a target above the family's
reach, or two bounds that conflict) is a :class:`~rexnet.budget.BudgetError` naming the
reachable figures, as is a target below the smallest network the family expresses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..budget import BudgetError, bisect
from ..complexity import complexity
from ..spec import NetSpec
from .families import Family
from .targets import LABELS, Targets, format_count

__all__ = ["M_LO", "M_HI", "FINAL_RANGE", "FINAL_GRID", "TIE", "M_RESOLUTION", "Point", "Solver",
           "solve_static"]

M_LO, M_HI = 0.1, 8.0       # width multipliers searched
FINAL_RANGE = (0.125, 4.0)  # final width searched, as a factor of the family's own
FINAL_GRID = 16             # final widths tried on that range (log-spaced), then refined around the best
TIE = 0.01                  # designs whose least-used budget is this close to the best count as equal
M_RESOLUTION = 1e-4         # the width bisection stops here (widths are rounded to integers)


@dataclass(frozen=True)
class Point:
    """One candidate of the solvers: its free variables, spec and analytic figures."""
    multiplier: float
    depth: float
    final: float
    spec: NetSpec
    macs: int
    params: int

    def use(self, bounds: dict[str, float]) -> dict[str, float]:
        """Each bound's use: achieved / bound."""
        return {k: getattr(self, k) / v for k, v in bounds.items()}

    def score(self, bounds: dict[str, float]) -> float:
        """The least-used budget's use."""
        return min(self.use(bounds).values())


class Solver:
    """A family's candidates at one input size and class count, each built and counted once."""

    def __init__(self, family: Family, input_size: int, num_classes: int):
        self.family, self.input_size, self.num_classes = family, input_size, num_classes
        self.seen: dict[tuple[float, float, float], Point] = {}

    def at(self, m: float, d: float, final: float) -> Point:
        """The candidate at width multiplier ``m``, depth multiplier ``d`` and final width ``final``."""
        key = (m, d, final)
        if key not in self.seen:
            spec = self.family.make(m, d, final, num_classes=self.num_classes, input_size=self.input_size)
            c = complexity(spec)
            self.seen[key] = Point(m, d, final, spec, c.macs, c.params)
        return self.seen[key]

    def widest(self, bounds: dict[str, float], d: float, final: float, hi: float = M_HI) -> Point | None:
        """The largest width multiplier meeting every bound at this depth and final width."""
        fits = lambda m: all(getattr(self.at(m, d, final), k) <= v for k, v in bounds.items())  # noqa: E731
        if not fits(M_LO):
            return None
        if fits(hi):
            return self.at(hi, d, final)
        lo, _ = bisect(fits, M_LO, hi, 60, done=lambda a, b: b - a < M_RESOLUTION)
        # a round multiplier at or above the bisection's end, when it fits too: rounding ties make
        # the widths jump right above x1.0, so the end lands at 0.99998 where x1.0 (the zoo) fits
        rounder = [r for r in (round(lo, k) for k in (2, 3, 4)) if r >= lo and fits(r)]
        return self.at(max(rounder, default=lo), d, final)

    def balanced(self, bounds: dict[str, float], d: float) -> Point | None:
        """With two bounds: the final width whose widest design uses the least-used budget most.
        A grid, then a finer one around its best: the head grows with the width multiplier,
        so the params-per-MAC of the solution is not monotone in the final width."""
        f0 = self.family.default_final
        lo, hi = math.log(f0 * FINAL_RANGE[0]), math.log(f0 * FINAL_RANGE[1])

        def best_of(finals: Sequence[float]) -> Point | None:
            points = [p for p in (self.widest(bounds, d, round(f, 2)) for f in finals) if p is not None]
            return max(points, key=lambda p: p.score(bounds)) if points else None

        step = (hi - lo) / (FINAL_GRID - 1)
        coarse = best_of([math.exp(lo + i * step) for i in range(FINAL_GRID)])
        if coarse is None:
            return None
        c = math.log(coarse.final)
        fine = best_of([math.exp(c + (i / 4 - 1) * step) for i in range(9)])
        return max((coarse, fine), key=lambda p: p.score(bounds))

    def smallest(self, depths: Sequence[float], finals: Sequence[float]) -> Point:
        """The smallest candidate over these depths and final widths, at the narrowest width."""
        return min((self.at(M_LO, d, f) for d in depths for f in finals), key=lambda p: (p.macs, p.params))


def _distance_to_rule(p: Point, family: Family) -> float:
    return abs(math.log(p.depth)) + abs(math.log(max(p.final, 1e-9) / family.default_final))


def solve_static(family: Family, targets: Targets, input_size: int, num_classes: int,
                 check_fill: bool = True) -> Point:
    """The design meeting ``targets.static`` (see the module docstring); ``check_fill=False``
    takes the best design however little of a budget it uses (the latency solver's caps)."""
    bounds = targets.static
    solver = Solver(family, input_size, num_classes)
    two = len(bounds) == 2 and family.final_free
    points = []
    for d in family.depths:
        points.append(solver.widest(bounds, d, family.default_final))
        if two:
            points.append(solver.balanced(bounds, d))
    points = [p for p in points if p is not None]
    what = " and ".join(f"--{k} {format_count(v)}" for k, v in bounds.items())
    where = f"at {input_size}px"
    if not points:
        f0 = family.default_final
        s = solver.smallest(family.depths, [f0 * FINAL_RANGE[0], f0] if two else [f0])
        raise BudgetError(f"no {family.name} design meets {what}: the smallest this family expresses is "
                          f"{format_count(s.macs)} MACs and {format_count(s.params)} params {where} (width "
                          f"x{s.multiplier}, depth x{s.depth}); raise the target or lower --input-size")
    best = max(p.score(bounds) for p in points)
    near = [p for p in points if p.score(bounds) >= best - TIE]
    chosen = min(near, key=lambda p: (_distance_to_rule(p, family), -p.score(bounds)))
    fill = targets.fill
    if check_fill and fill and chosen.score(bounds) < fill:
        use = chosen.use(bounds)
        figures = ", ".join(f"{format_count(getattr(chosen, k))} {LABELS[k]} ({use[k]:.0%} of {format_count(v)})"
                            for k, v in bounds.items())
        if chosen.multiplier >= M_HI:
            raise BudgetError(f"{what} is beyond what the {family.name} family reaches {where}: at the largest "
                              f"width (x{M_HI}) it gives {figures}; lower the target")
        raise BudgetError(f"{what} conflict under --fill {fill:g}: the best {family.name} design {where} gives "
                          f"{figures}; relax one bound or lower --fill")
    return chosen
