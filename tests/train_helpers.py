"""Shared set-up for the training tests: real data from ../shared/data and a tiny network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rexnet.models.zoo import rexnet_spec
from rexnet.train.recipe import load_recipe

SHARED = Path(os.environ.get("REXNET_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CIFAR_ZIP = SHARED / "cifar10-jpeg.zip"
HYMENOPTERA = SHARED / "hymenoptera"

needs_cifar = pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason=f"real CIFAR-10 not found at {CIFAR_ZIP}")
needs_hymenoptera = pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason=f"ants/bees not found at {HYMENOPTERA}")


def tiny_spec_file(folder: Path, num_classes: int = 10) -> str:
    """A 9-block ReXNet (x0.25 width, x0.34 depth): ~17 MMACs at 32x32."""
    path = folder / "tiny.yaml"
    rexnet_spec("tiny", multiplier=0.25, depth_multiplier=0.34, num_classes=num_classes).save(path)
    return str(path)


def cifar_recipe(folder: Path, **overrides):
    values = dict(model=tiny_spec_file(folder), data=str(CIFAR_ZIP), epochs=1, train_subset=256,
                  val_subset=200, batch_size=32, lr_base_batch=32, lr=0.1, progress=False)
    values.update(overrides)
    return load_recipe("cifar", values)
