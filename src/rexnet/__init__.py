"""rexnet: ReXNet (Han et al., CVPR 2021) as data: schedules -> NetSpec -> module / complexity."""
from __future__ import annotations

import importlib
from typing import Any

from . import schedule
from .budget import BudgetError, solve_budget
from .complexity import complexity, count_module
from .spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__version__ = "0.1.0"
__all__ = ["create_model", "resolve_spec", "list_models", "model_spec", "build", "NetSpec", "BlockSpec",
           "StemSpec", "HeadSpec", "schedule", "complexity", "count_module", "solve_budget",
           "BudgetError", "load_weights", "save_weights"]

# The model functions import torch and timm (seconds); they load on first use, so
# `import rexnet` and every `rexnet` command that needs no model stay fast.
_LAZY = {"create_model": "models.resolve", "resolve_spec": "models.resolve", "list_models": "models.zoo",
         "model_spec": "models.zoo", "build": "models.build", "load_weights": "models.weights",
         "save_weights": "models.weights"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rexnet' has no attribute {name!r}")
