"""``rexnet train | eval | data check``: argument parsing over :mod:`rexnet.train`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..flags import add_bool_flag, add_dataclass_flags
from .recipe import Recipe

__all__ = ["add_train_commands", "main_process"]


def main_process() -> bool:
    """Rank 0 under torchrun (or no torchrun): the one process that prints a run's outcome."""
    return int(os.environ.get("RANK", "0")) == 0


def cmd_train(args: argparse.Namespace) -> int:
    import json
    import logging

    from ..flags import dataclass_overrides
    from .loop import summary_line, train
    from .recipe import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_recipe(args.recipe, dataclass_overrides(args, Recipe, skip=("recipe",)))
    # SIGINT / SIGTERM (TrainingStopped) end in rexnet.cli.main, which says where the checkpoint is
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    if main_process():
        print(summary_line(summary))
        print(f"wrote {Path(args.out) / 'summary.json'}")
        if args.json:
            print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..io import check_writable_file, write_json
    from .evaluate import evaluate_checkpoint

    out = check_writable_file(args.out or "eval_summary.json")  # before the evaluation, not after it
    summary = evaluate_checkpoint(args.model, args.weights, args.data, input_size=args.input_size,
                                  transform=args.transform, stride_plan=args.stride_plan,
                                  batch_size=args.batch_size, data_root=args.data_root,
                                  download=args.download, skip_bad=args.skip_bad_images,
                                  num_classes=args.num_classes, limit=args.limit, ema=args.ema)
    print(f"{summary['model']} on {summary['data']} ({summary['n']} images): top-1 {summary['top1']:.2f}%, "
          f"top-5 {summary['top5']:.2f}%, loss {summary['loss']:.4f}, {summary['images_per_s']:.1f} img/s")
    write_json(summary, out)
    print(f"wrote {out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from ..io import check_writable_file, write_json
    from .data import check_tree

    if args.json:
        check_writable_file(args.json)  # before the scan, not after it
    report = check_tree(args.path)
    for split, s in report["splits"].items():
        print(f"{split}: {s['images']} readable images in {len(s['classes'])} classes")
        for cls, n in s["classes"].items():
            print(f"  {cls:24s} {n}")
        for path, why in s["bad"].items():
            print(f"  BAD {path}: {why}")
    print(f"{report['bad_total']} bad file(s)" + (" (train with --skip-bad-images to skip them)"
                                                 if report["bad_total"] else ""))
    if args.json:
        write_json(report, args.json)
    return 1 if report["bad_total"] else 0


def _add_train(sub: "argparse._SubParsersAction") -> None:
    parser = sub.add_parser(
        "train", help="train a model (torchrun for several processes or nodes)",
        description="Train --model on --data with a recipe preset or YAML; each recipe field below overrides "
                    "the preset. Several processes or nodes: torchrun --nproc-per-node N -m rexnet.cli "
                    "train .... A run already in --out is refused unless --resume (continues OUT/last.pt "
                    "exactly) or --overwrite.")
    parser.add_argument("--model", required=True, help="zoo name or NetSpec file")
    parser.add_argument("--data", required=True, help="cifar10 | cifar100 | mnist | fashion-mnist | food101 | "
                   "stanford_cars | fgvc_aircraft | flowers102 | oxford_pets | dtd | image tree | zip")
    parser.add_argument("--recipe", default="cifar", help="imagenet | cifar | finegrained | path to a recipe YAML")
    parser.add_argument("--out", required=True, help="run directory (checkpoints, metrics, summary)")
    parser.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt (lr, warmup_epochs, min_lr, epochs and "
                        "run-control fields may change; each change is kept in the run's history)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out (without this or "
                   "--resume, an existing run is refused)")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    add_dataclass_flags(parser, Recipe, skip=("model", "data", "recipe"),
                        title="recipe fields (override the preset, which itself replaces the defaults "
                              "shown; booleans: --flag, --flag true|false, --no-flag)")
    parser.set_defaults(func=cmd_train)


def _add_eval(sub: "argparse._SubParsersAction") -> None:
    parser = sub.add_parser(
        "eval", help="evaluate a checkpoint (any supported format)",
        description="Top-1, top-5 and loss of a checkpoint (ours, timm's or the authors' ReXNetV1; "
                    ".safetensors or .pth) on the validation split of --data. Our checkpoints carry their "
                    "network, so --model is needed only for the others.")
    parser.add_argument("--model", default=None, help="zoo name or NetSpec file (optional for our checkpoints)")
    parser.add_argument("--weights", required=True, help="checkpoint file (.safetensors, .pth, .pt; ours, timm's or "
                   "the authors')")
    parser.add_argument("--data", required=True, help="dataset name (cifar10, ...), image tree or zip")
    parser.add_argument("--data-root", default=None, help="where named datasets live (default $REXNET_DATA or .data)")
    add_bool_flag(parser, "--download", help="fetch a named dataset when missing (needs internet)")
    parser.add_argument("--input-size", type=int, default=None, help="default: 224, or 32 for CIFAR-sized models")
    parser.add_argument("--transform", default=None, help="imagenet | cifar (default: by input size)")
    parser.add_argument("--stride-plan", default="auto", help="auto (cifar when input size <= 32) | imagenet | cifar")
    parser.add_argument("--num-classes", type=int, default=None, help="default: from the checkpoint")
    parser.add_argument("--batch-size", type=int, default=100, help="default: 100")
    parser.add_argument("--limit", type=int, default=None,
                   help="evaluate N images only, classes taking turns (default: all)")
    add_bool_flag(parser, "--skip-bad-images", help="skip and count unreadable images")
    add_bool_flag(parser, "--ema", help="use the EMA weights of a training checkpoint")
    parser.add_argument("--out", default=None, help="summary JSON path (default eval_summary.json)")
    parser.set_defaults(func=cmd_eval)


def _add_data(sub: "argparse._SubParsersAction") -> None:
    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="scan an image tree or zip: class counts and bad files")
    check.add_argument("path")
    check.add_argument("--json", default=None)
    check.set_defaults(func=cmd_data_check)


def add_train_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``train``, ``eval`` and ``data check`` to the ``rexnet`` command's subparsers."""
    _add_train(subparsers)
    _add_eval(subparsers)
    _add_data(subparsers)
