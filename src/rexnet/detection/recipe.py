"""The detection recipe: a classification :class:`Recipe` plus what a detector needs (no torch import)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train.recipe import Recipe, load_recipe

__all__ = ["DetectionRecipe", "DETECTION_RECIPES", "CLASSIFICATION_ONLY", "load_detection_recipe", "coco_paths"]

DETECTION_RECIPES = ("coco", "coco128")
RCNN_SAMPLING = ("rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "box_batch_size_per_image",
                 "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test")


@dataclass
class DetectionRecipe(Recipe):
    """A classification recipe plus what a detector needs.  ``model`` is the backbone
    (zoo name, NetSpec file, our checkpoint, ``timm:NAME`` or ``torchvision:NAME``),
    ``weights`` its checkpoint (any format we load), ``data`` a COCO-format root
    (``train2017/``, ``val2017/``, ``annotations/instances_*.json``)."""
    arch: str = "fasterrcnn_fpn"
    train_ann: str | None = None       # default: DATA/annotations/instances_train2017.json
    val_data: str | None = None        # default: DATA/val2017, else the training images (said in the log)
    val_ann: str | None = None
    min_size: int = 800                # the detector's resize (shorter side), as torchvision's models take it
    max_size: int = 1333
    anchor_scale: float = 1.0          # FPN detectors: multiply the anchor sizes (32-512 px), e.g. min_size/800
    train_sizes: tuple[int, ...] = ()  # multi-scale training: shorter sides to draw from (empty: none)
    trainable_layers: int | None = None   # backbone stages that train (None: the detector's default)
    frozen_bn: bool | None = None      # None: frozen when backbone weights are given
    keep_empty: bool = False           # keep training images without annotations
    with_masks: bool | None = None     # None: when the arch predicts masks
    # R-CNN training samples (torchvision's defaults when None: 2000 / 2000 / 512); smaller
    # halves a CPU step at small inputs, where RoIAlign's backward and the box head dominate
    rpn_pre_nms_top_n_train: int | None = None
    rpn_post_nms_top_n_train: int | None = None
    box_batch_size_per_image: int | None = None
    # R-CNN proposals at evaluation (torchvision's 1000 / 1000 when None): the box head runs on
    # every proposal, so on a CPU it costs more per image than a training step does
    rpn_pre_nms_top_n_test: int | None = None
    rpn_post_nms_top_n_test: int | None = None

    def validate(self) -> "DetectionRecipe":
        super().validate()
        if self.min_size < 32 or self.max_size < self.min_size:
            raise ValueError(f"recipe: need 32 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not self.anchor_scale > 0:
            raise ValueError(f"recipe: anchor_scale must be positive, got {self.anchor_scale}")
        if self.anchor_scale != 1.0 and self.arch == "ssdlite320":
            raise ValueError("recipe: anchor_scale applies to the FPN detectors; SSDLite's anchors are relative "
                             "to the image (leave it at 1)")
        for name in RCNN_SAMPLING:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"recipe: {name} must be a positive count (or unset), got {getattr(self, name)}")
        return self


def load_detection_recipe(name_or_path: str = "coco128", overrides: dict[str, Any] | None = None) -> DetectionRecipe:
    return load_recipe(name_or_path, overrides, cls=DetectionRecipe, presets=DETECTION_RECIPES)


def coco_paths(root: str | Path, split: str, images: str | None = None, ann: str | None = None) -> tuple[Path, Path]:
    """(image folder, instances JSON) of a COCO-layout root; explicit paths win."""
    root = Path(root)
    return (Path(images) if images else root / f"{split}2017",
            Path(ann) if ann else root / "annotations" / f"instances_{split}2017.json")

# Recipe fields a detector does not read (its own transform resizes; no label smoothing or dropout).
CLASSIFICATION_ONLY = ("transform", "input_size", "auto_augment", "color_jitter", "re_prob", "re_mode", "crop_pct",
                       "interpolation", "stride_plan", "freeze_backbone", "reset_classifier", "label_smoothing",
                       "dropout", "drop_path", "cache_images")
