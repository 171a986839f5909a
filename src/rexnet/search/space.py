"""The search space of the paper's Section 4: block widths ``c_i = a * f(i) + b`` on a
fixed 32x32 network, sampled under MACs / params budgets.

The fixed network (paper, Section 4.2): a 3x3 stem with 16 channels + BN + ReLU,
``depth`` inverted bottlenecks with expansion 6 (ReLU6 after the expansion and the
depthwise conv, linear projection; the ReXNet partial shortcut on stride-1 blocks), a
large penultimate 1x1 layer (``pen_chs``), global pooling and the classifier.

Stride plan for 32x32 inputs: the blocks are split into six stages in the
proportions of ReXNet / MobileNetV2 (1, 2, 2, 3, 3, 5 of 16) with the first stage
fixed at one block; stages 3, 4 and 6 start with a stride-2 block, so the feature
maps go 32 -> 16 -> 8 -> 4 (the stem runs at stride 1).  Every candidate shares
this plan; only the widths change.

``f`` is piecewise linear and non-decreasing from 0 (block 0) to 1 (block d-1)
through up to ``max_knots`` interior knots at random block indices with random
sorted values.  One straight segment is the ReXNet rule; two knots at adjacent
indices make a step, so stage-wise shapes (and output-heavy ones) are in the space.
Sampling draws the shape and ``b`` uniformly; the MACs / params of the network are
non-decreasing in ``a``, so the interval of ``a`` that meets the budget is found by
bisection on the analytic complexity and ``a`` is drawn uniformly from it (shapes
and ``b`` with an empty interval are rejected).  Every accepted spec is checked
against all constraints exactly and deduplicated by its hash.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import schedule as sch
from ..budget import BudgetError, bisect, solve_budget
from ..complexity import complexity
from ..spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__all__ = ["SearchSpace", "Candidate", "PRESETS", "get_preset", "stage_repeats"]

BASE_REPEATS = sch.REXNET_REPEATS          # (1, 2, 2, 3, 3, 5)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2)         # 32x32 plan: 32 -> 32 -> 16 -> 8 -> 8 -> 4
MOBILENETV2_STAGE_WIDTHS = (16, 24, 32, 64, 96, 160)   # MobileNetV2's first six stages


def stage_repeats(depth: int) -> list[int]:
    """``depth`` blocks over six stages in ReXNet's proportions (largest remainder),
    the first stage one block."""
    if depth < 6:
        raise ValueError(f"depth must be >= 6 (one block per stage), got {depth}")
    rest = depth - 1
    shares = [r * rest / (sum(BASE_REPEATS) - 1) for r in BASE_REPEATS[1:]]
    reps = [max(1, math.floor(s)) for s in shares]
    order = sorted(range(len(shares)), key=lambda i: shares[i] - math.floor(shares[i]), reverse=True)
    i = 0
    while sum(reps) < rest:
        reps[order[i % len(order)]] += 1
        i += 1
    while sum(reps) > rest:
        j = max(range(len(reps)), key=lambda k: reps[k])
        reps[j] -= 1
    return [1] + reps


@dataclass(frozen=True)
class Candidate:
    """One sampled (or reference) network: its spec, widths and parameterisation."""
    kind: str                  # "sample" | "linear" | "stagewise"
    spec: NetSpec
    widths: tuple[int, ...]
    macs: int
    params: int
    params_of_f: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return self.spec.hash()


@dataclass(frozen=True)
class SearchSpace:
    """A preset's network template, budgets and parameter ranges."""
    name: str
    depth: int = 18
    macs_max: float = 30e6
    macs_min: float | None = None       # lower bound so models use their budget (default 0.85 x max)
    params_max: float | None = None
    params_min: float | None = None
    stem_chs: int = 16
    expansion: int = 6
    pen_chs: int = 1280
    num_classes: int = 10
    b_range: tuple[float, float] = (8.0, 64.0)   # first block's width
    max_knots: int = 3                            # interior knots of f
    min_width: int = 8
    dropout: float = 0.2

    def __post_init__(self) -> None:
        stage_repeats(self.depth)
        if self.macs_max <= 0:
            raise ValueError(f"{self.name}: macs_max must be positive, got {self.macs_max}")
        lo = self.lower_macs
        if lo > self.macs_max:
            raise ValueError(f"{self.name}: macs_min {lo:,.0f} exceeds macs_max {self.macs_max:,.0f}")
        if self.params_max is not None and self.params_min is not None and self.params_min > self.params_max:
            raise ValueError(f"{self.name}: params_min exceeds params_max")
        if not 0 < self.b_range[0] <= self.b_range[1]:
            raise ValueError(f"{self.name}: b_range must satisfy 0 < lo <= hi, got {self.b_range}")

    @property
    def lower_macs(self) -> float:
        return self.macs_min if self.macs_min is not None else 0.85 * self.macs_max

    def replace(self, **changes: Any) -> "SearchSpace":
        return dataclasses.replace(self, **changes)

    # -- the template ---------------------------------------------------------------
    def strides(self) -> list[int]:
        return [s if j == 0 else 1 for s, r in zip(STAGE_STRIDES, stage_repeats(self.depth)) for j in range(r)]

    def build(self, widths: list[float] | tuple[float, ...], name: str = "candidate",
              meta: dict[str, Any] | None = None) -> NetSpec:
        """The fixed network with these block output widths (rounded, at least ``min_width``)."""
        if len(widths) != self.depth:
            raise ValueError(f"{self.name}: {len(widths)} widths for {self.depth} blocks")
        outs = [max(self.min_width, int(round(w))) for w in widths]
        if any(b < a for a, b in zip(outs, outs[1:])):
            raise ValueError(f"widths must be non-decreasing (c_1 <= ... <= c_d), got {outs}")
        blocks, prev = [], self.stem_chs
        for out, s in zip(outs, self.strides()):
            blocks.append(BlockSpec(prev, out, prev * self.expansion, stride=s, act_exp="relu6",
                                    act_dw="relu6", act_out=None, shortcut="partial" if s == 1 else "none"))
            prev = out
        return NetSpec(name, StemSpec(self.stem_chs, stride=1, act="relu"), tuple(blocks),
                       HeadSpec(prev, self.pen_chs, act="relu6", dropout=self.dropout,
                                num_classes=self.num_classes),
                       input_size=32, meta={"space": self.name, **(meta or {})})

    def candidate(self, kind: str, widths: list[float], **params_of_f: Any) -> Candidate:
        spec = self.build(widths, meta={"kind": kind})
        c = complexity(spec)
        return Candidate(kind, spec, tuple(b.out_chs for b in spec.blocks), c.macs, c.params, dict(params_of_f))

    def violations(self, macs: int, params: int) -> list[str]:
        out = []
        if macs > self.macs_max:
            out.append(f"MACs {macs:,} > {self.macs_max:,.0f}")
        if macs < self.lower_macs:
            out.append(f"MACs {macs:,} < {self.lower_macs:,.0f}")
        if self.params_max is not None and params > self.params_max:
            out.append(f"params {params:,} > {self.params_max:,.0f}")
        if self.params_min is not None and params < self.params_min:
            out.append(f"params {params:,} < {self.params_min:,.0f}")
        return out

    # -- sampling ---------------------------------------------------------------------
    def _cost(self, a: float, b: float, knots) -> tuple[int, int]:
        spec = self.build(sch.piecewise_linear(self.depth, a, b, knots))
        c = complexity(spec)
        return c.macs, c.params

    def _a_interval(self, b: float, knots, a_cap: float) -> tuple[float, float] | None:
        """Smallest ``a`` meeting the lower bounds and largest meeting the upper bounds."""
        def over(a: float) -> bool:
            m, p = self._cost(a, b, knots)
            return m > self.macs_max or (self.params_max is not None and p > self.params_max)

        def under(a: float) -> bool:
            m, p = self._cost(a, b, knots)
            return m < self.lower_macs or (self.params_min is not None and p < self.params_min)

        if over(0.0):
            return None
        hi = a_cap if not over(a_cap) else bisect(lambda a: not over(a), 0.0, a_cap, 40)[0]   # last a not over
        if under(hi):
            return None
        lo = 0.0 if not under(0.0) else bisect(under, 0.0, hi, 40)[1]                         # first a not under
        return (lo, hi) if lo <= hi else None

    def sample(self, rng: random.Random, max_tries: int = 2000) -> Candidate:
        """One random candidate meeting every constraint (see the module docstring)."""
        a_cap = 64.0 * self.pen_chs
        for _ in range(max_tries):
            k = rng.randint(0, min(self.max_knots, self.depth - 2))
            xs = sorted(rng.sample(range(1, self.depth - 1), k))
            ys = sorted(rng.random() for _ in range(k))
            knots = [(0.0, 0.0)] + [(float(x), y) for x, y in zip(xs, ys)] + [(float(self.depth - 1), 1.0)]
            b = rng.uniform(*self.b_range)
            interval = self._a_interval(b, knots, a_cap)
            if interval is None:
                continue
            a = rng.uniform(*interval)
            widths = sch.piecewise_linear(self.depth, a, b, knots)
            cand = self.candidate("sample", widths, a=round(a, 4), b=round(b, 4),
                                  knots=[[x, round(y, 4)] for x, y in knots])
            if not self.violations(cand.macs, cand.params):
                return cand
        raise BudgetError(f"{self.name}: no candidate met the budget in {max_tries} draws "
                          f"(MACs {self.lower_macs:,.0f}..{self.macs_max:,.0f}, params "
                          f"{self.params_min}..{self.params_max}); widen the budget or b_range")

    def samples(self, n: int, seed: int = 0) -> list[Candidate]:
        """``n`` distinct candidates (by spec hash), the same list for the same seed;
        the first ``m`` of ``samples(n)`` equal ``samples(m)``."""
        rng = random.Random(seed)
        seen, out = set(), []
        misses = 0
        while len(out) < n:
            c = self.sample(rng)
            if c.hash in seen:
                misses += 1
                if misses > 50 * n:
                    raise BudgetError(f"{self.name}: only {len(out)} distinct candidates found; "
                                      f"the space is too small for {n}")
                continue
            seen.add(c.hash)
            out.append(c)
        return out

    # -- references: the paper's thesis as an A/B inside every search ------------------
    def references(self) -> list[Candidate]:
        """The linear (ReXNet) and stage-wise (MobileNetV2) schedules solved to the middle
        of the MACs budget (the stem-like first width 16 kept; the slope or the
        stage-width multiplier is solved)."""
        target = (self.lower_macs + self.macs_max) / 2
        reps = stage_repeats(self.depth)
        first = max(float(self.min_width), min(16.0, self.b_range[1]))

        def linear(a: float) -> NetSpec:
            return self.build(sch.piecewise_linear(self.depth, a, first, [(0, 0), (self.depth - 1, 1)]))

        def stagewise(m: float) -> NetSpec:
            return self.build(sch.stagewise(list(zip(MOBILENETV2_STAGE_WIDTHS, reps)), m))

        out = []
        for kind, make, hi, key in (("linear", linear, 64.0 * self.pen_chs, "a"),
                                    ("stagewise", stagewise, 64.0, "multiplier")):
            try:
                sol = solve_budget(make, target, 0.0 if kind == "linear" else 0.05, hi, tol=0.03)
            except BudgetError as e:
                raise BudgetError(f"{self.name}: the {kind} reference cannot reach the budget: {e}") from e
            widths = [b.out_chs for b in sol.spec.blocks]
            cand = self.candidate(kind, widths, **{key: round(sol.value, 4)})
            bad = self.violations(cand.macs, cand.params)
            if bad:
                raise BudgetError(f"{self.name}: the {kind} reference breaks the budget ({'; '.join(bad)}); "
                                  f"loosen the params bounds")
            out.append(cand)
        return out

    def iter_all(self, n: int, seed: int = 0) -> Iterator[Candidate]:
        yield from self.references()
        yield from self.samples(n, seed)


# -- presets: the paper's six searches on CIFAR-10 / CIFAR-100, and a CPU smoke search ----
@dataclass(frozen=True)
class Preset:
    space: SearchSpace
    data: str = "cifar10"
    trials: int = 100              # sampled models (the two references come on top)
    epochs: int = 30
    repeats: int = 3
    early_stop_patience: int = 5
    train_subset: int | None = None
    val_subset: int | None = None
    batch_size: int = 128
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["space"]["b_range"] = list(d["space"]["b_range"])
        return d


def _paper(depth: int, mflops: int, data: str) -> Preset:
    classes = 100 if data == "cifar100" else 10
    space = SearchSpace(f"d{depth}_{mflops}m_{data}", depth=depth, macs_max=mflops * 1e6,
                        num_classes=classes, b_range=(8.0, 48.0 if depth == 18 else 64.0))
    return Preset(space, data=data)


PRESETS: dict[str, Preset] = {p.space.name: p for p in
                              [_paper(d, m, data) for data in ("cifar10", "cifar100")
                               for d, ms in ((18, (30, 50, 70)), (30, (100, 150, 200))) for m in ms]}
# smoke: depth 12 at 17-20 MMACs with a 640-wide head, 2 epochs on 1,500 images: minutes on 2 cores
PRESETS["smoke"] = Preset(SearchSpace("smoke", depth=12, macs_max=20e6, pen_chs=640, b_range=(8.0, 24.0)),
                          data="cifar10", trials=4, epochs=2, repeats=2, early_stop_patience=0,
                          train_subset=1500, val_subset=500)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown search preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]
