"""Train a CIFAR-sized ReXNet on all 50,000 CIFAR-10 training images; report test accuracy and speed.

    .venv/bin/python benchmarks/train_cifar.py [--data ../shared/data/cifar10-jpeg.zip] [--epochs 9]
        [--out benchmarks/results/train_cifar] [--resume]

The network is ReXNet's linear schedule at width x0.5 and depth x0.5 (10 blocks)
with the CIFAR stride plan, trained with the CIFAR recipe (configs/cifar.yaml:
SGD Nesterov, lr 0.1 per 128, cosine, wd 5e-4, label smoothing 0.1, pad-4 crop +
flip) in channels_last, the fastest layout measured on this CPU.  5 epochs fit in
about 30 minutes on the project's 2-core machine.  Interrupt it at any time and
rerun with --resume.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from rexnet.complexity import complexity
from rexnet.io import write_json
from rexnet.models.zoo import cifar_stride_plan, rexnet_spec
from rexnet.train.loop import train
from rexnet.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_cifar"))
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = cifar_stride_plan(rexnet_spec("rexnet_050_d050", multiplier=0.5, depth_multiplier=0.5, num_classes=10))
    spec.save(out / "model.yaml")
    c = complexity(spec, 32)
    print(f"{spec.name}: {spec.depth} blocks, widths {spec.widths}, {c.params / 1e6:.2f}M params, "
          f"{c.macs / 1e6:.1f} MMACs at 32x32", flush=True)
    cfg = load_recipe("cifar", dict(model=str(out / "model.yaml"), data=args.data, epochs=args.epochs,
                                    batch_size=args.batch_size, progress=True))
    t0 = time.time()
    summary = train(cfg, out / "run", resume=args.resume)
    final = summary["final"]
    result = dict(model=spec.name, mmacs=c.macs / 1e6, params_m=c.params / 1e6, epochs=summary["epochs_done"],
                  train_images=summary["train_images"], test_images=summary["val_images"],
                  final_test_top1=final["val_top1"], best_test_top1=summary["best_val_top1"],
                  train_images_per_s=final["images_per_s"], wall_time_min=(time.time() - t0) / 60,
                  threads=args.threads, torch=torch.__version__)
    write_json(result, out / "result.json")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
