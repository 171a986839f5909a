"""rexnet: ReXNet (Han et al., CVPR 2021) as data: schedules -> NetSpec -> module / complexity."""
from __future__ import annotations

from typing import Any

from . import schedule
from .budget import BudgetError, solve_budget
from .complexity import complexity, count_module
from .models.resolve import create_model, resolve_spec
from .spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__version__ = "0.1.0"
__all__ = ["create_model", "resolve_spec", "list_models", "model_spec", "build", "NetSpec", "BlockSpec",
           "StemSpec", "HeadSpec", "schedule", "complexity", "count_module", "solve_budget",
           "BudgetError", "load_weights", "save_weights"]


def list_models(pattern: str = "*") -> list[str]:
    from .models.zoo import list_models as _list
    return _list(pattern)


def model_spec(name: str, **overrides: Any) -> NetSpec:
    from .models.zoo import model_spec as _spec
    return _spec(name, **overrides)


def build(spec: NetSpec, **kwargs: Any):
    from .models.build import build as _build
    return _build(spec, **kwargs)


def load_weights(model, path, **kwargs: Any):
    from .models.weights import load_weights as _load
    return _load(model, path, **kwargs)


def save_weights(model, path):
    from .models.weights import save_weights as _save
    return _save(model, path)
