"""Budget solver: find the schedule parameter that lands a network on a MACs or params target.

:func:`bisect` is the one bisection: :func:`solve_budget` (the zoo's budget-matched
variants, the search's references) and the search sampler's feasible interval of the
slope both use it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .complexity import complexity
from .spec import NetSpec

__all__ = ["BudgetError", "Solution", "bisect", "solve_budget", "measure"]

METRICS = ("macs", "params")


class BudgetError(ValueError):
    """The target cannot be reached within the tolerance by this schedule family."""


@dataclass(frozen=True)
class Solution:
    value: float          # the solved parameter
    spec: NetSpec
    achieved: int         # MACs or params of ``spec``
    target: float
    metric: str

    @property
    def rel_error(self) -> float:
        return (self.achieved - self.target) / self.target


def measure(spec: NetSpec, metric: str, input_size: int | None = None) -> int:
    if metric not in METRICS:
        raise ValueError(f"unknown budget metric {metric!r}; use one of {METRICS}")
    c = complexity(spec, input_size)
    return c.macs if metric == "macs" else c.params


def bisect(below: Callable[[float], bool], lo: float, hi: float, iters: int,
           done: Callable[[float, float], bool] | None = None) -> tuple[float, float]:
    """Halve ``[lo, hi]`` towards the point where the monotone ``below`` turns False:
    ``below(mid)`` moves ``lo`` to ``mid``, otherwise ``hi``.  Stops after ``iters``
    halvings or as soon as ``done(lo, hi)``; returns the final ``(lo, hi)``."""
    for _ in range(iters):
        if done is not None and done(lo, hi):
            break
        mid = (lo + hi) / 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def solve_budget(make_spec: Callable[[float], NetSpec], target: float, lo: float, hi: float,
                 metric: str = "macs", tol: float = 0.01, input_size: int | None = None,
                 iters: int = 60) -> Solution:
    """Bisect a parameter ``x`` in ``[lo, hi]`` so ``metric(make_spec(x))`` is within
    ``tol`` (relative) of ``target``.

    ``metric(make_spec(x))`` must be non-decreasing in ``x`` (a final width, a
    width multiplier).  Rounding makes it a step function, so the two specs
    around the crossing are compared and the closer one is returned.  Raises
    :class:`BudgetError` when the target lies outside what ``[lo, hi]`` reaches
    or no step lands within ``tol``.
    """
    if target <= 0:
        raise BudgetError(f"the {metric} target must be positive, got {target}")
    if not lo < hi:
        raise ValueError(f"search interval must satisfy lo < hi, got [{lo}, {hi}]")

    seen: dict[float, tuple[int, NetSpec]] = {}

    def f(x: float) -> tuple[int, NetSpec]:
        if x not in seen:
            spec = make_spec(x)
            seen[x] = measure(spec, metric, input_size), spec
        return seen[x]

    f_lo, f_hi = f(lo)[0], f(hi)[0]
    if f_lo > f_hi:
        raise ValueError(f"{metric} must grow with the parameter; got {f_lo} at {lo} > {f_hi} at {hi}")
    if target < f_lo * (1 - tol):
        raise BudgetError(f"{metric} target {target:,.0f} is below the smallest this family "
                          f"reaches ({f_lo:,} at {lo}); raise the target or lower the bound")
    if target > f_hi * (1 + tol):
        raise BudgetError(f"{metric} target {target:,.0f} is above the largest this family "
                          f"reaches ({f_hi:,} at {hi}); lower the target or raise the bound")
    # stop where the metric no longer changes between the ends or the interval is exhausted
    a, b = bisect(lambda x: f(x)[0] < target, lo, hi, iters,
                  done=lambda a, b: f(a)[0] == f(b)[0] or b - a < 1e-9 * max(1.0, abs(b)))
    (fa, sa), (fb, sb) = f(a), f(b)
    best = min(((a, fa, sa), (b, fb, sb)), key=lambda t: abs(t[1] - target))
    sol = Solution(best[0], best[2], best[1], float(target), metric)
    if abs(sol.rel_error) > tol:
        raise BudgetError(f"no setting lands within {tol:.1%} of the {metric} target {target:,.0f}: "
                          f"the nearest are {fa:,} and {fb:,} (rounding makes steps); "
                          f"widen the tolerance or change the family")
    return sol
