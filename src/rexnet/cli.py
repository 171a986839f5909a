"""The ``rexnet`` command: thin argument parsing over the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _spec_from_arg(arg: str):
    """A zoo name or a NetSpec file (.json / .yaml)."""
    from .models.zoo import model_spec
    from .spec import NetSpec

    if arg.endswith((".json", ".yaml", ".yml")):
        return NetSpec.load(arg)
    return model_spec(arg)


def cmd_models(args: argparse.Namespace) -> int:
    from .models.zoo import list_models
    from .report import format_table, write_json, zoo_rows

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; try `rexnet models` for all", file=sys.stderr)
        return 2
    rows = zoo_rows(names, profile=args.profile, runs=args.runs, input_size=args.input_size)
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
    """The main job as it stands: the zoo table and the schedule comparison plot."""
    from .models.zoo import list_models, model_spec
    from .report import block_rows, format_table, plot_widths, write_json, zoo_rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("== The model zoo (params and MACs at 224x224; CPU latency at batch 1) ==")
    rows = zoo_rows(list_models(), profile=not args.no_profile, runs=args.runs)
    print(format_table(rows))
    write_json(rows, out / "models.json")
    print("\n== ReXNet x1.0, block by block ==")
    print(format_table(block_rows(model_spec("rexnet_100"))))
    specs = [model_spec(n) for n in ("mobilenetv2_100", "mobilenetv2_linear", "rexnet_100")]
    plot = plot_widths(specs, out / "schedules.png",
                       title="Stage-wise (MobileNetV2) vs linear channel widths")
    print(f"\nwrote {out / 'models.json'} and {plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rexnet", description=__doc__)
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

    d = sub.add_parser("demo", help="the main job: zoo table, block table, schedule plot")
    d.add_argument("--out", default="out")
    d.add_argument("--runs", type=int, default=10)
    d.add_argument("--no-profile", action="store_true", help="skip the latency column")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"rexnet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
