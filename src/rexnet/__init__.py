"""rexnet: ReXNet (Han et al., CVPR 2021) as data: schedules -> NetSpec -> module / complexity."""
from __future__ import annotations

import os
from typing import Any

from . import schedule
from .budget import BudgetError, solve_budget
from .complexity import complexity, count_module
from .spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_spec", "build", "NetSpec", "BlockSpec",
           "StemSpec", "HeadSpec", "schedule", "complexity", "count_module", "solve_budget",
           "BudgetError", "load_weights", "save_weights"]


def create_model(name: str | NetSpec, *, num_classes: int | None = None,
                 weights: str | os.PathLike | None = None, pretrained: bool = False,
                 reset_classifier: bool = False, drop_rate: float | None = None,
                 drop_path_rate: float = 0.0, **overrides: Any):
    """Build a zoo model (or any NetSpec) and optionally load weights.

    ``weights`` is a checkpoint path in any supported format (ours, timm's, the
    authors' original); ``pretrained=True`` uses the published weights from the
    local cache or downloads them.  With a ``num_classes`` that differs from the
    checkpoint's, pass ``reset_classifier=True`` to load the backbone only.
    """
    from .models.build import Net
    from .models.weights import load_weights, resolve_pretrained
    from .models.zoo import model_info, model_spec

    if isinstance(name, NetSpec):
        spec = name if num_classes is None else name.with_head(num_classes=num_classes)
        if overrides:
            raise ValueError(f"overrides {sorted(overrides)} apply to zoo names only; edit the NetSpec instead")
    else:
        spec = model_spec(name, num_classes=num_classes, **overrides)
    model = Net(spec, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    if weights is not None and pretrained:
        raise ValueError("pass either weights=PATH or pretrained=True, not both")
    if pretrained:
        if isinstance(name, NetSpec):
            raise ValueError("pretrained=True needs a zoo model name; pass weights=PATH for a NetSpec")
        weights = resolve_pretrained(name, model_info(name).weights)
    if weights is not None:
        load_weights(model, weights, reset_classifier=reset_classifier)
    return model


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
