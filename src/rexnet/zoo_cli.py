"""``rexnet models | info``: the model zoo as tables, and one model block by block.

It sits beside :mod:`rexnet.cli` rather than in :mod:`rexnet.models` because
``models --profile`` times the zoo with :mod:`rexnet.bench.timing`.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_zoo_commands"]


def _spec_from_arg(arg: str):
    """The spec any way of naming a model gives, with its strides as designed."""
    from .models.resolve import resolve_spec

    return resolve_spec(arg, stride_plan="imagenet")


def _check_output_files(*paths: str | None) -> None:
    """The output files a command was given can be written: one line if not, before any work."""
    from .io import check_writable_file

    for path in paths:
        if path:
            check_writable_file(path)


def cmd_models(args: argparse.Namespace) -> int:
    from .io import write_json
    from .models.zoo import list_models
    from .tables import format_table, zoo_rows

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
    from .tables import block_rows, format_table, plot_widths

    _check_output_files(args.plot, args.save_spec)
    spec = _spec_from_arg(args.model)
    cost = complexity(spec, args.input_size)
    print(f"{spec.name}: {cost.params:,} params, {cost.macs:,} MACs at {args.input_size or spec.input_size}px, "
          f"hash {spec.hash()}")
    print(format_table(block_rows(spec, args.input_size)))
    if args.plot:
        specs = [spec] + [_spec_from_arg(m) for m in args.compare]
        print(f"wrote {plot_widths(specs, args.plot)}")
    if args.save_spec:
        print(f"wrote {spec.save(args.save_spec)}")
    return 0


def add_zoo_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``models`` and ``info`` to the ``rexnet`` command's subparsers."""
    models = subparsers.add_parser("models", help="list the model zoo with params, MACs and reported accuracy")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'rexnet_*'")
    models.add_argument("--profile", action="store_true", help="measure CPU latency at batch 1")
    models.add_argument("--runs", type=int, default=20, help="timed runs per model with --profile")
    models.add_argument("--input-size", type=int, default=224)
    models.add_argument("--json", help="also write the rows as JSON to this path")
    models.set_defaults(func=cmd_models)

    info = subparsers.add_parser("info", help="per-block table of a model (zoo name or NetSpec file)")
    info.add_argument("model")
    info.add_argument("--input-size", type=int, default=None)
    info.add_argument("--plot", help="draw width against block index to this PNG")
    info.add_argument("--compare", nargs="*", default=["mobilenetv2_100"],
                   help="more models for --plot (default: mobilenetv2_100)")
    info.add_argument("--save-spec", help="write the NetSpec as .json or .yaml")
    info.set_defaults(func=cmd_info)
