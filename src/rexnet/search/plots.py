"""The figures of a search analysis: the paper's Fig. 2 (widths of the top / middle /
bottom models) and Fig. 4 (top-group widths across searches), error EDFs, and
accuracy against the final features' nuclear norm.  Each reads the dicts of
:func:`rexnet.search.stats.analyze_search` and writes one PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import pyplot, save_figure
from .stats import GROUPS, error_edf, fmt

__all__ = ["plot_fig2", "plot_edf", "plot_rank", "plot_fig4"]

COLORS = {"top": "tab:green", "middle": "tab:orange", "bottom": "tab:red",
          "linear": "black", "stagewise": "tab:purple"}


def _finish(fig, ax, path: Path, legend_size: int = 8) -> Path:
    """Grid, a legend when anything is labelled (nothing is while no sampled model is done), save."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fig2(label: str, a: dict[str, Any], path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(7, 4.4), dpi=120)
    x = np.arange(a["depth"])
    for g in GROUPS:
        st = a["groups"][g]
        if not st["n"]:
            continue
        ax.plot(x, st["mean_widths"], color=COLORS[g], marker="o", ms=3,
                label=f"{g} {st['n']} (R²={st['fit']['r2']:.3f}, acc {st['acc_mean']:.2f})")
        ax.fill_between(x, st["min_widths"], st["max_widths"], color=COLORS[g], alpha=0.15, lw=0)
    for kind in ("linear", "stagewise"):
        ref = a["references"][kind]
        if ref:
            ax.plot(x, ref["widths"], color=COLORS[kind], ls="--", lw=1.2,
                    label=f"{kind} reference (acc {ref['acc_mean']:.2f})")
    ax.set(xlabel="block index i", ylabel="output channels",
           title=f"{label}: widths of the top / middle / bottom models (n={a['n_samples']}; band = min-max)")
    ax.title.set_fontsize(9)
    return _finish(fig, ax, path, 7)


def plot_edf(results: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(6, 4.2), dpi=120)
    for label, a in results.items():
        err, frac = error_edf(a)
        if len(err):
            ax.step(err, frac, where="post", label=f"{label} (n={len(err)})")
    ax.set(xlabel="error (%) = 100 - mean top-1", ylabel="cumulative fraction of models",
           title="Error EDF of the sampled models")
    return _finish(fig, ax, path)


def plot_rank(results: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    markers = {"sample": "o", "linear": "^", "stagewise": "s"}
    for i, (label, a) in enumerate(results.items()):
        color = plt.get_cmap("tab10")(i % 10)
        for kind, mk in markers.items():
            pts = [x for x in a["specs"] if x["kind"] == kind and x["nuclear_norm"] is not None]
            if pts:
                ax.scatter([x["nuclear_norm"] for x in pts], [x["acc_mean"] for x in pts], color=color,
                           marker=mk, s=40 if kind != "sample" else 14, edgecolor="k" if kind != "sample" else None,
                           label=f"{label} ({kind})" if kind != "sample" else
                           f"{label} (Pearson {fmt(a['rank']['pearson'])}, Spearman {fmt(a['rank']['spearman'])})")
    ax.set(xlabel="normalised nuclear norm of the final features", ylabel="mean best top-1 (%)",
           title="Accuracy vs rank of the last block's output")
    return _finish(fig, ax, path, 7)


def plot_fig4(results: dict[str, dict[str, Any]], path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(6, 4.2), dpi=120)
    for label, a in results.items():
        st = a["groups"]["top"]
        if st["n"]:
            d = a["depth"]
            ax.plot(np.arange(d) / max(1, d - 1), st["mean_widths"], marker="o", ms=3,
                    label=f"{label} (top {st['n']}, R²={st['fit']['r2']:.3f})")
    ax.set(xlabel="block index / (depth - 1)", ylabel="mean output channels of the top models",
           title="Top-group channel configurations across searches")
    return _finish(fig, ax, path)
