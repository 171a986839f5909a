"""Run a search: sample the space, store the trials, train them locally or on Ray.

Local (default): ``workers`` threads each claim a trial from the store and run it in a
fresh child process (a crash or leak stays inside one trial), with
``cores // workers`` torch threads (cores: this process's CPU affinity, capped by
``OMP_NUM_THREADS`` when set).  Ray (``--ray`` or ``--ray-address``): the
driver claims trials and runs each as a Ray task with ``cpus_per_trial`` /
``gpus_per_trial`` resources; without an address it starts a local Ray instance and
stops it at the end.  Either way the driver keeps the heartbeats of the trials in
flight, so a killed search loses at most their unfinished epochs (each trial resumes
from its own last checkpoint).  Trial processes and a local Ray instance's workers start
with tcmalloc where it is installed (:mod:`rexnet.alloc`; ``REXNET_TCMALLOC=0``: not).

Scaling (``benchmarks/search_scaling.py``, 6 smoke trials on 2 cores): 2 Ray workers of
one thread give 1.74x the trials/hour of 1 worker of one thread, but only 1.17x of 1
worker of two threads, since one trial uses a second thread well (1.74 CPU-s per second).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..alloc import loaded, preload_children
from ..io import read_jsonl, write_json
from .space import Preset, get_preset
from .store import Store, StoreError, worker_id

__all__ = ["SearchSettings", "prepare", "run_search", "execute", "run_trial", "status",
           "SearchHalted", "check_data", "recover"]

DB_NAME = "search.db"
SIDECAR = "search.json"   # the protocol and preset beside the store, for `rexnet search recover`
# Images per batch of the full test-set evaluation, (CPU, GPU).  On a CPU small batches keep
# the activations in cache: the smoke reference (BN folded, one thread) scored 953 img/s at
# batch 50 (1,044 at 32) against 471 at 128 and 425 at 500 (`benchmarks/search_scaling.py
# --eval-batches 32,50,128,500`, 2-core machine, benchmarks/results/search_scaling/eval_batches.json).
TEST_BATCH = (50, 500)


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What a search run may change on top of its preset."""
    preset: str = "smoke"
    data: str | None = None
    data_root: str | None = None
    download: bool = False
    trials: int | None = None
    epochs: int | None = None
    repeats: int | None = None
    train_subset: int | None = None     # 0 = all images
    val_subset: int | None = None
    batch_size: int | None = None
    early_stop_patience: int | None = None
    seed: int | None = None
    rank_images: int = 256              # images for the final-feature rank (0 = skip)
    test_images: int | None = None      # final test top-1 on the first N class-balanced test images (none or 0 = all)
    device: str = "auto"
    channels_last: bool = True
    amp: str = "auto"
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    progress: bool = True
    # not part of the protocol: on the same data a trial either reads no bad image (the same
    # result with or without it) or fails without it
    skip_bad_images: bool = False
    retry: bool = True
    max_attempts: int = 3
    stop_after_failures: int = 3
    in_process: bool = False            # run the trials here, one after another (no child process per trial)

    def resolved(self) -> Preset:
        p = get_preset(self.preset)
        changes = {k: getattr(self, k) for k in ("data", "trials", "epochs", "repeats", "train_subset",
                                                 "val_subset", "batch_size", "early_stop_patience", "seed")
                   if getattr(self, k) is not None}
        for k in ("train_subset", "val_subset"):
            if changes.get(k) == 0:
                changes[k] = None
        p = dataclasses.replace(p, **changes)
        if p.trials < 0 or p.epochs < 1 or p.repeats < 1:
            raise ValueError(f"need trials >= 0, epochs >= 1, repeats >= 1; got {p.trials}, {p.epochs}, {p.repeats}")
        return p


def protocol_of(p: Preset, s: SearchSettings) -> dict[str, Any]:
    """Everything that changes a trial's result (the number of trials does not)."""
    d = p.to_dict()
    d.pop("trials")
    d.update(rank_images=s.rank_images, channels_last=s.channels_last, amp=s.amp)
    if s.test_images:   # only when set, so stores made before the knob keep their protocol
        d["test_images"] = s.test_images
    return d


def _trial_rows(p: Preset) -> list[dict[str, Any]]:
    """The store rows of a preset's trials: the two references and ``trials`` samples, each
    ``repeats`` times, in that order."""
    rows = []
    for cand in p.space.iter_all(p.trials, p.seed):
        spec = cand.spec.replace(name=f"{p.space.name}_{cand.kind}_{cand.hash[:8]}")
        for r in range(p.repeats):
            rows.append(dict(key=f"{cand.hash}-r{r}", spec_hash=cand.hash, repeat=r, seed=p.seed + r,
                             kind=cand.kind, spec=spec.to_json(), widths=list(cand.widths), macs=cand.macs,
                             params=cand.params, params_of_f=cand.params_of_f))
    return rows


def prepare(out: str | os.PathLike, s: SearchSettings) -> tuple[Store, Preset]:
    """Open (or create) ``out/search.db`` and add this run's trials: the two references
    and ``trials`` samples, each ``repeats`` times.  Idempotent."""
    p = s.resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / DB_NAME)
    protocol = protocol_of(p, s)
    store.init_protocol(protocol)
    store.add(_trial_rows(p))
    store.set_meta("preset", p.to_dict())
    write_json(dict(protocol=protocol, preset=p.to_dict()), out / SIDECAR)
    return store, p


def check_data(p: Preset, s: SearchSettings, log: Callable[[str], None] = print) -> None:
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
    bounded = p.val_subset and s.test_images
    val = max(p.val_subset, s.test_images, s.rank_images or 0) if bounded else None
    for split, subset in (("train", p.train_subset), ("val", val)):
        ds = build_dataset(p.data, split, None, s.data_root, s.download, s.skip_bad_images)
        view = balanced_subset(ds, subset) if isinstance(ds, ImageTree) else balanced_subset(ds, min(8, len(ds)))
        for i in range(len(view)):
            view[i]
        read += len(view)
        bad += [ds.path_of(rel) for rel in getattr(ds, "bad_files", [])]
    log(f"data {p.data}: {read} images read in {time.time() - t0:.1f}s"
        + (f"; {len(bad)} unreadable, skipped (--skip-bad-images): {', '.join(bad[:3])}"
           + (" ..." if len(bad) > 3 else "") if bad else ""))


class SearchHalted(ValueError):
    """The last ``stop_after_failures`` trials failed with the same error: the search stopped."""


class _FailFast:
    """Counts trials in a row that failed with the same error (the trial's own key taken
    out of the message); a success resets the count."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.last, self.error = limit, 0, None, None
        self.lock = threading.Lock()

    def record(self, key: str, error: str | None) -> bool:
        """True when the search should stop."""
        with self.lock:
            if error is None:
                self.streak, self.last = 0, None
                return False
            msg = error.replace(key, "<trial>")
            self.streak = self.streak + 1 if msg == self.last else 1
            self.last = msg
            if self.limit > 0 and self.streak >= self.limit:
                self.error = error
                return True
            return False

    def check(self) -> None:
        if self.error is not None:
            raise SearchHalted(f"stopped: {self.streak} trials in a row failed with the same error "
                               f"({' '.join(self.error.split())}); fix the cause and rerun the same command "
                               f"(failed trials are retried)")


# -- one trial ---------------------------------------------------------------------------
def run_trial(trial: dict[str, Any], out: str, p: Preset, s: SearchSettings, threads: int = 0) -> dict[str, Any]:
    """Train one (spec, repeat) with the CIFAR recipe; returns its result record.
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
    cfg = load_recipe("cifar", dict(
        model=spec.name, data=p.data, data_root=s.data_root, download=s.download, epochs=p.epochs,
        batch_size=p.batch_size, train_subset=p.train_subset, val_subset=p.val_subset, seed=trial["seed"],
        early_stop_patience=p.early_stop_patience, progress=False, device=s.device,
        channels_last=s.channels_last, amp=s.amp, stride_plan="auto", dropout=spec.head.dropout,
        skip_bad_images=s.skip_bad_images))
    summary = train(cfg, tdir, spec=spec, resume=True)
    curves = read_jsonl(tdir / "metrics.jsonl")
    result = dict(best_val_top1=summary["best_val_top1"], best_epoch=summary["best_epoch"],
                  final_val_top1=summary["final"]["val_top1"] if summary["final"] else None,
                  epochs_done=summary["epochs_done"], stopped=summary["stopped"],
                  val_top1=[c["val_top1"] for c in curves], train_loss=[c["train_loss"] for c in curves],
                  images_per_s=curves[-1]["images_per_s"] if curves else None,
                  train_images=summary["train_images"],
                  val_images=summary["val_images"])
    best = create_model(tdir / "best.pt")  # the network as trained (classes from the data), best weights
    # one reading of the test split for both (opening CIFAR's 60,000-entry zip costs about a second)
    test_set = build_dataset(cfg.data, "val", None, cfg.data_root, cfg.download, cfg.skip_bad_images)
    result.update(_full_test(best, test_set, cfg, s.test_images or None))
    if s.rank_images:
        result.update(_final_rank(best, test_set, cfg, s.rank_images, trial["seed"]))
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
    function, fewer kernels) at small batches on a CPU, which keep the activations in
    cache: both measured below (``TEST_BATCH``)."""
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


def _final_rank(model, test_set, cfg, n_images: int, seed: int) -> dict[str, float]:
    """Nuclear norm of the last block's output on the first ``n_images`` (class-balanced)
    test images, raw (sum sigma / sigma_max) and divided by the width, and its effective
    rank.  The width-normalised one falls with width by construction; the raw one does not."""
    import torch

    from ..rank.analyze import final_spectrum
    from ..rank.measures import effective_rank, nuclear_ratio

    view = _eval_view(test_set, cfg, n_images)
    images = torch.stack([view[i][0] for i in range(len(view))])
    sigma, width = final_spectrum(model.cpu(), images, seed)
    raw = nuclear_ratio(sigma)
    return dict(nuclear_norm=round(raw / width, 5), nuclear_norm_raw=round(raw, 4),
                effective_rank=round(effective_rank(sigma), 3), feature_channels=width)


def _exit_with_parent() -> None:
    """A trial process must not outlive its search (a killed search would otherwise
    leave an orphan writing into a trial that the next run claims again)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _cores() -> int:
    """CPUs this process may use: its affinity, capped by OMP_NUM_THREADS when that is set."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return min(n, int(omp)) if omp.isdigit() and int(omp) > 0 else n


def _child(trial: dict[str, Any], out: str, p: Preset, s: SearchSettings, threads: int, result_file: Path) -> None:
    """Entry of a local trial process: the result (or the error) goes to a JSON file."""
    _exit_with_parent()
    try:
        res = {"ok": run_trial(trial, out, p, s, threads)}
    except BaseException as e:  # noqa: BLE001 - recorded in the store, never swallowed silently
        res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    write_json(res, result_file, indent=None)


# -- drivers -----------------------------------------------------------------------------
def run_search(out: str | os.PathLike, s: SearchSettings, log: Callable[[str], None] = print) -> dict[str, int]:
    """Run every unfinished trial of the search in ``out``; returns the store's counts.
    The data is checked once first (:func:`check_data`)."""
    if not s.ray_address:   # a Ray cluster's workers may see data that this machine does not
        check_data(s.resolved(), s, log)
    store, p = prepare(out, s)
    return execute(store, out, p, s, log)


def execute(store: Store, out: str | os.PathLike, p: Preset, s: SearchSettings,
            log: Callable[[str], None] = print) -> dict[str, int]:
    """Run the unfinished trials of a prepared ``store`` (locally or on Ray; the store is
    closed at the end); returns its counts.  ``rexnet experiment`` fills its own stores.
    Failed trials run again while they have had fewer than ``max_attempts`` attempts (unless
    ``retry`` is off); :class:`SearchHalted` when ``stop_after_failures`` trials in a row
    failed with the same error."""
    if s.retry:
        retried, left = store.retry_failed(s.max_attempts)
        if retried:
            log(f"retrying {retried} failed trial(s)")
        if left:
            log(f"{left} failed trial(s) had {s.max_attempts} attempts and stay failed (--max-attempts raises "
                f"the limit)")
    c = store.counts()
    log(f"search {p.space.name}: {c['done']}/{sum(c.values())} trials done, {c['failed']} failed; "
        f"store {store.path}")
    store.set_meta("run", dict(workers=s.workers, ray=bool(s.ray or s.ray_address), started=time.time()))
    # trial processes and a local Ray instance's workers start with tcmalloc (REXNET_TCMALLOC=0: not);
    # a Ray cluster's workers are the cluster's business
    children = preload_children(say=log) if not s.ray_address else contextlib.nullcontext()
    fail_fast = _FailFast(s.stop_after_failures)
    try:
        with children:
            if s.ray or s.ray_address:
                _run_ray(store, str(out), p, s, log, fail_fast)
            else:
                _run_local(store, str(out), p, s, log, fail_fast)
        fail_fast.check()
        return store.counts()
    finally:
        store.close()


class _Progress:
    def __init__(self, store: Store, enabled: bool, log: Callable[[str], None]):
        self.store, self.log = store, log
        total = sum(store.counts().values())
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=store.counts()["done"], desc="trials", unit="trial")

    def update(self, key: str, res: dict[str, Any] | None, err: str | None) -> None:
        msg = (f"{key}: val top-1 {res['best_val_top1']:.2f}% in {res['wall_s']:.0f}s" if res
               else f"{key}: FAILED {err}")
        if self.bar is not None:
            self.bar.update(1)
            self.bar.write(msg)
        else:
            self.log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _heartbeats(store: Store, inflight: dict[str, str], stop: threading.Event, every: float = 10.0) -> threading.Thread:
    def loop():
        while not stop.wait(every):
            for key, w in list(inflight.items()):
                store.heartbeat([key], w)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def _run_here(store: Store, out: str, p: Preset, s: SearchSettings, log, fail_fast: _FailFast) -> None:
    """``in_process``: the trials one after another in this process, which pays the imports
    and opens the data once instead of once per trial (about 4 CPU-s and 0.4 CPU-s a trial
    on the 2-core machine): for debugging, profiling and tests.  A crash ends the search
    (finished trials are kept); a trial's error is recorded as in a child process."""
    import torch

    threads = torch.get_num_threads()
    me = worker_id("here")
    inflight: dict[str, str] = {}
    stop = threading.Event()
    _heartbeats(store, inflight, stop)
    progress = _Progress(store, s.progress, log)
    try:
        while True:
            trial = store.claim(me)
            if trial is None:
                return
            inflight[trial["key"]] = me
            try:
                res, err = run_trial(trial, out, p, s), None
            except KeyboardInterrupt:
                store.release(trial["key"], me)
                log("stopped: finished trials are kept; rerun the same command to continue")
                raise
            except Exception as e:  # noqa: BLE001 - recorded in the store, the search goes on
                res, err = None, f"{type(e).__name__}: {e}"
            finally:
                inflight.pop(trial["key"], None)
                torch.set_num_threads(threads)
            if err is None:
                store.finish(trial["key"], me, res)
            else:
                store.fail(trial["key"], me, err)
            progress.update(trial["key"], res, err)
            if fail_fast.record(trial["key"], err):
                return
    finally:
        stop.set()
        progress.close()


def _run_local(store: Store, out: str, p: Preset, s: SearchSettings, log, fail_fast: _FailFast) -> None:
    if s.in_process:
        return _run_here(store, out, p, s, log, fail_fast)
    workers = max(1, s.workers)
    threads = max(1, _cores() // workers)
    ctx = mp.get_context("spawn")
    inflight: dict[str, str] = {}
    stop = threading.Event()
    halt = threading.Event()   # fail-fast: claim no more trials, record those in flight
    _heartbeats(store, inflight, stop)
    progress = _Progress(store, s.progress, log)
    children: list = []

    def slot(i: int) -> None:
        me = worker_id(f"slot{i}")
        while not stop.is_set() and not halt.is_set():
            trial = store.claim(me)
            if trial is None:
                return
            inflight[trial["key"]] = me
            result_file = Path(out) / "trials" / trial["key"] / "result.json"
            result_file.parent.mkdir(parents=True, exist_ok=True)
            result_file.unlink(missing_ok=True)
            proc = ctx.Process(target=_child, args=(trial, out, p, s, threads, result_file), daemon=True)
            proc.start()
            children.append(proc)
            proc.join()
            inflight.pop(trial["key"], None)
            if stop.is_set():
                store.release(trial["key"], me)
                return
            if result_file.exists():
                res = json.loads(result_file.read_text())
            else:
                res = {"error": f"trial process exited with code {proc.exitcode} and no result"}
            if "ok" in res:
                store.finish(trial["key"], me, res["ok"])
                progress.update(trial["key"], res["ok"], None)
            else:
                store.fail(trial["key"], me, res["error"])
                progress.update(trial["key"], None, res["error"])
            if fail_fast.record(trial["key"], res.get("error")):
                halt.set()

    pool = [threading.Thread(target=slot, args=(i,), daemon=True) for i in range(workers)]
    for t in pool:
        t.start()
    try:
        while any(t.is_alive() for t in pool):
            for t in pool:
                t.join(timeout=0.5)
    except KeyboardInterrupt:
        stop.set()
        for proc in children:
            if proc.is_alive():
                proc.terminate()
        log("stopped: finished trials are kept; rerun the same command to continue")
        raise
    finally:
        stop.set()
        progress.close()


def _run_ray(store: Store, out: str, p: Preset, s: SearchSettings, log, fail_fast: _FailFast) -> None:
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("Ray is not installed: pip install 'ray[default]' (or run without --ray)") from e
    started = False
    if not ray.is_initialized():
        if s.ray_address:
            ray.init(address=s.ray_address, log_to_driver=False)
        else:   # our own local instance, stopped at the end
            ray.init(num_cpus=max(1, math.ceil(s.workers * s.cpus_per_trial)),
                     num_gpus=math.ceil(s.workers * s.gpus_per_trial) or None,
                     include_dashboard=False, log_to_driver=False)
        started = True
    threads = max(1, int(s.cpus_per_trial))
    remote = ray.remote(run_trial).options(num_cpus=s.cpus_per_trial, num_gpus=s.gpus_per_trial,
                                           max_retries=0)
    me = worker_id("ray")
    inflight: dict[str, str] = {}
    refs: dict[Any, str] = {}
    stop = threading.Event()
    _heartbeats(store, inflight, stop)
    progress = _Progress(store, s.progress, log)
    try:
        while True:
            while len(refs) < max(1, s.workers) and fail_fast.error is None:
                trial = store.claim(me)
                if trial is None:
                    break
                inflight[trial["key"]] = me
                refs[remote.remote(trial, out, p, s, threads)] = trial["key"]
            if not refs:
                break
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                key = refs.pop(ref)
                inflight.pop(key, None)
                try:
                    res = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a failed trial is recorded, the search goes on
                    cause = getattr(e, "cause", None) or e
                    store.fail(key, me, f"{type(cause).__name__}: {cause}")
                    progress.update(key, None, f"{type(cause).__name__}: {cause}")
                    fail_fast.record(key, f"{type(cause).__name__}: {cause}")
                else:
                    store.finish(key, me, res)
                    progress.update(key, res, None)
                    fail_fast.record(key, None)
    except KeyboardInterrupt:
        for ref, key in refs.items():
            ray.cancel(ref, force=True)
            store.release(key, me)
        log("stopped: finished trials are kept; rerun the same command to continue")
        raise
    finally:
        stop.set()
        progress.close()
        if started:
            ray.shutdown()


# -- recovery ----------------------------------------------------------------------------
def _preset_from_dict(d: dict[str, Any]) -> Preset:
    """The preset a stored ``Preset.to_dict()`` describes (its space by name)."""
    base = get_preset(d["space"]["name"])
    return dataclasses.replace(base, **{f.name: d[f.name] for f in dataclasses.fields(Preset)
                                        if f.name != "space" and f.name in d})


def _infer_search(out: Path, results: list[Path]) -> tuple[dict[str, Any], Preset]:
    """Protocol and preset of a search without its sidecar (made before there was one), from
    its trials' folders: the space from the networks' names, the training settings from a
    trial's config.yaml, the repeats and sampled models from the trial keys."""
    import yaml

    configs = [r.parent / "config.yaml" for r in results if (r.parent / "config.yaml").is_file()]
    if not configs:
        raise FileNotFoundError(f"cannot recover {out}: no {SIDECAR} and no trial with a config.yaml")
    cfg = yaml.safe_load(configs[0].read_text())
    space = str(cfg["model"]).rsplit("_", 2)[0]
    keys = [r.parent.name for r in results]
    p = dataclasses.replace(get_preset(space), data=cfg["data"], epochs=cfg["epochs"],
                            repeats=1 + max(int(k.rsplit("-r", 1)[1]) for k in keys),
                            train_subset=cfg["train_subset"], val_subset=cfg["val_subset"],
                            batch_size=cfg["batch_size"], early_stop_patience=cfg["early_stop_patience"],
                            seed=cfg["seed"] - int(configs[0].parent.name.rsplit("-r", 1)[1]))
    # the sampled models: the shortest prefix of the sampler's sequence that holds every one seen
    want = {k.rsplit("-r", 1)[0] for k in keys} - {c.hash for c in p.space.references()}
    n, pos = max(1, len(want)), {}
    while want - pos.keys() and n <= 10_000:
        pos = {c.hash: i for i, c in enumerate(p.space.samples(n, p.seed))}
        n *= 2
    p = dataclasses.replace(p, trials=1 + max((pos[h] for h in want if h in pos), default=-1))
    ok = [json.loads(r.read_text()).get("ok") or {} for r in results]
    s = SearchSettings(rank_images=256 if any("nuclear_norm" in r for r in ok) else 0,
                       channels_last=bool(cfg["channels_last"]), amp=cfg["amp"])
    return protocol_of(p, s), p


def recover(out: str | os.PathLike, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Rebuild ``out/search.db`` from the trials' ``result.json`` files: the trials of the
    search's preset (from ``out/search.json``, else inferred from the trial folders) as
    pending, then each result as done or failed.  A damaged store file (and its WAL) is
    kept as ``search.db.bad-<time>``; a readable one is refused."""
    out = Path(out)
    path = out / DB_NAME
    results = sorted((out / "trials").glob("*/result.json"))
    if not results:
        raise FileNotFoundError(f"nothing to recover in {out}: no trials/*/result.json")
    if path.is_file() and path.stat().st_size > 0:
        try:
            with Store(path) as store:
                readable = store.get_meta("protocol") is not None
        except StoreError:
            readable = False
        if readable:
            raise ValueError(f"{path} is a readable search store; nothing to recover")
    sidecar = out / SIDECAR
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        protocol, p = meta["protocol"], _preset_from_dict(meta["preset"])
        how = f"protocol from {sidecar}"
    else:
        protocol, p = _infer_search(out, results)
        how = "protocol inferred from the trials' config.yaml"
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("-wal", "-shm", ""):   # the WAL belongs to the bad file
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{backup}{suffix}")
    done = failed = 0
    unknown = []
    with Store(path) as store:
        store.set_meta("protocol", protocol)
        store.add(_trial_rows(p))
        store.set_meta("preset", p.to_dict())
        for r in results:
            res = json.loads(r.read_text())
            if store.restore(r.parent.name, res.get("ok"), res.get("error"), r.stat().st_mtime):
                done, failed = done + ("ok" in res), failed + ("ok" not in res)
            else:
                unknown.append(r.parent.name)
        counts = store.counts()
    log(f"recovered {path}: {done} done and {failed} failed trials from {len(results)} result files, "
        f"{counts['pending']} pending ({how})" + (f"; the bad file is kept as {backup}" if backup else "")
        + (f"; {len(unknown)} trial folders match no trial of the preset: {', '.join(unknown[:3])}"
           if unknown else ""))
    return dict(counts=counts, backup=str(backup) if backup else None, unknown=unknown)


# -- status ------------------------------------------------------------------------------
def status(out: str | os.PathLike) -> dict[str, Any]:
    """Progress, ETA and the best model so far of the search in ``out``."""
    path = Path(out) / DB_NAME
    if not path.exists():
        raise FileNotFoundError(f"no search in {out} (expected {path}); start one with `rexnet search run`")
    with Store(path) as store:
        counts = store.counts()
        done = store.trials("done")
        preset = store.get_meta("preset") or {}
        run = store.get_meta("run") or {}
    total = sum(counts.values())
    if not total and not preset:
        raise FileNotFoundError(f"no search in {out}: {path} holds no trials yet")
    walls = [t["result"]["wall_s"] for t in done]
    mean_wall = sum(walls) / len(walls) if walls else None
    remaining = counts["pending"] + counts["running"]
    by_spec: dict[str, list[float]] = {}
    for t in done:
        by_spec.setdefault(t["spec_hash"], []).append(t["result"]["best_val_top1"])
    best = max(by_spec.items(), key=lambda kv: sum(kv[1]) / len(kv[1]), default=None)
    best_row = next((t for t in done if best and t["spec_hash"] == best[0]), None)
    return dict(search=preset.get("space", {}).get("name"), total=total, **counts,
                mean_trial_s=mean_wall, eta_s=mean_wall * remaining / max(1, run.get("workers", 1)) if mean_wall else None,
                best=None if best is None else dict(spec_hash=best[0], kind=best_row["kind"],
                                                     mean_val_top1=sum(best[1]) / len(best[1]),
                                                     repeats=len(best[1]), widths=best_row["widths"],
                                                     macs=best_row["macs"], params=best_row["params"]))
