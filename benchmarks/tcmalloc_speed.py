"""`rexnet train` with and without tcmalloc, side by side, on one CPU thread.

    .venv/bin/python benchmarks/tcmalloc_speed.py [--data ../shared/data/cifar10-jpeg.zip] \
        [--images 2560] [--pairs 3] [--out benchmarks/results/tcmalloc_speed.json]

Each run is the real command (`python -m rexnet.cli train`, CIFAR recipe, one epoch
on ``--images`` CIFAR-10 training images cached in memory, ReXNet x0.5 / depth x0.5
at 32x32, batch 128) in a fresh process with OMP_NUM_THREADS=1; the default run
preloads tcmalloc through rexnet's own switch, the other has REXNET_TCMALLOC=0.  Runs
alternate (off, on, off, on, ...) so drift in the machine's load hits both alike.
Reported: the training images/s the loop logs (evaluation excluded), the process's
wall, user and system seconds, and the ratio of the medians (on / off).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rexnet.alloc import ENV, MARKER, find_tcmalloc
from rexnet.io import write_json
from rexnet.models.zoo import cifar_stride_plan, rexnet_spec

ROOT = Path(__file__).resolve().parents[1]


def one_run(spec_file: str, args: argparse.Namespace, out: Path, tcmalloc: bool) -> dict:
    """One `rexnet train` process; its logged images/s and its CPU times."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", MARKER, ENV)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if not tcmalloc:
        env[ENV] = "0"
    cmd = [sys.executable, "-m", "rexnet.cli", "train", "--model", spec_file, "--data", args.data,
           "--recipe", "cifar", "--out", str(out), "--epochs", "1", "--train-subset", str(args.images),
           "--val-subset", "100", "--batch-size", str(args.batch_size), "--progress", "false"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"rexnet train failed ({res.returncode}):\n{res.stderr[-2000:]}")
    announced = "rexnet: using tcmalloc" in res.stderr
    if announced != tcmalloc:
        raise RuntimeError(f"expected tcmalloc={tcmalloc}, the command said otherwise:\n{res.stderr[-500:]}")
    summary = json.loads((out / "summary.json").read_text())
    return dict(tcmalloc=tcmalloc, images_per_s=round(summary["final"]["images_per_s"], 2),
                process_wall_s=round(wall, 2), user_s=round(after.ru_utime - before.ru_utime, 2),
                sys_s=round(after.ru_stime - before.ru_stime, 2))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--images", type=int, default=2560)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--pairs", type=int, default=3, help="(off, on) pairs, run alternately")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tcmalloc_speed.json"))
    args = p.parse_args()
    library = find_tcmalloc({})
    if library is None:
        print("no libtcmalloc here (Debian/Ubuntu: apt-get install libtcmalloc-minimal4)", file=sys.stderr)
        return 2
    spec = cifar_stride_plan(rexnet_spec("rexnet_050_d050", multiplier=0.5, depth_multiplier=0.5, num_classes=10))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = str(spec.save(Path(tmp) / "model.yaml"))
        for i in range(args.pairs):
            for tc in (False, True):
                runs.append(one_run(spec_file, args, Path(tmp) / f"run{len(runs)}", tc))
                print(json.dumps(runs[-1]), flush=True)

    def median(key: str, tc: bool) -> float:
        return statistics.median(r[key] for r in runs if r["tcmalloc"] is tc)

    result = dict(library=library, model=spec.name, images=args.images, batch_size=args.batch_size, threads=1,
                  pairs=args.pairs, runs=runs,
                  default_images_per_s=median("images_per_s", False),
                  tcmalloc_images_per_s=median("images_per_s", True),
                  default_sys_s=median("sys_s", False), tcmalloc_sys_s=median("sys_s", True),
                  command="python -m rexnet.cli train (REXNET_TCMALLOC=0 for the default allocator)")
    result["ratio_tcmalloc_over_default"] = round(result["tcmalloc_images_per_s"] / result["default_images_per_s"], 3)
    write_json(result, args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
