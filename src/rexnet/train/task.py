"""What a training run trains: the task's data, model, loss and evaluation.

The loop (:mod:`rexnet.train.loop`) owns everything a task does not: distribution,
the optimiser and learning-rate schedule, AMP, EMA, checkpoints, exact resume, the
NaN stop, progress and metrics.  A task supplies the rest; image classification is
the default, object detection (:mod:`rexnet.detection.task`) is another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..models.resolve import create_model
from ..models.weights import save_weights
from ..spec import NetSpec
from .checkpoint import save_checkpoint
from .data import IndexedDataset, SeededTransform, balanced_subset, build_dataset, build_transforms, holdout_split
from .distributed import Dist
from .evaluate import evaluate
from .recipe import Recipe

__all__ = ["TaskData", "Task", "ClassificationTask"]


@dataclass
class TaskData:
    train: Dataset
    val: Dataset
    num_classes: int
    classes: list[str] = field(default_factory=list)
    collate: Callable | None = None     # None: the default collate
    bad_images: int = 0                 # unreadable files skipped (--skip-bad-images)
    eval_batch_size: int | None = None  # per rank; None: max(the training batch per rank, 64)


class Task:
    """The interface the loop calls.  ``metric`` names the validation metric (higher is
    better) that picks ``best.pt``; ``accuracy`` says whether steps count correct answers."""

    metric = "val_top1"
    accuracy = True

    def build_data(self, cfg: Recipe, dist: Dist) -> TaskData:
        raise NotImplementedError

    def build_model(self, cfg: Recipe, num_classes: int, spec: NetSpec | None) -> nn.Module:
        raise NotImplementedError

    def identity(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint records of the network; a resume must find the same."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Seed the epoch's augmentation (per sample, so resumes and workers agree)."""

    def train_mode(self, model: nn.Module, cfg: Recipe) -> None:
        model.train()

    def micro_batches(self, batch: Any, k: int, device: torch.device, cfg: Recipe) -> list[tuple[Any, Any, int]]:
        """The batch on the device, cut into ``k`` micro-batches of (inputs, targets, size)."""
        raise NotImplementedError

    def loss(self, net: nn.Module, inputs: Any, targets: Any, cfg: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, number correct) of one micro-batch; the count is 0 where it means nothing."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader, device: torch.device, dist: Dist,
                 amp_dtype: torch.dtype | None, cfg: Recipe) -> dict[str, float]:
        """Validation metrics, keys starting with ``val_``; includes ``self.metric``."""
        raise NotImplementedError

    def save_best(self, model: nn.Module, identity: dict[str, Any], out: Path, epoch: int, value: float) -> None:
        save_checkpoint({"model": model.state_dict(), "spec": identity, "epoch": epoch, self.metric: value},
                        out / "best.pt")


def zero_init_last_bn(model: nn.Module) -> int:
    """Set the scale of the last BatchNorm of every block with a shortcut to 0, so each such
    block starts as its shortcut (Goyal et al.'s large-batch stabiliser); returns how many."""
    n = 0
    for block in model.modules():
        if getattr(block, "use_shortcut", False) and hasattr(block, "conv_pwl"):
            nn.init.zeros_(block.conv_pwl.bn.weight)
            n += 1
    return n


class ClassificationTask(Task):
    """Image classification: any dataset :func:`build_dataset` reads, any model the resolver names."""

    def build_data(self, cfg: Recipe, dist: Dist) -> TaskData:
        train_tf = build_transforms(cfg.transform, cfg.input_size, True, auto_augment=cfg.auto_augment,
                                    color_jitter=cfg.color_jitter, re_prob=cfg.re_prob, re_mode=cfg.re_mode,
                                    crop_pct=cfg.crop_pct, interpolation=cfg.interpolation)
        val_tf = build_transforms(cfg.transform, cfg.input_size, False, crop_pct=cfg.crop_pct,
                                  interpolation=cfg.interpolation)
        if cfg.download and dist.enabled and not dist.is_main:
            dist.barrier()  # rank 0 downloads first
        full_train = build_dataset(cfg.data, "train", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
        if cfg.holdout:   # selection on training images: the test split is not even opened
            base_train, base_val = holdout_split(full_train, cfg.holdout, cfg.holdout_seed)
            opened = [full_train]
        else:
            base_train = full_train
            base_val = build_dataset(cfg.data, "val", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
            opened = [full_train, base_val]
        if cfg.download and dist.enabled and dist.is_main:
            dist.barrier()
        classes = list(getattr(base_train, "classes", []) or [])
        num_classes = cfg.num_classes or len(classes)
        if num_classes < 2:
            raise ValueError(f"{cfg.data}: found {num_classes} classes; a classifier needs at least 2")
        self.seeded = SeededTransform(train_tf, cfg.seed)
        return TaskData(IndexedDataset(balanced_subset(base_train, cfg.train_subset), self.seeded,
                                       cache=cfg.cache_images),
                        IndexedDataset(balanced_subset(base_val, cfg.val_subset), val_tf, cache=cfg.cache_images),
                        num_classes, classes,
                        bad_images=sum(len(getattr(ds, "bad_files", [])) for ds in opened))

    def build_model(self, cfg: Recipe, num_classes: int, spec: NetSpec | None) -> nn.Module:
        model = create_model(spec if spec is not None else cfg.model, num_classes=num_classes,
                             input_size=cfg.input_size, stride_plan=cfg.stride_plan, drop_rate=cfg.dropout,
                             drop_path_rate=cfg.drop_path, weights=cfg.weights,
                             reset_classifier=cfg.reset_classifier)
        if cfg.freeze_backbone:
            for name, p in model.named_parameters():
                p.requires_grad = name.startswith("head.")
        if cfg.zero_init_last and not cfg.weights:
            zero_init_last_bn(model)
        return model

    def identity(self, model: nn.Module) -> dict[str, Any]:
        return model.spec.to_dict()

    def set_epoch(self, epoch: int) -> None:
        self.seeded.epoch = epoch

    def train_mode(self, model: nn.Module, cfg: Recipe) -> None:
        model.train()
        if cfg.freeze_backbone:  # a frozen backbone keeps its BN statistics too
            core = model.module if hasattr(model, "module") else model
            core.stem.eval()
            core.features.eval()

    def micro_batches(self, batch: Sequence[torch.Tensor], k: int, device: torch.device,
                      cfg: Recipe) -> list[tuple[Any, Any, int]]:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return [(xc, yc, len(yc)) for xc, yc in zip(x.chunk(k), y.chunk(k))]

    def loss(self, net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
             cfg: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
        logits = net(inputs)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
        return loss, (logits.argmax(1) == targets).sum()

    def evaluate(self, model: nn.Module, loader, device: torch.device, dist: Dist,
                 amp_dtype: torch.dtype | None, cfg: Recipe) -> dict[str, float]:
        r = evaluate(model, loader, device, dist, amp_dtype, cfg.channels_last)
        return {"val_loss": r["loss"], "val_top1": r["top1"], "val_top5": r["top5"]}

    def save_best(self, model: nn.Module, identity: dict[str, Any], out: Path, epoch: int, value: float) -> None:
        super().save_best(model, identity, out, epoch, value)
        if hasattr(model, "spec"):  # a Net (an EMA copy is one too)
            save_weights(model, out / "best.safetensors")
