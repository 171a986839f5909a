"""A real mini-search on one GPU, sized to a time budget, and what a full search costs.

    .venv/bin/python benchmarks/gpu_search.py --data cifar10 --data-root .data --minutes 8 \
        --out benchmarks/results/gpu_search
    .venv/bin/python benchmarks/gpu_search.py --device cpu --quick --data ../shared/data/cifar10-jpeg.zip

1. Times one epoch of the paper's d18 / 30 MMACs reference (linear) model on all 50,000
   CIFAR-10 training images (channels_last, bf16 autocast) with ``--workers`` trials
   sharing the GPU.
2. Fits trials x epochs into ``--minutes`` and runs that search (1 repeat, all images,
   ``--workers`` trials at once), then writes the same report as ``rexnet search analyze``.
3. Writes ``cost.json``: trials per hour at the paper's per-trial settings (30 epochs, all
   images) and the GPU-hours of one full search (~100 models x 3 repeats) and of all six.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rexnet.io import write_json
from rexnet.search.report import analyze
from rexnet.search.run import SearchSettings, run_search
from rexnet.trials import status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--preset", default="d18_30m_cifar10")
    ap.add_argument("--minutes", type=float, default=8.0, help="time budget of the whole script")
    ap.add_argument("--workers", type=int, default=4, help="trials sharing the GPU at once")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="CPU smoke check: 500 images, 1 epoch, 1 trial")
    ap.add_argument("--out", default="benchmarks/results/gpu_search")
    args = ap.parse_args()
    out = Path(args.out)
    subset = 500 if args.quick else 0
    common = dict(preset=args.preset, data=args.data, data_root=args.data_root, device=args.device,
                  amp="off" if args.device == "cpu" else "bf16", channels_last=True, repeats=1,
                  train_subset=subset, val_subset=subset, progress=False, workers=args.workers,
                  early_stop_patience=0)
    t_start = time.time()

    # 1. one epoch per worker slot: the references (2 models), timed together
    probe = out / "probe"
    t0 = time.time()
    run_search(probe, SearchSettings(trials=0, epochs=1, **common))
    probe_s = time.time() - t0
    conc = min(args.workers, 2)                 # the probe's two trials ran this many at once
    per_trial_epoch = probe_s / (2 / conc)      # wall of one trial-epoch (start-up included)
    print(f"probe: 2 one-epoch trials in {probe_s:.0f}s ({conc} at once)")

    # 2. the mini-search: as many trials x epochs as the remaining budget allows
    left = args.minutes * 60 - (time.time() - t_start) - 60          # keep a minute for the report
    budget = left / per_trial_epoch * conc      # trial-epochs that fit
    epochs = 1 if args.quick else max(1, min(10, int(budget / 12)))   # aim for >= 12 models
    trials = 1 if args.quick else max(2, int(budget / epochs) - 2)
    print(f"mini-search: {trials} sampled models + 2 references, {epochs} epochs each")
    t1 = time.time()
    counts = run_search(out / "search", SearchSettings(trials=trials, epochs=epochs, **common))
    search_s = time.time() - t1
    analyze([out / "search"], out / "search" / "report")
    st = status(out / "search")

    # 3. what the paper's protocol costs at the measured speed
    trial_h_paper = per_trial_epoch * 30 / conc / 3600      # GPU-hours per 30-epoch trial
    cost = dict(device=args.device, preset=args.preset, workers=args.workers, probe_concurrency=conc, probe_s=round(probe_s, 1),
                seconds_per_trial_epoch=round(per_trial_epoch, 2), mini_search=dict(
                    trials=trials + 2, epochs=epochs, wall_s=round(search_s, 1), done=counts["done"],
                    failed=counts["failed"], trials_per_hour=round(counts["done"] / search_s * 3600, 1),
                    best=st["best"]),
                paper_trials_per_hour=round(1 / trial_h_paper, 2),
                paper_search_gpu_hours=round(102 * 3 * trial_h_paper, 1),
                paper_six_searches_gpu_hours=round(6 * 102 * 3 * trial_h_paper, 1),
                total_wall_s=round(time.time() - t_start, 1))
    write_json(cost, out / "cost.json")
    print(json.dumps(cost, indent=2))
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
