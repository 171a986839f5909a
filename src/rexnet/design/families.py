"""The schedule families a design is solved in: ReXNet, ReXNet-lite, and the width shape of
a search's best spec put on ReXNet's blocks (``--from-search``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import schedule as sch
from ..models.zoo import cifar_stride_plan, rexnet_lite_spec, rexnet_spec
from ..spec import NetSpec

__all__ = ["FAMILIES", "DEPTHS", "Family", "get_family", "searched_shape"]

FAMILIES = ("rexnet", "rexnet_lite")
DEPTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)   # depth multipliers tried (stage repeats rounded up)


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
        """Whether the final width is a free variable of this family."""
        return self.shape is None or max(self.shape) > 0   # a flat searched shape has no increment

    def make(self, multiplier: float, depth_multiplier: float = 1.0, final: float | None = None, *,
             num_classes: int = 1000, input_size: int = 224, name: str | None = None) -> NetSpec:
        """The family's spec at this width multiplier, depth multiplier and final width."""
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
    from ..search.analysis import analyze_search
    from ..trials.store import Store

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
