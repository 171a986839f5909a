"""``rexnet detect train | eval | predict | bench``: argument parsing over :mod:`rexnet.detection`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_detect_commands"]

ARCHS = ("fasterrcnn_fpn", "maskrcnn_fpn", "retinanet_fpn", "ssdlite320")


def cmd_train(args: argparse.Namespace) -> int:
    import logging
    import os

    from ..flags import dataclass_overrides
    from ..train.loop import summary_line, train
    from .recipe import CLASSIFICATION_ONLY, DetectionRecipe, load_detection_recipe
    from .task import DetectionTask

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dataclass_overrides(args, DetectionRecipe, skip=("recipe",) + CLASSIFICATION_ONLY)
    # SIGINT / SIGTERM (TrainingStopped) end in rexnet.cli.main, which says where the checkpoint is
    summary = train(load_detection_recipe(args.recipe, overrides), args.out, resume=args.resume,
                    overwrite=args.overwrite, task=DetectionTask())
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_line(summary))
        print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..io import write_json
    from ..io import check_writable_file
    from .inference import evaluate_detector

    if args.out:
        check_writable_file(args.out)  # before the evaluation, not after it
    res = evaluate_detector(args.weights, args.data, images=args.images, ann=args.ann, split=args.split,
                            limit=args.limit, skip_bad=args.skip_bad_images)
    shown = {k: round(v, 2) for k, v in res.items() if k.startswith("val_") and k.endswith(("mAP", "AP50", "AP75"))}
    print(f"{res['detector']} on {res['images']} images of {res['annotations']}: {json.dumps(shown)}")
    if args.out:
        write_json(res, args.out)
        print(f"wrote {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..io import check_writable
    from .inference import load_detector, predict_images

    check_writable(args.out)
    model, ident = load_detector(args.weights)
    records = predict_images(model, args.images, args.out, classes=ident.get("classes", ()), score=args.score)
    for r in records:
        print(f"{r['image']}: {len(r['boxes'])} detections" + (f" ({', '.join(sorted(set(r['names'])))})"
                                                              if r["names"] else ""))
    print(f"wrote {len(records)} images and {Path(args.out) / 'detections.json'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..io import check_writable_file
    from .bench import bench_detectors, format_rows

    if args.out:
        check_writable_file(args.out)
    rows = bench_detectors(args.detectors, runs=args.runs, threads=args.threads)
    print(format_rows(rows))
    if args.out:
        from ..io import write_json
        write_json(rows, args.out)
        print(f"wrote {args.out}")
    return 0


def add_detect_commands(subparsers: "argparse._SubParsersAction") -> None:
    from ..flags import add_bool_flag, add_dataclass_flags
    from .recipe import CLASSIFICATION_ONLY, DETECTION_RECIPES, DetectionRecipe

    d = subparsers.add_parser("detect", help="object detection: ReXNet backbones in torchvision's detectors")
    sub = d.add_subparsers(dest="detect_command", required=True)

    t = sub.add_parser("train", help="train a detector on a COCO-format set (torchrun for several processes)",
                       description="Train ARCH over the backbone --model on --data, a COCO-layout root "
                                   "(train2017/, annotations/instances_train2017.json; val2017 when present).")
    t.add_argument("--recipe", default="coco128", help=f"{' | '.join(DETECTION_RECIPES)} | a recipe YAML")
    t.add_argument("--out", required=True, help="run directory (checkpoints, metrics, summary)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt (lr, warmup_epochs, min_lr, epochs and "
                        "run-control fields may change; each change is kept in the run's history)")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out (without this or "
                   "--resume, an existing run is refused)")
    add_dataclass_flags(t, DetectionRecipe, skip=("recipe",) + CLASSIFICATION_ONLY, title="recipe fields (override the preset)",
                        helps=dict(arch=" | ".join(ARCHS), model="the backbone: zoo name, NetSpec file, our "
                                   "checkpoint, timm:NAME or torchvision:NAME",
                                   data="a COCO-layout root", weights="backbone checkpoint (any format)"))
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="COCO mAP of a trained detector")
    e.add_argument("--weights", required=True, help="best.pt or last.pt of `rexnet detect train`")
    e.add_argument("--data", required=True, help="a COCO-layout root")
    e.add_argument("--images", default=None, help="image folder (default DATA/SPLIT2017)")
    e.add_argument("--ann", default=None, help="instances JSON (default DATA/annotations/instances_SPLIT2017.json)")
    e.add_argument("--split", default="val", help="val (default; train when the root has no val split)")
    e.add_argument("--limit", type=int, default=None, help="the first N images only")
    add_bool_flag(e, "--skip-bad-images", help="skip and count unreadable images / annotations")
    e.add_argument("--out", default=None, help="write the metrics as JSON here")
    e.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="draw a detector's boxes, labels, scores and masks onto images")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--weights", required=True, help="best.pt or last.pt of `rexnet detect train`")
    p.add_argument("--out", required=True, help="folder for the drawn images and detections.json")
    p.add_argument("--score", type=float, default=0.5, help="minimum score to keep (default 0.5)")
    p.set_defaults(func=cmd_predict)

    b = sub.add_parser("bench", help="CPU latency of detectors in turns: ours against torchvision's")
    b.add_argument("detectors", nargs="*", default=["ssdlite320:rexnet_100", "tv:ssdlite320_mobilenet_v3_large"],
                   help="ARCH:BACKBONE (ours) or tv:NAME (torchvision's builder), e.g. fasterrcnn_fpn:rexnet_100 "
                        "tv:fasterrcnn_mobilenet_v3_large_fpn")
    b.add_argument("--runs", type=int, default=10)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--out", default=None, help="write the rows as JSON here")
    b.set_defaults(func=cmd_bench)

