"""Detection training speed on a GPU at the paper's input size, and what a COCO schedule costs.

    python benchmarks/gpu_detection.py --data .data/coco128 [--epochs 2] [--out runs/gpu_det]
    python benchmarks/gpu_detection.py --data ../shared/data/coco128 --device cpu --quick   # smoke check

Trains Faster R-CNN FPN and Mask R-CNN FPN with ReXNet x1.0 on COCO128 (or a COCO root)
through the project's training loop at the authors' 1200x800 (shorter side 800, longer at
most 1200), bf16 autocast, and writes ``cost.json``: training images/s per detector and the
hours a 26-epoch COCO train2017 schedule (117,266 images) would take at that rate on this GPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rexnet.detection.recipe import load_detection_recipe
from rexnet.detection.task import DetectionTask
from rexnet.io import write_json
from rexnet.train.loop import train

COCO_TRAIN_IMAGES, COCO_EPOCHS = 117_266, 26


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="COCO-layout root (copy ../shared/data/coco128 into .data/)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 8 images: checks the script, not the GPU")
    p.add_argument("--out", default="runs/gpu_detection")
    args = p.parse_args()
    out = Path(args.out)
    rows = {}
    for arch in ("fasterrcnn_fpn", "maskrcnn_fpn"):
        kw = dict(data=args.data, arch=arch, model="rexnet_100", epochs=args.epochs, batch_size=args.batch_size,
                  device=args.device, amp="bf16" if args.device == "cuda" else "off", progress=False,
                  min_size=800, max_size=1200)
        if args.quick:
            kw.update(epochs=1, batch_size=4, train_subset=8, val_subset=4, min_size=96, max_size=128)
        # a measurement starts fresh: replace the run an earlier invocation left in OUT/ARCH
        s = train(load_detection_recipe("coco", kw), out / arch, overwrite=True, task=DetectionTask())
        ips = s["final"]["images_per_s"]
        rows[arch] = dict(images_per_s=ips, best_val_bbox_mAP=s["best_val_bbox_mAP"], epochs=s["epochs_done"],
                          coco_schedule_hours=COCO_TRAIN_IMAGES * COCO_EPOCHS / ips / 3600)
        print(f"{arch}: {ips:.1f} train images/s -> a {COCO_EPOCHS}-epoch COCO schedule takes "
              f"{rows[arch]['coco_schedule_hours']:.1f} h on this device")
    write_json(dict(device=args.device, quick=args.quick, rows=rows), out / "cost.json")
    print(f"wrote {out / 'cost.json'}")


if __name__ == "__main__":
    main()
