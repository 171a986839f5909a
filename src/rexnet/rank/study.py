"""The rank study's runner: every network of a :class:`StudyConfig`, resumable, then the report.

* **Determinism.**  Each network runs single-threaded from its own seeds
  (:mod:`rexnet.rank.networks`), so the numbers do not depend on ``--workers``
  or on the order of completion; the final CSV is sorted.
* **Resumable.**  Each finished network's rows are appended (one write, then
  flush) to ``rank_study.partial.csv``; a rerun keeps every complete network,
  drops a torn last write, and computes only the rest.  At the end the rows
  are sorted into ``rank_study.csv`` (or ``.csv.gz`` when large), atomically.

:func:`run_and_report` is the whole ``rexnet rank-study`` command: the run,
then the summary, figures and ``report.md`` of :mod:`rexnet.rank.report`.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..cores import available_cores
from ..io import changed_settings, refuse_other_settings, write_bytes, write_json, write_text
from .networks import COLUMNS, StudyConfig, compute_network, network_dims
from .report import write_outputs
from .results import CONFIG_NAME, CSV_NAME, GZ_NAME, load_results, observations, read_raw, results_path

__all__ = ["PARTIAL_NAME", "StudyRun", "run_study", "command_for", "StudyReport", "run_and_report"]

PARTIAL_NAME = "rank_study.partial.csv"
GZIP_ABOVE_BYTES = 5_000_000  # --compress auto: gzip a final CSV larger than this


# -- the partial and final CSV --------------------------------------------------------
def _cost(cfg: StudyConfig, block: str, index: int) -> float:
    """Rough MACs of one network, to start the slowest first (a better-balanced pool)."""
    d = network_dims(cfg, index)
    mid = cfg.mid(d.d_in)
    per_act = {"conv1x1": d.d_in * d.d_out, "conv3x3": 9 * d.d_in * d.d_out,
               "ib3x3": 9 * mid * mid + mid * d.d_out, "ibdw": 9 * mid + mid * d.d_out}[block]
    return per_act * cfg.n + d.d_out ** 3


def _csv_text(rows: Iterable[Sequence[str]], header: bool = True) -> str:
    """Rows as CSV lines; no field holds a comma or a quote (names and numbers only), so none is quoted."""
    lines = [",".join(COLUMNS)] if header else []
    return "".join(line + "\n" for line in lines + [",".join(r) for r in rows])


def _group_complete(rows: Iterable[list[str]], cfg: StudyConfig) -> tuple[dict[tuple[str, int], list[list[str]]], int]:
    """Rows grouped by network, keeping only networks of this study with all their rows."""
    groups: dict[tuple[str, int], list[list[str]]] = {}
    for r in rows:
        groups.setdefault((r[0], int(r[1])), []).append(r)
    want = cfg.rows_per_network
    keep = {k: v for k, v in groups.items()
            if len(v) == want and k[0] in cfg.blocks and k[1] < cfg.networks}
    dropped = sum(len(v) for k, v in groups.items() if len(v) != want)
    return keep, dropped


def _sort_key(cfg: StudyConfig):
    blocks = {b: i for i, b in enumerate(cfg.blocks)}
    acts = {a: i for i, a in enumerate(cfg.acts)}
    measures = {m.name: i for i, m in enumerate(cfg.measure_list)}
    return lambda r: (blocks[r[0]], int(r[1]), acts[r[3]], measures[r[9]])


# -- the run -------------------------------------------------------------------------
@dataclass
class StudyRun:
    out: Path
    config: StudyConfig
    computed: int  # networks computed by this call
    reused: int  # finished networks found on disk
    complete: bool
    csv_path: Path | None
    seconds: float


_WORKER_CFG: StudyConfig | None = None


def _init_worker(cfg_dict: dict[str, Any]) -> None:
    global _WORKER_CFG
    torch.set_num_threads(1)
    _WORKER_CFG = StudyConfig.from_dict(cfg_dict)


def _work(task: tuple[str, int]) -> tuple[tuple[str, int], list[list[str]]]:
    assert _WORKER_CFG is not None
    return task, compute_network(_WORKER_CFG, *task)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _meta(cfg: StudyConfig, status: str, **extra: Any) -> dict[str, Any]:
    """The content of ``study.json``: the config, what it implies, the definitions and the software."""
    m = cfg.measure_list
    return dict(
        config=cfg.to_dict(), status=status,
        derived=dict(n=cfg.n, batch=cfg.batch, spatial=cfg.spatial, rows_per_network=cfg.rows_per_network,
                     measures=[x.name for x in m],
                     f32_tol_at_d_out_max=m[0].tol(cfg.d_out_max, cfg.n) if m[0].kind == "rank" else None,
                     networks_total=cfg.networks * len(cfg.blocks)),
        definitions=dict(
            output="f(BN(W X)) for conv1x1/conv3x3; for ib3x3/ibdw: 1x1 expand+BN+f, 3x3 (full or depthwise)"
                   "+BN+f, 1x1 project+BN, then the shortcut; output taken after the shortcut addition",
            shortcut={"partial": "input added to the first d_in output channels (ReXNet)",
                      "full": "input added only when d_in == d_out (MobileNetV2)",
                      "none": "no shortcut"}[cfg.shortcut],
            d_in="round(ratio * d_out), ratio = ratios[index % len(ratios)]",
            d_out="uniform integer in [d_out_min, d_out_max], drawn from SeedSequence([seed, index])",
            d_mid="round(expansion * d_in) (IBs only; 0 for single convs)",
            weights="N(0, 1/fan_in); BN gamma=1, beta=0; eval-mode BN uses running stats 0/1",
            input={"normal": "i.i.d. N(0, 1)",
                   "blur": f"N(0, 1) field blurred by a Gaussian of sigma {cfg.blur_sigma} px, unit variance"}[cfg.input],
            spectrum="singular values via eigvalsh of the float64 Gram matrix of the d_out x N output"
                     + (", rows centred" if cfg.center else ""),
            rank_ratio="measure / d_out"),
        versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__),
        machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                     cpus=os.cpu_count()),
        **extra)


def _settle_folder(cfg: StudyConfig, out: Path, fresh: bool) -> None:
    """``fresh`` discards earlier results in ``out``; otherwise a study made with other settings is refused."""
    if fresh:
        for name in (CSV_NAME, GZ_NAME, PARTIAL_NAME, CONFIG_NAME):
            (out / name).unlink(missing_ok=True)
        return
    meta_path = out / CONFIG_NAME
    if meta_path.is_file():
        old = json.loads(meta_path.read_text()).get("config", {})
        new = cfg.identity()  # networks is not among them: more or fewer networks extend or reuse a study
        refuse_other_settings(out, "rank study", changed_settings({k: old.get(k) for k in new}, new),
                              replace_flag="--fresh")


def _finished_networks(cfg: StudyConfig, out: Path) -> tuple[dict[tuple[str, int], list[list[str]]], int, int]:
    """Networks already finished in ``out`` (the last final CSV, then the appended partial file, which
    may repeat some), and how many torn lines and rows of incomplete networks were dropped."""
    done: dict[tuple[str, int], list[list[str]]] = {}
    torn = dropped = 0
    partial = out / PARTIAL_NAME
    for path in (results_path(out), partial if partial.is_file() else None):
        if path is not None:
            rows, bad = read_raw(path)
            complete_, short = _group_complete(rows, cfg)
            done.update(complete_)
            torn, dropped = torn + bad, dropped + short
    return done, torn, dropped


def _compute(cfg: StudyConfig, out: Path, tasks: list[tuple[str, int]],
             done: dict[tuple[str, int], list[list[str]]], workers: int, progress: bool) -> int:
    """Compute ``tasks``, appending each network's rows to the partial file as it finishes and adding
    them to ``done``; the number computed."""
    partial = out / PARTIAL_NAME
    # Start the partial file from exactly the finished networks (drops a torn write).
    write_text(partial, _csv_text(r for v in done.values() for r in v))
    from tqdm import tqdm

    computed = 0
    with open(partial, "a", newline="") as fh, \
            tqdm(total=cfg.networks * len(cfg.blocks), initial=len(done), desc="rank study", unit="net",
                 disable=not progress, dynamic_ncols=True) as bar:
        def record(key: tuple[str, int], net_rows: list[list[str]]) -> None:
            nonlocal computed
            fh.write(_csv_text(net_rows, header=False))  # one write per network
            fh.flush()
            done[key] = net_rows
            computed += 1
            bar.update(1)

        if workers == 1:
            with _single_thread():
                for task in tasks:
                    record(task, compute_network(cfg, *task))
        else:
            ctx = mp.get_context("spawn")  # no fork of a process that holds torch's thread pools
            with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(cfg.to_dict(),)) as pool:
                for key, net_rows in pool.imap_unordered(_work, tasks, chunksize=1):
                    record(key, net_rows)
        os.fsync(fh.fileno())
    return computed


def _write_final(cfg: StudyConfig, out: Path, done: dict[tuple[str, int], list[list[str]]], compress: str) -> Path:
    """Every row, sorted, into the final CSV (gzipped per ``compress``); the partial file goes."""
    ordered = sorted((r for v in done.values() for r in v), key=_sort_key(cfg))
    data = _csv_text(ordered).encode()
    gz = compress == "yes" or (compress == "auto" and len(data) > GZIP_ABOVE_BYTES)
    csv_path = out / (GZ_NAME if gz else CSV_NAME)
    if gz:
        data = gzip.compress(data, mtime=0)  # mtime 0: the same study gives the same bytes
    write_bytes(csv_path, data)
    (out / (CSV_NAME if gz else GZ_NAME)).unlink(missing_ok=True)
    (out / PARTIAL_NAME).unlink(missing_ok=True)
    return csv_path


def run_study(cfg: StudyConfig, out: str | os.PathLike, *, workers: int | None = None,
              progress: bool = True, fresh: bool = False, compress: str = "auto",
              stop_after: int | None = None) -> StudyRun:
    """Compute every network of ``cfg`` not yet finished in ``out``; sort them into the final CSV when all are.

    ``stop_after=k`` computes at most ``k`` new networks and returns as if
    interrupted (a budget, and how the tests interrupt a study).  ``fresh``
    discards earlier results in ``out``; otherwise a directory holding a study
    with different settings is refused.  ``compress``: ``auto`` (gzip above
    5 MB), ``yes`` or ``no``.  ``workers`` defaults to the cores this process may
    use (:func:`rexnet.cores.available_cores`); ``workers > 1`` starts a pool of
    *spawned* processes (forking a process that holds torch's thread pools is
    unsafe), so a script calling this needs the usual ``if __name__ == "__main__":`` guard.
    """
    if compress not in ("auto", "yes", "no"):
        raise ValueError(f"compress must be auto, yes or no, got {compress!r}")
    workers = available_cores() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _settle_folder(cfg, out, fresh)
    done, torn, dropped = _finished_networks(cfg, out)
    tasks = [(b, i) for b in cfg.blocks for i in range(cfg.networks) if (b, i) not in done]
    tasks.sort(key=lambda t: -_cost(cfg, *t))
    if stop_after is not None:
        tasks = tasks[:max(0, stop_after)]

    meta_path = out / CONFIG_NAME
    write_json(_meta(cfg, "running"), meta_path)
    computed = _compute(cfg, out, tasks, done, workers, progress) if tasks else 0
    expected = cfg.networks * len(cfg.blocks)
    complete = len(done) == expected
    csv_path = _write_final(cfg, out, done, compress) if complete else results_path(out)
    seconds = time.perf_counter() - t0
    write_json(_meta(cfg, "complete" if complete else "partial",
                     run=dict(networks_done=len(done), networks_expected=expected, computed_this_run=computed,
                              reused=len(done) - computed, dropped_rows=dropped, torn_lines=torn,
                              workers=workers, seconds_this_run=round(seconds, 2),
                              results=csv_path.name if csv_path else None)), meta_path)
    return StudyRun(out, cfg, computed, len(done) - computed, complete, csv_path, seconds)


# -- the command ------------------------------------------------------------------------
def command_for(cfg: StudyConfig, out: str | Path) -> str:
    """A ``rexnet rank-study`` command line that reproduces ``cfg`` (flags for non-default choices only)."""
    default = StudyConfig()
    parts = ["rexnet", "rank-study", "--out", str(out)]
    if cfg.networks != default.networks:
        parts += ["--networks", str(cfg.networks)]
    for key in ("blocks", "acts", "measures", "tols"):
        if getattr(cfg, key) != getattr(default, key):
            parts += [f"--{key}", ",".join(getattr(cfg, key))]
    if cfg.ratios != default.ratios:
        parts += ["--ratios", ",".join(f"{r:g}" for r in cfg.ratios)]
    if (cfg.d_out_min, cfg.d_out_max) != (default.d_out_min, default.d_out_max):
        parts += ["--d-out", str(cfg.d_out_min), str(cfg.d_out_max)]
    if cfg.batch != math.ceil(4 * cfg.d_out_max / cfg.spatial ** 2):  # not the default batch
        parts += ["--batch", str(cfg.batch)]
    for key in ("spatial", "input", "blur_sigma", "bn", "expansion", "shortcut", "seed"):
        if getattr(cfg, key) != getattr(default, key):
            parts += [f"--{key.replace('_', '-')}", f"{getattr(cfg, key):g}" if isinstance(getattr(cfg, key), float)
                      else str(getattr(cfg, key))]
    if cfg.center:
        parts.append("--center")
    return shlex.join(parts)


@dataclass
class StudyReport:
    """What :func:`run_and_report` did: the run, and for a complete study its files and verdicts."""
    run: StudyRun
    paths: dict[str, Path]  # summary_csv, summary_md, report, fig:<measure>; empty while incomplete
    # measure -> verdicts of observations (i), (ii), (iii) by spread, (iii) as stated (gain over identity)
    verdicts: dict[str, tuple[str, str, str, str]]


def run_and_report(cfg: StudyConfig, out: str | os.PathLike, *, workers: int | None = None,
                   progress: bool = True, fresh: bool = False, compress: str = "auto",
                   stop_after: int | None = None, compare: Sequence[str | os.PathLike] = ()) -> StudyReport:
    """``rexnet rank-study``: :func:`run_study`, then (once complete) summary, figures and ``report.md``.

    ``compare``: other finished study directories whose verdicts the report sets side by side.
    """
    run = run_study(cfg, out, workers=workers, progress=progress, fresh=fresh, compress=compress,
                    stop_after=stop_after)
    if not run.complete:
        return StudyReport(run, {}, {})
    paths = write_outputs(run.out, command=command_for(cfg, run.out), compare=compare)
    verdicts = {m: (o["i"]["verdict"], o["ii"]["verdict"] if o["ii"] else "not tested",
                    o["iii"]["verdict"] if o["iii"] else "not tested",
                    o["iii_gain"]["verdict"] if o.get("iii_gain") else "not tested")
                for m, o in observations(load_results(run.out)).items()}
    return StudyReport(run, paths, verdicts)
