"""Tables and plots that read NetSpecs: the zoo table, per-block tables and channel-width plots."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import io
from .complexity import complexity
from .spec import NetSpec

__all__ = ["zoo_rows", "block_rows", "format_table", "plot_widths"]


def zoo_rows(names: Sequence[str], input_size: int = 224,
             latency_ms: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per zoo model: params, MACs, input size, paper top-1 and, given ``latency_ms``
    (from :func:`rexnet.bench.timing.zoo_latency`), the CPU latency at batch 1."""
    from .models.zoo import model_info, model_spec

    rows = []
    for name in names:
        spec, info = model_spec(name), model_info(name)
        c = complexity(spec, input_size)
        rows.append(dict(model=name, params_m=round(c.params / 1e6, 3), gmacs=round(c.macs / 1e9, 4),
                         input_size=input_size, top1_paper=info.top1,
                         weights="published" if info.weights else "-"))
        if latency_ms is not None:
            rows[-1]["cpu_ms_b1"] = round(latency_ms[name], 2)
    return rows


def block_rows(spec: NetSpec, input_size: int | None = None) -> list[dict[str, Any]]:
    """The per-layer table of a spec: index, in, out, expansion, stride, SE, size, params, MACs."""
    rows = []
    for layer in complexity(spec, input_size).layers:
        rows.append(dict(layer=layer.name, in_chs=layer.in_chs, out_chs=layer.out_chs,
                         exp=round(layer.expansion, 2), stride=layer.stride, se=layer.se_chs or "-",
                         size=f"{layer.size_in}->{layer.size_out}", params=layer.params,
                         mmacs=round(layer.macs / 1e6, 2)))
    return rows


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w)  # noqa: E731
                                  for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def plot_widths(specs: Sequence[NetSpec], path: str | os.PathLike,
                title: str = "Channel width per block") -> Path:
    """Output width against block index for several specs (the paper's stage-wise vs linear view)."""
    plt = io.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for spec in specs:
        c = complexity(spec)
        ax.plot(range(1, spec.depth + 1), spec.widths, marker="o", ms=3.5, drawstyle="default",
                label=f"{spec.name} ({c.params / 1e6:.2f}M, {c.macs / 1e9:.3f} GMACs)")
    ax.set_xlabel("block index")
    ax.set_ylabel("output channels")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return io.save_figure(fig, path)
