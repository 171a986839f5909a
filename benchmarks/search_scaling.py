"""Trials per hour of the Ray path with 1 and 2 workers on this machine, measured side by side.

    .venv/bin/python benchmarks/search_scaling.py --data ../shared/data/cifar10-jpeg.zip \
        --out benchmarks/results/search_scaling

Each configuration ``WxC`` (W workers of C CPUs each; default 1x1, 1x2 and 2x1 on 2 cores)
trains the same smoke-preset trials (same specs, seeds, images; each ends with the full
10,000-image test evaluation) on a local Ray instance that the search starts and stops.
Each run has its own store, so nothing is reused between them.  Besides trials/hour
over the whole run, the trials' own start/finish times say where the wall went:
``startup_s`` (Ray starting, until the first trial starts), ``tail_s`` (the last trial
running while the other workers have nothing left), ``end_s`` (after the last trial:
Ray stopping), and each trial's CPU seconds per wall second (about its thread count
when it had its cores, less when it waited for them).  Writes scaling.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from rexnet.io import write_json
from rexnet.search.run import SearchSettings, run_search
from rexnet.trials import STORE_NAME, Store


def timeline(out: Path, t0: float, t1: float, workers: int) -> dict:
    """Where the wall of one run went, from the store's start/finish times of its trials."""
    with Store(out / STORE_NAME) as store:
        done = store.trials("done")
    spans = sorted((t["started"], t["finished"]) for t in done)
    finishes = sorted(f for _, f in spans)
    res = [t["result"] for t in done]
    return dict(startup_s=round(spans[0][0] - t0, 1),
                tail_s=round(finishes[-1] - finishes[-min(workers, len(finishes))], 1),
                end_s=round(t1 - finishes[-1], 1),
                trial_wall_s=round(statistics.mean(r["wall_s"] for r in res), 1),
                trial_cpu_per_wall=round(statistics.mean(r["cpu_s"] / r["wall_s"] for r in res), 2),
                threads=sorted({r["threads"] for r in res}),
                tcmalloc=sorted({r["tcmalloc"] for r in res}))


def eval_batches(sizes: list[int], seconds: float = 3.0) -> dict[str, float]:
    """Images per CPU-second of the full-test evaluation's forward pass (the smoke preset's
    linear reference in deploy form, channels_last, one thread) at each batch size,
    twice in turns: what ``rexnet.trials.trial.TEST_BATCH`` was chosen from."""
    import torch

    from rexnet.bench.deploy import deploy_model
    from rexnet.models.resolve import create_model
    from rexnet.search.space import get_preset

    torch.set_num_threads(1)
    spec = get_preset("smoke").space.references()[0].spec
    net = deploy_model(create_model(spec, num_classes=10), channels_last=True)
    rates: dict[int, list[float]] = {b: [] for b in sizes}
    with torch.no_grad():
        for _ in range(2):
            for b in sizes:
                x = torch.randn(b, 3, 32, 32).contiguous(memory_format=torch.channels_last)
                net(x)
                n, t0 = 0, time.process_time()
                while time.process_time() - t0 < seconds:
                    net(x)
                    n += b
                rates[b].append(n / (time.process_time() - t0))
    return {str(b): round(statistics.mean(r), 1) for b, r in rates.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--trials", type=int, default=4, help="sampled models (+2 references), 1 repeat")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=1000)
    ap.add_argument("--val-subset", type=int, default=500)
    ap.add_argument("--configs", default=None,
                    help="comma-separated WORKERSxCPUS, e.g. 1x2,2x1 (default: 1x1,1xN,2x(N/2) on N cores)")
    ap.add_argument("--eval-batches", default=None,
                    help="only time the full-test forward pass at these batch sizes, e.g. 32,50,128,500")
    ap.add_argument("--out", default="benchmarks/results/search_scaling")
    args = ap.parse_args()
    if args.eval_batches:
        res = dict(images_per_cpu_s=eval_batches([int(b) for b in args.eval_batches.split(",")]),
                   model="smoke linear reference, BN folded, channels_last, 1 thread")
        write_json(res, Path(args.out) / "eval_batches.json")
        print(json.dumps(res, indent=2))
        return 0
    cores = os.cpu_count() or 1
    configs = ([tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")] if args.configs
               else [(1, 1), (1, cores), (2, max(1, cores // 2))])
    out = Path(args.out)
    res = dict(cores=cores, trials=args.trials + 2, epochs=args.epochs, train_subset=args.train_subset,
               val_subset=args.val_subset, runs={})
    for workers, cpus in configs:
        name = f"{workers}x{cpus}"
        d = out / f"workers{name}"
        shutil.rmtree(d, ignore_errors=True)
        s = SearchSettings(preset="smoke", data=args.data, trials=args.trials, repeats=1, epochs=args.epochs,
                           train_subset=args.train_subset, val_subset=args.val_subset, rank_images=0,
                           ray=True, workers=workers, cpus_per_trial=cpus, progress=False)
        t0 = time.time()
        counts = run_search(d, s)
        t1 = time.time()
        run = dict(workers=workers, cpus_per_trial=cpus, wall_s=round(t1 - t0, 1), done=counts["done"],
                   trials_per_hour=round(counts["done"] / (t1 - t0) * 3600, 1), **timeline(d, t0, t1, workers))
        res["runs"][name] = run
        print(json.dumps({name: run}), flush=True)
    rate = {k: r["trials_per_hour"] for k, r in res["runs"].items()}
    res["ratios"] = {f"{a}_over_{b}": round(rate[a] / rate[b], 3) for a in rate for b in rate
                     if res["runs"][a]["workers"] > res["runs"][b]["workers"]}
    write_json(res, out / "scaling.json")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
