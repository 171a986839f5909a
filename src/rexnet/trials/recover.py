"""Rebuild a damaged store from its trials' result files, and the status of a store.

A store is a cache of what ``trials/*/result.json`` hold plus the rows that say which
trials exist; whoever owns the trials (a search, an experiment) knows the rows and the
protocol, so it passes them to :func:`rebuild_store`, which keeps the damaged file beside
the new one.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from .store import STORE_NAME, Store, StoreError

__all__ = ["result_files", "check_rebuildable", "rebuild_store", "status"]


def result_files(out: str | os.PathLike) -> list[Path]:
    """The trials' result files in ``out``; FileNotFoundError when there are none."""
    out = Path(out)
    results = sorted((out / "trials").glob("*/result.json"))
    if not results:
        raise FileNotFoundError(f"nothing to recover in {out}: no trials/*/result.json")
    return results


def check_rebuildable(out: str | os.PathLike) -> None:
    """Refuse (ValueError) to rebuild a store that is readable."""
    path = Path(out) / STORE_NAME
    if path.is_file() and path.stat().st_size > 0:
        try:
            with Store(path) as store:
                readable = store.get_meta("protocol") is not None
        except StoreError:
            readable = False
        if readable:
            raise ValueError(f"{path} is a readable search store; nothing to recover")


def rebuild_store(out: str | os.PathLike, protocol: dict[str, Any], rows: list[dict[str, Any]],
                  meta: dict[str, Any], how: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """A new store in ``out`` with ``protocol``, the trial ``rows`` as pending and ``meta``,
    then each ``trials/<key>/result.json`` as done or failed.  A damaged store file (and
    its WAL) is kept as ``<name>.bad-<time>``; a readable one is refused."""
    out = Path(out)
    path = out / STORE_NAME
    results = result_files(out)
    check_rebuildable(out)
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
        store.add(rows)
        for key, value in meta.items():
            store.set_meta(key, value)
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
    path = Path(out) / STORE_NAME
    if not path.exists():
        raise FileNotFoundError(f"no search in {out} (expected {path}); start one with `rexnet search run`")
    with Store(path) as store:
        counts = store.counts()
        done = store.trials("done")
        preset = store.get_meta("preset") or {}
        run = store.get_meta("run") or {}
        store_name = store.get_meta("name")
    total = sum(counts.values())
    if not total and not preset and not store_name:
        raise FileNotFoundError(f"no search in {out}: {path} holds no trials yet")
    walls = [t["result"]["wall_s"] for t in done]
    mean_wall = sum(walls) / len(walls) if walls else None
    remaining = counts["pending"] + counts["running"]
    by_spec: dict[str, list[float]] = {}
    for t in done:
        by_spec.setdefault(t["spec_hash"], []).append(t["result"]["best_val_top1"])
    best = max(by_spec.items(), key=lambda kv: sum(kv[1]) / len(kv[1]), default=None)
    best_row = next((t for t in done if best and t["spec_hash"] == best[0]), None)
    return dict(search=store_name or preset.get("space", {}).get("name"), total=total, **counts,
                mean_trial_s=mean_wall, eta_s=mean_wall * remaining / max(1, run.get("workers", 1)) if mean_wall else None,
                best=None if best is None else dict(spec_hash=best[0], kind=best_row["kind"],
                                                     mean_val_top1=sum(best[1]) / len(best[1]),
                                                     repeats=len(best[1]), widths=best_row["widths"],
                                                     macs=best_row["macs"], params=best_row["params"]))
