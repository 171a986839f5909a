"""The training loop: single process or DDP (torchrun, one or many nodes), AMP on GPU,
EMA, JSON-lines metrics, atomic resumable checkpoints.

Determinism: the data order of epoch ``e`` is a permutation seeded by
``(seed, e)``; each global batch is cut into contiguous per-rank (or
per-micro-batch) chunks; augmentation is seeded per sample; model randomness
(dropout, drop-path, a detector's proposal sampling) is seeded per micro-batch from
(seed, step, the micro-batch's index in the global batch); the learning rate is a
pure function of (step, recipe).  So a run killed at any moment and resumed gives
the same metrics as one that was never stopped, and a 2-process DDP run equals a
1-process run with ``accum_steps=2`` (BN running statistics aside).

Stopping: SIGINT (Ctrl-C) and SIGTERM (what SLURM, Kubernetes and spot preemption
send) finish the current optimiser step, write ``last.pt`` (mid-epoch) and raise
:class:`TrainingStopped`; ``resume=True`` then continues exactly.  A second Ctrl-C
stops at once, without a checkpoint.  A run folder that holds a run is never
replaced silently: ``resume`` continues it, ``overwrite`` replaces it, else
:func:`train` refuses before any work.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import DataLoader

from ..io import append_jsonl, check_writable, read_jsonl, refuse_other_settings, write_json, write_text
from ..spec import NetSpec
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import resolve_workers
from .distributed import Dist, GlobalBatchSampler, setup_distributed
from .evaluate import make_eval_loader
from .recipe import Recipe, save_config
from .task import ClassificationTask, Task

log = logging.getLogger("rexnet.train")

__all__ = ["TrainingDiverged", "TrainingStopped", "RunState", "train", "lr_at", "summary_line",
           "RESUMABLE_CHANGES", "RUN_FILES"]

# Fields that may change when a run is resumed (each change is logged and kept in the run's
# ``history``); any other change is refused.  The learning-rate schedule (lr, warmup_epochs,
# min_lr, epochs) is a pure function of the step, so a new one simply applies from the resumed
# step on; the rest do not touch what is computed.  ``model`` is only how the network was
# named: the spec's hash, checked separately, is its identity.
RESUMABLE_CHANGES = {"model", "epochs", "lr", "warmup_epochs", "min_lr", "clip_grad_norm", "early_stop_patience",
                     "stop_after_steps", "ckpt_every_steps", "progress", "workers", "cache_images",
                     "tensorboard", "download", "data_root"}
# What a run writes into its folder: any of them there means the folder holds a run.
RUN_FILES = ("config.yaml", "spec.json", "metrics.jsonl", "last.pt", "best.pt", "best.safetensors",
             "summary.json", "tb")
# The loss is checked for NaN/inf every this many steps (and before every checkpoint and at
# epoch ends): a check is a host sync, which stalls a GPU if done every step.
NAN_CHECK_EVERY = 50


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingStopped(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run after a finished step; ``last.pt`` holds it.
    A ``KeyboardInterrupt`` so that code which cleans up on Ctrl-C does so here too.
    ``what`` says where it stopped and where the checkpoint is; the message adds how
    ``rexnet train`` continues (commands that train through :func:`train` under other
    rules, such as ``rank-verify``, give their own advice after ``what``)."""

    def __init__(self, signum: int, what: str, advice: str = "rerun with --resume to continue") -> None:
        super().__init__(f"{what}; {advice}")
        self.signum, self.what = signum, what
        self.exit_code = 128 + signum   # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def __str__(self) -> str:
        return str(self.args[0])


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT / SIGTERM to the training process.  Ctrl-C reaches the
    whole process group, and SLURM signals every process of a job: a worker that died of it
    would fail the step the stop is waiting for.  The training process ends its workers
    (:class:`_Batches`)."""
    for s in _StopSignal.SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class _Batches:
    """Iterates a DataLoader and ends its worker processes on every way out of the loop,
    an error included.

    Workers ignore SIGTERM (:func:`_ignore_stop_signals`), and SIGTERM is how Python's
    multiprocessing ends leftover children at exit.  After a worker's error (a bad image)
    the loader's iterator sits in the exception's reference cycle, so its own clean-up
    never ran and the process printed its one-line error, then hung at exit joining the
    workers.  Ending them here does not depend on when the iterator is collected.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        try:
            yield from it
        finally:
            end = getattr(it, "_shutdown_workers", None)  # what the iterator's __del__ calls (no public API)
            if end is not None:
                end()


class _StopSignal:
    """SIGINT / SIGTERM as a request to stop after the current optimiser step.

    The handlers only record the signal; the loop asks :meth:`agreed` after every step.
    Under DDP that is a one-integer all-reduce on the CPU (gloo, a group of its own when
    the training group is NCCL), so every process stops after the same step and no GPU
    stream is synchronised.  Handlers go in only from the main thread (Python's rule) and
    the previous ones come back on :meth:`restore`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, dist: Dist) -> None:
        self.dist, self.signum, self.fired, self.previous, self.group = dist, 0, 0, {}, None
        if dist.enabled and tdist.get_backend() != "gloo":
            self.group = tdist.new_group(backend="gloo")

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.SIGNALS:
            self.previous[s] = signal.getsignal(s)
            signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now, without a checkpoint
        self.signum = self.signum or signum   # a later SIGTERM (a parent's terminate) changes nothing

    def agreed(self) -> int:
        """The signal that stops every process now (0: none); collective when the world is > 1."""
        if not self.dist.enabled:
            self.fired = self.signum
        else:
            flag = torch.tensor([self.signum], dtype=torch.int64)
            tdist.all_reduce(flag, op=tdist.ReduceOp.MAX, group=self.group)
            self.fired = int(flag)
        return self.fired


@dataclass
class RunState:
    """Where a run is.  The ``ep_*`` sums of a part-done epoch are per process and travel in
    mid-epoch checkpoints; everything else is the same on every process."""
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_value: float = -1.0          # of the task's metric (val_top1 for classification)
    best_epoch: int = -1
    bad_epochs: int = 0
    ep_loss: float = 0.0
    ep_correct: float = 0.0
    ep_seen: float = 0.0
    ep_time: float = 0.0
    # settings changed on resume: {field, old, new, epoch, step} each, oldest first
    history: list = field(default_factory=list)

    def run_part(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("ep_")}

    def epoch_part(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k.startswith("ep_")}

    def update(self, values: dict[str, Any]) -> None:
        if "best_top1" in values:  # checkpoints written before the task interface
            values = {**values, "best_value": values["best_top1"]}
        for k, v in values.items():
            if k in self.__dataclass_fields__:
                setattr(self, k, v)


def lr_at(step: int, cfg: Recipe, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step``: linear warm-up, then cosine to ``min_lr``."""
    base = cfg.scaled_lr()
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, cfg.epochs * steps_per_epoch - warmup))
    return cfg.min_lr + (base - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def _micro_batch_seed(seed: int, step: int, index: int) -> int:
    return (seed * 1_000_003 + step * 1009 + index) % (2 ** 63)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # BN weights/biases and all biases
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


class _Metrics:
    """JSON-lines metrics, one line per epoch; on resume, lines of unfinished epochs go."""

    def __init__(self, path: Path, keep_below_epoch: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            kept = [r for r in read_jsonl(path) if r["epoch"] < keep_below_epoch]
            write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            append_jsonl(self.path, row)

    def rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)


def _same_network(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Checkpoint identities agree: NetSpecs by their hash (names and notes aside), else on every
    key both record (a description that gained a field still matches its older checkpoints)."""
    try:
        return NetSpec.from_dict(a).hash() == NetSpec.from_dict(b).hash()
    except (ValueError, TypeError, KeyError):
        return all(a[k] == b[k] for k in a.keys() & b.keys())


def _check_resume(out: Path, saved: dict[str, Any], cfg: Recipe, saved_identity: dict,
                  identity: dict) -> dict[str, tuple]:
    """Refuse a resume with other settings than :data:`RESUMABLE_CHANGES` (the one run-folder
    rule of :func:`rexnet.io.refuse_other_settings`); return those that changed as
    ``{field: (old, new)}``."""
    changed = {k: (saved[k], v) for k, v in cfg.to_dict().items() if k in saved and saved[k] != v}
    refused = {k: changed[k] for k in sorted(changed.keys() - RESUMABLE_CHANGES)}
    if not _same_network(saved_identity, identity):
        refused["network"] = ("the checkpoint's", "a different one")
    allowed = ", ".join(sorted(RESUMABLE_CHANGES - {"model"}))
    refuse_other_settings(out, "run", refused,
                          to_continue=f"resume it with the same settings (only {allowed} may change on resume)")
    return changed


def _prepare_out(out: Path, resume: bool, overwrite: bool, is_main: bool) -> None:
    """Before any work: refuse to replace a run silently, and prove ``out`` is writable.

    A folder holding any of :data:`RUN_FILES` is continued (``resume``), replaced
    (``overwrite``: its run files go, nothing else in the folder is touched), or refused
    with one line that names both flags; a refusal changes no file.
    """
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    found = [n for n in RUN_FILES if (out / n).exists()]
    if found and not resume:
        if not overwrite:
            raise ValueError(f"{out} already holds a run ({', '.join(found)}): rerun with --resume to continue it "
                             f"or --overwrite to replace it, or choose another --out")
        if is_main:
            for n in found:
                (shutil.rmtree if (out / n).is_dir() else Path.unlink)(out / n)
            log.info("--overwrite: removed the earlier run's %s from %s", ", ".join(found), out)
    check_writable(out)


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


class _Run:
    """One training run's parts: the task's data and model, optimiser, state, and the files in ``out``."""

    def __init__(self, cfg: Recipe, out: Path, spec: NetSpec | None, dist: Dist, task: Task) -> None:
        self.cfg, self.out, self.dist, self.device, self.task = cfg, out, dist, dist.device, task
        self.last = out / "last.pt"
        self.data = task.build_data(cfg, dist)
        self.sampler = GlobalBatchSampler(len(self.data.train), cfg.batch_size, dist.world, dist.rank, cfg.seed)
        workers = resolve_workers(cfg.workers)  # auto (None) = min(8, cores - 1)
        workers_init = _ignore_stop_signals if workers else None
        self.loader_kw = dict(num_workers=workers, pin_memory=self.device.type == "cuda",
                              persistent_workers=False, collate_fn=self.data.collate, worker_init_fn=workers_init)
        eval_batch = self.data.eval_batch_size or max(cfg.batch_size // dist.world, 64)
        self.val_loader = _Batches(make_eval_loader(self.data.val, eval_batch, dist,
                                                    workers, collate=self.data.collate, worker_init_fn=workers_init))
        self._build_model(spec)
        self.opt = torch.optim.SGD(_param_groups(self.core, cfg.weight_decay), lr=cfg.scaled_lr(),
                                   momentum=cfg.momentum, nesterov=cfg.nesterov)
        self.steps_per_epoch = self.sampler.num_batches()
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = None
        if cfg.ema:
            from timm.utils import ModelEmaV3
            self.ema = ModelEmaV3(self.core, decay=cfg.ema_decay, device=self.device)
        self.state = RunState()
        self.stop = _StopSignal(dist)

    def _build_model(self, spec: NetSpec | None) -> None:
        cfg = self.cfg
        model = self.task.build_model(cfg, self.data.num_classes, spec)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        net: nn.Module = model
        if self.dist.enabled:
            if cfg.sync_bn:
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = net
        self.core: nn.Module = net.module if self.dist.enabled else net
        self.identity = self.task.identity(self.core)

    # -- checkpoints ------------------------------------------------------------
    def resume(self) -> None:
        ck = load_checkpoint(self.last)
        changed = _check_resume(self.out, ck["config"], self.cfg, ck["spec"], self.identity)
        if len(ck["per_rank"]) != self.dist.world:
            raise ValueError(f"cannot resume: the run had {len(ck['per_rank'])} processes, now {self.dist.world}")
        self.core.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])  # the lr is set from the step before each step
        self.scaler.load_state_dict(ck["scaler"])
        if self.ema is not None and "ema" in ck:
            self.ema.module.load_state_dict(ck["ema"])
        mine = ck["per_rank"][self.dist.rank]
        self.state.update({**ck["state"], **mine["ep"]})
        set_rng_state(mine["rng"])
        st = self.state
        for k, (old, new) in sorted(changed.items()):
            st.history.append(dict(field=k, old=old, new=new, epoch=st.epoch, step=st.global_step))
            if self.dist.is_main:
                log.info("resume: %s %r -> %r from epoch %d, step %d (kept in the run's history)",
                         k, old, new, st.epoch, st.global_step)

    def save_last(self) -> None:
        # each rank's RNG and part-epoch sums, so every rank resumes its own stream
        mine = {"rng": rng_state(), "ep": self.state.epoch_part()}
        per_rank = [mine]
        if self.dist.enabled:
            per_rank = [None] * self.dist.world
            tdist.all_gather_object(per_rank, mine)
        if not self.dist.is_main:
            return
        state = {"model": self.core.state_dict(), "optimizer": self.opt.state_dict(),
                 "scaler": self.scaler.state_dict(), "state": self.state.run_part(), "per_rank": per_rank,
                 "config": self.cfg.to_dict(), "spec": self.identity}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        save_checkpoint(state, self.last)

    def save_best(self, epoch: int, value: float) -> None:
        best = self.ema.module if self.ema is not None else self.core
        self.task.save_best(best, self.identity, self.out, epoch, value)

    # -- one epoch ---------------------------------------------------------------
    def check_finite(self, sums: torch.Tensor) -> None:
        """Stop on a NaN/inf loss seen by any process since the last check (one host sync)."""
        bad = (~torch.isfinite(sums[0])).float().reshape(1)
        if self.dist.enabled:
            tdist.all_reduce(bad, op=tdist.ReduceOp.MAX)
        if bad.item():
            st = self.state
            at = st.global_step / self.steps_per_epoch   # epochs done when it was seen
            if self.last.exists():
                advice = (f"the last good checkpoint {self.last} is kept. To continue from it, rerun with "
                          f"--resume and a lower --lr, a --warmup-epochs above {at:.3g} or a --clip-grad-norm (these "
                          f"may change on resume and are recorded in the run's history)")
            else:
                advice = (f"no checkpoint had been written yet. Rerun with --overwrite and a lower --lr, a "
                          f"higher --warmup-epochs or a --clip-grad-norm")
            raise TrainingDiverged(
                f"loss is {float(sums[0])} at epoch {st.epoch}, by step {st.global_step} (checked every "
                f"{NAN_CHECK_EVERY} steps): training diverged; {advice}.")

    def train_epoch(self, epoch: int) -> str | None:
        """Train until the epoch ends or a stop is asked for; returns the stop's reason."""
        cfg, st, dist, core, task = self.cfg, self.state, self.dist, self.core, self.task
        task.set_epoch(epoch)
        if st.step_in_epoch == 0:
            st.update(dict(ep_loss=0.0, ep_correct=0.0, ep_seen=0.0, ep_time=0.0))
        self.sampler.set_epoch(epoch, st.step_in_epoch)
        loader = _Batches(DataLoader(self.data.train, batch_sampler=self.sampler, **self.loader_kw,
                                     generator=torch.Generator().manual_seed(cfg.seed + epoch)))
        task.train_mode(self.net, cfg)
        # the epoch's loss and correct sums live on the device between checks (no per-step host sync)
        sums = torch.tensor([st.ep_loss, st.ep_correct], dtype=torch.float64, device=self.device)
        t0 = time.time()
        bar = _progress(len(self.sampler), f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress and dist.is_main,
                        initial=st.step_in_epoch, total=self.steps_per_epoch)

        def fold() -> None:  # device sums -> the state (a host sync), before a checkpoint or the epoch's end
            nonlocal t0
            st.ep_loss, st.ep_correct = sums.tolist()
            st.ep_time += time.time() - t0
            t0 = time.time()

        stopped = None
        for batch in loader:
            lr = lr_at(st.global_step, cfg, self.steps_per_epoch)
            for g in self.opt.param_groups:
                g["lr"] = lr
            chunks = task.micro_batches(batch, cfg.accum_steps, self.device, cfg)
            seen = 0
            for k, (inputs, targets, n) in enumerate(chunks):
                # the same micro-batch draws the same random numbers in any process layout
                torch.manual_seed(_micro_batch_seed(cfg.seed, st.global_step, dist.rank * len(chunks) + k))
                sync = k == len(chunks) - 1 or not dist.enabled
                with self.net.no_sync() if not sync else contextlib.nullcontext():
                    with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                        loss, correct = task.loss(self.net, inputs, targets, cfg)
                    self.scaler.scale(loss / len(chunks)).backward()
                sums += torch.stack([loss.detach().double() * n, correct.double()])
                seen += n
            if cfg.clip_grad_norm:
                # after the all-reduce, so every rank clips the same gradients the same way
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]],
                                               cfg.clip_grad_norm)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(core, step=st.global_step)
            st.ep_seen += seen
            st.global_step += 1
            st.step_in_epoch += 1
            checkpoint_now = cfg.ckpt_every_steps and st.global_step % cfg.ckpt_every_steps == 0
            if checkpoint_now or st.step_in_epoch % NAN_CHECK_EVERY == 0:
                self.check_finite(sums)
                if bar is not None:
                    bar.set_postfix(loss=f"{float(sums[0]) / max(st.ep_seen, 1):.3f}", lr=f"{lr:.3g}")
            if bar is not None:
                bar.update(1)
            if checkpoint_now:
                fold()
                self.save_last()
            if cfg.stop_after_steps and st.global_step >= cfg.stop_after_steps:
                stopped = f"stopped after {st.global_step} steps (stop_after_steps); resume with --resume"
                break
            if self.stop.agreed():  # SIGINT / SIGTERM: this step is done; train() writes last.pt
                stopped = "signal"
                break
        if bar is not None:
            bar.close()
        self.check_finite(sums)
        fold()
        return stopped

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Evaluate and return the epoch's metrics row."""
        cfg, st, dist, task = self.cfg, self.state, self.dist, self.task
        loss_sum, correct, seen = dist.sum([st.ep_loss, st.ep_correct, st.ep_seen])
        eval_model = self.ema.module if self.ema is not None else self.core
        val = task.evaluate(eval_model, self.val_loader, self.device, dist, self.amp_dtype, cfg)
        row = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1)}
        if task.accuracy:
            row["train_top1"] = 100 * correct / max(seen, 1)
        row.update(val)
        row.update(lr=lr_at(st.global_step, cfg, self.steps_per_epoch),
                   images_per_s=seen / max(st.ep_time, 1e-9), epoch_time_s=st.ep_time, step=st.global_step)
        if self.ema is not None:  # the EMA is what is scored; the raw model is reported beside it
            raw = task.evaluate(self.core, self.val_loader, self.device, dist, self.amp_dtype, cfg)
            row.update({f"{k}_raw": v for k, v in raw.items()})
        return row


def train(cfg: Recipe, out_dir: str | Path, spec: NetSpec | None = None, resume: bool = False,
          task: Task | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train on ``cfg.data`` and return the summary; writes config.yaml, spec.json,
    metrics.jsonl, last.pt, best.pt / best.safetensors and summary.json into ``out_dir``.

    ``out_dir`` holding a run is continued with ``resume`` (settings may change only in
    :data:`RESUMABLE_CHANGES`), replaced with ``overwrite``, and otherwise refused
    (``ValueError``) before any work.  SIGINT / SIGTERM end the run after the current
    step with ``last.pt`` written and raise :class:`TrainingStopped`.

    The network is ``spec`` when given (its classifier resized to the data's classes
    and the stride plan applied from ``cfg.input_size``; ``cfg.model`` is then not read),
    else ``cfg.model`` (a zoo name, NetSpec file or checkpoint: the command line's
    ``--model``), resolved by :func:`rexnet.create_model`.  ``cfg`` is recorded as given;
    config.yaml names the network trained as ``network``.
    ``task`` is what is trained (default: image classification).
    """
    task = task or ClassificationTask()
    cfg.validate()
    dist = setup_distributed(cfg.device)
    out = Path(out_dir)
    _prepare_out(out, resume, overwrite, dist.is_main)
    dist.barrier()
    torch.manual_seed(cfg.seed)
    run = _Run(cfg, out, spec, dist, task)
    st = run.state
    if resume and run.last.exists():
        run.resume()
        if dist.is_main:
            log.info("resumed from %s at epoch %d, step %d of the epoch", run.last, st.epoch, st.step_in_epoch)
    elif resume and dist.is_main:
        log.info("no checkpoint at %s: starting fresh", run.last)
    metrics = _Metrics(out / "metrics.jsonl", st.epoch, dist.is_main)
    if dist.is_main:
        save_config(cfg, out / "config.yaml", {"network": run.identity.get("name", cfg.model),
                                               "num_classes_resolved": run.data.num_classes,
                                               "world_size": dist.world, "classes": run.data.classes[:1000]})
        write_json(run.identity, out / "spec.json")
    writer = _tensorboard(out) if cfg.tensorboard and dist.is_main else None
    t_start = time.time()
    run.stop.install()
    try:
        stopped = _train_epochs(run, metrics, writer)
    finally:
        run.stop.restore()
        if writer is not None:
            writer.close()
    if stopped == "signal":
        signum = run.stop.fired   # the same on every process (the largest number any received)
        where = (f"in epoch {st.epoch + 1}/{cfg.epochs} after step {st.step_in_epoch} of {run.steps_per_epoch}"
                 if st.step_in_epoch else f"after epoch {st.epoch}/{cfg.epochs}")
        raise TrainingStopped(signum, f"stopped by {signal.Signals(signum).name} {where} (global step "
                                      f"{st.global_step}); checkpoint written to {run.last}")
    rows = metrics.rows() if dist.is_main else []
    summary = {"model": run.identity.get("name", cfg.model), "data": cfg.data, "epochs_done": st.epoch,
               "steps": st.global_step, "metric": task.metric, f"best_{task.metric}": st.best_value,
               "best_epoch": st.best_epoch, "final": rows[-1] if rows else None, "stopped": stopped,
               "world_size": dist.world, "wall_time_s": time.time() - t_start, "out": str(out),
               "train_images": len(run.data.train), "val_images": len(run.data.val),
               "bad_images_skipped": run.data.bad_images, "history": st.history}
    if dist.is_main:
        write_json(summary, out / "summary.json")
    dist.barrier()
    return summary


def _train_epochs(run: _Run, metrics: _Metrics, writer) -> str | None:
    """The epochs from the run's state to the end; returns why it stopped early (None: it did not,
    "signal": SIGINT / SIGTERM, with ``last.pt`` written)."""
    cfg, st, dist, task = run.cfg, run.state, run.dist, run.task
    stopped = None
    for epoch in range(st.epoch, cfg.epochs):
        stopped = run.train_epoch(epoch)
        if stopped:
            run.save_last()
            break
        row = run.end_epoch(epoch)
        improved = row[task.metric] > st.best_value
        if improved:
            st.update(dict(best_value=row[task.metric], best_epoch=epoch, bad_epochs=0))
        else:
            st.bad_epochs += 1
        st.update(dict(epoch=epoch + 1, step_in_epoch=0))
        metrics.write(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k, v, epoch)
        if dist.is_main:
            log.info("epoch %d: train loss %.4f, %s %.2f, %.1f img/s", epoch, row["train_loss"], task.metric,
                     row[task.metric], row["images_per_s"])
        if improved and dist.is_main:  # best before last: a run killed between the two redoes this epoch
            run.save_best(epoch, row[task.metric])
        run.save_last()
        if cfg.early_stop_patience and st.bad_epochs >= cfg.early_stop_patience:
            stopped = f"early stop: no better {task.metric} for {st.bad_epochs} epochs"
            break
        if epoch + 1 < cfg.epochs and run.stop.agreed():  # a signal during evaluation: last.pt is written
            stopped = "signal"
            break
    return stopped


def summary_line(summary: dict[str, Any]) -> str:
    """One line a person reads at the end of a run: best and last value of the task's metric."""
    metric, final = summary["metric"], summary["final"] or {}
    return (f"{summary['model']} on {summary['data']}: {summary['epochs_done']} epochs, best {metric} "
            f"{summary[f'best_{metric}']:.2f} (epoch {summary['best_epoch']}), last "
            f"{final.get(metric, float('nan')):.2f}, {final.get('images_per_s', 0):.1f} img/s"
            + (f"; {summary['stopped']}" if summary["stopped"] else ""))
