"""One trial: train a (spec, seed) with the CIFAR recipe, score it on the test split, measure
the rank of its final features; and the check of a plan's data before any trial starts.

A trial's test score reads every image of the data's test split (CIFAR: all 10,000),
whatever its ``val_subset``, so the number that is compared has no subset noise; the
network runs in its deploy form (BN folded into the convolutions: the same function,
fewer kernels) at small batches on a CPU, which keep the activations in cache.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..alloc import loaded
from ..io import read_jsonl
from ..train.health import divergence
from .plan import TrialPlan

__all__ = ["run_trial", "check_data", "TEST_BATCH"]

# Images per batch of the full test-set evaluation, (CPU, GPU): small batches keep a small
# network's activations in cache on a CPU (benchmarks/search_scaling.py --eval-batches measures it).
TEST_BATCH = (50, 500)


def check_data(plan: TrialPlan, log: Callable[[str], None] = print) -> None:
    """Open the search's data once, before any trial: both splits, and every image the
    trials read from an image tree or zip (their training subset and the test images they
    score: the whole test split unless ``test_images`` bounds it; the first few of a named
    set).  A bad path, an unreadable zip or a corrupt image is a one-line
    :class:`DataError` here instead of one failed trial after another; with
    ``skip_bad_images`` the unreadable ones are counted and skipped, as the trials will."""
    from ..train.data import ImageTree, balanced_subset, build_dataset

    t0, read, bad = time.time(), 0, []
    # of the test split, the first class-balanced images that validation, the test score and
    # the rank read (balanced subsets are nested): all of them unless both the first two are bounded
    bounded = plan.val_subset and plan.test_images
    val = max(plan.val_subset, plan.test_images, plan.rank_images or 0) if bounded else None
    for split, subset in (("train", plan.train_subset), ("val", val)):
        ds = build_dataset(plan.data, split, None, plan.data_root, plan.download, plan.skip_bad_images)
        view = balanced_subset(ds, subset) if isinstance(ds, ImageTree) else balanced_subset(ds, min(8, len(ds)))
        for i in range(len(view)):
            view[i]
        read += len(view)
        bad += [ds.path_of(rel) for rel in getattr(ds, "bad_files", [])]
    log(f"data {plan.data}: {read} images read in {time.time() - t0:.1f}s"
        + (f"; {len(bad)} unreadable, skipped (--skip-bad-images): {', '.join(bad[:3])}"
           + (" ..." if len(bad) > 3 else "") if bad else ""))


def run_trial(trial: dict[str, Any], out: str | os.PathLike, plan: TrialPlan, threads: int = 0) -> dict[str, Any]:
    """Train one (spec, repeat) of a store with the CIFAR recipe and ``plan``; returns its result record.
    Resumes from ``out/trials/<key>/last.pt`` when a previous attempt left one."""
    import torch

    from ..models.resolve import create_model
    from ..spec import NetSpec
    from ..train.data import build_dataset
    from ..train.loop import train
    from ..train.recipe import load_recipe

    if threads:
        torch.set_num_threads(threads)
    tdir = Path(out) / "trials" / trial["key"]
    tdir.mkdir(parents=True, exist_ok=True)
    spec = NetSpec.from_json(trial["spec"])
    t0, cpu0 = time.time(), time.process_time()
    cfg = load_recipe("cifar", plan.recipe_overrides(trial["seed"], spec.head.dropout))
    summary = train(cfg, tdir, spec=spec, resume=True)
    curves = read_jsonl(tdir / "metrics.jsonl")
    result = dict(best_val_top1=summary["best_val_top1"], best_epoch=summary["best_epoch"],
                  final_val_top1=summary["final"]["val_top1"] if summary["final"] else None,
                  epochs_done=summary["epochs_done"], stopped=summary["stopped"],
                  val_top1=[c["val_top1"] for c in curves], train_loss=[c["train_loss"] for c in curves],
                  images_per_s=curves[-1]["images_per_s"] if curves else None,
                  train_images=summary["train_images"],
                  val_images=summary["val_images"])
    result["diverged"] = divergence(curves, cfg.warmup_epochs, int(spec.head.num_classes))
    best = create_model(tdir / "best.pt")  # the network as trained (classes from the data), best weights
    # one reading of the test split for both (opening CIFAR's 60,000-entry zip costs about a second)
    test_set = build_dataset(cfg.data, "val", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
    result.update(_full_test(best, test_set, cfg, plan.test_images or None))
    if plan.rank_images:   # on held-out training images when there are any: the test split is for the score
        source = _held_out(cfg) if cfg.holdout else test_set
        result.update(_final_rank(best, source, cfg, plan.rank_images, trial["seed"]),
                      rank_images_from="held-out training images" if cfg.holdout else "test images")
    # cpu_s / wall_s near the thread count: the trial had its cores; well below: it waited for them
    result.update(tcmalloc=loaded() is not None, threads=torch.get_num_threads(), wall_s=round(time.time() - t0, 2),
                  cpu_s=round(time.process_time() - cpu0, 2))
    for f in ("last.pt", "best.pt"):   # done: resume state no longer needed; best.safetensors stays
        (tdir / f).unlink(missing_ok=True)
    return result


def _full_test(model, test_set, cfg, n: int | None = None) -> dict[str, Any]:
    """Top-1 of the best weights on every image of the data's test split (CIFAR: all
    10,000), whatever the trial's ``val_subset``: the number the analysis ranks by,
    without the 1.5-point binomial noise of a 1,000-image subset (``n``: the first ``n``
    class-balanced images instead, for tests).

    The network runs in its deploy form (BN folded into the convolutions: the same
    function, fewer kernels) at the small batches of ``TEST_BATCH``."""
    import torch

    from ..bench.deploy import deploy_model
    from ..train.distributed import Dist
    from ..train.evaluate import evaluate, make_eval_loader

    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    ds = _eval_view(test_set, cfg, n)
    net = deploy_model(model, channels_last=cfg.channels_last, device=device)
    dist = Dist(device=device)
    r = evaluate(net, make_eval_loader(ds, TEST_BATCH[device.type == "cuda"], dist), device, dist,
                 channels_last=cfg.channels_last)
    return dict(test_top1=round(r["top1"], 3), test_images=r["n"])


def _eval_view(ds, cfg, n: int | None = None):
    """The first ``n`` class-balanced images of ``ds`` (all when None) with the recipe's
    evaluation transform: what validation saw during training."""
    from ..train.data import IndexedDataset, balanced_subset, build_transforms

    return IndexedDataset(balanced_subset(ds, n), build_transforms(cfg.transform, cfg.input_size, False,
                                                                   crop_pct=cfg.crop_pct,
                                                                   interpolation=cfg.interpolation))


def _held_out(cfg):
    """The held-out training images the trial selected its epoch on (the same draw)."""
    from ..train.data import build_dataset, holdout_split

    train_set = build_dataset(cfg.data, "train", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
    return holdout_split(train_set, cfg.holdout, cfg.holdout_seed)[1]


RANK_TOLS = (1e-3, 1e-2)   # numerical rank: sigma_i above this share of sigma_max


def _final_rank(model, images_from, cfg, n_images: int, seed: int) -> dict[str, Any]:
    """The last block's output on the first ``n_images`` (class-balanced) images of
    ``images_from``: its nuclear norm raw (sum sigma / sigma_max) and divided by the width,
    effective rank, numerical ranks at :data:`RANK_TOLS`, and the cumulative normalised
    singular values (the paper's Fig. 5, right).  The width-normalised nuclear norm falls
    with width by construction; the raw one does not."""
    import torch

    from ..rank.analyze import final_spectrum
    from ..rank.measures import effective_rank, nuclear_ratio, numerical_rank

    view = _eval_view(images_from, cfg, n_images)
    images = torch.stack([view[i][0] for i in range(len(view))])
    sigma, width = final_spectrum(model.cpu(), images, seed)
    raw = nuclear_ratio(sigma)
    cumulative = (sigma.cumsum(0) / sigma.sum()).tolist() if float(sigma.sum()) > 0 else []
    return dict(nuclear_norm=round(raw / width, 5), nuclear_norm_raw=round(raw, 4),
                effective_rank=round(effective_rank(sigma), 3), feature_channels=width,
                **{f"rank_{tol:g}": numerical_rank(sigma, tol) for tol in RANK_TOLS},
                cumulative_singular_values=[round(c, 5) for c in cumulative], rank_images=len(view))
