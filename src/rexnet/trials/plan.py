"""What a trial trains with (:class:`TrialPlan`) and how a body of trials is run (:class:`RunOptions`).

A plan is everything that changes a trial's result besides its network and seed; it is
built once by whoever owns the trials (a search's preset and settings, an experiment's
settings) and travels unchanged into every worker process and Ray task.  Options change
only where and how fast the trials run, never what they measure.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["TrialPlan", "RunOptions"]


@dataclass(frozen=True)
class TrialPlan:
    """The training, test and rank measurement of every trial of one store."""
    data: str = "cifar10"
    data_root: str | None = None
    download: bool = False
    epochs: int = 30
    batch_size: int = 128
    train_subset: int | None = None     # training images, class-balanced (None: all)
    val_subset: int | None = None       # validation images per epoch (None: all)
    holdout: int = 0                    # validate on this many held-out training images, never the test split
    early_stop_patience: int = 0
    test_images: int | None = None      # final test top-1 on the first N class-balanced test images (None: all)
    rank_images: int = 256              # images for the final-feature rank (0: skip)
    device: str = "auto"
    channels_last: bool = True
    amp: str = "auto"
    # not part of a protocol: on the same data a trial either reads no bad image (the same
    # result with or without it) or fails without it
    skip_bad_images: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")

    def recipe_overrides(self, seed: int, dropout: float) -> dict[str, Any]:
        """The ``cifar`` recipe's fields this plan sets for one trial."""
        return dict(data=self.data, data_root=self.data_root, download=self.download, epochs=self.epochs,
                    batch_size=self.batch_size, train_subset=self.train_subset, val_subset=self.val_subset,
                    holdout=self.holdout, seed=seed, early_stop_patience=self.early_stop_patience, progress=False, device=self.device,
                    channels_last=self.channels_last, amp=self.amp, stride_plan="auto", dropout=dropout,
                    skip_bad_images=self.skip_bad_images)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunOptions:
    """Where and how the trials of a store run (none of it changes a result)."""
    workers: int = 1                    # trials at once (local processes or Ray tasks)
    ray: bool = False                   # a local Ray instance
    ray_address: str | None = None      # join a Ray cluster
    cpus_per_trial: float = 1.0         # Ray resources per trial
    gpus_per_trial: float = 0.0
    progress: bool = True
    retry: bool = True                  # run failed trials again (below max_attempts)
    max_attempts: int = 3
    stop_after_failures: int = 3        # stop after this many trials in a row failed alike (0: never)
    in_process: bool = False            # the trials one after another in this process (no child processes)

    @property
    def uses_ray(self) -> bool:
        return bool(self.ray or self.ray_address)
