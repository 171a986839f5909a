"""CPU inference: timm's rexnet_100 (eager) against our forms of the same weights, interleaved.

    .venv/bin/python benchmarks/deploy_speed.py --threads 2 --runs 50 \
        --out benchmarks/results/deploy_speed.json

Forms: ours eager (training form in eval mode), BN folded, folded + channels_last,
folded + torch.compile (inductor), folded + compile + channels_last, and the folded
model exported to ONNX and run by ONNX Runtime.  All get timm's weights; every form's logits are compared with timm's
before timing (max |difference| is reported; the goal is <= 1e-4).  Each form is
timed in turns with timm's model only (a pair at a time: with seven 20-MB models in
one rotation they evict each other from the CPU caches and the ranking shifts), and
its ratio is timm median / form median within that pair (above 1 = faster).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import timm
import torch

from rexnet import create_model, load_weights
from rexnet.bench.deploy import deploy_model
from rexnet.bench.export import export_model, load_exported
from rexnet.bench.timing import latency_stats, time_interleaved
from rexnet.io import write_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rexnet_100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ref = timm.create_model(args.model).eval()
    ours = create_model(args.model).eval()
    load_weights(ours, ref.state_dict())
    forms = {"timm_eager": ref, "ours_eager": ours, "ours_folded": deploy_model(ours),
             "ours_folded_cl": deploy_model(ours, channels_last=True)}
    if not args.no_compile:
        forms["ours_folded_compile"] = deploy_model(ours, compile=True)
        forms["ours_folded_compile_cl"] = deploy_model(ours, channels_last=True, compile=True)
    tmp = Path(tempfile.mkdtemp()) / f"{args.model}.onnx"
    export_model(ours, "onnx", tmp)
    forms["ours_onnxruntime"] = load_exported(tmp, threads=args.threads)

    x = torch.randn(args.batch, 3, 224, 224)
    diffs = {}
    with torch.inference_mode():
        want = ref(x)
        for name, m in forms.items():
            inp = x.contiguous(memory_format=torch.channels_last) if name.endswith("_cl") else x
            diffs[name] = (m(inp).float() - want).abs().max().item()
    inputs = {n: (x.contiguous(memory_format=torch.channels_last) if n.endswith("_cl") else x) for n in forms}
    rows = {}
    for name in forms:
        if name == "timm_eager":
            continue
        pair = {"timm_eager": forms["timm_eager"], name: forms[name]}
        times = time_interleaved(pair, inputs, runs=args.runs, warmup=10)
        base, st = latency_stats(times["timm_eager"], args.batch), latency_stats(times[name], args.batch)
        rows[name] = dict(st, timm_median_ms=base["median_ms"],
                          speedup_vs_timm=round(base["median_ms"] / st["median_ms"], 3),
                          max_abs_logit_diff=diffs[name])
    res = dict(model=args.model, batch=args.batch, threads=args.threads, runs=args.runs,
               torch=torch.__version__, timm=timm.__version__, cpu=platform.processor() or platform.machine(),
               date=time.strftime("%Y-%m-%d"), forms=rows)
    for n, r in rows.items():
        print(f"{n:22s} median {r['median_ms']:7.2f} ms  p10 {r['p10_ms']:7.2f}  p90 {r['p90_ms']:7.2f}  "
              f"| timm {r['timm_median_ms']:7.2f} ms | x{r['speedup_vs_timm']:.3f} vs timm  "
              f"max|dlogit| {r['max_abs_logit_diff']:.2e}")
    if args.out:
        write_json(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
