"""CPU latency of detectors timed in turns (ours against torchvision's), with params and MACs."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["build_named_detector", "bench_detectors", "format_rows", "IMAGE_SIZE"]

# A COCO-like photograph (640x480): each detector resizes it with its own transform
# (SSDLite to 320x320, the R-CNNs to an 800-pixel shorter side), as it would in use.
IMAGE_SIZE = (480, 640)


def build_named_detector(name: str) -> nn.Module:
    """``ARCH:BACKBONE`` (ours, e.g. ``fasterrcnn_fpn:rexnet_100``) or ``tv:NAME`` (a torchvision
    detection builder, e.g. ``tv:fasterrcnn_resnet50_fpn``), randomly initialised, in eval mode."""
    if name.startswith("tv:"):
        import torchvision.models.detection as tvd

        builder = getattr(tvd, name[3:], None)
        if builder is None or not callable(builder):
            raise ValueError(f"{name}: torchvision.models.detection has no builder {name[3:]!r}")
        return builder(weights=None, weights_backbone=None).eval()
    arch, sep, backbone = name.partition(":")
    if not sep:
        raise ValueError(f"{name!r}: name a detector as ARCH:BACKBONE (ours) or tv:NAME (torchvision's)")
    from .models import create_detector

    return create_detector(arch, backbone).eval()


def bench_detectors(names: Sequence[str], runs: int = 10, warmup: int = 2, threads: int | None = None,
                    size: tuple[int, int] = IMAGE_SIZE) -> list[dict[str, Any]]:
    """Batch-1 latency of each detector on one image, timed in turns (the order rotates each
    round), with its parameter count and MACs (FlopCounterMode / 2 on that image)."""
    from ..bench.timing import latency_stats, time_interleaved
    from .models import detector_complexity

    if threads:
        torch.set_num_threads(threads)
    models = {n: build_named_detector(n) for n in names}
    image = [torch.rand(3, *size, generator=torch.Generator().manual_seed(0))]
    times = time_interleaved(models, dict.fromkeys(models, image), runs=runs, warmup=warmup)
    rows = []
    for n, model in models.items():
        c = detector_complexity(model, size)
        stats = latency_stats(times[n], 1)
        rows.append(dict(detector=n, params_m=round(c["params"] / 1e6, 3), gmacs=round(c["macs"] / 1e9, 2),
                         median_ms=round(stats["median_ms"], 1), p10_ms=round(stats["p10_ms"], 1),
                         p90_ms=round(stats["p90_ms"], 1), runs=runs, threads=torch.get_num_threads(),
                         image=f"{size[1]}x{size[0]}"))
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    from ..tables import format_table

    return format_table(rows)
