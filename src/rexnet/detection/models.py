"""torchvision's detectors over our backbones (paper Sections 5.2 and 5.4).

The detector is torchvision's, unchanged: FasterRCNN / MaskRCNN with an FPN
(LastLevelMaxPool, torchvision's default anchors and RoI heads), RetinaNet (C3-C5 and
P6/P7 from P5, as ``retinanet_resnet50_fpn``) and SSD with SSDLiteHead and
DefaultBoxGenerator as ``ssdlite320_mobilenet_v3_large``.  Only the backbone is ours
(see :mod:`rexnet.detection.backbones`), and the input normalisation is the backbone's.

With the four stride-4..32 block outputs feeding a 256-channel FPN, torchvision's RoI
heads and 91 classes, the parameter counts are the authors' published ones (their
README): Faster R-CNN FPN with ReXNet x0.9 / x1.0 / x2.2 = 20.1M / 20.7M / 33.0M and
Mask R-CNN FPN = 22.8M / 23.3M / 35.6M (tests/test_detection_models.py holds them).
Their MACs (123.0B / 124.1B / 153.8B, labelled 1200x800) are what
:func:`detector_complexity` counts on a 1280x800 input (mmdetection's ``get_flops``
default shape): 122.95B / 124.01B / 153.75B, the box head on 1000 proposals and no
mask head; at 800x1200 (padded to 800x1216) the count is 117.5B / 118.5B / 146.8B.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssdlite import SSDLiteHead

from .backbones import SSDLITE_NORM, BackboneRef, fpn_backbone, ssdlite_backbone

__all__ = ["ARCHS", "create_detector", "detector_complexity"]

ARCHS = ("fasterrcnn_fpn", "maskrcnn_fpn", "retinanet_fpn", "ssdlite320")
# torchvision's ssdlite320_mobilenet_v3_large settings
SSDLITE_SIZE = (320, 320)
SSDLITE_DEFAULTS = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)


ANCHOR_SIZES = (32, 64, 128, 256, 512)   # torchvision's FPN anchor sizes (pixels, one per level)


def _scaled(size: float, scale: float) -> int:
    return max(4, round(size * scale))


def create_detector(arch: str, backbone: BackboneRef = "rexnet_100", *, num_classes: int = 91,
                    backbone_weights: str | os.PathLike | None = None, trainable_layers: int | None = None,
                    frozen_bn: bool | None = None, anchor_scale: float = 1.0, **kwargs: Any) -> nn.Module:
    """A torchvision detector ``arch`` (one of :data:`ARCHS`) on ``backbone``.

    ``backbone``: a zoo name, NetSpec, NetSpec file or our checkpoint, ``timm:NAME`` or
    ``torchvision:NAME``.  ``backbone_weights``: a classification checkpoint for it (for
    ours any format we load; the classifier is dropped).  ``frozen_bn`` defaults to True
    when weights are loaded (False for SSDLite, whose BatchNorm torchvision trains);
    ``trainable_layers`` (stages from the end, 0..5) defaults to 3 with weights and to
    all stages otherwise (all for SSDLite).  ``num_classes`` counts the background.
    ``anchor_scale`` multiplies the FPN detectors' anchor sizes (torchvision's 32-512 pixels,
    made for an 800-pixel shorter side): at a smaller input, e.g. ``min_size / 800``, the
    anchors keep matching the objects (SSDLite's anchors are relative to the image already).
    ``kwargs`` go to the torchvision model (``min_size``, ``max_size``,
    ``box_score_thresh``, ...; ``size`` for SSDLite, default 320x320).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown detector {arch!r}; choose one of {list(ARCHS)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be at least 2, got {num_classes!r}")
    if not (isinstance(anchor_scale, (int, float)) and anchor_scale > 0):
        raise ValueError(f"anchor_scale must be a positive number, got {anchor_scale!r}")
    options = dict(weights=backbone_weights, trainable_layers=trainable_layers, frozen_bn=frozen_bn)
    if arch == "ssdlite320":
        if anchor_scale != 1.0:
            raise ValueError("anchor_scale applies to the FPN detectors; SSDLite's anchors are relative to the image")
        bb = ssdlite_backbone(backbone, **options)
        size = tuple(kwargs.pop("size", SSDLITE_SIZE))
        anchors = DefaultBoxGenerator([[2, 3] for _ in bb.featmap_names], min_ratio=0.2, max_ratio=0.95)
        head = SSDLiteHead(bb.out_channels, anchors.num_anchors_per_location(), num_classes, SSDLITE_NORM)
        kwargs = {**SSDLITE_DEFAULTS, "image_mean": list(bb.mean), "image_std": list(bb.std), **kwargs}
        return SSD(bb.module, anchors, size, num_classes, head=head, **kwargs)
    if arch == "retinanet_fpn":
        bb = fpn_backbone(backbone, reductions=(8, 16, 32), extra_blocks="p6p7", **options)
        norm = {"image_mean": list(bb.mean), "image_std": list(bb.std)}
        if anchor_scale != 1.0 and "anchor_generator" not in kwargs:
            # torchvision's RetinaNet anchors (3 octave scales of 32-512, 3 ratios), scaled
            sizes = tuple(tuple(_scaled(x * 2 ** (k / 3), anchor_scale) for k in range(3)) for x in ANCHOR_SIZES)
            kwargs["anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        return RetinaNet(bb.module, num_classes, **{**norm, **kwargs})
    bb = fpn_backbone(backbone, reductions=(4, 8, 16, 32), extra_blocks="pool", **options)
    norm = {"image_mean": list(bb.mean), "image_std": list(bb.std)}
    if (len(bb.featmap_names) != 5 or anchor_scale != 1.0) and "rpn_anchor_generator" not in kwargs:
        scaled = tuple(_scaled(x, anchor_scale) for x in ANCHOR_SIZES)
        # one size per level (torchvision's default); with fewer levels than sizes (its MobileNet
        # FPN) every size on every level, as fasterrcnn_mobilenet_v3_large_fpn does
        sizes = (tuple((x,) for x in scaled) if len(bb.featmap_names) == 5
                 else (scaled,) * len(bb.featmap_names))
        kwargs["rpn_anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    cls = MaskRCNN if arch == "maskrcnn_fpn" else FasterRCNN
    return cls(bb.module, num_classes, **{**norm, **kwargs})


def detector_complexity(model: nn.Module, size: tuple[int, int] = (800, 1200)) -> dict:
    """Parameters and MACs of ``model`` on one image of ``size`` (height, width), counted.

    ``params``: every parameter of the module (a FrozenBatchNorm2d keeps its affine
    values as buffers, so a backbone with frozen BN counts without them, as torchvision's
    and detectron2's published figures do).  ``macs``: ``FlopCounterMode`` total / 2 for
    one eval-mode forward of a fixed random image (``rexnet.complexity.count_module``'s
    convention: convolutions, linear layers and matmuls; not RoIAlign, NMS, BN or
    activations), through the model's own transform (resize to ``min_size``/``max_size``,
    pad to a multiple of 32; ``input`` gives the padded size).  The box head runs on the
    proposals the RPN keeps (``rpn.post_nms_top_n``, 1000 by default) and the mask head
    on the detections above ``box_score_thresh``: none for untrained weights, so an
    untrained Mask R-CNN counts as its Faster R-CNN.  ``parts``: MACs per top-level
    child (backbone, rpn, roi_heads, head, ...).
    """
    from torch.utils.flop_counter import FlopCounterMode

    h, w = size
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch, _ = model.transform([image])
            with FlopCounterMode(display=False) as counter:
                model([image])
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    parts = {name[len(root) + 1:]: sum(ops.values()) // 2 for name, ops in counts.items()
             if name.startswith(root + ".") and name.count(".") == 1}
    return dict(params=params, macs=counter.get_total_flops() // 2, parts=parts,
                input=tuple(batch.tensors.shape[-2:]))
