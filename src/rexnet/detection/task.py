"""Object detection as a task of the one training loop, and its recipe.

``train(cfg, out, task=DetectionTask())`` trains a torchvision detector over one of
our backbones with everything classification has (DDP, exact resume, the NaN stop,
EMA, checkpoints, progress, JSON-lines metrics); the best epoch is the one with the
highest COCO box mAP on the validation images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..spec import NetSpec
from ..train.distributed import Dist
from ..train.recipe import Recipe
from ..train.task import Task, TaskData
from .data import CocoDetection, collate
from .metrics import encode_masks, evaluate_detections, gather_detections
from .recipe import RCNN_SAMPLING, DetectionRecipe, coco_paths

__all__ = ["DetectionTask"]

class DetectionTask(Task):
    """Train and evaluate a torchvision detector (:func:`rexnet.detection.create_detector`)."""

    metric = "val_bbox_mAP"
    accuracy = False

    @classmethod
    def scorer(cls, val_set: CocoDetection, masks: bool) -> "DetectionTask":
        """A task that only evaluates (``evaluate``) on ``val_set``: what ``detect eval`` needs."""
        task = cls()
        task.val_set, task.masks = val_set, masks
        return task

    def build_data(self, cfg: DetectionRecipe, dist: Dist) -> TaskData:
        masks = cfg.with_masks if cfg.with_masks is not None else cfg.arch.startswith("maskrcnn")
        images, ann = coco_paths(cfg.data, "train", None, cfg.train_ann)
        train = CocoDetection(images, ann, train=True, size=list(cfg.train_sizes) or None, with_masks=masks,
                              keep_empty=cfg.keep_empty, skip_bad=cfg.skip_bad_images, seed=cfg.seed)
        v_images, v_ann = coco_paths(cfg.val_data or cfg.data, "val", None, cfg.val_ann)
        if not (cfg.val_data or cfg.val_ann) and not v_ann.exists():
            v_images, v_ann = images, ann   # COCO128 has one split: evaluation on the training images
        val = CocoDetection(v_images, v_ann, train=False, with_masks=False, skip_bad=cfg.skip_bad_images)
        self.train_set, self.val_set, self.masks = train, val, masks
        num_classes = cfg.num_classes or max(train.categories) + 1   # raw COCO ids, 0 = background
        names = [train.categories.get(i, "") for i in range(num_classes)]
        self.names = names
        return TaskData(_subset(train, cfg.train_subset), _subset(val, cfg.val_subset), num_classes, names,
                        collate=collate, bad_images=len(train.bad) + len(val.bad),
                        # the training micro-batch: Mask R-CNN pastes 100 full-size float masks an image,
                        # so the classification loop's 64 images a batch grew its evaluation past 12 GB
                        eval_batch_size=max(1, cfg.batch_size // dist.world))

    def build_model(self, cfg: DetectionRecipe, num_classes: int, spec: NetSpec | None) -> nn.Module:
        from .models import create_detector

        kw = {} if cfg.arch == "ssdlite320" else dict(min_size=cfg.min_size, max_size=cfg.max_size)
        if cfg.anchor_scale != 1.0:   # part of the detector (checkpoints from before it have none)
            kw["anchor_scale"] = cfg.anchor_scale
        self.config = dict(arch=cfg.arch, backbone=spec.to_dict() if spec is not None else cfg.model,
                           num_classes=num_classes, **kw)
        model = create_detector(cfg.arch, spec if spec is not None else cfg.model, num_classes=num_classes,
                                backbone_weights=cfg.weights, trainable_layers=cfg.trainable_layers,
                                frozen_bn=cfg.frozen_bn, **kw, **self._sampling(cfg))
        # as built (the default depends on the weights), so a checkpoint rebuilds it exactly
        self.config["frozen_bn"] = any(type(m).__name__ == "FrozenBatchNorm2d" for m in model.modules())
        return model

    @staticmethod
    def _sampling(cfg: DetectionRecipe) -> dict[str, int]:
        """The R-CNN sample and proposal counts the recipe sets (cost knobs, not part of the
        identity: a checkpoint loaded by `detect eval/predict` uses torchvision's counts)."""
        if not cfg.arch.endswith("rcnn_fpn"):
            return {}
        return {k: getattr(cfg, k) for k in RCNN_SAMPLING if getattr(cfg, k) is not None}

    def identity(self, model: nn.Module) -> dict[str, Any]:
        return dict(self.config, classes=self.names,
                    name=f"{self.config['arch']}_{_backbone_name(self.config['backbone'])}")

    def set_epoch(self, epoch: int) -> None:
        self.train_set.set_epoch(epoch)

    def micro_batches(self, batch: Sequence[Sequence[Any]], k: int, device: torch.device,
                      cfg: Recipe) -> list[tuple[Any, Any, int]]:
        images = [im.to(device, non_blocking=True) for im in batch[0]]
        targets = [{key: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                    for key, v in t.items()} for t in batch[1]]
        n = len(images)
        if n % k:
            raise ValueError(f"a batch of {n} images does not split into {k} micro-batches")
        m = n // k
        return [(images[i:i + m], targets[i:i + m], m) for i in range(0, n, m)]

    def loss(self, net: nn.Module, inputs: list[torch.Tensor], targets: list[dict[str, Any]],
             cfg: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
        losses = net(inputs, targets)
        return sum(losses.values()), torch.zeros((), device=inputs[0].device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, device: torch.device, dist: Dist,
                 amp_dtype: torch.dtype | None, cfg: Recipe) -> dict[str, float]:
        was_training = model.training
        model.eval()
        detections = []
        for images, targets in loader:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                outputs = model([im.to(device) for im in images])
            for out, t in zip(outputs, targets):
                det = {k: v.float().cpu() for k, v in out.items() if k != "masks"}
                if self.masks and "masks" in out:     # RLE at once: full-size float masks would fill memory
                    det["masks"] = encode_masks(out["masks"])
                detections.append({"image_id": t["image_id"], **det})
        model.train(was_training)
        # every rank gets every rank's detections (one entry per image, empty ones too) and scores
        # them alike, so all ranks agree on the best epoch
        detections = gather_detections(detections, dist.world)
        types = ("bbox", "segm") if self.masks else ("bbox",)
        metrics = evaluate_detections(self.val_set.coco, detections, types,
                                      img_ids=[d["image_id"] for d in detections])
        # percent, as top-1 is; pycocotools' -1 (no object of that size) stays -1
        return {f"val_{k}": 100 * v if v >= 0 else -1.0 for k, v in metrics.items()}


def _subset(ds: CocoDetection, n: int | None):
    """The first ``n`` images (by id), or all."""
    if not n or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, range(n))


def _backbone_name(backbone: Any) -> str:
    if isinstance(backbone, dict):
        return str(backbone.get("name", "spec"))
    return Path(str(backbone)).stem.replace(":", "_")
