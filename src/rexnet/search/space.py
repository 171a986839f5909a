"""The search space of the paper's Section 4: block widths ``c_i = a * f(i) + b`` on a
fixed 32x32 network, sampled under MACs *and* params budgets (Eq. 1).

The fixed network (paper, Section 4.2): a 3x3 stem with 16 channels + BN + ReLU,
``depth`` inverted bottlenecks with expansion 6 (ReLU6 after the expansion and the
depthwise conv, linear projection; the ReXNet partial shortcut on stride-1 blocks), a
large penultimate 1x1 layer (``pen_chs``), global pooling and the classifier.

Stride plan for 32x32 inputs: the blocks are split into six stages in the
proportions of ReXNet / MobileNetV2 (1, 2, 2, 3, 3, 5 of 16) with the first stage
fixed at one block; stages 3, 4 and 6 start with a stride-2 block, so the feature
maps go 32 -> 16 -> 8 -> 4 (the stem runs at stride 1).  Every candidate shares
this plan; only the widths change.

**Shape families.**  ``f`` is a normalised non-decreasing shape (0 at block 0, 1 at
block d-1) drawn from an explicit family at a stated rate (:data:`FAMILY_RATES`):

- ``linear``: ``f(i) = i / (d-1)``, the ReXNet rule;
- ``piecewise``: piecewise linear through 1..6 interior knots at random blocks with
  random sorted heights (MobileNetV2's configuration has five steps);
- ``staircase``: stage-wise, flat inside every stage of :func:`stage_repeats`, steps
  only at stage boundaries with random heights, some of them zero (a flat step), so
  it is not always strictly increasing -- the convention of the paper's Table 1;
- ``convex`` / ``concave``: ``f(i) = t ** p`` with ``p`` log-uniform in
  :data:`CURVE_POWERS` (output-heavy) or its reciprocal (input-heavy).

The family is drawn first; a draw the budget rejects is redrawn *within the same
family*, so the accepted families occur at the stated rates.  For a shape, ``b`` (the
first width) is drawn uniformly from ``b_range``; the MACs and params of the network
are non-decreasing in ``a``, so the interval of ``a`` that meets every bound is found
by bisection on the analytic complexity and ``a`` is drawn uniformly from it (an
empty interval rejects the draw).  Every accepted spec is checked against all
constraints exactly and deduplicated by its hash.

**References: the paper's thesis as an A/B at equal MACs and params.**  Both
references are ``c_i = a * f(i) + b`` with *two* free variables, solved to the
middle of the MACs bounds and to the params target (the middle of the params
bounds): ``linear`` (f a straight line, a free intercept ``b``) and ``stagewise``
(f MobileNetV2's staircase 16-24-32-64-96-160 over :func:`stage_repeats`, i.e. stage
``k`` has width ``w0 + multiplier * (W_k - 16)``; at ``w0 = 16 * multiplier`` this is
exactly MobileNetV2 times the multiplier).  The plain multiplier-and-first-width form
(later stages ``multiplier * W_k``) cannot match the line's params at equal MACs:
MobileNetV2's staircase puts so many channels at the 4x4 end that at the same MACs it
carries more parameters than any straight line starting at ``min_width`` in every
paper preset, so the offset form keeps the staircase and frees the first width.

**Budgets.**  Every preset bounds MACs to ``[0.85, 1] x macs_max`` and params to a
band around a centre P0: the geometric mean of the params of the two extreme straight
lines at the MACs midpoint (all blocks equally wide, and the steepest line, from
``min_width``), see :meth:`SearchSpace.params_range`; both references reach every
params value in that range, so P0 is met by both.  The presets' P0 are these values
rounded to two significant digits (tests hold the two together).  The fixed-depth
searches (the paper's Section 7, constrained by FLOPs) take a loose band (+-25%),
the Section 4.3 searches (Eq. 1, params and FLOPs) a tight one (+-10%).

**Section 4.3's four constraint settings** (Fig. 2 / Table 3): the values are not in
the paper's text we have (its Chinese rendering in shared/paper lacks the tables and
figures), nor in the public notes on the paper or the clovaai/rexnet code we could
search; they appear only inside Table 3's image.  So four settings are chosen that
span the model sizes the paper searches (depth 18 at 30 and 70 MMACs, depth 30 at 100
and 200 MMACs, the ends of its Section 7 grid), on CIFAR-100, with the tight params
band: presets ``sec43_d18_30m``, ``sec43_d18_70m``, ``sec43_d30_100m``,
``sec43_d30_200m``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

from .. import schedule as sch
from ..budget import BudgetError, bisect
from ..complexity import complexity
from ..spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__all__ = ["SearchSpace", "Candidate", "PRESETS", "get_preset", "stage_repeats", "FAMILY_RATES",
           "REFERENCE_KINDS"]

BASE_REPEATS = sch.REXNET_REPEATS          # (1, 2, 2, 3, 3, 5)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2)         # 32x32 plan: 32 -> 32 -> 16 -> 8 -> 8 -> 4
MOBILENETV2_STAGE_WIDTHS = (16, 24, 32, 64, 96, 160)   # MobileNetV2's first six stages

# the sampler's shape families and the rate each is drawn at (sums to 1)
FAMILY_RATES: dict[str, float] = {"linear": 0.2, "piecewise": 0.3, "staircase": 0.3,
                                  "convex": 0.1, "concave": 0.1}
PIECEWISE_KNOTS = (1, 6)        # interior knots of a piecewise shape (count uniform in this range)
CURVE_POWERS = (1.5, 4.0)       # convex f = t**p, log p uniform here; concave f = t**(1/p)
FLAT_STEP_RATE = 0.25           # chance that a staircase step between two stages has zero height
REFERENCE_KINDS = ("linear", "stagewise")
MACS_TOL, PARAMS_TOL = 0.01, 0.03   # how close the references land on the MACs / params targets
A_RESOLUTION = 0.01             # bisection on a stops here (widths are rounded to integers)


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
    family: str = ""           # the shape family: a FAMILY_RATES key, or "linear" / "stagewise" for references

    @property
    def hash(self) -> str:
        return self.spec.hash()


@functools.lru_cache(maxsize=1 << 16)
def _cost_of(space: "SearchSpace", widths: tuple[int, ...]) -> tuple[int, int]:
    """MACs and params of ``space``'s network with these (rounded) widths, cached: many
    values of ``a`` round to the same widths during a bisection."""
    c = complexity(space.build(widths))
    return c.macs, c.params


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

    @property
    def macs_target(self) -> float:
        """The middle of the MACs bounds: where the references are solved."""
        return (self.lower_macs + self.macs_max) / 2

    @property
    def params_target(self) -> float:
        """The middle of the params bounds (both set), else the centre of
        :meth:`params_range` kept inside whichever bound is set."""
        if self.params_min is not None and self.params_max is not None:
            return (self.params_min + self.params_max) / 2
        centre = self.params_center()
        if self.params_max is not None:
            centre = min(centre, self.params_max)
        if self.params_min is not None:
            centre = max(centre, self.params_min)
        return centre

    def replace(self, **changes: Any) -> "SearchSpace":
        return dataclasses.replace(self, **changes)

    # -- the template ---------------------------------------------------------------
    def strides(self) -> list[int]:
        return [s if j == 0 else 1 for s, r in zip(STAGE_STRIDES, stage_repeats(self.depth)) for j in range(r)]

    def rounded(self, widths: list[float] | tuple[float, ...]) -> tuple[int, ...]:
        """The integer widths :meth:`build` uses (rounded, at least ``min_width``)."""
        return tuple(max(self.min_width, int(round(w))) for w in widths)

    def build(self, widths: list[float] | tuple[float, ...], name: str = "candidate",
              meta: dict[str, Any] | None = None) -> NetSpec:
        """The fixed network with these block output widths (rounded, at least ``min_width``)."""
        if len(widths) != self.depth:
            raise ValueError(f"{self.name}: {len(widths)} widths for {self.depth} blocks")
        outs = self.rounded(widths)
        if any(b < a for a, b in zip(outs, outs[1:])):
            raise ValueError(f"widths must be non-decreasing (c_1 <= ... <= c_d), got {list(outs)}")
        blocks, prev = [], self.stem_chs
        for out, s in zip(outs, self.strides()):
            blocks.append(BlockSpec(prev, out, prev * self.expansion, stride=s, act_exp="relu6",
                                    act_dw="relu6", act_out=None, shortcut="partial" if s == 1 else "none"))
            prev = out
        return NetSpec(name, StemSpec(self.stem_chs, stride=1, act="relu"), tuple(blocks),
                       HeadSpec(prev, self.pen_chs, act="relu6", dropout=self.dropout,
                                num_classes=self.num_classes),
                       input_size=32, meta={"space": self.name, **(meta or {})})

    def candidate(self, kind: str, widths: list[float], family: str = "",
                  params_of_f: dict[str, Any] | None = None) -> Candidate:
        meta = {"kind": kind, **({"family": family} if family else {})}
        spec = self.build(widths, meta=meta)
        c = complexity(spec)
        return Candidate(kind, spec, tuple(b.out_chs for b in spec.blocks), c.macs, c.params,
                         dict(params_of_f or {}), family)

    def cost(self, widths: list[float] | tuple[float, ...]) -> tuple[int, int]:
        """(MACs, params) of the network with these widths (analytic, cached)."""
        return _cost_of(self, self.rounded(widths))

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

    # -- shapes -----------------------------------------------------------------------
    def reference_shape(self, kind: str) -> list[float]:
        """``f`` of a reference: a straight line, or MobileNetV2's staircase normalised to 0..1."""
        if kind == "linear":
            return sch.power_shape(self.depth, 1.0)
        if kind == "stagewise":
            w = MOBILENETV2_STAGE_WIDTHS
            return sch.staircase_shape(stage_repeats(self.depth), [(x - w[0]) / (w[-1] - w[0]) for x in w])
        raise ValueError(f"unknown reference kind {kind!r}; choose one of {REFERENCE_KINDS}")

    def draw_family(self, rng: random.Random) -> str:
        """A family name at the rates of :data:`FAMILY_RATES` (one uniform draw)."""
        u, acc = rng.random(), 0.0
        for name, rate in FAMILY_RATES.items():
            acc += rate
            if u < acc:
                return name
        return name

    def draw_shape(self, rng: random.Random, family: str) -> tuple[list[float], dict[str, Any]]:
        """A normalised non-decreasing ``f`` (0 at block 0, 1 at the last) of this family,
        and what describes it (recorded in the candidate's ``params_of_f``)."""
        d = self.depth
        if family == "linear":
            return sch.power_shape(d, 1.0), {}
        if family in ("convex", "concave"):
            p = math.exp(rng.uniform(math.log(CURVE_POWERS[0]), math.log(CURVE_POWERS[1])))
            p = p if family == "convex" else 1.0 / p
            return sch.power_shape(d, p), {"power": round(p, 4)}
        if family == "piecewise":
            k = rng.randint(PIECEWISE_KNOTS[0], min(PIECEWISE_KNOTS[1], d - 2))
            xs = sorted(rng.sample(range(1, d - 1), k))
            ys = sorted(rng.random() for _ in range(k))
            knots = [(0.0, 0.0)] + [(float(x), y) for x, y in zip(xs, ys)] + [(float(d - 1), 1.0)]
            return sch.piecewise_linear(d, 1.0, 0.0, knots), {"knots": [[x, round(y, 4)] for x, y in knots]}
        if family == "staircase":
            reps = stage_repeats(d)
            steps = [0.0 if rng.random() < FLAT_STEP_RATE else rng.uniform(0.05, 1.0) for _ in reps[1:]]
            if not any(steps):                      # at least one real step: f must reach 1
                steps[rng.randrange(len(steps))] = rng.uniform(0.05, 1.0)
            levels = [0.0]
            for s in steps:
                levels.append(levels[-1] + s)
            levels = [v / levels[-1] for v in levels]
            return sch.staircase_shape(reps, levels), {"levels": [round(v, 4) for v in levels]}
        raise ValueError(f"unknown shape family {family!r}; choose one of {sorted(FAMILY_RATES)}")

    # -- sampling ---------------------------------------------------------------------
    def _a_interval(self, shape: list[float], b: float) -> tuple[float, float] | None:
        """Smallest ``a`` meeting the lower bounds and largest meeting the upper bounds."""
        def over(a: float) -> bool:
            m, p = self.cost(sch.affine(shape, a, b))
            return m > self.macs_max or (self.params_max is not None and p > self.params_max)

        def under(a: float) -> bool:
            m, p = self.cost(sch.affine(shape, a, b))
            return m < self.lower_macs or (self.params_min is not None and p < self.params_min)

        def close(lo: float, hi: float) -> bool:
            return hi - lo < A_RESOLUTION

        a_cap = 64.0 * self.pen_chs
        if over(0.0):
            return None
        hi = a_cap if not over(a_cap) else bisect(lambda a: not over(a), 0.0, a_cap, 60, close)[0]
        if under(hi):
            return None
        lo = 0.0 if not under(0.0) else bisect(under, 0.0, hi, 60, close)[1]
        return (lo, hi) if lo <= hi else None

    def sample(self, rng: random.Random, max_tries: int = 2000, family: str | None = None) -> Candidate:
        """One random candidate of ``family`` (drawn at :data:`FAMILY_RATES` when None)
        meeting every constraint; rejected draws are redrawn in the same family."""
        family = self.draw_family(rng) if family is None else family
        for _ in range(max_tries):
            shape, extra = self.draw_shape(rng, family)
            b = rng.uniform(*self.b_range)
            interval = self._a_interval(shape, b)
            if interval is None:
                continue
            a = rng.uniform(*interval)
            cand = self.candidate("sample", sch.affine(shape, a, b), family,
                                  dict(a=round(a, 4), b=round(b, 4), **extra))
            if not self.violations(cand.macs, cand.params):
                return cand
        raise BudgetError(f"{self.name}: no candidate met the budget in {max_tries} draws of the {family} "
                          f"family (MACs {self.lower_macs:,.0f}..{self.macs_max:,.0f}, params "
                          f"{self.params_min}..{self.params_max}); widen the budget or b_range")

    def samples(self, n: int, seed: int = 0) -> list[Candidate]:
        """``n`` distinct candidates (by spec hash), the same list for the same seed;
        the first ``m`` of ``samples(n)`` equal ``samples(m)``.  A duplicate is redrawn
        in its family, so the families keep their rates."""
        rng = random.Random(seed)
        seen, out = set(), []
        misses = 0
        while len(out) < n:
            family = self.draw_family(rng)
            while (c := self.sample(rng, family=family)).hash in seen:
                misses += 1
                if misses > 50 * n:
                    raise BudgetError(f"{self.name}: only {len(out)} distinct candidates found; "
                                      f"the space is too small for {n}")
            seen.add(c.hash)
            out.append(c)
        return out

    # -- references: the paper's thesis as an A/B inside every search ------------------
    def _fit_a(self, shape: list[float], b: float, macs: float) -> tuple[float, int, int]:
        """The ``a >= 0`` whose rounded widths land closest to ``macs`` for this ``b``
        (the flat network ``a = 0`` when even that is over): (a, MACs, params)."""
        def at(a: float) -> tuple[int, int]:
            return self.cost(sch.affine(shape, a, b))

        if at(0.0)[0] >= macs:
            return (0.0, *at(0.0))
        lo, hi = bisect(lambda a: at(a)[0] < macs, 0.0, 64.0 * self.pen_chs, 80,
                        lambda lo, hi: at(lo) == at(hi) or hi - lo < 1e-6)
        a = min((lo, hi), key=lambda x: abs(at(x)[0] - macs))
        return (a, *at(a))

    def _reachable(self, macs: float) -> float:
        """``macs`` unchanged, or a BudgetError when even the smallest network is larger."""
        smallest = self.cost([self.min_width] * self.depth)[0]
        if smallest > macs * (1 + MACS_TOL):
            raise BudgetError(f"{self.name}: the MACs target {macs:,.0f} is below the smallest network of "
                              f"this template ({smallest:,} MACs with every width {self.min_width}); "
                              f"raise the MACs bounds")
        return macs

    def _flat_width(self, macs: float) -> float:
        """The width of the flat network (all blocks equal) at ``macs``: the largest
        first width ``b`` a reference may have."""
        lo, _ = bisect(lambda w: self.cost([w] * self.depth)[0] <= macs, float(self.min_width),
                       64.0 * self.pen_chs, 60, lambda lo, hi: hi - lo < 1e-3)
        return lo

    def params_range(self) -> tuple[int, int]:
        """Params of the flattest and the steepest straight line at the MACs midpoint
        (all blocks equally wide; first width ``min_width``): every params value between
        them is reached by both references (MobileNetV2's staircase spans more)."""
        macs = self._reachable(self.macs_target)
        line = self.reference_shape("linear")
        flat = self._fit_a(line, self._flat_width(macs), macs)[2]
        steep = self._fit_a(line, float(self.min_width), macs)[2]
        return flat, steep

    def params_center(self) -> float:
        """The geometric middle of :meth:`params_range`: the presets' params centre P0."""
        lo, hi = self.params_range()
        return math.sqrt(lo * hi)

    def _fit_both(self, shape: list[float], b: float, macs: tuple[float, float],
                  params: float) -> tuple[float, int, int]:
        """For this ``b``, the ``a`` whose widths land within the MACs window ``macs`` with
        params closest to ``params`` (the ``a`` closest to the window's middle when no
        ``a`` lands inside: rounding makes MACs a step function): (a, MACs, params)."""
        def at(a: float) -> tuple[int, int]:
            return self.cost(sch.affine(shape, a, b))

        def close(lo: float, hi: float) -> bool:
            return at(lo) == at(hi) or hi - lo < 1e-6

        (lo_t, hi_t), cap = macs, 64.0 * self.pen_chs
        a_lo = 0.0 if at(0.0)[0] >= lo_t else bisect(lambda a: at(a)[0] < lo_t, 0.0, cap, 80, close)[1]
        a_hi = bisect(lambda a: at(a)[0] <= hi_t, 0.0, cap, 80, close)[0] if at(0.0)[0] <= hi_t else 0.0
        if a_lo > a_hi or not lo_t <= at(a_lo)[0] <= hi_t:
            return self._fit_a(shape, b, (lo_t + hi_t) / 2)
        if at(a_lo)[1] >= params:           # params grow with a: the window's two ends bound them
            a = a_lo
        elif at(a_hi)[1] <= params:
            a = a_hi
        else:
            lo, hi = bisect(lambda a: at(a)[1] < params, a_lo, a_hi, 80, close)
            a = min((lo, hi), key=lambda x: abs(at(x)[1] - params))
        return (a, *at(a))

    def _solve_reference(self, kind: str, goals: list[tuple[float, float]]) -> Candidate:
        """``c_i = a * f(i) + b`` with ``f`` the reference's shape, within ``MACS_TOL`` /
        ``PARAMS_TOL`` of every (MACs, params) goal: for each ``b`` the ``a`` meeting the
        goals' mean MACs (closest to their mean params inside the MACs tolerance), and
        ``b`` bisected to the mean params (params fall as ``b`` rises: the MACs move
        from the parameter-heavy output side to the parameter-light input side)."""
        shape = self.reference_shape(kind)
        macs = self._reachable(sum(g[0] for g in goals) / len(goals))
        params = sum(g[1] for g in goals) / len(goals)
        window = (max(g[0] for g in goals) * (1 - MACS_TOL), min(g[0] for g in goals) * (1 + MACS_TOL))
        seen: dict[float, tuple[float, int, int]] = {}

        def at(b: float) -> tuple[float, int, int]:
            if b not in seen:
                seen[b] = self._fit_both(shape, b, window, params)
            return seen[b]

        def score(b: float) -> float:
            _, m, p = at(b)
            return max(max(abs(m - gm) / gm / MACS_TOL, abs(p - gp) / gp / PARAMS_TOL) for gm, gp in goals)

        b_lo, b_hi = float(self.min_width), self._flat_width(macs)
        p_most, p_least = at(b_lo)[2], at(b_hi)[2]
        if not p_least * (1 - PARAMS_TOL) <= params <= p_most * (1 + PARAMS_TOL):
            raise BudgetError(f"{self.name}: the {kind} reference cannot reach the params target {params:,.0f} "
                              f"at {macs:,.0f} MACs: it spans {p_least:,}..{p_most:,} params (first width "
                              f"{b_hi:.1f}..{b_lo:.0f}); move the params bounds into that range")
        bisect(lambda b: at(b)[2] > params, b_lo, b_hi, 60,
               lambda lo, hi: hi - lo < 1e-4 or min(score(lo), score(hi)) <= 0.5)
        best = min(seen, key=score)
        a, m, p = at(best)
        if score(best) > 1:
            raise BudgetError(f"{self.name}: the {kind} reference lands at best on {m:,} MACs and {p:,} params, "
                              f"not within {MACS_TOL:.0%} / {PARAMS_TOL:.0%} of "
                              + " and ".join(f"{gm:,.0f} / {gp:,.0f}" for gm, gp in goals)
                              + " (widths are integers); widen the bounds")
        if kind == "linear":
            desc = dict(a=round(a, 4), b=round(best, 4))
        else:
            w = MOBILENETV2_STAGE_WIDTHS
            desc = dict(multiplier=round(a / (w[-1] - w[0]), 6), w0=round(best, 4))
        return self.candidate(kind, sch.affine(shape, a, best), kind, desc)

    def references(self) -> list[Candidate]:
        """The linear (ReXNet) and stage-wise (MobileNetV2) schedules, each with two free
        variables, within 1% / 3% of the MACs midpoint and :attr:`params_target` *and*
        of each other: the coarser staircase is solved first, the line to both it and
        the targets.  Returned linear first."""
        target = (self.macs_target, self.params_target)
        stage = self._solve_reference("stagewise", [target])
        line = self._solve_reference("linear", [target, (stage.macs, stage.params)])
        for cand in (line, stage):
            bad = self.violations(cand.macs, cand.params)
            if bad:
                raise BudgetError(f"{self.name}: the {cand.kind} reference breaks the budget ({'; '.join(bad)}); "
                                  f"widen the bounds")
        return [line, stage]

    def iter_all(self, n: int, seed: int = 0) -> Iterator[Candidate]:
        yield from self.references()
        yield from self.samples(n, seed)


# -- presets: the paper's six searches on CIFAR-10 / CIFAR-100, Section 4.3's four, a CPU smoke search ----
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


FIXED_DEPTH_BAND = 0.25   # params band (+-) of the fixed-depth searches (Section 7: FLOPs constraints)
SECTION43_BAND = 0.10     # params band (+-) of the Section 4.3 searches (Eq. 1: params and FLOPs)

# P0 per (depth, MMACs, classes): SearchSpace.params_center() of the template, two significant digits
_PARAMS_CENTER = {(18, 30, 10): 0.32e6, (18, 50, 10): 0.54e6, (18, 70, 10): 0.76e6,
                  (30, 100, 10): 0.97e6, (30, 150, 10): 1.5e6, (30, 200, 10): 2.0e6,
                  (18, 30, 100): 0.44e6, (18, 50, 100): 0.68e6, (18, 70, 100): 0.90e6,
                  (30, 100, 100): 1.1e6, (30, 150, 100): 1.6e6, (30, 200, 100): 2.1e6}


def _space(name: str, depth: int, mmacs: int, classes: int, band: float, **kw: Any) -> SearchSpace:
    centre = kw.pop("params_center", None) or _PARAMS_CENTER[(depth, mmacs, classes)]
    return SearchSpace(name, depth=depth, macs_max=mmacs * 1e6, macs_min=0.85 * mmacs * 1e6,
                       params_min=round(centre * (1 - band)), params_max=round(centre * (1 + band)),
                       num_classes=classes, **kw)


def _paper(depth: int, mmacs: int, data: str) -> Preset:
    classes = 100 if data == "cifar100" else 10
    return Preset(_space(f"d{depth}_{mmacs}m_{data}", depth, mmacs, classes, FIXED_DEPTH_BAND,
                         b_range=(8.0, 48.0 if depth == 18 else 64.0)), data=data)


def _section43(depth: int, mmacs: int) -> Preset:
    return Preset(_space(f"sec43_d{depth}_{mmacs}m", depth, mmacs, 100, SECTION43_BAND,
                         b_range=(8.0, 48.0 if depth == 18 else 64.0)), data="cifar100")


PRESETS: dict[str, Preset] = {p.space.name: p for p in
                              [_paper(d, m, data) for data in ("cifar10", "cifar100")
                               for d, ms in ((18, (30, 50, 70)), (30, (100, 150, 200))) for m in ms]
                              + [_section43(d, m) for d, m in ((18, 30), (18, 70), (30, 100), (30, 200))]}
# smoke: depth 12 at 17-20 MMACs with a 640-wide head, 2 epochs on 1,500 images: minutes on 2 cores
PRESETS["smoke"] = Preset(_space("smoke", 12, 20, 10, FIXED_DEPTH_BAND, params_center=0.15e6, pen_chs=640,
                                 b_range=(8.0, 24.0)),
                          data="cifar10", trials=4, epochs=2, repeats=2, early_stop_patience=0,
                          train_subset=1500, val_subset=500)
PAPER_PRESETS = tuple(name for name in PRESETS if name != "smoke")


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown search preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]
