"""Training images/s of our loop (real data pipeline from an in-memory CIFAR-10) against a bare
PyTorch loop over the same model and batch size on tensors already in memory, in one run.

    .venv/bin/python benchmarks/train_throughput.py [--images 3840] [--batch-size 128] [--repeats 2]

Both sides: the same NetSpec, SGD Nesterov, label smoothing, channels_last, 2 threads.
Ours runs `rexnet.train.loop.train` for one epoch (per-sample seeded augmentation,
pad-crop + flip + normalise, metrics, checkpoint at the epoch end) and reports the
training images/s it logs (evaluation excluded); the bare loop times forward +
backward + step only.  Alternating repeats, medians compared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rexnet.io import write_json
from rexnet.models.build import Net
from rexnet.models.zoo import cifar_stride_plan, rexnet_spec
from rexnet.train.loop import train
from rexnet.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def bare_loop(spec, images: int, batch: int) -> float:
    torch.manual_seed(0)
    model = Net(spec).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(images, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (images,))
    steps = images // batch
    for i in range(2):  # warm-up, untimed (our loop's epoch time includes its own)
        F.cross_entropy(model(x[:batch]), y[:batch]).backward()
    opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    for i in range(steps):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(xb), yb, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def our_loop(spec_file: str, data: str, images: int, batch: int, out: Path) -> float:
    cfg = load_recipe("cifar", dict(model=spec_file, data=data, epochs=1, train_subset=images, val_subset=100,
                                    batch_size=batch, lr_base_batch=batch, progress=False, cache_images=True))
    summary = train(cfg, out)
    return summary["final"]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--images", type=int, default=3840)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = cifar_stride_plan(rexnet_spec("rexnet_050_d050", multiplier=0.5, depth_multiplier=0.5, num_classes=10))
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = spec.save(Path(tmp) / "model.yaml")
        for r in range(args.repeats):
            bare.append(bare_loop(spec, args.images, args.batch_size))
            ours.append(our_loop(str(spec_file), args.data, args.images, args.batch_size, Path(tmp) / f"run{r}"))
            print(f"repeat {r}: ours {ours[-1]:.1f} img/s, bare {bare[-1]:.1f} img/s", flush=True)
    o, b = statistics.median(ours), statistics.median(bare)
    result = dict(ours_images_per_s=o, bare_images_per_s=b, ratio=o / b, overhead_pct=100 * (1 - o / b),
                  images=args.images, batch_size=args.batch_size, repeats=args.repeats, threads=args.threads,
                  model=spec.name, torch=torch.__version__)
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()
