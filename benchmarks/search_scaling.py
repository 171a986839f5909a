"""Trials per hour of the Ray path with 1 and 2 workers on this machine, measured side by side.

    .venv/bin/python benchmarks/search_scaling.py --data ../shared/data/cifar10-jpeg.zip \
        --out benchmarks/results/search_scaling

Both runs train the same smoke-preset trials (same specs, seeds, images) on a local
Ray instance that the search starts and stops: 1 worker with all cores per trial
against 2 workers with half the cores each.  Each run has its own store, so nothing
is reused between them.  Writes scaling.json with trials/hour and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from rexnet.io import write_json
from rexnet.search.runner import SearchSettings, run_search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--trials", type=int, default=4, help="sampled models (+2 references), 1 repeat")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=1000)
    ap.add_argument("--val-subset", type=int, default=500)
    ap.add_argument("--out", default="benchmarks/results/search_scaling")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    out = Path(args.out)
    res = dict(cores=cores, trials=args.trials + 2, epochs=args.epochs, train_subset=args.train_subset)
    for workers in (1, 2):
        d = out / f"workers{workers}"
        shutil.rmtree(d, ignore_errors=True)
        s = SearchSettings(preset="smoke", data=args.data, trials=args.trials, repeats=1, epochs=args.epochs,
                           train_subset=args.train_subset, val_subset=args.val_subset, rank_images=0,
                           ray=True, workers=workers, cpus_per_trial=max(1, cores // workers), progress=False)
        t0 = time.time()
        counts = run_search(d, s)
        wall = time.time() - t0
        res[f"workers{workers}"] = dict(wall_s=round(wall, 1), done=counts["done"],
                                        trials_per_hour=round(counts["done"] / wall * 3600, 1))
        print(json.dumps(res[f"workers{workers}"]))
    res["ratio_2_over_1"] = round(res["workers2"]["trials_per_hour"] / res["workers1"]["trials_per_hour"], 3)
    write_json(res, out / "scaling.json")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
