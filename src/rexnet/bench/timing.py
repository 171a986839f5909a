"""The stopwatch: models timed in turns, so machine drift falls on all alike, and the summary of the times.

Used by ``rexnet bench`` (inputs per model, a synchronise around each call on
CUDA), ``rexnet models --profile`` and the benchmark scripts.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

__all__ = ["time_interleaved", "latency_stats", "interleaved_latency", "zoo_latency"]


def time_interleaved(models: Mapping[str, Callable], inputs: Mapping[str, Any], runs: int = 30,
                     warmup: int = 5, timer: Callable[[], float] = time.perf_counter,
                     sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Milliseconds per call of each model, timed in turns so machine drift falls on all alike.

    Every model is called ``warmup + runs`` times.  The order rotates each round
    so no model always runs first (right after a pause) or after the same
    neighbour.  ``sync`` (e.g. ``torch.cuda.synchronize``) brackets each call.
    """
    import torch

    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                models[n](inputs[n])
        for r in range(runs):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                if sync:
                    sync()
                t0 = timer()
                models[n](inputs[n])
                if sync:
                    sync()
                times[n].append((timer() - t0) * 1e3)
    return times


def latency_stats(times_ms: Sequence[float], batch: int) -> dict[str, float]:
    """Median, p10, p90 (nearest rank), mean, and images/s at the median."""
    if not times_ms:
        raise ValueError("no timings to summarise")
    ts = sorted(times_ms)
    q = lambda p: ts[min(len(ts) - 1, int(round(p * (len(ts) - 1))))]  # noqa: E731
    return dict(median_ms=q(0.5), p10_ms=q(0.1), p90_ms=q(0.9), mean_ms=sum(ts) / len(ts),
                images_per_s=batch / (q(0.5) / 1e3), runs=len(ts))


def interleaved_latency(models: dict, batch: int = 1, input_size: int = 224, runs: int = 30,
                        warmup: int = 5, threads: int | None = None) -> dict[str, dict[str, float]]:
    """CPU latency of several models on one random input, timed in turns.

    Returns per model: median, p10, p90, mean (milliseconds per batch) and images/s
    at the median.  Each model runs in eval mode under ``torch.inference_mode``.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    x = torch.randn(batch, 3, input_size, input_size)
    for m in models.values():
        m.eval()
    times = time_interleaved(models, dict.fromkeys(models, x), runs=runs, warmup=warmup)
    return {name: dict(latency_stats(ts, batch), batch=batch) for name, ts in times.items()}


def zoo_latency(names: Sequence[str], input_size: int = 224, runs: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median CPU latency (ms) at batch 1 of each zoo model, all timed in turns.

    Timed one model after another, a slower spell of a shared machine fell on
    whichever models ran then and swapped rankings between runs; interleaved, each
    model's ``runs`` calls spread over the whole measurement, so drift falls on all
    alike.  All models are built at once (the 20-model zoo holds 217 M parameters, about
    2 GB resident).
    """
    from .. import create_model

    models = {name: create_model(name) for name in names}
    stats = interleaved_latency(models, batch=1, input_size=input_size, runs=runs, warmup=warmup)
    return {name: stats[name]["median_ms"] for name in names}
