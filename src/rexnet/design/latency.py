"""The latency solver: the largest design whose latency, measured on this device, is within a target.

With the depth and final width of the static solution (or the published ones), a bisection
on log(width multiplier) finds the largest network whose measured latency is within the
target.  Each candidate is timed in turns with a fixed reference, the family's zoo model
nearest the target (:func:`rexnet.bench.timing.time_interleaved`), so the figure is a ratio
to that model times the reference's median over the whole search: machine drift falls on
both alike.  Deploy forms: ``eager``, ``folded`` (BN folded,
:func:`rexnet.bench.deploy.deploy_model`) and ``onnx`` (ONNX Runtime, through
:func:`rexnet.bench.export.export_model`).  ``macs``/``params`` given with a latency target
are caps; ``fill`` does not apply to a measured figure.
"""
from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..budget import BudgetError, bisect
from ..complexity import complexity
from ..models.zoo import list_models
from ..spec import NetSpec
from .families import Family
from .solve import M_HI, M_LO, Solver, solve_static
from .targets import Targets, format_count

__all__ = ["FORMS", "LatencyDesign", "design_latency"]

FORMS = ("eager", "folded", "onnx")


@dataclass(frozen=True)
class LatencyDesign:
    """The latency solver's answer: the chosen network, its analytic figures and its timings.

    ``latency`` holds ``target_ms``, ``ms`` (re-measured after the search), ``ratio`` and
    ``reference`` / ``reference_ms`` (the zoo model it was timed against), ``search_ms``,
    ``device``, ``form``, ``batch_size``, ``threads``, ``runs`` and ``candidates_timed``;
    it goes into the spec's meta as it is."""
    spec: NetSpec
    multiplier: float
    depth: float
    final: float
    macs: int
    params: int
    latency: dict[str, Any]


@dataclass(frozen=True)
class _Bench:
    """How every candidate is timed."""
    form: str
    device: Any   # a torch.device, checked
    batch_size: int
    threads: int | None
    runs: int
    warmup: int
    input_size: int


class _Stopwatch:
    """Candidates timed in turns with one fixed reference; a candidate's figure is its ratio
    to the reference in the same turns times the reference's median over every turn so far."""

    def __init__(self, ref_name: str, ref_spec: NetSpec, bench: _Bench, workdir: Path, runs: int):
        import torch

        self.bench, self.workdir, self.runs, self.count = bench, workdir, runs, 0
        self.sync = torch.cuda.synchronize if bench.device.type == "cuda" else None
        self.x = torch.randn(bench.batch_size, 3, bench.input_size, bench.input_size, device=bench.device)
        self.ref_name = ref_name
        self.ref = self.prepare(ref_spec)
        self.ref_times: list[float] = []

    def prepare(self, spec: NetSpec) -> Any:
        """``spec`` as a callable in the bench's deploy form, on its device."""
        from ..bench.deploy import deploy_model
        from ..bench.export import OnnxModule, export_model
        from ..models.resolve import create_model

        model = create_model(spec).eval()
        if self.bench.form == "eager":
            return model.requires_grad_(False).to(self.bench.device)
        if self.bench.form == "folded":
            return deploy_model(model, device=self.bench.device)
        self.count += 1
        path = self.workdir / f"m{self.count}.onnx"
        with warnings.catch_warnings():   # export_model checks the file's logits against the model
            warnings.filterwarnings("ignore", message=".*duplicated values in 'index' field.*")
            export_model(model, "onnx", path, input_size=self.bench.input_size, batch=self.bench.batch_size,
                         check_batches=())
        return OnnxModule(path, self.bench.threads)

    def measure(self, spec: NetSpec, runs: int | None = None) -> dict[str, float]:
        """``spec`` timed in turns with the reference: ``ms`` (its ratio times the pooled
        reference median), ``ratio``, and the medians behind them."""
        from ..bench.timing import latency_stats, time_interleaved

        batch = self.bench.batch_size
        cand = self.prepare(spec)
        times = time_interleaved({"candidate": cand, "reference": self.ref}, dict.fromkeys(("candidate", "reference"),
                                 self.x), runs=runs or self.runs, warmup=self.bench.warmup, sync=self.sync)
        self.ref_times += times["reference"]
        c = latency_stats(times["candidate"], batch)["median_ms"]
        r = latency_stats(times["reference"], batch)["median_ms"]
        ref_ms = latency_stats(self.ref_times, batch)["median_ms"]
        # one ratio per round (the two calls ran back to back), then their median: a slow
        # spell of a shared machine falls on both calls of a round and cancels
        ratio = latency_stats([a / b for a, b in zip(times["candidate"], times["reference"])], 1)["median_ms"]
        return dict(ms=ratio * ref_ms, ratio=ratio, candidate_ms=c, reference_ms=r, reference_pooled_ms=ref_ms)


class _WidthSearch:
    """Width multipliers at one depth and final width, each timed once against the reference."""

    def __init__(self, solver: Solver, watch: _Stopwatch, d: float, final: float, target: float,
                 log: Callable[[str], Any]):
        self.solver, self.watch, self.d, self.final, self.target, self.log = solver, watch, d, final, target, log
        self.measured: dict[float, dict[str, float]] = {}

    def fast_enough(self, m: float) -> bool:
        if m not in self.measured:
            r = self.measured[m] = self.watch.measure(self.solver.at(m, self.d, self.final).spec)
            self.log(f"  width x{m:.3f}: {r['ms']:.3f} ms ({r['ratio']:.3f}x {self.watch.ref_name})")
        return self.measured[m]["ms"] <= self.target

    def largest(self, m_guess: float, m_cap: float) -> float:
        """The largest fast-enough width: bracketed around ``m_guess`` by factors of 1.6, then
        bisected on its log to 2%; at most ``m_cap``."""
        fast_enough = self.fast_enough
        lo, hi = max(M_LO, m_guess / 1.6), min(m_cap, m_guess * 1.6)
        while not fast_enough(lo):
            if lo <= M_LO:
                raise self._below_smallest(self.measured[lo]["ms"])
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
        return lo

    def pooled(self, fallback: float) -> tuple[float, float]:
        """The largest width within the target when every ratio is taken against the
        reference's median over the whole search (``fallback`` when none is), and its ms."""
        from ..bench.timing import latency_stats

        # a change of the machine's speed during the search then moves every figure alike
        ref_ms = latency_stats(self.watch.ref_times, self.watch.bench.batch_size)["median_ms"]
        ok = [m for m, r in self.measured.items() if r["ratio"] * ref_ms <= self.target]
        m = max(ok) if ok else fallback
        return m, self.measured[m]["ratio"] * ref_ms

    def _below_smallest(self, ms: float) -> BudgetError:
        b, p = self.watch.bench, self.solver.at(M_LO, self.d, self.final)
        return BudgetError(f"--latency-ms {self.target:g} is below the smallest {self.solver.family.name} design "
                           f"here: {ms:.3f} ms at width x{M_LO} ({format_count(p.macs)} MACs, "
                           f"{b.input_size}px, batch {b.batch_size}, {b.form}, {b.device}); raise the target or "
                           f"lower --input-size")


def _check_settings(form: str, device: str, batch_size: int, runs: int, warmup: int, threads: int | None) -> Any:
    """The checked torch device; sets torch's CPU threads when ``threads`` is given."""
    import torch

    from ..bench.peers import check_device

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
    return dev


def _caps(family: Family, targets: Targets, input_size: int, num_classes: int) -> tuple[float, float, float]:
    """Depth multiplier, final width and the largest width multiplier the static caps allow."""
    if targets.static:
        cap = solve_static(family, targets, input_size, num_classes, check_fill=False)
        return cap.depth, cap.final, cap.multiplier
    return 1.0, family.default_final, M_HI


def _family_zoo(family: Family, input_size: int, num_classes: int) -> dict[str, NetSpec]:
    from ..models.resolve import resolve_spec

    return {n: resolve_spec(n, num_classes=num_classes, input_size=input_size)
            for n in list_models(family.zoo_pattern)}


def _reference_watch(zoo: dict[str, NetSpec], macs_x1: int, target: float, bench: _Bench,
                     workdir: Path) -> tuple[_Stopwatch, float]:
    """The stopwatch on the family's zoo model nearest the target, guessed from one short
    timing of the zoo model nearest width x1.0 (``macs_x1``), and the MACs guessed."""
    macs = {n: complexity(spec, bench.input_size).macs for n, spec in zoo.items()}
    anchor = min(zoo, key=lambda n: abs(math.log(macs[n] / macs_x1)))
    watch = _Stopwatch(anchor, zoo[anchor], bench, workdir, max(3, bench.runs // 4))
    first = watch.measure(zoo[anchor])
    macs_guess = macs[anchor] * target / first["ms"]
    ref = min(zoo, key=lambda n: abs(math.log(macs[n] / macs_guess)))
    if ref != anchor:
        watch = _Stopwatch(ref, zoo[ref], bench, workdir, bench.runs)
    watch.runs = bench.runs
    return watch, macs_guess


def design_latency(family: Family, targets: Targets, *, input_size: int = 224, num_classes: int = 1000,
                   device: str = "cpu", batch_size: int = 1, threads: int | None = None, form: str = "eager",
                   runs: int = 20, warmup: int = 3, log: Callable[[str], Any] | None = None) -> LatencyDesign:
    """The largest design whose measured latency is within ``targets.latency_ms`` (and under the
    static caps): a bisection on log(width multiplier) with measured timings."""
    import torch

    dev = _check_settings(form, device, batch_size, runs, warmup, threads)
    bench = _Bench(form, dev, batch_size, threads, runs, warmup, input_size)
    log = log or (lambda s: None)
    target = float(targets.latency_ms)
    solver = Solver(family, input_size, num_classes)
    d, final, m_cap = _caps(family, targets, input_size, num_classes)
    zoo = _family_zoo(family, input_size, num_classes)
    with tempfile.TemporaryDirectory(prefix="rexnet-design-") as tmp:
        watch, macs_guess = _reference_watch(zoo, solver.at(1.0, d, final).macs, target, bench, Path(tmp))
        log(f"reference {watch.ref_name} ({form}, {dev}, batch {batch_size}); searching the width multiplier")
        guess = solver.widest({"macs": macs_guess}, d, final, hi=m_cap)
        search = _WidthSearch(solver, watch, d, final, target, log)
        m, search_ms = search.pooled(search.largest(guess.multiplier if guess else M_LO, m_cap))
        chosen = solver.at(m, d, final)
        check = watch.measure(chosen.spec, runs=2 * runs)
    info = dict(target_ms=target, ms=round(check["ms"], 4), ratio=round(check["ratio"], 4),
                reference=watch.ref_name, reference_ms=round(check["reference_pooled_ms"], 4),
                search_ms=round(search_ms, 4), device=str(dev), form=form, batch_size=batch_size,
                threads=torch.get_num_threads() if dev.type == "cpu" else None, runs=runs,
                candidates_timed=len(search.measured))
    return LatencyDesign(chosen.spec, chosen.multiplier, chosen.depth, chosen.final, chosen.macs, chosen.params, info)
