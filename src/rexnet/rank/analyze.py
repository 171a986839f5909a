"""Rank analysis of trained models (the paper's Section 6, Fig. 5): output features of
every layer on real images, their normalised singular values, nuclear norm and effective rank."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..io import pyplot, save_figure, write_csv
from .measures import effective_rank, nuclear_ratio, singular_values, stable_rank

__all__ = ["layer_features", "final_spectrum", "analyze_model", "write_analysis", "plot_analysis",
           "analysis_model", "Analysis", "run_analysis"]


@torch.no_grad()
def layer_features(model: nn.Module, images: torch.Tensor, max_columns: int = 4096, seed: int = 0,
                   batch_size: int = 32) -> dict[str, torch.Tensor]:
    """``channels x columns`` output features of the stem and of every module in
    ``model.features``; columns are (image, position) pairs, at most ``max_columns``
    per layer, sampled with a seeded generator so the analysis is repeatable."""
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    layers = {"stem": model.stem, **{f"features.{i}": m for i, m in enumerate(model.features)}}
    per_image = max(1, math.ceil(max_columns / len(images)))
    g = torch.Generator().manual_seed(seed)
    cols: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def hook(name: str):
        def fn(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            b, c, h, w = out.shape
            flat = out.detach().float().reshape(b, c, h * w)
            k = min(per_image, h * w)
            idx = torch.stack([torch.randperm(h * w, generator=g)[:k] for _ in range(b)])
            picked = torch.gather(flat, 2, idx[:, None, :].expand(b, c, k))
            cols[name].append(picked.permute(1, 0, 2).reshape(c, b * k))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(images), batch_size):
            model.forward_features(images[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: torch.cat(c, dim=1)[:, :max_columns] for n, c in cols.items()}


def final_spectrum(model: nn.Module, images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, int]:
    """Singular values (centred) of the last block's output features, and its width."""
    feats = layer_features(model, images, max_columns=4096, seed=seed)[f"features.{len(model.spec.blocks) - 1}"]
    return singular_values(feats, center=True), int(feats.shape[0])


def analyze_model(model: nn.Module, images: torch.Tensor, max_columns: int = 4096, center: bool = False,
                  seed: int = 0) -> list[dict[str, Any]]:
    """One row per layer: channels, columns, effective rank, stable rank, nuclear norm
    (sum sigma / sigma_max) and the singular values normalised to [0, 1]."""
    rows = []
    feats = layer_features(model, images, max_columns, seed)
    for depth, (name, f) in enumerate(feats.items()):
        sigma = singular_values(f, center=center)
        c = f.shape[0]
        smax = float(sigma.max()) if sigma.numel() else 0.0
        rows.append(dict(layer=depth, module=name, channels=c, columns=f.shape[1],
                         effective_rank=effective_rank(sigma), effective_ratio=effective_rank(sigma) / c,
                         stable_rank=stable_rank(sigma), nuclear_norm=nuclear_ratio(sigma),
                         nuclear_per_channel=nuclear_ratio(sigma) / c,
                         sv_normalised=(sigma / smax).tolist() if smax > 0 else [0.0] * c))
    return rows


def write_analysis(results: dict[str, list[dict[str, Any]]], out: str | os.PathLike) -> dict[str, Path]:
    """``rank_analysis.csv`` (one row per model x layer) and ``rank_analysis.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = ["model", "layer", "module", "channels", "columns", "effective_rank", "effective_ratio",
            "stable_rank", "nuclear_norm", "nuclear_per_channel"]
    path = write_csv([{"model": model, **r} for model, rows in results.items() for r in rows],
                     out / "rank_analysis.csv", columns=keys)
    return {"csv": path, "png": plot_analysis(results, out / "rank_analysis.png")}


def plot_analysis(results: dict[str, list[dict[str, Any]]], path: str | os.PathLike) -> Path:
    """Left: effective-rank ratio per layer (relative depth). Right: cumulative
    distribution of the last layer's normalised singular values (Fig. 5 right)."""
    fig, (a, b) = pyplot().subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for model, rows in results.items():
        n = len(rows)
        a.plot([r["layer"] / max(n - 1, 1) for r in rows], [r["effective_ratio"] for r in rows],
               marker="o", ms=3, label=model)
        sv = sorted(rows[-1]["sv_normalised"])
        b.plot(sv, [(i + 1) / len(sv) for i in range(len(sv))],
               label=f"{model} ({rows[-1]['module']}, {rows[-1]['channels']} ch)")
    a.set_xlabel("relative depth (layer / last layer)")
    a.set_ylabel("effective rank / channels")
    a.set_title("Effective rank of each layer's output")
    b.set_xlabel("singular value / largest")
    b.set_ylabel("cumulative fraction")
    b.set_title("Normalised singular values of the last layer (CDF)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# -- the command ---------------------------------------------------------------------------
def analysis_model(name: str, weights: str | None, input_size: int = 224, stride_plan: str = "auto") -> nn.Module:
    """The model ``rank-analyze`` measures: our checkpoint as trained, else ``name`` built at
    ``input_size`` with ``weights`` (any supported format; random init without)."""
    from ..models.resolve import create_model
    from ..models.weights import read_spec

    if weights and read_spec(weights) is not None:
        return create_model(weights)  # our checkpoint: the network as trained
    # the classifier plays no part here, so a checkpoint with other classes loads too
    return create_model(name, input_size=input_size, stride_plan=stride_plan, weights=weights,
                        reset_classifier=True)


@dataclass
class Analysis:
    """What :func:`run_analysis` did: per-layer rows by model label, the files written, the images used."""
    results: dict[str, list[dict[str, Any]]]
    paths: dict[str, Path]
    images: int


def _describe(label: str, rows: list[dict[str, Any]]) -> list[str]:
    """What is worth saying about one analysed model: a columns cap, if any, and its last layer."""
    lines = []
    capped = [r["module"] for r in rows if r["columns"] < r["channels"]]
    if capped:
        lines.append(f"note: {len(capped)} layer(s) of {label} have fewer sampled columns than channels "
                     f"({', '.join(capped[:4])}...): their rank is capped by the columns; use more --images")
    last = rows[-1]
    lines.append(f"{label}: {len(rows)} layers; last layer {last['module']} ({last['channels']} ch): "
                 f"effective rank {last['effective_rank']:.1f}, nuclear norm {last['nuclear_norm']:.1f}")
    return lines


def run_analysis(models: Sequence[tuple[str, str | None]], data: str, out: str | os.PathLike, *,
                 images: int = 128, input_size: int = 224, stride_plan: str = "auto", columns: int = 4096,
                 center: bool = False, seed: int = 0, data_root: str | None = None, skip_bad_images: bool = False,
                 log: Callable[[str], None] = print) -> Analysis:
    """``rexnet rank-analyze``: every ``(name, weights)`` of ``models`` on the same ``images``
    class-balanced validation images of ``data``, then ``rank_analysis.csv`` / ``.png`` in ``out``.

    Each model without weights gets the random init of ``seed``, so a rerun gives the same
    numbers; ``log`` receives a line per model as it finishes."""
    from ..io import check_writable
    from ..train.data import eval_images

    check_writable(out)  # before the images are read and the models analysed
    batch = eval_images(data, images, input_size, data_root, skip_bad=skip_bad_images)
    results = {}
    for name, weights in models:
        torch.manual_seed(seed)  # models without weights get a repeatable random init
        model = analysis_model(name, weights, input_size, stride_plan)
        label = name if not weights else f"{name} ({Path(weights).name})"
        results[label] = analyze_model(model, batch, columns, center, seed)
        for line in _describe(label, results[label]):
            log(line)
    return Analysis(results, write_analysis(results, out), len(batch))
