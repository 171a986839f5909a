"""Train and evaluate loops: single process or DDP (torchrun, one or many nodes),
AMP on GPU, EMA, JSON-lines metrics, atomic resumable checkpoints.

Determinism: the data order of epoch ``e`` is a permutation seeded by
``(seed, e)``; each global batch is cut into contiguous per-rank (or
per-micro-batch) chunks; augmentation is seeded per sample; model randomness is
reseeded per epoch and saved in mid-epoch checkpoints.  So a run killed at any
moment and resumed gives the same metrics as one that was never stopped, and a
2-process DDP run equals a 1-process run with ``accum_steps=2`` (BN buffers and
dropout masks aside).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..models.build import Net
from ..models.weights import load_weights, save_weights
from ..report import write_json
from ..spec import NetSpec
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import IndexedDataset, SeededTransform, balanced_subset, build_dataset, build_transforms
from .recipe import Recipe, save_config

log = logging.getLogger("rexnet.train")

__all__ = ["TrainingDiverged", "GlobalBatchSampler", "train", "evaluate", "build_model_for",
           "make_eval_loader", "Dist"]

# Fields that may change when a run is resumed; any other change is refused.
RESUMABLE_CHANGES = {"epochs", "stop_after_steps", "ckpt_every_steps", "progress", "workers", "lr",
                     "early_stop_patience", "tensorboard", "download", "data_root"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        tdist.all_reduce(t)
        return t.tolist()


def setup_distributed(device_pref: str = "auto") -> Dist:
    """Read torchrun's environment; NCCL on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but no CUDA device is available; use --device cpu")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, device)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of each global batch.

    Epoch ``e`` permutes ``range(n)`` with a generator seeded by ``(seed, e)``;
    global batch ``b`` is ``perm[b*G:(b+1)*G]`` and rank ``r`` takes its ``r``-th
    contiguous chunk.  Unlike ``DistributedSampler`` this can start mid-epoch
    (``start``) and makes the split across ranks the same as a split into
    micro-batches in one process.
    """

    def __init__(self, n: int, global_batch: int, world: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} must divide evenly over {world} processes")
        if n < global_batch and drop_last:
            raise ValueError(f"{n} training samples are fewer than one batch of {global_batch}; "
                             f"lower batch_size")
        self.n, self.global_batch, self.world, self.rank = n, global_batch, world, rank
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def num_batches(self) -> int:
        return self.n // self.global_batch if self.drop_last else math.ceil(self.n / self.global_batch)

    def __len__(self) -> int:
        return self.num_batches() - self.start

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        local = self.global_batch // self.world
        for b in range(self.start, self.num_batches()):
            chunk = perm[b * self.global_batch:(b + 1) * self.global_batch]
            yield chunk[self.rank * local:(self.rank + 1) * local]


# ---------------------------------------------------------------------------- building blocks
def build_model_for(model: str, num_classes: int, stride_plan: str, input_size: int,
                    dropout: float | None = None, drop_path: float = 0.0) -> Net:
    """A zoo name or NetSpec file -> module, for ``num_classes`` and the stride plan."""
    from ..models.zoo import cifar_stride_plan, model_spec

    # auto: 32x32-class inputs get the CIFAR plan; anything larger keeps the ImageNet strides
    plan = stride_plan if stride_plan != "auto" else ("cifar" if input_size <= 32 else "imagenet")
    if model.endswith((".json", ".yaml", ".yml")):
        spec = NetSpec.load(model).with_head(num_classes=num_classes)
        # a spec designed for small inputs (input_size <= 32) keeps its own strides under "auto"
        designed_small = stride_plan == "auto" and spec.input_size <= 32
        if plan == "cifar" and spec.stem.stride > 1 and not designed_small:
            spec = cifar_stride_plan(spec)
    else:
        spec = model_spec(model, num_classes=num_classes, stride_plan=plan)
    return Net(spec, drop_rate=dropout, drop_path_rate=drop_path)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # BN weights/biases and all biases
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(total: int, warmup: int, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def _accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> tuple[int, int]:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top.eq(y[:, None])
    return int(hit[:, 0].sum()), int(hit.any(dim=1).sum())


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, dist: Dist | None = None,
             amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, float]:
    """Loss, top-1 and top-5 (percent) over the loader, summed across processes."""
    dist = dist or Dist(device=device)
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        c1, c5 = _accuracy(logits, y, 5)
        top1, top5, n = top1 + c1, top5 + c5, n + len(y)
    model.train(was_training)
    loss_sum, top1, top5, n = dist.sum([loss_sum, top1, top5, n])
    if n == 0:
        raise ValueError("evaluation set is empty")
    return {"loss": loss_sum / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "n": int(n)}


def make_eval_loader(ds: Dataset, batch_size: int, dist: Dist, workers: int = 0) -> DataLoader:
    """Each process evaluates a contiguous shard."""
    n = len(ds)
    lo, hi = n * dist.rank // dist.world, n * (dist.rank + 1) // dist.world
    return DataLoader(Subset(ds, range(lo, hi)), batch_size=batch_size, shuffle=False,
                      num_workers=workers, pin_memory=dist.device.type == "cuda")


class _Metrics:
    """JSON-lines metrics, one line per epoch; on resume, lines of unfinished epochs go."""

    def __init__(self, path: Path, keep_below_epoch: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            lines = [ln for ln in path.read_text().splitlines()
                     if ln.strip() and json.loads(ln)["epoch"] < keep_below_epoch]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(ln + "\n" for ln in lines))
            os.replace(tmp, path)

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]


# ---------------------------------------------------------------------------- training
def train(cfg: Recipe, out_dir: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; writes config.yaml, metrics.jsonl, last.pt,
    best.pt / best.safetensors and summary.json into ``out_dir``.  Returns the summary."""
    cfg.validate()
    dist = setup_distributed(cfg.device)
    device = dist.device
    out = Path(out_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    torch.manual_seed(cfg.seed)

    # -- data
    train_tf = build_transforms(cfg.transform, cfg.input_size, True, auto_augment=cfg.auto_augment,
                                color_jitter=cfg.color_jitter, re_prob=cfg.re_prob, re_mode=cfg.re_mode,
                                crop_pct=cfg.crop_pct, interpolation=cfg.interpolation)
    val_tf = build_transforms(cfg.transform, cfg.input_size, False, crop_pct=cfg.crop_pct,
                              interpolation=cfg.interpolation)
    if cfg.download and dist.enabled and not dist.is_main:
        dist.barrier()  # rank 0 downloads first
    base_train = build_dataset(cfg.data, "train", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
    base_val = build_dataset(cfg.data, "val", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
    if cfg.download and dist.enabled and dist.is_main:
        dist.barrier()
    classes = list(getattr(base_train, "classes", []) or [])
    num_classes = cfg.num_classes or len(classes)
    if num_classes < 2:
        raise ValueError(f"{cfg.data}: found {num_classes} classes; a classifier needs at least 2")
    seeded = SeededTransform(train_tf, cfg.seed)
    train_ds = IndexedDataset(balanced_subset(base_train, cfg.train_subset), seeded, cache=cfg.cache_images)
    val_ds = IndexedDataset(balanced_subset(base_val, cfg.val_subset), val_tf, cache=cfg.cache_images)
    local_batch = cfg.batch_size // dist.world
    sampler = GlobalBatchSampler(len(train_ds), cfg.batch_size, dist.world, dist.rank, cfg.seed)
    loader_kw = dict(num_workers=cfg.workers, pin_memory=device.type == "cuda",
                     persistent_workers=False)
    val_loader = make_eval_loader(val_ds, max(local_batch, 64), dist, cfg.workers)

    # -- model
    model = build_model_for(cfg.model, num_classes, cfg.stride_plan, cfg.input_size, cfg.dropout, cfg.drop_path)
    if cfg.weights:
        load_weights(model, cfg.weights, reset_classifier=cfg.reset_classifier)
    if cfg.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("head.")
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if dist.enabled:
        if cfg.sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    core: Net = net.module if dist.enabled else net  # type: ignore[assignment]

    # -- optimiser, schedule, AMP, EMA
    opt = torch.optim.SGD(_param_groups(core, cfg.weight_decay), lr=cfg.scaled_lr(), momentum=cfg.momentum,
                          nesterov=cfg.nesterov)
    steps_per_epoch = sampler.num_batches()
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, warmup, cfg.min_lr / cfg.scaled_lr()))
    amp_dtype = _amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3
        ema = ModelEmaV3(core, decay=cfg.ema_decay, device=device)

    # -- resume
    # run state; the ep_* sums of a part-done epoch travel in mid-epoch checkpoints
    st = dict(epoch=0, step_in_epoch=0, global_step=0, best_top1=-1.0, best_epoch=-1, bad_epochs=0,
              ep_loss=0.0, ep_correct=0.0, ep_seen=0.0, ep_time=0.0)
    last = out / "last.pt"
    if resume and last.exists():
        ck = load_checkpoint(last)
        _check_resume(ck["config"], cfg, ck["spec"], core.spec)
        core.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        for g in opt.param_groups:  # a resume may lower (or raise) the lr: rescale the schedule
            g["initial_lr"] = cfg.scaled_lr()
        sched.load_state_dict(ck["scheduler"])
        sched.base_lrs = [cfg.scaled_lr()] * len(opt.param_groups)
        sched.lr_lambdas = [_lr_lambda(total_steps, warmup, cfg.min_lr / cfg.scaled_lr())] * len(opt.param_groups)
        for g, lr in zip(opt.param_groups, _current_lrs(sched)):
            g["lr"] = lr
        scaler.load_state_dict(ck["scaler"])
        if ema is not None and "ema" in ck:
            ema.module.load_state_dict(ck["ema"])
        st.update(ck["state"])
        if len(ck["per_rank"]) != dist.world:
            raise ValueError(f"cannot resume: the run had {len(ck['per_rank'])} processes, now {dist.world}")
        mine = ck["per_rank"][dist.rank]
        st.update(mine["ep"])
        set_rng_state(mine["rng"])
        if dist.is_main:
            log.info("resumed from %s at epoch %d, step %d of the epoch", last, st["epoch"], st["step_in_epoch"])
    elif resume and dist.is_main:
        log.info("no checkpoint at %s: starting fresh", last)
    metrics = _Metrics(out / "metrics.jsonl", st["epoch"], dist.is_main)
    if dist.is_main:
        save_config(cfg, out / "config.yaml", {"num_classes_resolved": num_classes, "world_size": dist.world,
                                               "classes": classes[:1000]})
        core.spec.save(out / "spec.json")
    writer = _tensorboard(out) if cfg.tensorboard and dist.is_main else None

    def checkpoint_state() -> dict[str, Any]:
        # each rank's RNG and part-epoch sums, so every rank resumes its own stream
        mine = {"rng": rng_state(), "ep": {k: v for k, v in st.items() if k.startswith("ep_")}}
        per_rank = [mine]
        if dist.enabled:
            per_rank = [None] * dist.world
            tdist.all_gather_object(per_rank, mine)
        state = {"model": core.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "scaler": scaler.state_dict(), "state": dict(st), "per_rank": per_rank,
                 "config": cfg.to_dict(), "spec": core.spec.to_dict()}
        if ema is not None:
            state["ema"] = ema.module.state_dict()
        return state

    def save_last() -> None:
        state = checkpoint_state()
        if dist.is_main:
            save_checkpoint(state, last)

    # -- loop
    stopped = None
    t_start = time.time()
    for epoch in range(st["epoch"], cfg.epochs):
        seeded.epoch = epoch
        if st["step_in_epoch"] == 0:
            torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + dist.rank)  # dropout, drop-path
        sampler.set_epoch(epoch, st["step_in_epoch"])
        loader = DataLoader(train_ds, batch_sampler=sampler, **loader_kw,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))
        net.train()
        if cfg.freeze_backbone:
            core.stem.eval()
            core.features.eval()
        if st["step_in_epoch"] == 0:
            st.update(ep_loss=0.0, ep_correct=0.0, ep_seen=0.0, ep_time=0.0)
        t0 = time.time()
        bar = _progress(len(sampler), f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and dist.is_main,
                        initial=st["step_in_epoch"], total=steps_per_epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            chunks = list(zip(x.chunk(cfg.accum_steps), y.chunk(cfg.accum_steps)))
            step_loss = 0.0
            for k, (xc, yc) in enumerate(chunks):
                sync = k == len(chunks) - 1 or not dist.enabled
                ctx = net.no_sync() if not sync else contextlib.nullcontext()
                with ctx:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        logits = net(xc)
                        loss = F.cross_entropy(logits.float(), yc, label_smoothing=cfg.label_smoothing)
                    _check_finite(loss, dist, epoch, st, last)
                    scaler.scale(loss / len(chunks)).backward()
                step_loss += float(loss.detach()) * len(yc)
                st["ep_correct"] += float((logits.argmax(1) == yc).sum())
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            if ema is not None:
                ema.update(core, step=st["global_step"])
            st["ep_loss"] += step_loss
            st["ep_seen"] += len(y)
            st["global_step"] += 1
            st["step_in_epoch"] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss / len(y):.3f}", lr=f"{opt.param_groups[0]['lr']:.3g}")
            if cfg.ckpt_every_steps and st["global_step"] % cfg.ckpt_every_steps == 0:
                st["ep_time"] += time.time() - t0
                t0 = time.time()
                save_last()
            if cfg.stop_after_steps and st["global_step"] >= cfg.stop_after_steps:
                stopped = f"stopped after {st['global_step']} steps (stop_after_steps); resume with --resume"
                break
        if bar is not None:
            bar.close()
        st["ep_time"] += time.time() - t0
        if stopped:
            save_last()
            break
        train_time = st["ep_time"]
        loss_sum, correct, seen = dist.sum([st["ep_loss"], st["ep_correct"], st["ep_seen"]])
        eval_model = ema.module if ema is not None else core
        val = evaluate(eval_model, val_loader, device, dist, amp_dtype, cfg.channels_last)
        row = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_top1": 100 * correct / max(seen, 1),
               "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"],
               "lr": opt.param_groups[0]["lr"], "images_per_s": seen / max(train_time, 1e-9),
               "epoch_time_s": train_time, "step": st["global_step"]}
        if ema is not None:
            raw = evaluate(core, val_loader, device, dist, amp_dtype, cfg.channels_last)
            row.update(val_top1_raw=raw["top1"], val_loss_raw=raw["loss"])
        improved = val["top1"] > st["best_top1"]
        if improved:
            st.update(best_top1=val["top1"], best_epoch=epoch, bad_epochs=0)
        else:
            st["bad_epochs"] += 1
        st.update(epoch=epoch + 1, step_in_epoch=0)
        metrics.write(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k, v, epoch)
        if dist.is_main:
            log.info("epoch %d: train loss %.4f, val top-1 %.2f%%, top-5 %.2f%%, %.1f img/s", epoch,
                     row["train_loss"], row["val_top1"], row["val_top5"], row["images_per_s"])
        save_last()
        if improved and dist.is_main:
            best = eval_model
            save_checkpoint({"model": best.state_dict(), "spec": core.spec.to_dict(), "epoch": epoch,
                             "val_top1": val["top1"]}, out / "best.pt")
            save_weights(best if isinstance(best, Net) else core, out / "best.safetensors")
        if cfg.early_stop_patience and st["bad_epochs"] >= cfg.early_stop_patience:
            stopped = f"early stop: no better val top-1 for {st['bad_epochs']} epochs"
            break
    rows = metrics.rows() if dist.is_main else []
    summary = {"model": core.spec.name, "data": cfg.data, "epochs_done": st["epoch"], "steps": st["global_step"],
               "best_val_top1": st["best_top1"], "best_epoch": st["best_epoch"],
               "final": rows[-1] if rows else None, "stopped": stopped, "world_size": dist.world,
               "wall_time_s": time.time() - t_start, "out": str(out),
               "train_images": len(train_ds), "val_images": len(val_ds),
               "bad_images_skipped": len(getattr(base_train, "bad_files", [])) + len(getattr(base_val, "bad_files", []))}
    if dist.is_main:
        write_json(summary, out / "summary.json")
    if writer is not None:
        writer.close()
    dist.barrier()
    return summary


def _current_lrs(sched: torch.optim.lr_scheduler.LambdaLR) -> list[float]:
    step = sched.last_epoch
    return [base * f(step) for base, f in zip(sched.base_lrs, sched.lr_lambdas)]


def _check_finite(loss: torch.Tensor, dist: Dist, epoch: int, st: dict, last: Path) -> None:
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
    if dist.enabled:
        tdist.all_reduce(bad, op=tdist.ReduceOp.MAX)
    if bad.item():
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(f"loss is {float(loss.detach())} at epoch {epoch}, step {st['global_step'] + 1}: training "
                               f"diverged; {kept}. Lower --lr or raise --warmup-epochs, then --resume.")


def _check_resume(saved: dict[str, Any], cfg: Recipe, saved_spec: dict, spec: NetSpec) -> None:
    changed = {k for k, v in cfg.to_dict().items() if k in saved and saved[k] != v} - RESUMABLE_CHANGES
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {getattr(cfg, k)!r}" for k in sorted(changed))
        raise ValueError(f"cannot resume: the run was started with other settings ({diffs}). Use the "
                         f"same settings, or a new --out directory")
    if NetSpec.from_dict(saved_spec).hash() != spec.hash():
        raise ValueError("cannot resume: the checkpoint's network differs from this model; use a new --out")


def _progress(n: int, desc: str, enabled: bool, initial: int = 0, total: int | None = None):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total or n, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                file=sys.stderr, leave=False)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(out / "tb"))


# ---------------------------------------------------------------------------- checkpoint evaluation
def evaluate_checkpoint(model: str | None, weights: str, data: str, *, input_size: int | None = None,
                        transform: str | None = None, stride_plan: str = "auto", batch_size: int = 100,
                        data_root: str | None = None, download: bool = False, skip_bad: bool = False,
                        num_classes: int | None = None, limit: int | None = None, ema: bool = False,
                        device: str = "auto") -> dict[str, Any]:
    """Top-1/top-5 of a checkpoint in any supported format on a dataset's validation split.

    A checkpoint written by this project carries its NetSpec: then ``model`` may
    be omitted and the input size and stride plan default to the spec's.
    """
    from ..models.weights import convert_state_dict, detect_format, read_spec, read_state_dict

    path = Path(weights)
    if ema:
        ck = load_checkpoint(path)
        if "ema" not in ck:
            raise ValueError(f"{path} holds no EMA weights (train with --ema true)")
        sd = ck["ema"]
    else:
        sd = read_state_dict(path)
    saved = read_spec(path)
    if num_classes is None:
        for key in ("head.fc.weight", "output.4.weight", "output.1.weight"):
            if key in sd:
                num_classes = int(sd[key].shape[0])
                break
        else:
            raise ValueError(f"cannot tell the number of classes from {path}; pass --num-classes")
    if saved is not None and (model is None or model == saved.name or saved.name == f"{model}_cifar"):
        net = Net(saved.with_head(num_classes=num_classes))
        size = input_size or saved.input_size
    elif model is None:
        raise ValueError(f"{path} carries no network description; pass --model NAME")
    else:
        small = data in ("cifar10", "cifar100", "mnist", "fashion-mnist") or stride_plan == "cifar"
        size = input_size or (32 if small else 224)
        net = build_model_for(model, num_classes, stride_plan, size)
    kind = transform or ("cifar" if size <= 64 else "imagenet")
    dist = setup_distributed(device)
    fmt = detect_format(sd)
    load_weights(net, convert_state_dict(sd, net.spec, fmt))
    net.to(dist.device).eval()
    ds = IndexedDataset(balanced_subset(build_dataset(data, "val", None, data_root, download, skip_bad), limit),
                        build_transforms(kind, size, False))
    loader = make_eval_loader(ds, batch_size, dist)
    t0 = time.time()
    res = evaluate(net, loader, dist.device, dist)
    elapsed = time.time() - t0
    return {"model": net.spec.name, "weights": str(path), "format": fmt, "data": data, "input_size": size,
            "transform": kind, **res, "images_per_s": res["n"] / max(elapsed, 1e-9), "time_s": elapsed}
