"""Run the unfinished trials of a store: locally in child processes or on Ray.

Local (default): ``workers`` threads each claim a trial from the store and run it in a
fresh child process (a crash or leak stays inside one trial), with
``available_cores() // workers`` torch threads (:func:`rexnet.cores.available_cores`).
Ray (``ray`` or ``ray_address``): the driver claims trials and runs each as a Ray task
with ``cpus_per_trial`` / ``gpus_per_trial`` resources; without an address it starts a
local Ray instance and stops it at the end.  Either way the driver keeps the heartbeats
of the trials in flight, so a killed run loses at most their unfinished epochs (each
trial resumes from its own last checkpoint).  Trial processes and a local Ray instance's
workers start with tcmalloc where it is installed (:mod:`rexnet.alloc`;
``REXNET_TCMALLOC=0``: not).  ``benchmarks/search_scaling.py`` measures the schedulers
against each other.
"""
from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..alloc import preload_children
from ..cores import available_cores
from ..io import write_json
from .plan import RunOptions, TrialPlan
from .store import Store, worker_id
from .trial import run_trial

__all__ = ["execute", "TrialsHalted"]


class TrialsHalted(ValueError):
    """The last ``stop_after_failures`` trials failed with the same error: the run stopped."""


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
            raise TrialsHalted(f"stopped: {self.streak} trials in a row failed with the same error "
                               f"({' '.join(self.error.split())}); fix the cause and rerun the same command "
                               f"(failed trials are retried)")


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


def _child(trial: dict[str, Any], out: str, plan: TrialPlan, threads: int, result_file: Path) -> None:
    """Entry of a local trial process: the result (or the error) goes to a JSON file."""
    _exit_with_parent()
    try:
        res = {"ok": run_trial(trial, out, plan, threads)}
    except BaseException as e:  # noqa: BLE001 - recorded in the store, never swallowed silently
        res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    write_json(res, result_file, indent=None)


def execute(store: Store, out: str | os.PathLike, plan: TrialPlan, opts: RunOptions, name: str,
            log: Callable[[str], None] = print) -> dict[str, int]:
    """Run the unfinished trials of a prepared ``store`` (locally or on Ray; the store is
    closed at the end); returns its counts.  ``name`` says whose trials they are in the log.
    Failed trials run again while they have had fewer than ``max_attempts`` attempts (unless
    ``retry`` is off); :class:`TrialsHalted` when ``stop_after_failures`` trials in a row
    failed with the same error."""
    if opts.retry:
        retried, left = store.retry_failed(opts.max_attempts)
        if retried:
            log(f"retrying {retried} failed trial(s)")
        if left:
            log(f"{left} failed trial(s) had {opts.max_attempts} attempts and stay failed (--max-attempts raises "
                f"the limit)")
    c = store.counts()
    log(f"{name}: {c['done']}/{sum(c.values())} trials done, {c['failed']} failed; "
        f"store {store.path}")
    store.set_meta("run", dict(workers=opts.workers, ray=opts.uses_ray, started=time.time()))
    # trial processes and a local Ray instance's workers start with tcmalloc (REXNET_TCMALLOC=0: not);
    # a Ray cluster's workers are the cluster's business
    children = preload_children(say=log) if not opts.ray_address else contextlib.nullcontext()
    fail_fast = _FailFast(opts.stop_after_failures)
    try:
        with children:
            if opts.uses_ray:
                _run_ray(store, str(out), plan, opts, log, fail_fast)
            else:
                _run_local(store, str(out), plan, opts, log, fail_fast)
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


def _run_here(store: Store, out: str, plan: TrialPlan, opts: RunOptions, log, fail_fast: _FailFast) -> None:
    """``in_process``: the trials one after another in this process, which pays the imports
    and opens the data once instead of once per trial (seconds of CPU a trial): for
    debugging, profiling and tests.  A crash ends the run
    (finished trials are kept); a trial's error is recorded as in a child process."""
    import torch

    threads = torch.get_num_threads()
    me = worker_id("here")
    inflight: dict[str, str] = {}
    stop = threading.Event()
    _heartbeats(store, inflight, stop)
    progress = _Progress(store, opts.progress, log)
    try:
        while True:
            trial = store.claim(me)
            if trial is None:
                return
            inflight[trial["key"]] = me
            try:
                res, err = run_trial(trial, out, plan), None
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


def _run_local(store: Store, out: str, plan: TrialPlan, opts: RunOptions, log, fail_fast: _FailFast) -> None:
    if opts.in_process:
        return _run_here(store, out, plan, opts, log, fail_fast)
    workers = max(1, opts.workers)
    threads = max(1, available_cores() // workers)
    ctx = mp.get_context("spawn")
    inflight: dict[str, str] = {}
    stop = threading.Event()
    halt = threading.Event()   # fail-fast: claim no more trials, record those in flight
    _heartbeats(store, inflight, stop)
    progress = _Progress(store, opts.progress, log)
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
            proc = ctx.Process(target=_child, args=(trial, out, plan, threads, result_file), daemon=True)
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


def _run_ray(store: Store, out: str, plan: TrialPlan, opts: RunOptions, log, fail_fast: _FailFast) -> None:
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("Ray is not installed: pip install 'ray[default]' (or run without --ray)") from e
    started = False
    if not ray.is_initialized():
        if opts.ray_address:
            ray.init(address=opts.ray_address, log_to_driver=False)
        else:   # our own local instance, stopped at the end
            ray.init(num_cpus=max(1, math.ceil(opts.workers * opts.cpus_per_trial)),
                     num_gpus=math.ceil(opts.workers * opts.gpus_per_trial) or None,
                     include_dashboard=False, log_to_driver=False)
        started = True
    threads = max(1, int(opts.cpus_per_trial))
    remote = ray.remote(run_trial).options(num_cpus=opts.cpus_per_trial, num_gpus=opts.gpus_per_trial,
                                           max_retries=0)
    me = worker_id("ray")
    inflight: dict[str, str] = {}
    refs: dict[Any, str] = {}
    stop = threading.Event()
    _heartbeats(store, inflight, stop)
    progress = _Progress(store, opts.progress, log)
    try:
        while True:
            while len(refs) < max(1, opts.workers) and fail_fast.error is None:
                trial = store.claim(me)
                if trial is None:
                    break
                inflight[trial["key"]] = me
                refs[remote.remote(trial, out, plan, threads)] = trial["key"]
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
