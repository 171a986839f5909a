"""The named model zoo: every model is a NetSpec made from a channel schedule.

Names follow timm where timm has the model.  ``model_spec(name)`` gives the
spec, ``create_model(name)`` the module.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from .. import schedule as sch
from ..budget import solve_budget
from ..complexity import complexity
from ..spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__all__ = ["ModelInfo", "REGISTRY", "register", "list_models", "model_spec", "model_info",
           "rexnet_spec", "rexnet_lite_spec", "mobilenetv2_spec", "mobilenetv1_spec"]

# ReXNetV1 stage plan (the blocks after the stem): strides and SE per stage.
REXNET_STRIDES = (1, 2, 2, 2, 1, 2)
REXNET_SE = (False, False, True, True, True, True)
# MobileNetV2 (t, c, n, s) as published.
MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                 (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# MobileNetV1 depthwise-separable blocks: (out width, stride).
MBV1_SETTINGS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                 (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _per_block(values, repeats):
    return [v for v, r in zip(values, repeats) for _ in range(r)]


def rexnet_spec(name: str = "rexnet_100", multiplier: float = 1.0, depth_multiplier: float = 1.0,
                initial: float = 16, final: float = 180, se_ratio: float = 1 / 12,
                ch_div: int = 1, num_classes: int = 1000, dropout: float = 0.2,
                widths: list[float] | None = None) -> NetSpec:
    """ReXNetV1 exactly as published (``ch_div=1``) or with channels divisible by
    ``ch_div`` (timm's ReXNet-R).  ``widths`` replaces the linear schedule."""
    repeats = sch.scale_depth(sch.REXNET_REPEATS, depth_multiplier)
    n = sum(repeats)
    strides = [s if j == 0 else 1 for s, r in zip(REXNET_STRIDES, repeats) for j in range(r)]
    use_se = _per_block(REXNET_SE, repeats)
    exps = [1] * repeats[0] + [6] * (n - repeats[0])
    rule = "round" if ch_div == 1 else "divisible"
    if widths is None:
        widths = sch.linear(n, initial, final, span=n, multiplier=multiplier)
    if len(widths) != n:
        raise ValueError(f"{name}: {len(widths)} widths given for {n} blocks")
    outs = sch.round_widths(widths, rule, ch_div)
    stem_base = 32 / multiplier if multiplier < 1.0 else 32
    stem = sch.round_width(stem_base * multiplier, rule, ch_div)
    blocks, prev = [], stem
    for out, s, t, se in zip(outs, strides, exps, use_se):
        mid = sch.round_width(prev * t, rule, ch_div)
        se_chs = (mid // round(1 / se_ratio) if ch_div == 1
                  else sch.make_divisible(int(mid * se_ratio), ch_div)) if se and se_ratio else 0
        blocks.append(BlockSpec(prev, out, mid, stride=s, se_chs=se_chs, act_exp="silu",
                                act_dw="relu6", act_out=None, shortcut="partial"))
        prev = out
    pen = int(1280 * multiplier) if ch_div == 1 else sch.make_divisible(1280 * multiplier, ch_div)
    return NetSpec(name, StemSpec(stem, act="silu"), tuple(blocks),
                   HeadSpec(prev, pen, act="silu", dropout=dropout, num_classes=num_classes),
                   meta=dict(schedule="linear", multiplier=multiplier, initial=initial,
                             final=final, ch_div=ch_div))


def rexnet_lite_spec(name: str = "rexnet_lite_100", multiplier: float = 1.0, initial: float = 16,
                     final: float = 164, divisor: int = 8, num_classes: int = 1000,
                     dropout: float = 0.2) -> NetSpec:
    """ReXNet-lite (ReXNetV1_lite): no SE, ReLU6 everywhere, widths divisible by 8,
    increment spread over ``n - 1`` blocks, head 1x1 -> pool -> 1024 -> classifier."""
    repeats = list(sch.REXNET_REPEATS)
    n = sum(repeats)
    strides = [s if j == 0 else 1 for s, r in zip(REXNET_STRIDES, repeats) for j in range(r)]
    exps = [1] * repeats[0] + [6] * (n - repeats[0])
    outs = sch.round_widths(sch.linear(n, initial, final, span=n - 1, multiplier=multiplier),
                            "divisible", divisor)
    stem = sch.round_width((32 / multiplier if multiplier < 1.0 else 32) * multiplier, "divisible", divisor)
    blocks, prev = [], stem
    for out, s, t in zip(outs, strides, exps):
        blocks.append(BlockSpec(prev, out, prev * t, stride=s, act_exp="relu6", act_dw="relu6",
                                act_out=None, shortcut="partial"))
        prev = out
    pen = int(1280 * multiplier) if multiplier > 1 else 1280
    return NetSpec(name, StemSpec(stem, act="relu6"), tuple(blocks),
                   HeadSpec(prev, pen, act="relu6", hidden_chs=1024, hidden_act="relu6",
                            dropout=dropout, num_classes=num_classes),
                   meta=dict(schedule="linear", multiplier=multiplier, initial=initial,
                             final=final, ch_div=divisor))


def mobilenetv2_spec(name: str = "mobilenetv2_100", multiplier: float = 1.0,
                     widths: list[float] | None = None, shortcut: str = "full",
                     num_classes: int = 1000, dropout: float = 0.2) -> NetSpec:
    """MobileNetV2 (torchvision's layout): the stage-wise convention.  ``widths``
    re-assigns the 17 block outputs (used by ``mobilenetv2_linear``)."""
    stage_widths = sch.stagewise([(c, n) for _, c, n, _ in MBV2_SETTINGS], multiplier)
    exps = _per_block([t for t, *_ in MBV2_SETTINGS], [n for _, _, n, _ in MBV2_SETTINGS])
    strides = [s if j == 0 else 1 for _, _, n, s in MBV2_SETTINGS for j in range(n)]
    if widths is None:
        outs = [sch.make_divisible(w, 8) for w in stage_widths]
    else:
        if len(widths) != len(stage_widths):
            raise ValueError(f"{name}: {len(widths)} widths given for {len(stage_widths)} blocks")
        outs = sch.round_widths(widths, "round")
    stem = sch.make_divisible(32 * multiplier, 8)
    blocks, prev = [], stem
    for out, s, t in zip(outs, strides, exps):
        blocks.append(BlockSpec(prev, out, int(round(prev * t)), stride=s, act_exp="relu6",
                                act_dw="relu6", act_out=None, shortcut=shortcut))
        prev = out
    pen = sch.make_divisible(1280 * max(1.0, multiplier), 8)
    return NetSpec(name, StemSpec(stem, act="relu6"), tuple(blocks),
                   HeadSpec(prev, pen, act="relu6", dropout=dropout, num_classes=num_classes),
                   meta=dict(schedule="stagewise" if widths is None else "custom", multiplier=multiplier))


def mobilenetv1_spec(name: str = "mobilenetv1_100", multiplier: float = 1.0,
                     widths: list[float] | None = None, num_classes: int = 1000,
                     dropout: float = 0.2) -> NetSpec:
    """MobileNetV1: depthwise-separable blocks (dw 3x3 + BN + ReLU, 1x1 + BN + ReLU), no shortcut."""
    if widths is None:
        widths = [c * multiplier for c, _ in MBV1_SETTINGS]
        outs = [sch.make_divisible(w, 8) for w in widths]
    else:
        if len(widths) != len(MBV1_SETTINGS):
            raise ValueError(f"{name}: {len(widths)} widths given for {len(MBV1_SETTINGS)} blocks")
        outs = sch.round_widths(widths, "round")
    stem = sch.make_divisible(32 * multiplier, 8)
    blocks, prev = [], stem
    for out, (_, s) in zip(outs, MBV1_SETTINGS):
        blocks.append(BlockSpec(prev, out, prev, stride=s, act_exp=None, act_dw="relu",
                                act_out="relu", shortcut="none"))
        prev = out
    return NetSpec(name, StemSpec(stem, act="relu"), tuple(blocks),
                   HeadSpec(prev, 0, act=None, dropout=dropout, num_classes=num_classes),
                   meta=dict(schedule="stagewise" if widths is None else "custom", multiplier=multiplier))


def _linear_to_budget(base: Callable[..., NetSpec], reference: NetSpec, name: str, n: int,
                      start: float, **kw: Any) -> NetSpec:
    """``base`` with block widths ``start + i * inc / n``, ``inc`` solved so MACs
    match ``reference`` within 1% (the paper's equal-FLOPs comparison)."""
    target = complexity(reference).macs
    sol = solve_budget(lambda inc: base(name, widths=sch.linear(n, start, inc, span=n), **kw),
                       target, lo=0.0, hi=4096.0, metric="macs")
    meta = dict(schedule="linear", initial=start, final=round(sol.value, 3),
                solved_to=f"{reference.name} MACs {target}")
    return sol.spec.replace(meta=meta)


def _mobilenetv2_linear(name: str = "mobilenetv2_linear", num_classes: int = 1000, **kw: Any) -> NetSpec:
    # The partial shortcut (ReXNet's) keeps residuals when every block is wider than the last.
    ref = mobilenetv2_spec()
    return _linear_to_budget(mobilenetv2_spec, ref, name, len(ref.blocks), 16.0,
                             shortcut="partial", num_classes=num_classes, **kw)


def _rexnet_plain(name: str = "rexnet_plain_100", num_classes: int = 1000, **kw: Any) -> NetSpec:
    ref = mobilenetv1_spec()
    return _linear_to_budget(mobilenetv1_spec, ref, name, len(ref.blocks), 64.0,
                             num_classes=num_classes, **kw)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    make: Callable[..., NetSpec]
    family: str
    top1: float | None = None        # ImageNet top-1 reported by the paper / authors
    weights: dict | None = None      # published checkpoint: url, format, sha256 (optional)
    description: str = ""


REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> None:
    if info.name in REGISTRY:
        raise ValueError(f"model {info.name!r} is registered twice")
    REGISTRY[info.name] = info


_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
for _m, _top1 in ((0.9, 77.2), (1.0, 77.9), (1.3, 79.5), (1.5, 80.3), (2.0, 81.6), (2.2, None), (3.0, 82.8)):
    _name = f"rexnet_{round(_m * 100):03d}"
    _tag = f"{_name}.nav_in1k"
    register(ModelInfo(_name, partial(rexnet_spec, _name, multiplier=_m), "rexnet", _top1,
                       dict(url=_HF.format(_tag), format="timm") if _m in (1.0, 1.3, 1.5, 2.0, 3.0) else None,
                       f"ReXNetV1 x{_m}"))
for _m in (1.0, 1.3, 1.5, 2.0, 3.0):
    _name = f"rexnetr_{round(_m * 100):03d}"
    _div = 16 if _m == 3.0 else 8
    _w = dict(url=_HF.format(f"{_name}.sw_in12k_ft_in1k"), format="timm") if _m in (2.0, 3.0) else None
    register(ModelInfo(_name, partial(rexnet_spec, _name, multiplier=_m, ch_div=_div), "rexnetr",
                       None, _w, f"ReXNetV1 x{_m}, channels divisible by {_div} (timm's ReXNet-R)"))
for _m, _top1 in ((1.0, 76.2), (1.3, 77.8), (1.5, 78.6), (2.0, 80.2)):
    _name = f"rexnet_lite_{round(_m * 100):03d}"
    register(ModelInfo(_name, partial(rexnet_lite_spec, _name, multiplier=_m), "rexnet_lite", _top1,
                       None, f"ReXNet-lite x{_m}: no SE, ReLU6 only"))
register(ModelInfo("rexnet_plain_100", _rexnet_plain, "rexnet_plain", None, None,
                   "MobileNetV1 with linear widths solved to MobileNetV1's MACs"))
register(ModelInfo("mobilenetv1_100", mobilenetv1_spec, "mobilenetv1", 70.6, None,
                   "MobileNetV1 x1.0 (stage-wise)"))
register(ModelInfo("mobilenetv2_100", mobilenetv2_spec, "mobilenetv2", 72.0, None,
                   "MobileNetV2 x1.0 (stage-wise baseline)"))
register(ModelInfo("mobilenetv2_linear", _mobilenetv2_linear, "mobilenetv2", None, None,
                   "MobileNetV2 with block outputs re-assigned linearly at equal MACs (Section 4.4)"))


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(n for n in REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        close = fnmatch.filter(REGISTRY, f"*{name.split('_')[0]}*")[:6]
        raise ValueError(f"unknown model {name!r}; similar: {close or list_models()[:6]}. "
                         f"See `rexnet models` for all names.") from None


def model_spec(name: str, num_classes: int | None = None, stride_plan: str = "imagenet",
               **overrides: Any) -> NetSpec:
    """The NetSpec of a zoo model; ``overrides`` go to its spec function (e.g. ``dropout``).

    ``stride_plan='cifar'`` (or a name ending in ``_cifar``) gives the 32x32 variant.
    """
    if name.endswith("_cifar") and name not in REGISTRY:
        name, stride_plan = name[: -len("_cifar")], "cifar"
    if stride_plan not in ("imagenet", "cifar"):
        raise ValueError(f"stride_plan must be 'imagenet' or 'cifar', got {stride_plan!r}")
    info = model_info(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    try:
        spec = info.make(**overrides)
    except TypeError as e:
        raise ValueError(f"{name}: bad override: {e}") from None
    return cifar_stride_plan(spec) if stride_plan == "cifar" else spec


def cifar_stride_plan(spec: NetSpec) -> NetSpec:
    """The usual plan for 32x32 inputs: stem stride 1 and the first downsampling
    block at stride 1, so a 32x32 image ends at 4x4 instead of 1x1."""
    import dataclasses

    blocks = list(spec.blocks)
    for i, b in enumerate(blocks):
        if b.stride > 1:
            blocks[i] = dataclasses.replace(b, stride=1)
            break
    name = spec.name if spec.name.endswith("_cifar") else f"{spec.name}_cifar"
    return spec.replace(name=name, stem=dataclasses.replace(spec.stem, stride=1), blocks=tuple(blocks),
                        input_size=32, meta={**spec.meta, "stride_plan": "cifar"})
