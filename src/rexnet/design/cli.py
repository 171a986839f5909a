"""``rexnet design``: the subcommand's arguments and what it prints."""
from __future__ import annotations

from typing import Any

from .families import FAMILIES, get_family
from .latency import FORMS
from .solution import Design, figure_rows, nearest_zoo, solve_design
from .targets import Targets, parse_count, parse_latency_ms

__all__ = ["add_design_command", "cmd_design"]


def _print_design(d: Design) -> None:
    """The design's header, block table, figures against the targets and latency line."""
    from ..tables import block_rows, format_table

    family = d.family
    src = f", shape of the best spec in {family.source['search']} ({family.source['family']})" if family.source else ""
    print(f"{d.spec.name}: family {family.name}{src}; {d.input_size}px, {d.spec.head.num_classes} classes")
    print(f"width x{d.multiplier:.4f}, depth x{d.depth_multiplier:g} ({d.spec.depth} blocks), final width "
          f"{d.final:g}, hash {d.spec.hash()}\n")
    print(format_table(block_rows(d.spec)))
    print()
    print(format_table(figure_rows(d)))
    if d.latency:
        lat = d.latency
        print(f"latency re-measured after the search: {lat['ms']:.3f} ms = {lat['ratio']:.3f} x {lat['reference']} "
              f"({lat['reference_ms']:.3f} ms), timed in turns, median of {2 * lat['runs']} runs, "
              f"{lat['threads'] or 'GPU'} threads; {lat['candidates_timed']} widths timed")
    print("\nnearest zoo models (same input size and classes):")
    print(format_table(nearest_zoo(d.spec)))


def cmd_design(args: Any) -> int:
    """``rexnet design``: print the design (block table, figures, nearest zoo models); write --out."""
    from ..io import check_writable_file, refuse_existing
    from ..models.resolve import SPEC_SUFFIXES

    targets = Targets(macs=None if args.macs is None else parse_count(args.macs, "--macs"),
                      params=None if args.params is None else parse_count(args.params, "--params"),
                      latency_ms=parse_latency_ms(args.latency_ms), fill=args.fill or None)
    if args.out:
        if not str(args.out).endswith(SPEC_SUFFIXES):
            raise ValueError(f"--out {args.out}: write the NetSpec as .yaml, .yml or .json")
        check_writable_file(args.out)
        refuse_existing([args.out], args.overwrite)
    family = get_family(args.family, args.from_search)
    kw: dict[str, Any] = {}
    if targets.latency_ms is not None:
        kw = dict(device=args.device, batch_size=args.batch_size, threads=args.threads, form=args.form,
                  runs=args.runs, warmup=args.warmup, log=print)
    d = solve_design(targets, family, input_size=args.input_size, num_classes=args.num_classes, name=args.name, **kw)
    _print_design(d)
    if args.out:
        print(f"\nwrote {d.spec.save(args.out)}: `rexnet train --model {args.out} ...`, "
              f"`rexnet export {args.out} --out model.onnx`")
    return 0


def add_design_command(subparsers: Any) -> None:
    """Add ``design`` to the ``rexnet`` command's subparsers."""
    p = subparsers.add_parser(
        "design", help="a ReXNet for your budget: MACs, params and/or latency measured on this device",
        description="Solve the ReXNet design rule (widths linear in the block index) for a budget: the width "
                    "multiplier, depth multiplier and final width are chosen so the network is the largest "
                    "meeting every upper bound, with each budget used at least --fill. Prints the block table, "
                    "the figures against the targets and the nearest zoo models; --out writes the NetSpec "
                    "(rexnet train/export --model take it as it is).")
    p.add_argument("--macs", default=None, help="upper bound on MACs at --input-size, e.g. 150M, 0.40G, 3e8")
    p.add_argument("--params", default=None, help="upper bound on parameters, e.g. 3M, 2.5e6")
    p.add_argument("--latency-ms", default=None, help="upper bound on latency measured here (ms per batch)")
    p.add_argument("--fill", type=float, default=0.9,
                   help="each of --macs/--params must be used at least this much (default 0.9; 0 turns it off)")
    p.add_argument("--family", default=None, help=f"{' | '.join(FAMILIES)} (default rexnet)")
    p.add_argument("--from-search", default=None, metavar="DIR",
                   help="put the width shape of the best spec of this search on ReXNet's blocks")
    p.add_argument("--input-size", type=int, default=224, help="input resolution (default 224; <= 32 takes "
                                                                "the CIFAR stride plan)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--name", default=None, help="name of the designed spec (default FAMILY_design)")
    p.add_argument("--out", default=None, help="write the NetSpec here (.yaml or .json)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g = p.add_argument_group("latency (with --latency-ms)")
    g.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    g.add_argument("--form", default="eager", help=f"{' | '.join(FORMS)} (folded: BN folded; onnx: ONNX Runtime)")
    g.add_argument("--batch-size", type=int, default=1, help="batch per timed call (default 1)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    g.add_argument("--runs", type=int, default=20, help="timed runs per candidate (default 20)")
    g.add_argument("--warmup", type=int, default=3, help="untimed runs per candidate first (default 3)")
    p.set_defaults(func=cmd_design)
