"""CPU latency of ReXNet detectors against torchvision's, timed in turns in one run (ratios).

    .venv/bin/python benchmarks/detection_speed.py [--runs 10] [--threads 2] [--out FILE]

SSDLite320 with ReXNet x1.0 against torchvision's ssdlite320_mobilenet_v3_large, and
Faster R-CNN FPN with ReXNet x1.0 against fasterrcnn_mobilenet_v3_large_fpn and
fasterrcnn_resnet50_fpn: params, MACs (FlopCounterMode / 2 on the image) and batch-1
latency on one 640x480 image, which each detector resizes with its own transform (SSDLite
to 320x320, the R-CNNs to an 800-pixel shorter side). Random weights: speed does not
depend on them (the R-CNNs' box count after NMS can; see the note in the output).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from rexnet.detection.bench import bench_detectors
from rexnet.io import write_json
from rexnet.tables import format_table

PAIRS = {
    "ssdlite320:rexnet_100": "tv:ssdlite320_mobilenet_v3_large",
    "fasterrcnn_fpn:rexnet_100": "tv:fasterrcnn_mobilenet_v3_large_fpn",
}
EXTRA = ["tv:fasterrcnn_resnet50_fpn"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    names = [n for pair in PAIRS.items() for n in pair] + EXTRA
    rows = bench_detectors(names, runs=args.runs, threads=args.threads)
    by = {r["detector"]: r for r in rows}
    for ours, theirs in list(PAIRS.items()) + [("fasterrcnn_fpn:rexnet_100", EXTRA[0])]:
        by[ours].setdefault("vs", {})[theirs] = round(by[ours]["median_ms"] / by[theirs]["median_ms"], 3)
    print(format_table([{k: v for k, v in r.items() if k != "vs"} for r in rows]))
    for ours, ratios in ((n, r["vs"]) for n, r in by.items() if "vs" in r):
        for theirs, ratio in ratios.items():
            print(f"{ours} / {theirs}: latency ratio {ratio:.3f}")
    if args.out:
        write_json(dict(rows=rows, runs=args.runs, threads=args.threads, torch=torch.__version__,
                        cpu=platform.processor() or platform.machine(), date=time.strftime("%Y-%m-%d")), args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
