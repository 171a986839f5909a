"""GPU: batch-64 latency and throughput in fp16 and bf16 with channels_last, ours against EfficientNet-B0..B3.

    .venv/bin/python benchmarks/gpu_bench.py [--out benchmarks/results/gpu] [--runs 50] [--compile]
    .venv/bin/python benchmarks/gpu_bench.py --device cpu --quick      # smoke check in seconds

Our models run twice: deployed (BN folded into the convolutions, the inference
form) and eager (as trained), so the gain of folding is visible and the eager
rows compare like for like with timm's EfficientNets, which keep their BN.  All
run at their native resolution (ours 224, B0..B3 224/240/260/300) with random
weights, interleaved, under cudnn.benchmark.  Before timing, the deployed fp32
model is checked against the training form on the device (TF32 off; 1e-4).
Writes gpu_bench_<dtype>.{csv,json,png} and prints one table per dtype.
``--compile`` adds torch.compile with inductor's freezing (which folds BN in
every model alike); it costs about a minute per model and dtype.
"""
from __future__ import annotations

import argparse
import time

import torch

from rexnet import create_model
from rexnet.bench.deploy import deploy_model
from rexnet.bench.peers import build_entries, check_device, machine_info, parse_dtype, run_bench, write_results
from rexnet.tables import format_table

OURS = ("rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200")
PEERS = ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3")
COLUMNS = ("model", "form", "input_size", "gmacs", "median_ms", "p10_ms", "p90_ms", "images_per_s",
           "top1_published")


def check_deploy(names, device: torch.device, input_size: int | None) -> dict[str, float]:
    """max |logit difference| of deployed vs training form in fp32 on ``device`` (TF32 off for the check)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    diffs = {}
    try:
        for name in names:
            model = create_model(name).eval().to(device)
            with torch.no_grad():  # random running stats, so the fold is really exercised
                for m in model.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.normal_(0, 0.5)
                        m.running_var.uniform_(0.5, 2.0)
                size = input_size or model.spec.input_size
                x = torch.randn(4, 3, size, size, device=device)
                ref = model(x)
                out = deploy_model(model, channels_last=True)(x.contiguous(memory_format=torch.channels_last))
            diffs[name] = (out - ref).abs().max().item()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return diffs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtypes", default="fp16,bf16")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model and dtype")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (cudnn.benchmark tunes here)")
    p.add_argument("--compile", action="store_true", help="torch.compile with inductor freezing (slow start)")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: rexnet_100 vs efficientnet_b0, batch 2, 64px, 3 runs")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (for --device cpu)")
    p.add_argument("--out", default="benchmarks/results/gpu")
    args = p.parse_args()

    t_start = time.perf_counter()
    device = check_device(args.device)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        parse_dtype(d)
    ours, peers, batch, size = OURS, PEERS, args.batch, None
    runs, warmup = args.runs, args.warmup
    if args.quick:
        ours, peers, batch, size, runs, warmup = OURS[:1], PEERS[:1], 2, 64, 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels, for all alike
    if args.compile:
        import torch._inductor.config as inductor_config
        inductor_config.freezing = True  # constant-folds BN into convolutions for every model, peers included

    diffs = check_deploy(ours, device, size)
    worst = max(diffs.values())
    print(f"deploy check (fp32, {device}): max |logit difference| {worst:.2e} "
          f"{'OK' if worst <= 1e-4 else 'ABOVE 1e-4 -- deployed numbers are suspect'}", flush=True)

    meta = dict(machine_info(device), batch=batch, runs=runs, warmup=warmup, channels_last=True,
                compile=args.compile, quick=args.quick, deploy_check_max_abs_diff=diffs)
    for dname in dtypes:
        t0 = time.perf_counter()
        dtype = parse_dtype(dname)
        common = dict(device=device, dtype=dtype, channels_last=True, compile=args.compile, input_size=size)
        deployed = build_entries(ours, deploy=True, **common)
        eager = build_entries(ours, **common)
        for e in eager:  # distinct names and a family of their own so the plot draws two lines
            e.name, e.family = f"{e.name}_eager", f"{e.family} (eager)"
        entries = deployed + eager + build_entries(peers, **common)
        rows = run_bench(entries, [batch], device=device, dtype=dtype, channels_last=True, runs=runs,
                         warmup=warmup, progress=None)
        print(f"\n== {dname}, batch {batch}, channels_last, {meta['device_name']} "
              f"({time.perf_counter() - t0:.0f} s) ==")
        print(format_table(rows, COLUMNS))
        paths = write_results(rows, args.out, dict(meta, dtype=dname), stem=f"gpu_bench_{dname}")
        print("wrote " + ", ".join(str(p) for p in paths.values()), flush=True)
        del entries, deployed, eager
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\nmedian / p10 / p90 of {runs} interleaved runs after {warmup} warm-up; images_per_s = batch / median; "
          f"top1_published: from the papers, not measured here. Total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # bad arguments or no GPU: one line, no traceback
        raise SystemExit(f"gpu_bench: error: {e}") from None
