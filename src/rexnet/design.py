"""Design a ReXNet for a budget: MACs, params and/or latency measured on this device -> NetSpec.

The paper's design rule is a schedule, not a size: block widths grow linearly with
the block index, and the whole network is scaled to the budget.  Here the free
variables are the width multiplier, the depth multiplier (on a grid) and, where the
family allows, the final width (the schedule's increment); the figures are the
analytic ones of :mod:`rexnet.complexity`, found with :func:`rexnet.budget.bisect`.

**Static bounds** (``macs``, ``params``; upper bounds).  For each depth multiplier on
:data:`DEPTHS` the largest width multiplier meeting every bound is bisected; with two
bounds and a free final width, the final width is bisected too, towards the point
where both budgets are used alike.  Every design is scored by its *least-used*
budget (achieved / bound); the best score wins, and among designs within
:data:`TIE` of it the one nearest the published rule (depth x1, the family's own
final width) is taken, so a single bound reproduces the zoo's scaling (``--macs
0.40G`` gives rexnet_100).  ``fill`` is a lower bound on every budget's use: a design
that cannot reach it (a target above the family's reach, or two bounds that
conflict) is a :class:`~rexnet.budget.BudgetError` naming the reachable figures, as is
a target below the smallest network the family expresses.

**Latency** (``latency_ms``, measured here on ``device``).  With the depth and final
width of the static solution (or the published ones), a bisection on log(width
multiplier) finds the largest network whose measured latency is within the target.
Each candidate is timed in turns with a fixed reference, the family's zoo model
nearest the target (:func:`rexnet.bench.timing.time_interleaved`), so the figure is a
ratio to that model times the reference's median over the whole search: machine drift
falls on both alike.  Deploy forms: ``eager``, ``folded`` (BN folded,
:func:`rexnet.bench.deploy.deploy_model`) and ``onnx`` (ONNX Runtime, through
:func:`rexnet.bench.export.export_model`).  ``macs``/``params`` given with a latency
target are caps; ``fill`` does not apply to a measured figure.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import schedule as sch
from .budget import BudgetError, bisect
from .complexity import complexity
from .models.zoo import REGISTRY, cifar_stride_plan, list_models, rexnet_lite_spec, rexnet_spec
from .spec import NetSpec

__all__ = ["FAMILIES", "DEPTHS", "FORMS", "Targets", "Family", "Design", "parse_count", "get_family",
           "searched_shape", "solve_design", "design_latency", "nearest_zoo", "figure_rows",
           "format_count"]

FAMILIES = ("rexnet", "rexnet_lite")
DEPTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)   # depth multipliers tried (stage repeats rounded up)
FORMS = ("eager", "folded", "onnx")
M_LO, M_HI = 0.1, 8.0       # width multipliers searched
FINAL_RANGE = (0.125, 4.0)  # final width searched, as a factor of the family's own
FINAL_GRID = 16             # final widths tried on that range (log-spaced), then refined around the best
TIE = 0.01                  # designs whose least-used budget is this close to the best count as equal
M_RESOLUTION = 1e-4         # the width bisection stops here (widths are rounded to integers)
LABELS = {"macs": "MACs", "params": "params"}
UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmg]?)\s*$", re.IGNORECASE)


def parse_count(text: str | float | int, what: str = "value") -> float:
    """``150M``, ``0.40G``, ``3M``, ``3e6``, ``250k`` -> a positive number; ``ValueError`` otherwise."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _COUNT.match(str(text))
        if not match:
            raise ValueError(f"{what} {text!r} is not a count: write e.g. 150M, 0.40G, 3M or 3e6")
        value = float(match.group(1)) * UNITS[match.group(2).lower()]
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{what} must be positive, got {text!r}")
    return value


def format_count(n: float) -> str:
    """``149.7M``, ``1.23G``, ``3.01M``: short for tables and messages."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.4g}"


# -- targets and families ------------------------------------------------------------------
@dataclass(frozen=True)
class Targets:
    macs: float | None = None          # upper bound on MACs at the design's input size
    params: float | None = None        # upper bound on parameters
    latency_ms: float | None = None    # upper bound on measured latency (ms per batch)
    fill: float | None = 0.9           # lower bound on every static budget's use (achieved / bound)

    def __post_init__(self) -> None:
        for key in ("macs", "params", "latency_ms"):
            v = getattr(self, key)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"the {key} target must be positive, got {v}")
        if self.macs is None and self.params is None and self.latency_ms is None:
            raise ValueError("give at least one target: --macs, --params or --latency-ms")
        if self.fill is not None and not 0.0 <= self.fill <= 1.0:
            raise ValueError(f"--fill must be in [0, 1] (a share of each budget), got {self.fill}")

    @property
    def static(self) -> dict[str, float]:
        return {k: v for k, v in (("macs", self.macs), ("params", self.params)) if v is not None}


@dataclass(frozen=True)
class Family:
    """A schedule family with its free variables: ``make(m, d, final)`` gives the spec."""
    name: str                                # rexnet | rexnet_lite | searched
    default_final: float                     # the schedule's increment in the published models
    depths: tuple[float, ...] = (1.0,)       # depth multipliers it can take
    shape: tuple[float, ...] | None = None   # a searched shape f (0 at the first block, 1 at the last)
    source: dict[str, Any] = field(default_factory=dict)
    zoo_pattern: str = "rexnet_[0-9]*"       # its zoo models (latency reference, comparison)

    @property
    def final_free(self) -> bool:
        return self.shape is None or max(self.shape) > 0   # a flat searched shape has no increment

    def make(self, multiplier: float, depth_multiplier: float = 1.0, final: float | None = None, *,
             num_classes: int = 1000, input_size: int = 224, name: str | None = None) -> NetSpec:
        final = self.default_final if final is None else final
        name = name or f"{self.name}_design"
        if self.name == "rexnet_lite":
            spec = rexnet_lite_spec(name, multiplier=multiplier, final=final, num_classes=num_classes)
        elif self.shape is None or _is_line(self.shape):   # exactly the zoo's rule, rounding ties included
            spec = rexnet_spec(name, multiplier=multiplier, depth_multiplier=depth_multiplier, final=final,
                               num_classes=num_classes)
        else:
            n = sum(sch.scale_depth(sch.REXNET_REPEATS, depth_multiplier))
            spec = rexnet_spec(name, multiplier=multiplier, depth_multiplier=depth_multiplier,
                               widths=_shape_widths(self.shape, n, multiplier, final), num_classes=num_classes)
        meta = dict(spec.meta, schedule="linear" if self.shape is None else "searched", family=self.name,
                    multiplier=round(multiplier, 6), depth_multiplier=depth_multiplier, final=round(final, 4),
                    **({"shape_from": self.source} if self.source else {}))
        spec = spec.replace(meta=meta)
        if input_size <= 32:   # the stride plan resolve_spec takes for such inputs, fixed in the spec
            spec = cifar_stride_plan(spec).replace(name=name)
        return spec.replace(input_size=input_size)


def _is_line(shape: Sequence[float]) -> bool:
    n = len(shape)
    return n > 1 and all(abs(f - i / (n - 1)) < 1e-5 for i, f in enumerate(shape))


def _shape_widths(shape: Sequence[float], n: int, multiplier: float, final: float, start: float = 16.0) -> list[float]:
    """ReXNet's widths with the line replaced by ``shape`` (resampled to ``n`` blocks): the
    last block gets ``start + final (n-1)/n`` as in the linear rule, and below x1 the first
    width stays ``start`` (the original code's rule, :func:`rexnet.schedule.linear`)."""
    xs = [i / (len(shape) - 1) for i in range(len(shape))] if len(shape) > 1 else [0.0]
    base = start / multiplier if multiplier < 1.0 else start
    out = []
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        j = min(max(0, int(t * (len(shape) - 1))), max(0, len(shape) - 2))
        f = shape[0] if len(shape) == 1 else shape[j] + (t - xs[j]) / (xs[j + 1] - xs[j]) * (shape[j + 1] - shape[j])
        out.append((base + f * final * (n - 1) / n) * multiplier)
    return out


def searched_shape(search_dir: str | os.PathLike) -> tuple[tuple[float, ...], dict[str, Any]]:
    """The normalised width shape of the best spec of a search (``DIR/search.db``) and where
    it came from (its shape family, widths, accuracy, spec hash)."""
    from .search.stats import analyze_search
    from .search.store import Store

    path = Path(search_dir)
    db = path if path.is_file() else path / "search.db"
    if not db.is_file():   # Store() would create an empty database here
        raise FileNotFoundError(f"no search in {search_dir} (expected {db}); run `rexnet search run` first")
    with Store(db) as store:
        trials, counts, preset = store.trials(), store.counts(), store.get_meta("preset") or {}
    if counts.get("done", 0) == 0:
        raise ValueError(f"the search in {search_dir} has no done trials ({counts}); let it finish some first")
    best = analyze_search(dict(dir=str(path), name=path.resolve().name, preset=preset, counts=counts,
                               trials=trials))["best"]
    w = [float(x) for x in best["widths"]]
    growth = w[-1] - w[0]
    shape = tuple(round((x - w[0]) / growth, 6) if growth > 0 else 0.0 for x in w)
    if any(b < a for a, b in zip(shape, shape[1:])):
        raise ValueError(f"the best spec of {search_dir} has shrinking widths {best['widths']}; "
                         f"a ReXNet schedule must not shrink")
    return shape, dict(search=str(search_dir), family=best["family"], kind=best["kind"],
                       spec_hash=best["spec_hash"], widths=list(best["widths"]),
                       acc_mean=round(float(best["acc_mean"]), 4))


def get_family(name: str | None = None, from_search: str | os.PathLike | None = None) -> Family:
    """``rexnet`` (default), ``rexnet_lite``, or a searched shape on ReXNet's blocks (``from_search``)."""
    if from_search is not None:
        if name not in (None, "rexnet"):
            raise ValueError(f"--from-search puts the searched shape on ReXNet's blocks; drop --family {name}")
        shape, source = searched_shape(from_search)
        return Family("searched", 180.0, DEPTHS, shape, source)
    name = name or "rexnet"
    if name == "rexnet":
        return Family("rexnet", 180.0, DEPTHS)
    if name == "rexnet_lite":   # its spec function has no depth multiplier
        return Family("rexnet_lite", 164.0, (1.0,), zoo_pattern="rexnet_lite_*")
    raise ValueError(f"unknown family {name!r}; choose one of {', '.join(FAMILIES)} or --from-search DIR")


# -- the static solver ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Point:
    multiplier: float
    depth: float
    final: float
    spec: NetSpec
    macs: int
    params: int

    def use(self, bounds: dict[str, float]) -> dict[str, float]:
        return {k: getattr(self, k) / v for k, v in bounds.items()}

    def score(self, bounds: dict[str, float]) -> float:
        return min(self.use(bounds).values())


class _Solver:
    def __init__(self, family: Family, input_size: int, num_classes: int):
        self.family, self.input_size, self.num_classes = family, input_size, num_classes
        self.seen: dict[tuple[float, float, float], _Point] = {}

    def at(self, m: float, d: float, final: float) -> _Point:
        key = (m, d, final)
        if key not in self.seen:
            spec = self.family.make(m, d, final, num_classes=self.num_classes, input_size=self.input_size)
            c = complexity(spec)
            self.seen[key] = _Point(m, d, final, spec, c.macs, c.params)
        return self.seen[key]

    def widest(self, bounds: dict[str, float], d: float, final: float, hi: float = M_HI) -> _Point | None:
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

    def balanced(self, bounds: dict[str, float], d: float) -> _Point | None:
        """With two bounds: the final width whose widest design uses the least-used budget most.
        A grid, then a finer one around its best: the head grows with the width multiplier,
        so the params-per-MAC of the solution is not monotone in the final width."""
        f0 = self.family.default_final
        lo, hi = math.log(f0 * FINAL_RANGE[0]), math.log(f0 * FINAL_RANGE[1])

        def best_of(finals: Sequence[float]) -> _Point | None:
            points = [p for p in (self.widest(bounds, d, round(f, 2)) for f in finals) if p is not None]
            return max(points, key=lambda p: p.score(bounds)) if points else None

        step = (hi - lo) / (FINAL_GRID - 1)
        coarse = best_of([math.exp(lo + i * step) for i in range(FINAL_GRID)])
        if coarse is None:
            return None
        c = math.log(coarse.final)
        fine = best_of([math.exp(c + (i / 4 - 1) * step) for i in range(9)])
        return max((coarse, fine), key=lambda p: p.score(bounds))

    def smallest(self, depths: Sequence[float], finals: Sequence[float]) -> _Point:
        return min((self.at(M_LO, d, f) for d in depths for f in finals), key=lambda p: (p.macs, p.params))


def _distance_to_rule(p: _Point, family: Family) -> float:
    return abs(math.log(p.depth)) + abs(math.log(max(p.final, 1e-9) / family.default_final))


def _solve_static(family: Family, targets: Targets, input_size: int, num_classes: int,
                  check_fill: bool = True) -> _Point:
    bounds = targets.static
    solver = _Solver(family, input_size, num_classes)
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


# -- latency -------------------------------------------------------------------------------
class _Stopwatch:
    """Candidates timed in turns with one fixed reference; a candidate's figure is its ratio
    to the reference in the same turns times the reference's median over every turn so far."""

    def __init__(self, ref_name: str, ref_spec: NetSpec, input_size: int, form: str, device: str, batch: int,
                 threads: int | None, runs: int, warmup: int, workdir: Path):
        import torch

        self.form, self.device, self.batch, self.threads = form, torch.device(device), batch, threads
        self.runs, self.warmup, self.workdir, self.count = runs, warmup, workdir, 0
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else None
        self.input_size = input_size
        self.x = torch.randn(batch, 3, input_size, input_size, device=self.device)
        self.ref_name = ref_name
        self.ref = self.prepare(ref_spec)
        self.ref_times: list[float] = []

    def prepare(self, spec: NetSpec):
        from .bench.deploy import deploy_model
        from .bench.export import OnnxModule, export_model
        from .models.resolve import create_model

        model = create_model(spec).eval()
        if self.form == "eager":
            return model.requires_grad_(False).to(self.device)
        if self.form == "folded":
            return deploy_model(model, device=self.device)
        self.count += 1
        path = self.workdir / f"m{self.count}.onnx"
        with warnings.catch_warnings():   # export_model checks the file's logits against the model
            warnings.filterwarnings("ignore", message=".*duplicated values in 'index' field.*")
            export_model(model, "onnx", path, input_size=self.input_size, batch=self.batch, check_batches=())
        return OnnxModule(path, self.threads)

    def measure(self, spec: NetSpec, runs: int | None = None) -> dict[str, float]:
        from .bench.timing import latency_stats, time_interleaved

        cand = self.prepare(spec)
        times = time_interleaved({"candidate": cand, "reference": self.ref}, dict.fromkeys(("candidate", "reference"),
                                 self.x), runs=runs or self.runs, warmup=self.warmup, sync=self.sync)
        self.ref_times += times["reference"]
        c = latency_stats(times["candidate"], self.batch)["median_ms"]
        r = latency_stats(times["reference"], self.batch)["median_ms"]
        ref_ms = latency_stats(self.ref_times, self.batch)["median_ms"]
        # one ratio per round (the two calls ran back to back), then their median: a slow
        # spell of a shared machine falls on both calls of a round and cancels
        ratio = latency_stats([a / b for a, b in zip(times["candidate"], times["reference"])], 1)["median_ms"]
        return dict(ms=ratio * ref_ms, ratio=ratio, candidate_ms=c, reference_ms=r, reference_pooled_ms=ref_ms)


def _family_zoo(family: Family, input_size: int, num_classes: int) -> dict[str, NetSpec]:
    from .models.resolve import resolve_spec

    return {n: resolve_spec(n, num_classes=num_classes, input_size=input_size)
            for n in list_models(family.zoo_pattern)}


def design_latency(family: Family, targets: Targets, *, input_size: int = 224, num_classes: int = 1000,
                   device: str = "cpu", batch_size: int = 1, threads: int | None = None, form: str = "eager",
                   runs: int = 20, warmup: int = 3, log: Callable[[str], Any] | None = None) -> tuple[_Point, dict]:
    """The largest design whose measured latency is within ``targets.latency_ms`` (and under the
    static caps): a bisection on log(width multiplier) with measured timings."""
    import torch

    from .bench.runner import check_device
    from .bench.timing import latency_stats

    if form not in FORMS:
        raise ValueError(f"unknown deploy form {form!r}; choose one of {', '.join(FORMS)}")
    dev = check_device(device)
    if form == "onnx" and dev.type != "cpu":
        raise ValueError("--form onnx runs on ONNX Runtime's CPU provider here; use --device cpu")
    if batch_size < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"need --batch-size >= 1, --runs >= 1, --warmup >= 0; got {batch_size}, {runs}, {warmup}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    log = log or (lambda s: None)
    target = float(targets.latency_ms)
    solver = _Solver(family, input_size, num_classes)
    if targets.static:
        cap = _solve_static(family, targets, input_size, num_classes, check_fill=False)
        d, final, m_cap = cap.depth, cap.final, cap.multiplier
    else:
        d, final, m_cap = 1.0, family.default_final, M_HI
    zoo = _family_zoo(family, input_size, num_classes)
    with tempfile.TemporaryDirectory(prefix="rexnet-design-") as tmp:
        # the reference: the family's zoo model nearest the target, guessed from one timing of x1.0
        anchor = min(zoo, key=lambda n: abs(math.log(complexity(zoo[n], input_size).macs / solver.at(1.0, d, final).macs)))
        watch = _Stopwatch(anchor, zoo[anchor], input_size, form, str(dev), batch_size, threads, max(3, runs // 4), warmup,
                           Path(tmp))
        first = watch.measure(zoo[anchor])
        macs_guess = complexity(zoo[anchor], input_size).macs * target / first["ms"]
        ref = min(zoo, key=lambda n: abs(math.log(complexity(zoo[n], input_size).macs / macs_guess)))
        if ref != anchor:
            watch = _Stopwatch(ref, zoo[ref], input_size, form, str(dev), batch_size, threads, runs, warmup, Path(tmp))
        watch.runs = runs
        log(f"reference {ref} ({form}, {dev}, batch {batch_size}); searching the width multiplier")
        guess = solver.widest({"macs": macs_guess}, d, final, hi=m_cap)
        m_guess = guess.multiplier if guess else M_LO
        measured: dict[float, dict[str, float]] = {}

        def fast_enough(m: float) -> bool:
            if m not in measured:
                measured[m] = watch.measure(solver.at(m, d, final).spec)
                log(f"  width x{m:.3f}: {measured[m]['ms']:.3f} ms ({measured[m]['ratio']:.3f}x {ref})")
            return measured[m]["ms"] <= target

        lo, hi = max(M_LO, m_guess / 1.6), min(m_cap, m_guess * 1.6)
        while not fast_enough(lo):
            if lo <= M_LO:
                p = solver.at(M_LO, d, final)
                raise BudgetError(f"--latency-ms {target:g} is below the smallest {family.name} design here: "
                                  f"{measured[lo]['ms']:.3f} ms at width x{M_LO} ({format_count(p.macs)} MACs, "
                                  f"{input_size}px, batch {batch_size}, {form}, {dev}); raise the target or lower "
                                  f"--input-size")
            lo, hi = max(M_LO, lo / 1.6), lo
        if hi > lo and fast_enough(hi):
            while hi < m_cap and fast_enough(hi):
                lo, hi = hi, min(m_cap, hi * 1.6)
            if hi >= m_cap and fast_enough(hi):
                lo = hi   # a static cap binds before the latency does
        if hi > lo and not fast_enough(hi):
            lo, hi = bisect(lambda m: fast_enough(math.exp(m)), math.log(lo), math.log(hi), 12,
                            done=lambda a, b: b - a < math.log(1.02))
            lo = math.exp(lo)
        # each width's ratio against the reference's median over the whole search, so a
        # change of the machine's speed during the search moves every figure alike
        ref_ms = latency_stats(watch.ref_times, batch_size)["median_ms"]
        ok = [m for m, r in measured.items() if r["ratio"] * ref_ms <= target]
        lo = max(ok) if ok else lo
        chosen = solver.at(lo, d, final)
        final_check = watch.measure(chosen.spec, runs=2 * runs)
    info = dict(target_ms=target, ms=round(final_check["ms"], 4), ratio=round(final_check["ratio"], 4),
                reference=ref, reference_ms=round(final_check["reference_pooled_ms"], 4),
                search_ms=round(measured[lo]["ratio"] * ref_ms, 4), device=str(dev), form=form, batch_size=batch_size,
                threads=torch.get_num_threads() if dev.type == "cpu" else None, runs=runs,
                candidates_timed=len(measured))
    return chosen, info


# -- the whole design ----------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    spec: NetSpec
    family: Family
    targets: Targets
    multiplier: float
    depth_multiplier: float
    final: float
    macs: int
    params: int
    input_size: int
    latency: dict[str, Any] | None = None

    def use(self) -> dict[str, float]:
        out = {k: getattr(self, k) / v for k, v in self.targets.static.items()}
        if self.latency and self.targets.latency_ms:
            out["latency_ms"] = self.latency["ms"] / self.targets.latency_ms
        return out


def solve_design(targets: Targets, family: Family | str | None = None, *, input_size: int = 224,
                 num_classes: int = 1000, name: str | None = None, **latency_kw: Any) -> Design:
    """The design meeting ``targets`` (see the module docstring); ``latency_kw`` go to
    :func:`design_latency` (device, batch_size, threads, form, runs, warmup, log)."""
    fam = family if isinstance(family, Family) else get_family(family)
    if not isinstance(input_size, int) or input_size < 16:
        raise ValueError(f"--input-size must be an integer >= 16, got {input_size!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"--num-classes must be a positive integer, got {num_classes!r}")
    latency = None
    if targets.latency_ms is not None:
        point, latency = design_latency(fam, targets, input_size=input_size, num_classes=num_classes, **latency_kw)
    else:
        point = _solve_static(fam, targets, input_size, num_classes)
    name = name or f"{fam.name}_design"
    spec = fam.make(point.multiplier, point.depth, point.final, num_classes=num_classes, input_size=input_size,
                    name=name)
    designed_for = {k: v for k, v in (("macs", targets.macs), ("params", targets.params),
                                      ("latency_ms", targets.latency_ms), ("fill", targets.fill)) if v is not None}
    meta = dict(spec.meta, designed_for=designed_for, macs=point.macs, params=point.params)
    if latency:
        meta["latency"] = dict(latency)
    return Design(spec.replace(meta=meta), fam, targets, point.multiplier, point.depth, point.final, point.macs,
                  point.params, input_size, latency)



def nearest_zoo(spec: NetSpec, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` zoo models nearest ``spec`` in log MACs and log params, at its input size and classes."""
    from .models.resolve import resolve_spec

    c = complexity(spec)
    rows = []
    for n in list_models():
        z = complexity(resolve_spec(n, num_classes=spec.head.num_classes, input_size=spec.input_size),
                       spec.input_size)
        dist = math.hypot(math.log(z.macs / c.macs), math.log(z.params / c.params))
        rows.append(dict(model=n, family=REGISTRY[n].family, macs=format_count(z.macs),
                         params=format_count(z.params), macs_vs_design=f"{z.macs / c.macs - 1:+.1%}",
                         params_vs_design=f"{z.params / c.params - 1:+.1%}", top1_paper=REGISTRY[n].top1,
                         _dist=dist))
    rows.sort(key=lambda r: r["_dist"])
    return [{k: v for k, v in r.items() if k != "_dist"} for r in rows[:k]]


def figure_rows(d: Design) -> list[dict[str, Any]]:
    """Target against achieved, per figure."""
    use = d.use()
    rows = []
    for key, label in (("macs", "MACs"), ("params", "params")):
        bound = getattr(d.targets, key)
        rows.append(dict(figure=label, target=f"<= {format_count(bound)}" if bound else "-",
                         achieved=f"{getattr(d, key):,}", use=f"{use[key]:.1%}" if key in use else "-"))
    if d.latency:
        rows.append(dict(figure=f"latency ms ({d.latency['form']}, {d.latency['device']}, "
                                f"batch {d.latency['batch_size']})",
                         target=f"<= {d.targets.latency_ms:g}", achieved=f"{d.latency['ms']:.3f}",
                         use=f"{use['latency_ms']:.1%}"))
    return rows



# -- the command ---------------------------------------------------------------------------
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def _latency(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(str(text).strip().removesuffix("ms"))
    except ValueError:
        raise ValueError(f"--latency-ms takes milliseconds, e.g. 8 or 12.5; got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"--latency-ms must be positive, got {text!r}")
    return value


def cmd_design(args: Any) -> int:
    """``rexnet design``: print the design (block table, figures, nearest zoo models); write --out."""
    from .report import block_rows, format_table
    from .train.checkpoint import check_writable_file, refuse_existing

    targets = Targets(macs=None if args.macs is None else parse_count(args.macs, "--macs"),
                      params=None if args.params is None else parse_count(args.params, "--params"),
                      latency_ms=_latency(args.latency_ms), fill=args.fill or None)
    if args.out:
        if not str(args.out).endswith(SPEC_SUFFIXES):
            raise ValueError(f"--out {args.out}: write the NetSpec as .yaml, .yml or .json")
        check_writable_file(args.out)
        refuse_existing([args.out], args.overwrite)
    family = get_family(args.family, args.from_search)
    kw: dict[str, Any] = {}
    if targets.latency_ms is not None:
        kw = dict(device=args.device, batch_size=args.batch_size, threads=args.threads, form=args.form,
                  runs=args.runs, warmup=args.warmup, log=print)
    d = solve_design(targets, family, input_size=args.input_size, num_classes=args.num_classes, name=args.name, **kw)
    src = f", shape of the best spec in {family.source['search']} ({family.source['family']})" if family.source else ""
    print(f"{d.spec.name}: family {family.name}{src}; {d.input_size}px, {d.spec.head.num_classes} classes")
    print(f"width x{d.multiplier:.4f}, depth x{d.depth_multiplier:g} ({d.spec.depth} blocks), final width "
          f"{d.final:g}, hash {d.spec.hash()}\n")
    print(format_table(block_rows(d.spec)))
    print()
    print(format_table(figure_rows(d)))
    if d.latency:
        lat = d.latency
        print(f"latency re-measured after the search: {lat['ms']:.3f} ms = {lat['ratio']:.3f} x {lat['reference']} "
              f"({lat['reference_ms']:.3f} ms), timed in turns, median of {2 * lat['runs']} runs, "
              f"{lat['threads'] or 'GPU'} threads; {lat['candidates_timed']} widths timed")
    print("\nnearest zoo models (same input size and classes):")
    print(format_table(nearest_zoo(d.spec)))
    if args.out:
        print(f"\nwrote {d.spec.save(args.out)}: `rexnet train --model {args.out} ...`, "
              f"`rexnet export {args.out} --out model.onnx`")
    return 0


def add_design_command(subparsers: Any) -> None:
    """Add ``design`` to the ``rexnet`` command's subparsers."""
    p = subparsers.add_parser(
        "design", help="a ReXNet for your budget: MACs, params and/or latency measured on this device",
        description="Solve the ReXNet design rule (widths linear in the block index) for a budget: the width "
                    "multiplier, depth multiplier and final width are chosen so the network is the largest "
                    "meeting every upper bound, with each budget used at least --fill. Prints the block table, "
                    "the figures against the targets and the nearest zoo models; --out writes the NetSpec "
                    "(rexnet train/export --model take it as it is).")
    p.add_argument("--macs", default=None, help="upper bound on MACs at --input-size, e.g. 150M, 0.40G, 3e8")
    p.add_argument("--params", default=None, help="upper bound on parameters, e.g. 3M, 2.5e6")
    p.add_argument("--latency-ms", default=None, help="upper bound on latency measured here (ms per batch)")
    p.add_argument("--fill", type=float, default=0.9,
                   help="each of --macs/--params must be used at least this much (default 0.9; 0 turns it off)")
    p.add_argument("--family", default=None, help=f"{' | '.join(FAMILIES)} (default rexnet)")
    p.add_argument("--from-search", default=None, metavar="DIR",
                   help="put the width shape of the best spec of this search on ReXNet's blocks")
    p.add_argument("--input-size", type=int, default=224, help="input resolution (default 224; <= 32 takes "
                                                                "the CIFAR stride plan)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--name", default=None, help="name of the designed spec (default FAMILY_design)")
    p.add_argument("--out", default=None, help="write the NetSpec here (.yaml or .json)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g = p.add_argument_group("latency (with --latency-ms)")
    g.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    g.add_argument("--form", default="eager", help=f"{' | '.join(FORMS)} (folded: BN folded; onnx: ONNX Runtime)")
    g.add_argument("--batch-size", type=int, default=1, help="batch per timed call (default 1)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    g.add_argument("--runs", type=int, default=20, help="timed runs per candidate (default 20)")
    g.add_argument("--warmup", type=int, default=3, help="untimed runs per candidate first (default 3)")
    p.set_defaults(func=cmd_design)
