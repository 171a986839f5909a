"""Budgets for a design: counts (``150M``, ``0.40G``, ``3e6``) read and written, and the
:class:`Targets` a design must meet."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["Targets", "parse_count", "format_count", "parse_latency_ms", "LABELS", "UNITS"]

LABELS = {"macs": "MACs", "params": "params"}
UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmg]?)\s*$", re.IGNORECASE)


def parse_count(text: str | float | int, what: str = "value") -> float:
    """``150M``, ``0.40G``, ``3M``, ``3e6``, ``250k`` -> a positive number; ``ValueError`` otherwise."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _COUNT.match(str(text))
        if not match:
            raise ValueError(f"{what} {text!r} is not a count: write e.g. 150M, 0.40G, 3M or 3e6")
        value = float(match.group(1)) * UNITS[match.group(2).lower()]
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{what} must be positive, got {text!r}")
    return value


def format_count(n: float) -> str:
    """``149.7M``, ``1.23G``, ``3.01M``: short for tables and messages."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.4g}"


def parse_latency_ms(text: str | None) -> float | None:
    """``8``, ``12.5`` or ``12.5ms`` -> milliseconds; ``None`` stays ``None``; ``ValueError`` otherwise."""
    if text is None:
        return None
    try:
        value = float(str(text).strip().removesuffix("ms"))
    except ValueError:
        raise ValueError(f"--latency-ms takes milliseconds, e.g. 8 or 12.5; got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"--latency-ms must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Targets:
    macs: float | None = None          # upper bound on MACs at the design's input size
    params: float | None = None        # upper bound on parameters
    latency_ms: float | None = None    # upper bound on measured latency (ms per batch)
    fill: float | None = 0.9           # lower bound on every static budget's use (achieved / bound)

    def __post_init__(self) -> None:
        for key in ("macs", "params", "latency_ms"):
            v = getattr(self, key)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"the {key} target must be positive, got {v}")
        if self.macs is None and self.params is None and self.latency_ms is None:
            raise ValueError("give at least one target: --macs, --params or --latency-ms")
        if self.fill is not None and not 0.0 <= self.fill <= 1.0:
            raise ValueError(f"--fill must be in [0, 1] (a share of each budget), got {self.fill}")

    @property
    def static(self) -> dict[str, float]:
        """The analytic bounds given (``macs``, ``params``), by name."""
        return {k: v for k, v in (("macs", self.macs), ("params", self.params)) if v is not None}
