"""The figures of a search analysis: the paper's Fig. 2 (widths of the top / middle /
bottom models, in the paper's colours: top red, middle blue, bottom green), the groups'
shape statistics, Fig. 4 (top-group widths across searches), error EDFs, and accuracy
against the final features' nuclear norm (raw and width-normalised).  Each reads the
dicts of :func:`rexnet.search.analysis.analyze_search` and writes one PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import pyplot, save_figure
from .analysis import GROUPS, SHAPE_STATS, error_edf, fmt

__all__ = ["COLORS", "plot_fig2", "plot_shapes", "plot_edf", "plot_rank", "plot_fig4"]

# the paper's Fig. 2: top 10% red, middle 10% blue, bottom 10% green
COLORS = {"top": "tab:red", "middle": "tab:blue", "bottom": "tab:green",
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
    for j, g in enumerate(GROUPS):
        st = a["groups"][g]
        if not st["n"]:
            continue
        # error bars = std across the group's models, shifted a little so the groups' bars stay apart
        ax.errorbar(x + (j - 1) * 0.08, st["mean_widths"], yerr=st["std_widths"], color=COLORS[g], marker="o",
                    ms=3, capsize=2, lw=1.3, elinewidth=0.8,
                    label=f"{g} {st['n']} (R²={st['fit']['r2']:.3f}, acc {st['acc_mean']:.2f})")
        ax.fill_between(x, st["min_widths"], st["max_widths"], color=COLORS[g], alpha=0.10, lw=0)
    for kind in ("linear", "stagewise"):
        ref = a["references"][kind]
        if ref:
            ax.plot(x, ref["widths"], color=COLORS[kind], ls="--", lw=1.2,
                    label=f"{kind} reference (acc {ref['acc_mean']:.2f})")
    ax.set(xlabel="block index i", ylabel="output channels",
           title=f"{label}: widths of the top / middle / bottom models (n={a['n_samples']}; "
                 f"bars = ±1 std, band = min-max)")
    ax.title.set_fontsize(9)
    return _finish(fig, ax, path, 7)


def plot_shapes(label: str, a: dict[str, Any], path: Path) -> Path:
    """One panel per shape statistic: every sampled model (grey) with the group members in
    the group colours, and each group's permutation p-value against the whole sample."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(SHAPE_STATS), figsize=(3.0 * len(SHAPE_STATS), 3.4), dpi=120)
    samples = [x for x in a["specs"] if x["kind"] == "sample"]
    where = {h: g for g in GROUPS[::-1] for h in a["groups"][g].get("members", [])}   # top wins an overlap
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(samples))
    for ax, stat in zip(np.atleast_1d(axes), SHAPE_STATS):
        ax.scatter(jitter, [x[stat] for x in samples], color="0.7", s=10, label="all samples")
        for j, g in enumerate(GROUPS):
            pts = [x[stat] for x in samples if where.get(x["spec_hash"]) == g]
            if pts:
                p = a["shapes"][g]["p"][stat]
                ax.scatter(np.full(len(pts), 1 + j), pts, color=COLORS[g], s=14, label=f"{g} (p={fmt(p, 3)})")
        ax.set_xticks([0, 1, 2, 3], ["all", *GROUPS], fontsize=7)
        ax.set_title(stat, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{label}: shape statistics of the sampled models (p: permutation test vs all)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


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
    """Accuracy against the width-normalised nuclear norm and, where recorded, the raw
    one (sum of singular values / largest), one panel each."""
    plt = pyplot()
    measures = [("nuclear_norm", "normalised", "normalised nuclear norm (/ width)")]
    if any(a["rank"]["raw"]["available"] for a in results.values()):
        measures.append(("nuclear_norm_raw", "raw", "raw nuclear norm (sum σ / σ_max)"))
    fig, axes = plt.subplots(1, len(measures), figsize=(6 * len(measures), 4.2), dpi=120, squeeze=False)
    markers = {"sample": "o", "linear": "^", "stagewise": "s"}
    for ax, (key, name, xlabel) in zip(axes[0], measures):
        for i, (label, a) in enumerate(results.items()):
            color = plt.get_cmap("tab10")(i % 10)
            c = a["rank"][name]
            for kind, mk in markers.items():
                pts = [x for x in a["specs"] if x["kind"] == kind and x[key] is not None]
                if pts:
                    ax.scatter([x[key] for x in pts], [x["acc_mean"] for x in pts], color=color, marker=mk,
                               s=40 if kind != "sample" else 14, edgecolor="k" if kind != "sample" else None,
                               label=f"{label} ({kind})" if kind != "sample" else
                               f"{label} (Pearson {fmt(c.get('pearson'))}, Spearman {fmt(c.get('spearman'))}, "
                               f"partial {fmt(c.get('partial_pearson'))})")
        ax.set(xlabel=xlabel, ylabel=f"mean {a['accuracy']['key']} (%)",
               title=f"Accuracy vs {name} nuclear norm of the last block's output")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


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
