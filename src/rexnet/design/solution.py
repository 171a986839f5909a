"""The whole design: the solver the targets call for, the spec with what it was designed for,
and how it compares (figures against targets, the nearest zoo models)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..complexity import complexity
from ..models.zoo import REGISTRY, list_models
from ..spec import NetSpec
from .families import Family, get_family
from .latency import LatencyDesign, design_latency
from .solve import Point, solve_static
from .targets import Targets, format_count

__all__ = ["Design", "solve_design", "nearest_zoo", "figure_rows"]


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
        """Each target's use: achieved / bound (latency as re-measured)."""
        out = {k: getattr(self, k) / v for k, v in self.targets.static.items()}
        if self.latency and self.targets.latency_ms:
            out["latency_ms"] = self.latency["ms"] / self.targets.latency_ms
        return out


def solve_design(targets: Targets, family: Family | str | None = None, *, input_size: int = 224,
                 num_classes: int = 1000, name: str | None = None, **latency_kw: Any) -> Design:
    """The design meeting ``targets``: the static solver (:mod:`rexnet.design.solve`), or with a
    latency target the latency solver (:mod:`rexnet.design.latency`); ``latency_kw`` go to
    :func:`design_latency` (device, batch_size, threads, form, runs, warmup, log)."""
    fam = family if isinstance(family, Family) else get_family(family)
    if not isinstance(input_size, int) or input_size < 16:
        raise ValueError(f"--input-size must be an integer >= 16, got {input_size!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"--num-classes must be a positive integer, got {num_classes!r}")
    latency = None
    point: Point | LatencyDesign
    if targets.latency_ms is not None:
        point = design_latency(fam, targets, input_size=input_size, num_classes=num_classes, **latency_kw)
        latency = point.latency
    else:
        point = solve_static(fam, targets, input_size, num_classes)
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
    from ..models.resolve import resolve_spec

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
