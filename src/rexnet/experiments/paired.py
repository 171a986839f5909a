"""Paired-seed experiments on the trial engine: arms (NetSpecs) x seeds as trials of a
:class:`~rexnet.trials.Store`, trained by :func:`~rexnet.trials.run_trial` (locally in
single-thread processes or on Ray, via :func:`~rexnet.trials.execute`); their paired
statistics come from :mod:`rexnet.stats`.

Pairing: repeat ``r`` of every arm trains with seed ``seed + r``.  The training loop
draws the data order of epoch ``e`` from ``(seed, e)``, each sample's augmentation from
``(seed, epoch, index)`` and the initial weights after ``torch.manual_seed(seed)``
(:mod:`rexnet.train.loop`, :class:`rexnet.train.data.SeededTransform`), so the same seed
gives both arms the same images in the same order with the same crops and flips; only
the networks (and so the weights drawn from the same stream) differ.

Resumption: a store records the protocol (everything that changes a trial's result,
the arms' spec hashes included, not the number of seeds); finished trials are never
recomputed, more seeds extend the experiment, and a rerun with another protocol is
refused unless ``overwrite``, which removes the earlier trials and outputs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..cores import available_cores
from ..io import changed_settings, refuse_other_settings
from ..spec import NetSpec
from ..trials import STORE_NAME, RunOptions, Store, TrialPlan, execute, extends_protocol

__all__ = ["ExperimentSettings", "Arm", "default_data", "check_budget_match", "run_arms", "check_protocol",
           "clear_outputs", "collect", "trial_rows", "accuracies", "Clock", "DATA_ENV"]

DATA_ENV = "REXNET_CIFAR10"            # where CIFAR-10 is (a zip or image tree) when --data is not given
MACS_TOL, PARAMS_TOL = 0.01, 0.03      # arms compared at equal budgets: this close or refused
OUTPUT_FILES = ("result.json", "report.md", "runs.csv", "pilot.json", "protocol.yaml")


def default_data() -> str:
    """``$REXNET_CIFAR10`` when set (a CIFAR-10 zip or image tree), else ``cifar10``
    (torchvision's copy under the data root, downloaded where allowed)."""
    return os.environ.get(DATA_ENV) or "cifar10"


@dataclass(frozen=True)
class ExperimentSettings:
    """What every experiment may change; None: the experiment's default (definitions.DEFAULTS)."""
    data: str | None = None              # cifar10 zip / image tree / name (default $REXNET_CIFAR10, else cifar10)
    seeds: int | None = None             # paired seeds (repeats); more seeds later extend the experiment
    seed: int = 0                        # first seed (repeat r uses seed + r)
    epochs: int | None = None            # training epochs per run
    train_subset: int | None = None      # training images, class-balanced (0 = all 50,000)
    val_subset: int | None = None        # validation images per epoch (picks the best epoch; 0 = all)
    holdout: int | None = None           # validate on N held-out training images, never on the test split (0 = off)
    test_images: int | None = None       # final test images, class-balanced (0 = all 10,000: the primary metric)
    batch_size: int | None = None        # batch size (lr scales with it)
    rank_images: int | None = None       # images for the final-feature nuclear norm (0 = skip)
    preset: str | None = None            # linear_vs_stagewise, search_cpu: the search preset
    trials: int | None = None            # search_cpu: sampled models
    width: float | None = None           # mobilenetv2_linear: MobileNetV2 width multiplier
    out_chs: int | None = None           # table2: the baseline's final width
    workers: int = 0                     # runs at once, each a process of cores/workers threads (0 = cores)
    in_process: bool = False             # the runs one after another in this process (no child processes)
    ray: bool = False                    # run as Ray tasks on a local Ray instance
    ray_address: str | None = None       # join a Ray cluster (auto, ray://head:10001)
    cpus_per_trial: float = 1.0          # Ray resources per run
    gpus_per_trial: float = 0.0          # Ray resources per run (e.g. 0.25)
    device: str = "auto"                 # auto | cpu | cuda
    progress: bool = True                # progress bar

    def with_defaults(self, defaults: Mapping[str, Any]) -> "ExperimentSettings":
        """Unset fields from ``defaults``; data from :func:`default_data`."""
        changes = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.data is None:
            changes["data"] = default_data()
        s = dataclasses.replace(self, **changes)
        if (s.seeds or 0) < 1:
            raise ValueError(f"--seeds must be >= 1 (a paired interval needs 2), got {s.seeds}")
        if (s.epochs or 0) < 1:
            raise ValueError(f"--epochs must be >= 1, got {s.epochs}")
        return s

    @property
    def resolved_workers(self) -> int:
        """Runs at once: ``workers``, or every core this process may use (:func:`available_cores`)."""
        return self.workers or available_cores()

    def plan(self) -> TrialPlan:
        """What every run of the experiment trains with (no early stopping: each run trains its epochs)."""
        return TrialPlan(data=self.data, epochs=self.epochs, batch_size=self.batch_size or 128,
                         train_subset=self.train_subset or None, val_subset=self.val_subset or None,
                         holdout=self.holdout or 0, early_stop_patience=0, test_images=self.test_images or None,
                         rank_images=self.rank_images or 0, device=self.device)

    def run_options(self) -> RunOptions:
        return RunOptions(workers=self.resolved_workers, ray=self.ray, ray_address=self.ray_address,
                          cpus_per_trial=self.cpus_per_trial, gpus_per_trial=self.gpus_per_trial,
                          progress=self.progress, in_process=self.in_process)


@dataclass(frozen=True)
class Arm:
    """One network of an experiment."""
    name: str
    spec: NetSpec
    macs: int
    params: int
    note: str = ""

    @classmethod
    def of(cls, name: str, spec: NetSpec, note: str = "") -> "Arm":
        from ..complexity import complexity

        c = complexity(spec)
        return cls(name, spec, c.macs, c.params, note)

    def record(self) -> dict[str, Any]:
        return dict(macs=self.macs, params=self.params, spec_hash=self.spec.hash(), note=self.note,
                    widths=[b.out_chs for b in self.spec.blocks], pen_chs=self.spec.head.pen_chs)


def check_budget_match(a: Arm, b: Arm, macs_tol: float = MACS_TOL, params_tol: float = PARAMS_TOL) -> dict[str, float]:
    """Refuse (ValueError) unless ``a`` is within ``macs_tol`` / ``params_tol`` of ``b``."""
    macs_ratio, params_ratio = a.macs / b.macs, a.params / b.params
    if abs(macs_ratio - 1) > macs_tol or abs(params_ratio - 1) > params_tol:
        raise ValueError(f"{a.name} ({a.macs:,} MACs, {a.params:,} params) is not within {macs_tol:.0%} MACs and "
                         f"{params_tol:.0%} params of {b.name} ({b.macs:,} MACs, {b.params:,} params): ratios "
                         f"{macs_ratio:.4f} / {params_ratio:.4f}; change the width setting")
    return dict(macs_ratio=round(macs_ratio, 5), params_ratio=round(params_ratio, 5))


# -- the store ----------------------------------------------------------------------------
def clear_outputs(out: Path) -> None:
    """Remove an experiment's store, trials, figures and outputs (``--overwrite``)."""
    for f in (STORE_NAME, STORE_NAME + "-wal", STORE_NAME + "-shm", *OUTPUT_FILES):
        (out / f).unlink(missing_ok=True)
    for d in ("trials", "figures"):
        if (out / d).is_dir():
            shutil.rmtree(out / d)


def check_protocol(out: Path, protocol: dict[str, Any], overwrite: bool, name: str) -> None:
    """Before any work: a store in ``out`` made with another protocol is refused, or with
    ``overwrite`` removed (with the outputs)."""
    db = out / STORE_NAME
    if not db.is_file():
        return
    with Store(db) as store:
        old = store.get_meta("protocol")
    new = json.loads(json.dumps(protocol, sort_keys=True))
    if old is None or old == new or extends_protocol(old, new):   # more seeds or arms extend it
        return
    if overwrite:
        clear_outputs(out)
        return
    refuse_other_settings(out, f"{name} experiment", changed_settings(old, new))


def arms_protocol(name: str, arms: list[Arm], s: ExperimentSettings) -> dict[str, Any]:
    """Everything that changes a run's result (not the number of seeds, nor how it runs), the
    training recipe's values included, so runs under two versions of it are never mixed."""
    from ..train.recipe import recipe_values

    return dict(experiment=name, data=s.data, seed=s.seed, epochs=s.epochs, train_subset=s.train_subset or None,
                val_subset=s.val_subset or None, test_images=s.test_images or None,
                batch_size=s.batch_size, rank_images=s.rank_images or 0, device=s.device,
                arms={a.name: a.spec.hash() for a in arms}, recipe=recipe_values("cifar"),
                **({"holdout": s.holdout} if s.holdout else {}))   # only when set: the key came later


def run_arms(name: str, out: Path, arms: list[Arm], s: ExperimentSettings, overwrite: bool = False,
             log: Callable[[str], None] = print, first: tuple[str, ...] = ()) -> dict[str, int]:
    """Train every arm with seeds ``s.seed .. s.seed + s.seeds - 1`` (finished runs kept), seed by
    seed; the arms named in ``first`` (a primary pair) train all their seeds before the others,
    so a campaign stopped part-way has answered its main question first."""
    protocol = arms_protocol(name, arms, s)
    check_protocol(out, protocol, overwrite, name)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / STORE_NAME)
    store.init_protocol(protocol)   # arms added: recorded before any of their runs
    rows = trial_rows(name, arms, s, first)
    store.add(rows)
    plan = s.plan()
    store.set_meta("name", name)
    store.set_meta("plan", plan.to_dict())
    store.set_meta("arms", {a.name: a.record() for a in arms})
    return execute(store, out, plan, s.run_options(), f"experiment {name}", log)


def trial_rows(name: str, arms: list[Arm], s: ExperimentSettings, first: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The store's rows in training order: seed by seed (a stopped run leaves whole pairs), the
    arms named in ``first`` through every seed before the others."""
    rows = []
    groups = [[a for a in arms if a.name in first], [a for a in arms if a.name not in first]]
    for group, r in ((g, r) for g in groups for r in range(s.seeds)):
        for arm in group:
            spec = arm.spec.replace(name=f"{name}_{arm.name}")
            rows.append(dict(key=f"{arm.name}-r{r}", spec_hash=arm.spec.hash(), repeat=r, seed=s.seed + r,
                             kind=arm.name, spec=spec.to_json(), widths=[b.out_chs for b in spec.blocks],
                             macs=arm.macs, params=arm.params, params_of_f={}))
    return rows


def collect(out: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The store's trials (all statuses) and counts."""
    with Store(out / STORE_NAME) as store:
        return store.trials(), store.counts()


def accuracies(trials: list[dict[str, Any]], kind: str, repeats: int | None = None) -> dict[int, float]:
    """Seed -> final test top-1 of the done trials of ``kind`` (the first ``repeats`` seeds)."""
    return {int(t["seed"]): float(t["result"]["test_top1"]) for t in trials
            if t["kind"] == kind and t["status"] == "done" and (repeats is None or t["repeat"] < repeats)}


class Clock:
    """Wall time of an experiment over all its invocations (kept in the store's meta)."""

    def __init__(self, out: Path):
        self.out, self.t0 = out, time.time()

    def total(self) -> float:
        db = self.out / STORE_NAME
        before = 0.0
        if db.is_file():
            with Store(db) as store:
                before = float(store.get_meta("wall_s") or 0.0)
                now = before + time.time() - self.t0
                store.set_meta("wall_s", now)
                self.t0 = time.time()
                return round(now, 1)
        return round(before + time.time() - self.t0, 1)
