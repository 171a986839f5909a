"""One way to name a model: a zoo name, a NetSpec, a NetSpec file or one of our checkpoints.

Every command (train, eval, bench, export, rank-analyze, the search) and
``rexnet.create_model`` resolve models here, so the stride plan is decided in one
place, from the input size:

- ``imagenet``: the spec as designed;
- ``cifar``: stem stride 1 and one downsampling fewer (a 32x32 image ends at 4x4),
  unless the spec is on that plan already;
- ``auto`` (default): ``cifar`` when ``input_size`` is given and at most 32 and the spec
  is designed for larger inputs (a spec with ``input_size`` <= 32 keeps its strides),
  else as designed.

A zoo name ending in ``_cifar`` asks for the CIFAR plan too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ..spec import NetSpec
from .build import Net
from .weights import CheckpointError, load_weights, read_spec, resolve_pretrained
from .zoo import cifar_stride_plan, model_info, model_spec

__all__ = ["SPEC_SUFFIXES", "CHECKPOINT_SUFFIXES", "STRIDE_PLANS", "resolve_spec", "create_model",
           "apply_stride_plan", "is_checkpoint"]

SPEC_SUFFIXES = (".json", ".yaml", ".yml")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
STRIDE_PLANS = ("auto", "imagenet", "cifar")

ModelRef = str | os.PathLike | NetSpec


def is_checkpoint(model: ModelRef) -> bool:
    return not isinstance(model, NetSpec) and os.fspath(model).endswith(CHECKPOINT_SUFFIXES)


def apply_stride_plan(spec: NetSpec, stride_plan: str = "auto", input_size: int | None = None) -> NetSpec:
    """``spec`` under a stride plan (see the module docstring)."""
    if stride_plan not in STRIDE_PLANS:
        raise ValueError(f"stride_plan must be one of {STRIDE_PLANS}, got {stride_plan!r}")
    if stride_plan == "auto":  # a spec designed for small inputs keeps its own strides
        small_input = input_size is not None and input_size <= 32
        stride_plan = "cifar" if small_input and spec.input_size > 32 else "imagenet"
    if stride_plan == "cifar" and spec.meta.get("stride_plan") != "cifar":
        return cifar_stride_plan(spec)
    return spec


def resolve_spec(model: ModelRef, *, num_classes: int | None = None, input_size: int | None = None,
                 stride_plan: str = "auto", **overrides: Any) -> NetSpec:
    """The NetSpec that ``model`` names, under ``stride_plan``, with ``num_classes`` if given.

    ``overrides`` go to a zoo model's spec function (e.g. ``dropout``, ``multiplier``).
    """
    if overrides and not (isinstance(model, str) and not model.endswith(SPEC_SUFFIXES + CHECKPOINT_SUFFIXES)):
        raise ValueError(f"overrides {sorted(overrides)} apply to zoo names only; edit the NetSpec instead")
    if isinstance(model, NetSpec):
        spec = model
    elif os.fspath(model).endswith(SPEC_SUFFIXES):
        spec = NetSpec.load(model)
    elif is_checkpoint(model):
        if not Path(model).is_file():
            raise FileNotFoundError(f"checkpoint not found: {model}")
        spec = read_spec(model)
        if spec is None:
            raise CheckpointError(f"{model} carries no network description (a timm or original-format file?); "
                                  f"name the model and pass the file as weights, e.g. --model rexnet_100 "
                                  f"--weights {model}")
    else:
        name = os.fspath(model)
        if name.endswith("_cifar"):
            name, stride_plan = name[: -len("_cifar")], "cifar"
        spec = model_spec(name, **overrides)
    spec = apply_stride_plan(spec, stride_plan, input_size)
    if num_classes is not None and num_classes != spec.head.num_classes:
        spec = spec.with_head(num_classes=num_classes)
    return spec


def create_model(model: ModelRef, *, num_classes: int | None = None, weights: str | os.PathLike | dict | None = None,
                 pretrained: bool = False, reset_classifier: bool = False, input_size: int | None = None,
                 stride_plan: str = "auto", drop_rate: float | None = None, drop_path_rate: float = 0.0,
                 features_only: bool = False, out_indices: int | Sequence[int] | None = None,
                 **overrides: Any) -> nn.Module:
    """Build a model from any of the four ways to name one, and optionally load weights.

    ``model`` is a zoo name, a :class:`NetSpec`, a NetSpec file (.json/.yaml) or
    one of our checkpoints (its spec travels in it and its weights are loaded
    unless ``weights`` names another file).  ``weights`` is a checkpoint in any
    supported format (ours, timm's, the authors'); ``pretrained=True`` takes the
    published weights from the cache or downloads them.  With a ``num_classes``
    that differs from the checkpoint's, pass ``reset_classifier=True`` to load the
    backbone only.  ``features_only=True`` returns timm's feature wrapper: its
    forward gives the maps of ``out_indices`` (entries of ``feature_info``,
    default all) and its ``feature_info`` has ``channels()`` / ``reduction()``.
    """
    spec = resolve_spec(model, num_classes=num_classes, input_size=input_size, stride_plan=stride_plan,
                        **overrides)
    net = Net(spec, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    if weights is not None and pretrained:
        raise ValueError("pass either weights=PATH or pretrained=True, not both")
    if pretrained:
        if isinstance(model, NetSpec) or is_checkpoint(model) or os.fspath(model).endswith(SPEC_SUFFIXES):
            raise ValueError("pretrained=True needs a zoo model name; pass weights=PATH for a NetSpec or file")
        name = os.fspath(model).removesuffix("_cifar")
        weights = resolve_pretrained(name, model_info(name).weights)
    if weights is None and is_checkpoint(model):
        weights = model
    if weights is not None:
        load_weights(net, weights, reset_classifier=reset_classifier)
    if features_only:
        from timm.models._features import FeatureGetterNet

        indices = tuple(range(len(net.feature_info))) if out_indices is None else out_indices
        return FeatureGetterNet(net, out_indices=indices)
    return net
