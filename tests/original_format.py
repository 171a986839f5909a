"""Deterministic checkpoints in the authors' original layout, for tests.

``tests/data/original_keys.json`` holds the key names and shapes of the authors'
``ReXNetV1(width_mult=1.0)`` and ``ReXNetV1_lite(multiplier=1.0)`` state dicts, and
``tests/data/original_logits.json`` the logits the authors' code gives on a fixed
input with the weights made below (recorded once by running clovaai/rexnet
locally; their code is not part of this repository).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def original_keys() -> dict[str, dict[str, list[int]]]:
    return json.loads((DATA / "original_keys.json").read_text())


def make_original_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) * 1.5 + 0.5
        elif k.endswith("running_mean") or (k.endswith("bias")):
            sd[k] = (torch.rand(shape, generator=g) - 0.5) * 0.2
        elif len(shape) == 1:  # BN weight
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            fan_in = math.prod(shape[1:])
            sd[k] = torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)
    return sd


def fixed_input() -> torch.Tensor:
    return torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
