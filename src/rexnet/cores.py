"""How many CPU cores this process may use: the one answer every worker count is chosen from."""
from __future__ import annotations

import os

__all__ = ["available_cores"]


def available_cores() -> int:
    """The CPUs in this process's affinity mask (all CPUs where the OS has no mask), capped by
    ``OMP_NUM_THREADS`` when that is set to a positive whole number; at least 1.

    A process started with ``OMP_NUM_THREADS=1`` beside others (``make test``'s workers, a
    background campaign) was given one core, and everything that sizes a pool from this
    stays within it."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)
