"""Detection backbones: our networks (and timm's / torchvision's for comparison) as feature maps.

A backbone is named as everywhere else (a zoo name, a NetSpec, a NetSpec file or one of
our checkpoints, resolved by :func:`rexnet.create_model`), or ``timm:NAME`` or
``torchvision:NAME``.  Two shapes come out:

- :func:`fpn_backbone`: the maps at the reductions asked for (4/8/16/32 for the R-CNNs,
  8/16/32 for RetinaNet), taken from ``feature_info`` (channels included, never hard-coded),
  under torchvision's ``FeaturePyramidNetwork`` (256 channels) with an extra block
  (``LastLevelMaxPool`` or ``LastLevelP6P7``).
- :func:`ssdlite_backbone`: torchvision's SSDLite layout (MobileNetV3 paper, Section 6.3):
  the expansion conv of the first stride-32 block (at stride 16) and the network's last
  map (the 1280-wide penultimate conv for ReXNet), then four ``_extra_block``s.

``torchvision:`` names go through torchvision's own builders (``resnet_fpn_backbone``,
``mobilenet_backbone``, SSDLite's ``_mobilenet_extractor``) with torchvision's choices.

``trainable_layers`` counts stages from the end: stage ``i`` ends at ``feature_info[i]``
(five for an ImageNet-plan network: stride 2, 4, 8, 16, 32), so 0 freezes the whole
backbone and 5 trains all of it, as torchvision's ``trainable_backbone_layers``.
``frozen_bn`` turns every BatchNorm of the backbone into a FrozenBatchNorm2d (its
affine values become buffers, so they no longer count as parameters).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from ..models.build import IMAGENET_MEAN, IMAGENET_STD
from ..spec import NetSpec

__all__ = ["DetectionBackbone", "BackboneRef", "FPN_CHANNELS", "TORCHVISION_BACKBONES", "fpn_backbone",
           "ssdlite_backbone", "stage_parameters", "SSDLITE_NORM"]

FPN_CHANNELS = 256
# torchvision's detection backbone builders take these classification networks
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                       "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")
TORCHVISION_MOBILENETS = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
SSDLITE_MOBILENETS = ("mobilenet_v3_large", "mobilenet_v3_small")  # torchvision's extractor reads V3 blocks
TORCHVISION_BACKBONES = TORCHVISION_RESNETS + TORCHVISION_MOBILENETS
# SSDLite's extra blocks and head (torchvision's ssdlite320_mobilenet_v3_large)
SSDLITE_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
SSDLITE_EXTRA = (512, 256, 256, 128)

BackboneRef = str | os.PathLike | NetSpec


@dataclass
class DetectionBackbone:
    """A module mapping an image batch to an OrderedDict of maps, and what the detector needs to know."""
    module: nn.Module
    out_channels: int | list[int]     # an int for an FPN, one per map for SSDLite
    featmap_names: list[str]          # the keys of its output, in order
    mean: tuple[float, ...]           # the normalisation the backbone was trained with
    std: tuple[float, ...]


class _Body(nn.Module):
    """A feature extractor whose output (list or dict) becomes an OrderedDict keyed '0', '1', ..."""

    def __init__(self, extractor: nn.Module, take: Sequence[int | str]) -> None:
        super().__init__()
        self.extractor = extractor
        self.take = list(take)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.extractor(x)
        return OrderedDict((str(i), maps[k]) for i, k in enumerate(self.take))


class _BodyWithFPN(nn.Module):
    """torchvision's BackboneWithFPN for a body that is not a chain of named children."""

    def __init__(self, body: nn.Module, in_channels: list[int], extra_blocks: ExtraFPNBlock) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, FPN_CHANNELS, extra_blocks=extra_blocks)
        self.out_channels = FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


class _SSDLiteFeatures(nn.Module):
    """Two backbone maps (stride 16, 32), then torchvision's four SSDLite extra blocks."""

    def __init__(self, body: nn.Module, in_channels: list[int], norm_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        from torchvision.models.detection.ssdlite import _extra_block, _normal_init

        self.body = body
        widths = [in_channels[-1], *SSDLITE_EXTRA]
        self.extra = nn.ModuleList(_extra_block(a, b, norm_layer) for a, b in zip(widths, widths[1:]))
        _normal_init(self.extra)
        self.out_channels = [*in_channels, *SSDLITE_EXTRA]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = list(self.body(x).values())
        x = maps[-1]
        for block in self.extra:
            x = block(x)
            maps.append(x)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


# -- helpers ------------------------------------------------------------------------------

def _split(backbone: BackboneRef) -> tuple[str, object]:
    """('rexnet' | 'timm' | 'torchvision', the name or reference)."""
    if isinstance(backbone, (str, os.PathLike)):
        text = os.fspath(backbone)
        for kind in ("timm", "torchvision"):
            if text.startswith(kind + ":"):
                name = text[len(kind) + 1:]
                if not name:
                    raise ValueError(f"backbone {text!r} names no model; e.g. {kind}:resnet50")
                return kind, name
    return "rexnet", backbone


def _check_trainable(trainable_layers: int, num_stages: int, name: str) -> None:
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"trainable_layers must be in 0..{num_stages} for {name} ({num_stages} stages; "
                         f"0 freezes the backbone, {num_stages} trains all of it), got {trainable_layers}")


def _norm_name(name: str) -> str:
    # timm's feature wrappers rename 'blocks.1' to 'blocks_1' or nest the net under 'model.'
    name = name.replace(".", "_")
    return name[len("model_"):] if name.startswith("model_") else name


def stage_parameters(module: nn.Module, stage_ends: Sequence[str]) -> list[list[nn.Parameter]]:
    """The parameters of ``module`` grouped by stage: stage ``i`` ends with module ``stage_ends[i]``.

    Modules are taken in registration order (the forward order for these networks);
    anything after the last stage end (ReXNet's penultimate conv) joins the last stage.
    """
    names = [(_norm_name(n), m) for n, m in module.named_modules() if n]
    ends = []
    for end in stage_ends:
        key = _norm_name(end)
        hits = [i for i, (n, _) in enumerate(names) if n == key or n.startswith(key + "_")]
        if not hits:
            raise ValueError(f"stage end {end!r} not found among the modules of {type(module).__name__}")
        ends.append(max(hits))
    stages: list[list[nn.Parameter]] = [[] for _ in stage_ends]
    for i, (_, m) in enumerate(names):
        stage = next((s for s, e in enumerate(ends) if i <= e), len(ends) - 1)
        stages[stage].extend(m.parameters(recurse=False))
    return stages


def _freeze_stages(stages: list[list[nn.Parameter]], trainable_layers: int) -> None:
    for params in stages[: len(stages) - trainable_layers]:
        for p in params:
            p.requires_grad_(False)


def _pick(reductions: Sequence[int], wanted: Sequence[int], name: str) -> list[int]:
    """Indices of the feature levels with the wanted reductions (the last level of each)."""
    picked = []
    for r in wanted:
        hits = [i for i, x in enumerate(reductions) if x == r]
        if not hits:
            raise ValueError(f"backbone {name} has no feature map at reduction {r} (its feature_info "
                             f"reductions: {list(reductions)}); a detection backbone needs "
                             f"{list(wanted)}. A CIFAR stride plan? Use the ImageNet plan.")
        picked.append(hits[-1])
    return picked


# -- our networks --------------------------------------------------------------------------

def _rexnet_net(backbone: BackboneRef, weights: str | os.PathLike | None, frozen_bn: bool) -> tuple[nn.Module, str]:
    from ..models.resolve import create_model

    # the classifier never matters here: reset_classifier keeps the backbone of any checkpoint
    net = create_model(backbone, weights=weights, reset_classifier=True)
    if frozen_bn:
        from timm.layers import freeze_batch_norm_2d
        net = freeze_batch_norm_2d(net)
    return net, net.spec.name


def _rexnet_body(net: nn.Module, return_nodes: dict[str, str], trainable_layers: int, name: str) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor

    _check_trainable(trainable_layers, len(net.feature_info), name)
    _freeze_stages(stage_parameters(net, [f["module"] for f in net.feature_info]), trainable_layers)
    # torch.fx keeps only what the maps need: the classifier (and, for the FPN, the
    # penultimate conv) is not part of the detector
    return create_feature_extractor(net, return_nodes=return_nodes)


# -- timm ---------------------------------------------------------------------------------

def _timm_features(name: str, weights: str | os.PathLike | None, frozen_bn: bool) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models(), e.g. timm:resnet50")
    kwargs = {}
    if weights is not None:
        if not os.path.isfile(weights):
            raise ValueError(f"backbone weights not found: {weights}")
        kwargs = dict(pretrained=True, pretrained_cfg_overlay=dict(file=os.fspath(weights)))
    model = timm.create_model(name, features_only=True, **kwargs)
    if frozen_bn:
        from timm.layers import freeze_batch_norm_2d
        model = freeze_batch_norm_2d(model)
    return model


def _timm_body(model: nn.Module, take: list[int], trainable_layers: int, name: str) -> nn.Module:
    info = model.feature_info
    _check_trainable(trainable_layers, len(info), name)
    _freeze_stages(stage_parameters(model, info.module_name()), trainable_layers)
    return _Body(model, take)


def _mean_std(cfg: dict | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = cfg or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


# -- torchvision --------------------------------------------------------------------------

def _torchvision_name(name: str) -> str:
    if name not in TORCHVISION_BACKBONES:
        raise ValueError(f"unknown torchvision backbone {name!r}; choose one of {list(TORCHVISION_BACKBONES)}")
    return name


def _load_torchvision(body: nn.Module, weights: str | os.PathLike, prefix: str = "") -> None:
    """A torchvision classification checkpoint into a backbone body (the classifier is dropped)."""
    from ..models.weights import read_state_dict

    sd = {k[len(prefix):]: v for k, v in read_state_dict(weights).items() if k.startswith(prefix)}
    try:
        result = body.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # wrong shapes: another network's file
        raise ValueError(f"{weights} does not fit the backbone: {e}") from None
    # FrozenBatchNorm2d has no num_batches_tracked; the classifier and the pooled tail are not in the body
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{weights} does not fit the backbone: missing {missing[:8]} "
                         f"({len(missing)} in all); is it a torchvision checkpoint of that network?")


def _torchvision_default_trainable(name: str, pretrained: bool) -> int:
    stages = 6 if name.startswith("mobilenet") else 5
    return 3 if pretrained else stages


# -- the two shapes -------------------------------------------------------------------------

def fpn_backbone(backbone: BackboneRef, *, reductions: Sequence[int] = (4, 8, 16, 32),
                 extra_blocks: str = "pool", weights: str | os.PathLike | None = None,
                 trainable_layers: int | None = None, frozen_bn: bool | None = None) -> DetectionBackbone:
    """``backbone``'s maps at ``reductions`` under a 256-channel FPN.

    ``extra_blocks``: ``"pool"`` (LastLevelMaxPool, the R-CNNs) or ``"p6p7"`` (RetinaNet:
    P6 and P7 from P5, torchvision's ``LastLevelP6P7(256, 256)``).  ``trainable_layers``
    defaults to 3 when weights are loaded and to all stages otherwise; ``frozen_bn``
    defaults to whether weights are loaded.
    """
    if extra_blocks not in ("pool", "p6p7"):
        raise ValueError(f"extra_blocks must be 'pool' or 'p6p7', got {extra_blocks!r}")
    make_extra = (LastLevelMaxPool if extra_blocks == "pool"
                  else partial(LastLevelP6P7, FPN_CHANNELS, FPN_CHANNELS))
    kind, ref = _split(backbone)
    pretrained = weights is not None or _is_our_checkpoint(kind, ref)
    frozen_bn = pretrained if frozen_bn is None else frozen_bn

    def trainable(num_stages: int) -> int:
        return trainable_layers if trainable_layers is not None else (3 if pretrained else num_stages)

    if kind == "torchvision":
        return _torchvision_fpn(_torchvision_name(ref), reductions, make_extra(), weights, trainable_layers,
                                frozen_bn, pretrained)
    if kind == "timm":
        model = _timm_features(ref, weights, frozen_bn)
        info = model.feature_info
        take = _pick(info.reduction(), reductions, f"timm:{ref}")
        body = _timm_body(model, take, trainable(len(info)), f"timm:{ref}")
        channels = [info.channels()[i] for i in take]
        mean, std = _mean_std(getattr(model, "pretrained_cfg", None))
    else:
        net, name = _rexnet_net(ref, weights, frozen_bn)
        fi = net.feature_info
        take = _pick([f["reduction"] for f in fi], reductions, name)
        body = _rexnet_body(net, {fi[i]["module"]: str(k) for k, i in enumerate(take)}, trainable(len(fi)), name)
        channels = [fi[i]["num_chs"] for i in take]
        mean, std = _mean_std(net.pretrained_cfg)
    module = _BodyWithFPN(body, channels, make_extra())
    names = [str(i) for i in range(len(channels))] + (["pool"] if extra_blocks == "pool" else ["p6", "p7"])
    return DetectionBackbone(module, FPN_CHANNELS, names, mean, std)


def _torchvision_fpn(name: str, reductions: Sequence[int], extra: ExtraFPNBlock,
                     weights: str | os.PathLike | None, trainable_layers: int | None, frozen_bn: bool,
                     pretrained: bool) -> DetectionBackbone:
    from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d  # torchvision's own rule
    trainable = _torchvision_default_trainable(name, pretrained) if trainable_layers is None else trainable_layers
    if name in TORCHVISION_RESNETS:
        _check_trainable(trainable, 5, f"torchvision:{name}")
        returned = [{4: 1, 8: 2, 16: 3, 32: 4}[r] for r in reductions]  # layer1..layer4
        module = resnet_fpn_backbone(backbone_name=name, weights=None, norm_layer=norm_layer,
                                     trainable_layers=trainable, returned_layers=returned, extra_blocks=extra)
        if weights is not None:
            _load_torchvision(module.body, weights)
        n_maps = len(returned)
    else:
        _check_trainable(trainable, 6, f"torchvision:{name}")
        # torchvision's mobilenet FPN: two stride-32 maps (its fasterrcnn_mobilenet_v3_large_fpn);
        # RetinaNet (which torchvision does not build on MobileNet) takes stride 8, 16, 32
        returned = [4, 5] if isinstance(extra, LastLevelMaxPool) else [2, 3, 5]
        module = mobilenet_backbone(backbone_name=name, weights=None, fpn=True, norm_layer=norm_layer,
                                    trainable_layers=trainable, returned_layers=returned, extra_blocks=extra)
        if weights is not None:
            _load_torchvision(module.body, weights, prefix="features.")
        n_maps = len(returned)
    names = [str(i) for i in range(n_maps)] + (["pool"] if isinstance(extra, LastLevelMaxPool) else ["p6", "p7"])
    return DetectionBackbone(module, FPN_CHANNELS, names, IMAGENET_MEAN, IMAGENET_STD)


def ssdlite_backbone(backbone: BackboneRef, *, weights: str | os.PathLike | None = None,
                     trainable_layers: int | None = None, frozen_bn: bool | None = None) -> DetectionBackbone:
    """``backbone`` as torchvision's SSDLite feature extractor (six maps).

    Our networks: the expansion conv of the first block of the last stage (stride 16) and
    the last map (the penultimate 1x1 conv when the network has one), as torchvision
    does for MobileNetV3; timm networks: their stride-16 and stride-32 maps.
    ``frozen_bn`` defaults to False (torchvision trains SSDLite's BatchNorm) and
    ``trainable_layers`` to all stages, as torchvision's ``ssdlite320_mobilenet_v3_large``.
    """
    kind, ref = _split(backbone)
    frozen_bn = bool(frozen_bn)
    if kind == "torchvision":
        return _torchvision_ssdlite(_torchvision_name(ref), weights, trainable_layers, frozen_bn)
    if kind == "timm":
        model = _timm_features(ref, weights, frozen_bn)
        info = model.feature_info
        take = _pick(info.reduction(), (16, 32), f"timm:{ref}")
        trainable = len(info) if trainable_layers is None else trainable_layers
        body = _timm_body(model, take, trainable, f"timm:{ref}")
        channels = [info.channels()[i] for i in take]
        mean, std = _mean_std(getattr(model, "pretrained_cfg", None))
    else:
        net, name = _rexnet_net(ref, weights, frozen_bn)
        fi = net.feature_info
        c4, c5 = _pick([f["reduction"] for f in fi], (16, 32), name)
        first = net.stage_ends[c4] + 1  # the block that downsamples to stride 32
        block = net.features[first]
        if getattr(block, "conv_exp", None) is not None:
            c4_node, c4_chs = f"features.{first}.conv_exp", block.conv_exp.out_channels
        else:  # no expansion: the stride-16 map itself
            c4_node, c4_chs = fi[c4]["module"], fi[c4]["num_chs"]
        c5_node = f"features.{len(net.features) - 1}"
        trainable = len(fi) if trainable_layers is None else trainable_layers
        body = _rexnet_body(net, {c4_node: "0", c5_node: "1"}, trainable, name)
        channels = [c4_chs, net.num_features]
        mean, std = _mean_std(net.pretrained_cfg)
    module = _SSDLiteFeatures(body, channels, SSDLITE_NORM)
    return DetectionBackbone(module, module.out_channels, [str(i) for i in range(6)], mean, std)


def _torchvision_ssdlite(name: str, weights: str | os.PathLike | None, trainable_layers: int | None,
                         frozen_bn: bool) -> DetectionBackbone:
    from torchvision.models import get_model
    from torchvision.models.detection.ssdlite import _mobilenet_extractor, _normal_init
    from torchvision.ops import FrozenBatchNorm2d

    if name not in SSDLITE_MOBILENETS:
        raise ValueError(f"SSDLite takes a mobile backbone: one of ours, a timm: model or one of "
                         f"{['torchvision:' + n for n in SSDLITE_MOBILENETS]}, got torchvision:{name}")
    norm_layer = partial(FrozenBatchNorm2d, eps=0.001) if frozen_bn else SSDLITE_NORM
    trainable = 6 if trainable_layers is None else trainable_layers
    _check_trainable(trainable, 6, f"torchvision:{name}")
    # torchvision's recipe: the reduced tail only without ImageNet weights (MobileNetV3 paper, Table 6)
    model = get_model(name, weights=None, norm_layer=norm_layer, reduced_tail=weights is None)
    if weights is None:
        _normal_init(model)
    else:
        _load_torchvision(model.features, weights, prefix="features.")
    module = _mobilenet_extractor(model, trainable, SSDLITE_NORM)
    c4 = module.features[0][-1].out_channels  # the C4 expansion conv
    c5 = module.features[1][-1].out_channels
    # torchvision rescales to [-1, 1] for its MobileNets
    return DetectionBackbone(module, [c4, c5, *SSDLITE_EXTRA], [str(i) for i in range(6)],
                             (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _is_our_checkpoint(kind: str, ref: object) -> bool:
    if kind != "rexnet":
        return False
    from ..models.resolve import is_checkpoint
    return is_checkpoint(ref)
