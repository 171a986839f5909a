"""Evaluation: loss / top-1 / top-5 over a loader (summed across processes), and a
checkpoint in any supported format scored on a dataset's validation split."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from timm.utils import accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..models.resolve import create_model, resolve_spec
from ..models.weights import convert_state_dict, detect_format, read_spec, read_state_dict
from .checkpoint import load_checkpoint
from .data import IndexedDataset, balanced_subset, build_dataset, build_transforms
from .distributed import Dist, setup_distributed

__all__ = ["evaluate", "make_eval_loader", "evaluate_checkpoint"]

# classifier weight keys of the three checkpoint layouts (ours/timm, the authors' lite, the authors')
_CLASSIFIER_KEYS = ("head.fc.weight", "output.4.weight", "output.1.weight")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, dist: Dist | None = None,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, float]:
    """Loss, top-1 and top-5 (percent) over the loader, summed across processes.

    Sums stay on the device until the end (one host sync per evaluation).
    """
    dist = dist or Dist(device=device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits, n
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x).float()
        top1, top5 = accuracy(logits, y, topk=(1, min(5, logits.shape[1])))  # percent of the batch
        n = len(y)
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                             (top1 * n / 100).double().round(), (top5 * n / 100).double().round(),
                             torch.tensor(float(n), dtype=torch.float64, device=device)])
    model.train(was_training)
    loss_sum, top1, top5, n = dist.sum(sums.tolist())
    if n == 0:
        raise ValueError("evaluation set is empty")
    return {"loss": loss_sum / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "n": int(n)}


def make_eval_loader(ds: Dataset, batch_size: int, dist: Dist, workers: int = 0,
                     collate: Callable | None = None, worker_init_fn: Callable | None = None) -> DataLoader:
    """Each process evaluates a contiguous shard."""
    n = len(ds)
    lo, hi = n * dist.rank // dist.world, n * (dist.rank + 1) // dist.world
    return DataLoader(Subset(ds, range(lo, hi)), batch_size=batch_size, shuffle=False,
                      num_workers=workers, pin_memory=dist.device.type == "cuda", collate_fn=collate,
                      worker_init_fn=worker_init_fn)


def evaluate_checkpoint(model: str | None, weights: str | os.PathLike, data: str, *,
                        input_size: int | None = None, transform: str | None = None,
                        stride_plan: str = "auto", batch_size: int = 100, data_root: str | None = None,
                        download: bool = False, skip_bad: bool = False, num_classes: int | None = None,
                        limit: int | None = None, ema: bool = False, device: str = "auto") -> dict[str, Any]:
    """Top-1/top-5 of a checkpoint in any supported format on a dataset's validation split.

    A checkpoint written by this project carries its NetSpec: then ``model`` may
    be omitted and the input size and stride plan are the spec's.  Otherwise
    ``model`` names the network (zoo name or spec file) and ``input_size``
    (default 224) decides the stride plan.  The transform is ``cifar`` for inputs
    of at most 32 px, else ``imagenet``, unless ``transform`` says otherwise.
    """
    path = Path(weights)
    if ema:
        ck = load_checkpoint(path)
        if "ema" not in ck:
            raise ValueError(f"{path} holds no EMA weights (train with --ema true)")
        sd = ck["ema"]
    else:
        sd = read_state_dict(path)
    if num_classes is None:
        key = next((k for k in _CLASSIFIER_KEYS if k in sd), None)
        if key is None:
            raise ValueError(f"cannot tell the number of classes from {path}; pass --num-classes")
        num_classes = int(sd[key].shape[0])
    saved = read_spec(path)
    if saved is not None and model in (None, saved.name, saved.name.removesuffix("_cifar")):
        spec = resolve_spec(saved, num_classes=num_classes)  # the network as trained
    elif model is None:
        raise ValueError(f"{path} carries no network description; pass --model NAME")
    else:
        spec = resolve_spec(model, num_classes=num_classes, input_size=input_size or 224, stride_plan=stride_plan)
    size = input_size or spec.input_size
    kind = transform or ("cifar" if size <= 32 else "imagenet")
    fmt = detect_format(sd)
    net = create_model(spec, weights=convert_state_dict(sd, spec, fmt))
    dist = setup_distributed(device)
    net.to(dist.device).eval()
    ds = IndexedDataset(balanced_subset(build_dataset(data, "val", None, data_root, download, skip_bad), limit),
                        build_transforms(kind, size, False))
    loader = make_eval_loader(ds, batch_size, dist)
    t0 = time.time()
    res = evaluate(net, loader, dist.device, dist)
    elapsed = time.time() - t0
    return {"model": spec.name, "weights": str(path), "format": fmt, "data": data, "input_size": size,
            "transform": kind, **res, "images_per_s": res["n"] / max(elapsed, 1e-9), "time_s": elapsed}
