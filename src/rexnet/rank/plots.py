"""Fig. 1-style figures of a rank study: one panel per block type, mean rank ratio vs d_in/d_out."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import pyplot, save_figure
from ..stats import mean_ci
from .results import Results

__all__ = ["plot_measure"]

_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
_BLOCK_TITLES = {"conv1x1": "1x1 conv", "conv3x3": "3x3 conv",
                 "ib3x3": "inverted bottleneck, 3x3 conv", "ibdw": "inverted bottleneck, 3x3 depthwise"}


def plot_measure(res: Results, measure: str, path: str | os.PathLike) -> Path:
    """One PNG: a panel per block, a line per activation with its 95% CI band, and y = ratio for reference.

    The dashed diagonal is the input's own rank ratio (d_in / d_out): a curve
    above it means the block's output has more directions than its input.
    """
    plt = pyplot()
    blocks = res.blocks
    cols = 2 if len(blocks) > 1 else 1
    rows = (len(blocks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), dpi=110, squeeze=False,
                             sharex=True)
    ratios = np.array(res.ratios)
    colors = plt.get_cmap("tab10")
    for k, block in enumerate(blocks):
        ax = axes[k // cols][k % cols]
        mat = res.m(block, measure)
        for ai, act in enumerate(res.acts):
            stats = [mean_ci(mat[res.ratio == r, ai]) for r in ratios]
            mean = np.array([s[0] for s in stats])
            ci = np.nan_to_num(np.array([s[1] for s in stats]))
            style = dict(color="black", ls="--", lw=1.4) if act == "identity" else dict(color=colors(ai % 10), lw=1.2)
            # distinct markers keep curves that coincide (ReLU and ReLU6 under train-mode BN) visible
            ax.plot(ratios, mean, marker=_MARKERS[ai % len(_MARKERS)], ms=3.5, mfc="none", label=act, **style)
            ax.fill_between(ratios, mean - ci, mean + ci, color=style["color"], alpha=0.15, lw=0)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="d_in / d_out")
        ax.set_title(_BLOCK_TITLES.get(block, block), fontsize=10)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(-0.02, 1.05)  # every measure is at most d_out
        ax.grid(alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel(f"{measure} / d_out")
        if k // cols == rows - 1:
            ax.set_xlabel("dimension ratio d_in / d_out")
    for k in range(len(blocks), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 9), fontsize=8, frameon=False)
    per_ratio = res.per_ratio
    fig.suptitle(f"{measure}: mean over {per_ratio}+ random networks per ratio, 95% CI bands", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return save_figure(fig, path)
