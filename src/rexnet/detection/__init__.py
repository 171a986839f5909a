"""Detection (paper Sections 5.2, 5.4): torchvision's detectors over our backbones, COCO data and metrics."""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ARCHS", "create_detector", "detector_complexity", "fpn_backbone", "ssdlite_backbone"]

# torchvision's detection models load on first use, so the data and metrics modules stay light
_LAZY = {"ARCHS": "models", "create_detector": "models", "detector_complexity": "models",
         "fpn_backbone": "backbones", "ssdlite_backbone": "backbones"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rexnet.detection' has no attribute {name!r}")
