"""The ``rexnet`` command: thin argument parsing over the package."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__

DESCRIPTION = ("ReXNet (Han et al., CVPR 2021, 'Rethinking Channel Dimensions for Efficient Model Design'): "
               "the model zoo, the rank study (Section 3), the channel-configuration search (Section 4), "
               "training, evaluation, detection, benchmarks and export. Start with `rexnet demo`.")


def _spec_from_arg(arg: str):
    """The spec any way of naming a model gives, with its strides as designed."""
    from .models.resolve import resolve_spec

    return resolve_spec(arg, stride_plan="imagenet")


def _check_output_files(*paths: str | None) -> None:
    """The output files a command was given can be written: one line if not, before any work."""
    from .train.checkpoint import check_writable_file

    for path in paths:
        if path:
            check_writable_file(path)


def cmd_models(args: argparse.Namespace) -> int:
    from .io import write_json
    from .models.zoo import list_models
    from .report import format_table, zoo_rows

    _check_output_files(args.json)
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; try `rexnet models` for all", file=sys.stderr)
        return 2
    latency = None
    if args.profile:
        from .bench.timing import zoo_latency
        latency = zoo_latency(names, args.input_size, runs=args.runs)
    rows = zoo_rows(names, args.input_size, latency)
    print(format_table(rows))
    if args.profile:
        import torch
        print(f"\ncpu_ms_b1: median of {args.runs} runs at batch 1, {torch.get_num_threads()} threads")
    print("top1_paper: ImageNet top-1 reported by the paper / authors (not measured here)")
    if args.json:
        write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .complexity import complexity
    from .report import block_rows, format_table, plot_widths

    _check_output_files(args.plot, args.save_spec)
    spec = _spec_from_arg(args.model)
    c = complexity(spec, args.input_size)
    print(f"{spec.name}: {c.params:,} params, {c.macs:,} MACs at {args.input_size or spec.input_size}px, "
          f"hash {spec.hash()}")
    print(format_table(block_rows(spec, args.input_size)))
    if args.plot:
        specs = [spec] + [_spec_from_arg(m) for m in args.compare]
        print(f"wrote {plot_widths(specs, args.plot)}")
    if args.save_spec:
        print(f"wrote {spec.save(args.save_spec)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The paper's study end to end at smoke scale: the zoo, the quick rank study, a
    smoke channel search and its report."""
    import os

    from .io import write_json
    from .models.zoo import list_models, model_spec
    from .report import block_rows, format_table, plot_widths, zoo_rows
    from .train.checkpoint import check_writable

    out = check_writable(args.out)  # before the zoo is timed, the study run and the search trained
    print("== The model zoo (params and MACs at 224x224; CPU latency at batch 1) ==")
    names = list_models()
    latency = None
    if not args.no_profile:
        from .bench.timing import zoo_latency
        latency = zoo_latency(names, runs=args.runs)
    rows = zoo_rows(names, latency_ms=latency)
    print(format_table(rows))
    write_json(rows, out / "models.json")
    print("\n== ReXNet x1.0, block by block ==")
    print(format_table(block_rows(model_spec("rexnet_100"))))
    specs = [model_spec(n) for n in ("mobilenetv2_100", "mobilenetv2_linear", "rexnet_100")]
    plot = plot_widths(specs, out / "schedules.png",
                       title="Stage-wise (MobileNetV2) vs linear channel widths")
    print(f"\nwrote {out / 'models.json'} and {plot}")
    if not args.no_rank_study:
        from .rank.cli import print_study
        from .rank.networks import QUICK_NETWORKS, StudyConfig
        from .rank.study import run_and_report

        print("\n== Section 3: rank study (--quick) ==")
        print_study(run_and_report(StudyConfig(networks=QUICK_NETWORKS), out / "rank_study"))
    if not args.no_search:
        from .search.report import analyze
        from .search.runner import SearchSettings, run_search
        from .train.data import best_real_dataset

        data = best_real_dataset(args.search_data)
        print(f"\n== Section 4: channel-configuration search (smoke preset) on {data} ==")
        # two trials at once: measured 1.48x the trials/hour of one on 2 cores (README)
        workers = min(2, os.cpu_count() or 1)
        counts = run_search(out / "search", SearchSettings(preset="smoke", data=data, workers=workers))
        res = analyze([out / "search"], out / "search" / "report")
        print(f"{counts['done']} trials done, {counts['failed']} failed; wrote "
              f"{res.get('report', out / 'search' / 'report' / 'report.md')}")
        if counts["failed"]:   # a demo with a failed trial is not a demo that worked
            print(f"rexnet demo: {counts['failed']} search trial(s) failed (see the report's Failed trials); "
                  f"rerun to retry them", file=sys.stderr)
            return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import json
    import logging

    from .flags import dataclass_overrides
    from .train.loop import summary_line, train
    from .train.recipe import Recipe, load_recipe

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_recipe(args.recipe, dataclass_overrides(args, Recipe, skip=("recipe",)))
    # SIGINT / SIGTERM (TrainingStopped) end in main(), which says where the checkpoint is
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    if _main_process():
        print(summary_line(summary))
        print(f"wrote {Path(args.out) / 'summary.json'}")
        if args.json:
            print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .io import write_json
    from .train.checkpoint import check_writable_file
    from .train.evaluate import evaluate_checkpoint

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
    from .io import write_json
    from .train.data import check_tree

    _check_output_files(args.json)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rexnet", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"rexnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list the model zoo with params, MACs and reported accuracy")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'rexnet_*'")
    m.add_argument("--profile", action="store_true", help="measure CPU latency at batch 1")
    m.add_argument("--runs", type=int, default=20, help="timed runs per model with --profile")
    m.add_argument("--input-size", type=int, default=224)
    m.add_argument("--json", help="also write the rows as JSON to this path")
    m.set_defaults(func=cmd_models)

    i = sub.add_parser("info", help="per-block table of a model (zoo name or NetSpec file)")
    i.add_argument("model")
    i.add_argument("--input-size", type=int, default=None)
    i.add_argument("--plot", help="draw width against block index to this PNG")
    i.add_argument("--compare", nargs="*", default=["mobilenetv2_100"],
                   help="more models for --plot (default: mobilenetv2_100)")
    i.add_argument("--save-spec", help="write the NetSpec as .json or .yaml")
    i.set_defaults(func=cmd_info)

    t = sub.add_parser("train", help="train a model (torchrun for several processes or nodes)",
                       description="Train --model on --data with a recipe preset or YAML; each recipe field "
                                   "below overrides the preset. Several processes or nodes: torchrun "
                                   "--nproc-per-node N -m rexnet.cli train .... A run already in --out is "
                                   "refused unless --resume (continues OUT/last.pt exactly) or --overwrite.")
    t.add_argument("--model", required=True, help="zoo name or NetSpec file")
    t.add_argument("--data", required=True, help="cifar10 | cifar100 | mnist | fashion-mnist | food101 | "
                   "stanford_cars | fgvc_aircraft | flowers102 | oxford_pets | dtd | image tree | zip")
    t.add_argument("--recipe", default="cifar", help="imagenet | cifar | finegrained | path to a recipe YAML")
    t.add_argument("--out", required=True, help="run directory (checkpoints, metrics, summary)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt (lr, warmup_epochs, min_lr, epochs and "
                        "run-control fields may change; each change is kept in the run's history)")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out (without this or "
                   "--resume, an existing run is refused)")
    t.add_argument("--json", action="store_true", help="also print the summary as JSON")
    from .flags import add_bool_flag, add_dataclass_flags
    from .train.recipe import Recipe

    add_dataclass_flags(t, Recipe, skip=("model", "data", "recipe"),
                        title="recipe fields (override the preset, which itself replaces the defaults "
                              "shown; booleans: --flag, --flag true|false, --no-flag)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint (any supported format)",
                      description="Top-1, top-5 and loss of a checkpoint (ours, timm's or the authors' ReXNetV1; "
                                  ".safetensors or .pth) on the validation split of --data. Our checkpoints "
                                  "carry their network, so --model is needed only for the others.")
    e.add_argument("--model", default=None, help="zoo name or NetSpec file (optional for our checkpoints)")
    e.add_argument("--weights", required=True, help="checkpoint file (.safetensors, .pth, .pt; ours, timm's or "
                   "the authors')")
    e.add_argument("--data", required=True, help="dataset name (cifar10, ...), image tree or zip")
    e.add_argument("--data-root", default=None, help="where named datasets live (default $REXNET_DATA or .data)")
    add_bool_flag(e, "--download", help="fetch a named dataset when missing (needs internet)")
    e.add_argument("--input-size", type=int, default=None, help="default: 224, or 32 for CIFAR-sized models")
    e.add_argument("--transform", default=None, help="imagenet | cifar (default: by input size)")
    e.add_argument("--stride-plan", default="auto", help="auto (cifar when input size <= 32) | imagenet | cifar")
    e.add_argument("--num-classes", type=int, default=None, help="default: from the checkpoint")
    e.add_argument("--batch-size", type=int, default=100, help="default: 100")
    e.add_argument("--limit", type=int, default=None,
                   help="evaluate N images only, classes taking turns (default: all)")
    add_bool_flag(e, "--skip-bad-images", help="skip and count unreadable images")
    add_bool_flag(e, "--ema", help="use the EMA weights of a training checkpoint")
    e.add_argument("--out", default=None, help="summary JSON path (default eval_summary.json)")
    e.set_defaults(func=cmd_eval)

    dt = sub.add_parser("data", help="dataset tools")
    dsub = dt.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser("check", help="scan an image tree or zip: class counts and bad files")
    dc.add_argument("path")
    dc.add_argument("--json", default=None)
    dc.set_defaults(func=cmd_data_check)

    from .rank.cli import add_rank_commands

    add_rank_commands(sub)

    from .search.cli import add_search_commands

    add_search_commands(sub)

    from .bench.cli import add_bench_commands

    add_bench_commands(sub)

    from .detection.cli import add_detect_commands

    add_detect_commands(sub)

    from .design import add_design_command

    add_design_command(sub)

    from .experiments.cli import add_experiment_commands

    add_experiment_commands(sub)

    d = sub.add_parser("demo", help="the paper at smoke scale: zoo, block table, schedule plot, rank study, search",
                      description="The paper's study end to end at smoke scale: the zoo table (params, MACs, "
                                  "CPU latency), ReXNet x1.0 block by block, the schedule plot, the quick "
                                  "rank study (Section 3) and a smoke channel search with its report "
                                  "(Section 4). Writes models.json, schedules.png, rank_study/ and search/ "
                                  "under --out.")
    d.add_argument("--out", default="out", help="output folder (default: out)")
    d.add_argument("--runs", type=int, default=10, help="timed runs per model for the latency column (default: 10)")
    d.add_argument("--no-profile", action="store_true", help="skip the latency column")
    d.add_argument("--no-rank-study", action="store_true", help="skip the quick rank study")
    d.add_argument("--no-search", action="store_true", help="skip the smoke channel search")
    d.add_argument("--search-data", default="auto",
                   help="data for the smoke search: auto (CIFAR-10 if present or downloadable, else "
                        "Fashion-MNIST from dataset-fashion-mnist) or a dataset name / image tree / zip")
    d.set_defaults(func=cmd_demo)
    return p


def _main_process() -> bool:
    """Rank 0 under torchrun (or no torchrun): the one process that prints a run's outcome."""
    return int(os.environ.get("RANK", "0")) == 0


def _command_name(args: argparse.Namespace) -> str:
    """``train``, ``detect train``, ``search run``: the command and, for command groups, the
    subcommand (their ``add_subparsers`` dest is ``<command>_command``)."""
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else args.command


def main(argv: list[str] | None = None) -> int:
    if argv is None:   # the process's own command line: commands that train re-exec with tcmalloc
        from .alloc import reexec_if_wanted

        reexec_if_wanted(sys.argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        stop_code = getattr(e, "exit_code", None)  # TrainingStopped: SIGINT/SIGTERM after a finished step
        if stop_code is not None:
            if _main_process():   # every rank stops at the same step; one line says so
                print(f"rexnet {_command_name(args)}: {e}", file=sys.stderr)
            return stop_code
        print(f"rexnet {args.command}: interrupted; finished work is kept (train: --resume continues)",
              file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"rexnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "TrainingDiverged":
            raise
        print(f"rexnet {args.command}: error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
