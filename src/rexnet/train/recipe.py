"""Training recipes: one dataclass of every setting, YAML presets, command-line overrides."""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ..flags import parse_value
from ..io import write_text

__all__ = ["Recipe", "load_recipe", "recipe_values", "RECIPES", "save_config"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
RECIPES = ("imagenet", "cifar", "finegrained")


@dataclass
class Recipe:
    # what to train
    model: str = "rexnet_100"          # zoo name or NetSpec file (.json/.yaml)
    data: str = "cifar10"              # dataset name or path to an image tree / zip
    data_root: str | None = None       # where named datasets live (default $REXNET_DATA or .data)
    download: bool = False             # fetch a named dataset with torchvision when missing (needs internet)
    stride_plan: str = "auto"          # auto (cifar when input_size <= 32) | imagenet | cifar
    num_classes: int | None = None     # default: from the data
    weights: str | None = None         # start from a checkpoint (ours, timm's, the authors')
    reset_classifier: bool = True      # fine-tuning: a new classifier when classes differ
    freeze_backbone: bool = False      # train only the classifier
    zero_init_last: bool = False       # start every residual block as its shortcut (last BN's scale 0)
    # recipe
    recipe: str = "cifar"              # the preset these values start from: imagenet | cifar | finegrained
    transform: str = "cifar"           # augmentation: imagenet (timm's) | cifar (pad-and-crop, flip)
    input_size: int = 32               # image side in pixels, for training and evaluation
    epochs: int = 30                   # training epochs
    batch_size: int = 128              # global, over all processes
    accum_steps: int = 1               # micro-batches per optimiser step (same global batch)
    lr: float = 0.1                    # at lr_base_batch; scaled linearly with batch_size
    lr_base_batch: int = 128           # the batch size --lr is given for
    warmup_epochs: float = 1.0         # linear warm-up, then cosine decay (fractions of an epoch allowed)
    min_lr: float = 0.0                # the learning rate the cosine decay ends at
    momentum: float = 0.9              # SGD momentum
    nesterov: bool = True              # Nesterov momentum
    weight_decay: float = 5e-4         # not applied to BN parameters and biases
    clip_grad_norm: float = 0.0        # clip the gradients' global L2 norm to this before each step (0 = off)
    label_smoothing: float = 0.1       # cross-entropy label smoothing, in [0, 1)
    dropout: float = 0.2               # dropout before the classifier
    drop_path: float = 0.0             # stochastic-depth rate
    auto_augment: str | None = None    # timm RandAugment policy, e.g. rand-m9-mstd0.5 (imagenet transform; none = off)
    color_jitter: float = 0.0          # colour-jitter strength (imagenet transform)
    re_prob: float = 0.0               # random-erasing probability (imagenet transform)
    re_mode: str = "pixel"             # random-erasing fill: pixel | rand | const
    crop_pct: float = 0.875            # evaluation: resize to input_size / crop_pct, then centre-crop
    interpolation: str = "bicubic"     # resize interpolation: bicubic | bilinear
    amp: str = "auto"                  # auto (bf16 on GPU, off on CPU) | off | fp16 | bf16
    ema: bool = False                  # keep an EMA of the weights; the EMA is evaluated and saved
    ema_decay: float = 0.9999          # EMA decay per optimiser step
    sync_bn: bool = False              # synchronise BatchNorm statistics across processes (torchrun)
    channels_last: bool = False        # NHWC memory format
    # data loading
    workers: int | None = 0            # DataLoader processes per process; auto = min(8, cores - 1)
    cache_images: bool = False         # decode once and keep in memory (small datasets)
    skip_bad_images: bool = False      # skip and count unreadable images instead of stopping
    train_subset: int | None = None    # exactly N training samples, classes taking turns (none or 0 = all)
    val_subset: int | None = None      # exactly N validation samples, classes taking turns (none or 0 = all)
    holdout: int = 0                   # validate on N training images held out (class-balanced), never on the
                                       # test split, which training then does not read (0 = validate on the test split)
    holdout_seed: int = 0              # the held-out images' draw (fixed across seeds, so paired runs share it)
    # run control
    seed: int = 0                      # seed of the weights, the sampling order and the augmentation
    early_stop_patience: int = 0       # epochs without a better val top-1 before stopping (0 = off)
    ckpt_every_steps: int = 0          # also checkpoint inside an epoch (0 = at epoch ends only)
    stop_after_steps: int = 0          # end the run (resumably) after this many optimiser steps
    tensorboard: bool = False          # also log to OUT/tb (needs the tensorboard package)
    progress: bool = True              # progress bar on stderr
    device: str = "auto"               # auto | cpu | cuda

    def validate(self) -> "Recipe":
        def bad(msg: str) -> None:
            raise ValueError(f"recipe: {msg}")
        if self.epochs < 1:
            bad(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.accum_steps < 1 or self.batch_size % self.accum_steps:
            bad(f"batch_size ({self.batch_size}) must be a positive multiple of accum_steps ({self.accum_steps})")
        if self.lr <= 0 or self.lr_base_batch < 1:
            bad(f"lr must be > 0 and lr_base_batch >= 1, got {self.lr}, {self.lr_base_batch}")
        if self.holdout < 0:
            bad(f"holdout must be >= 0 (0 = validate on the test split), got {self.holdout}")
        if self.clip_grad_norm < 0:
            bad(f"clip_grad_norm must be >= 0 (0 = off), got {self.clip_grad_norm}")
        if not 0 <= self.label_smoothing < 1:
            bad(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.stride_plan not in ("auto", "imagenet", "cifar"):
            bad(f"stride_plan must be auto, imagenet or cifar, got {self.stride_plan!r}")
        if self.amp not in ("auto", "off", "fp16", "bf16"):
            bad(f"amp must be auto, off, fp16 or bf16, got {self.amp!r}")
        if self.transform not in ("imagenet", "cifar"):
            bad(f"transform must be imagenet or cifar, got {self.transform!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            bad(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.workers is not None and self.workers < 0:
            bad(f"workers must be >= 0 or auto, got {self.workers}")
        return self

    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_base_batch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_value(name: str, value: Any, cls: type = Recipe) -> Any:
    """A YAML or command-line value for field ``name``, parsed as its ``--flag`` would be."""
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ValueError(f"unknown recipe field {name!r}; known: {', '.join(f.name for f in fields(cls))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # YAML's `warmup_epochs: 1` is 1.0, as `--warmup-epochs 1` is
    try:
        return parse_value(hints[name], value, name)
    except ValueError:
        kind = next((t for t in typing.get_args(hints[name]) if t is not type(None)), hints[name])
        expected = "true/false" if kind is bool else f"a {kind.__name__}"
        raise ValueError(f"{name} takes {expected}, got {value!r}") from None


def load_recipe(name_or_path: str = "cifar", overrides: dict[str, Any] | None = None, *,
                cls: type = Recipe, presets: tuple[str, ...] = RECIPES) -> Recipe:
    """A preset (one of ``presets``, from ``configs/``) or a YAML file, then ``overrides`` on top.
    ``cls`` is the recipe dataclass (a task may extend :class:`Recipe` with its own fields)."""
    path = CONFIG_DIR / f"{name_or_path}.yaml" if name_or_path in presets else Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown recipe {name_or_path!r}: use one of {presets} or a YAML file path")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe file must be a mapping of field: value")
    values.update(overrides or {})
    return cls(**{k: _field_value(k, v, cls) for k, v in values.items()}).validate()


def recipe_values(name: str = "cifar") -> dict[str, Any]:
    """The values a preset sets, as its YAML file gives them: what a protocol records, so a
    store made under one version of a recipe refuses to be extended under another."""
    path = CONFIG_DIR / f"{name}.yaml"
    if name not in RECIPES or not path.is_file():
        raise ValueError(f"unknown recipe {name!r}: use one of {RECIPES}")
    return dict(yaml.safe_load(path.read_text()) or {})


def save_config(recipe: Recipe, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    return write_text(path, yaml.safe_dump({**recipe.to_dict(), **(extra or {})}, sort_keys=False))
