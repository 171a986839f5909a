"""CPU latency (batch 1) and throughput (batch 32): our rexnet_100 against timm's, interleaved.

    .venv/bin/python benchmarks/latency.py [--model rexnet_100] [--runs 30] [--threads 2] [--out FILE]

Both models get the same weights (timm's state dict loaded into ours), run in
turns in one process so machine drift falls on both, and are compared by the
ratio of medians (ours / timm; below 1 means ours is faster).
"""
from __future__ import annotations

import argparse
import platform
import time

import timm
import torch

from rexnet import create_model, load_weights
from rexnet.bench.timing import interleaved_latency
from rexnet.io import write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="rexnet_100")
    p.add_argument("--runs", type=int, default=30, help="timed runs per model and batch size (>= 30)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    ref = timm.create_model(args.model).eval()
    ours = create_model(args.model).eval()
    load_weights(ours, ref.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        diff = (ours(x) - ref(x)).abs().max().item()
    models = {"rexnet": ours, "timm": ref}
    result = dict(model=args.model, threads=args.threads, torch=torch.__version__, timm=timm.__version__,
                  cpu=platform.processor() or platform.machine(), date=time.strftime("%Y-%m-%d"),
                  max_abs_logit_diff=diff)
    for batch in (1, 32):
        r = interleaved_latency(models, batch=batch, runs=args.runs, warmup=3 if batch > 1 else 10)
        ratio = r["rexnet"]["median_ms"] / r["timm"]["median_ms"]
        result[f"batch{batch}"] = dict(r, ratio=ratio)
        print(f"batch {batch:>2}: ours {r['rexnet']['median_ms']:8.2f} ms "
              f"(p10 {r['rexnet']['p10_ms']:.2f}, p90 {r['rexnet']['p90_ms']:.2f}) | "
              f"timm {r['timm']['median_ms']:8.2f} ms "
              f"(p10 {r['timm']['p10_ms']:.2f}, p90 {r['timm']['p90_ms']:.2f}) | "
              f"ours/timm = {ratio:.3f} | {r['rexnet']['images_per_s']:.1f} vs "
              f"{r['timm']['images_per_s']:.1f} img/s", flush=True)
    print(f"max |logit difference| = {diff:.2e}, {args.runs} runs each, {args.threads} threads")
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
