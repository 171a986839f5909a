"""``rexnet rank-study``, ``rank-analyze``, ``rank-verify`` and ``rank-audit``: argument parsing over :mod:`rexnet.rank`.

``add_rank_commands(subparsers)`` adds the subcommands to the main parser;
each handler returns an exit code and raises ``ValueError`` for user errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .networks import StudyConfig
    from .study import StudyReport

__all__ = ["add_rank_commands", "cmd_rank_study", "cmd_rank_analyze", "cmd_rank_verify", "cmd_rank_audit",
           "config_from_args", "print_study"]


def config_from_args(args: argparse.Namespace) -> "StudyConfig":
    """The :class:`StudyConfig` an argument namespace asks for (``--quick`` only lowers ``--networks``'s default)."""
    from ..flags import dataclass_overrides
    from .networks import QUICK_NETWORKS, StudyConfig

    kw = dataclass_overrides(args, StudyConfig, skip=("d_out_min", "d_out_max"))
    if args.quick:
        kw.setdefault("networks", QUICK_NETWORKS)
    if args.d_out is not None:
        kw["d_out_min"], kw["d_out_max"] = args.d_out
    return StudyConfig(**kw)


def print_study(rep: "StudyReport") -> None:
    """What ``rexnet rank-study`` prints about a :class:`~rexnet.rank.study.StudyReport`."""
    run = rep.run
    print(f"{run.computed} networks computed, {run.reused} reused from {run.out}, {run.seconds:.1f} s")
    if not run.complete:
        return
    paths = rep.paths
    print(f"wrote {run.csv_path}, {paths['summary_md'].name}, {paths['report'].name} and "
          f"{sum(k.startswith('fig:') for k in paths)} figures in {run.out}")
    for m, (i, ii, iii, gain) in rep.verdicts.items():
        print(f"  {m:10s} (i) {i:14s} (ii) {ii:14s} (iii) by spread {iii:14s} as stated (gain over identity) {gain}")


def cmd_rank_study(args: argparse.Namespace) -> int:
    from ..io import check_writable
    from .study import run_and_report

    cfg = config_from_args(args)
    check_writable(args.out)
    try:
        rep = run_and_report(cfg, args.out, workers=args.workers, progress=args.progress, fresh=args.fresh,
                             compress=args.compress, stop_after=args.stop_after, compare=args.compare)
    except KeyboardInterrupt:
        print(f"rexnet rank-study: interrupted; finished networks are kept in {args.out} -- rerun the same "
              f"command to continue", file=sys.stderr)
        return 130
    print_study(rep)
    if not rep.run.complete:
        print(f"stopped before the end (--stop-after {args.stop_after}); rerun the same command to continue")
    return 0


def cmd_rank_audit(args: argparse.Namespace) -> int:
    from ..io import check_writable_file
    from .audit import audit, format_audit, write_audit

    for path in (args.csv, args.json):
        if path:
            check_writable_file(path)
    res = audit(args.model, input_size=args.input_size)
    print(format_audit(res))
    for path in write_audit(res, args.csv, args.json):
        print(f"wrote {path}")
    return 0


def add_rank_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``rank-study``, ``rank-analyze``, ``rank-verify`` and ``rank-audit`` to ``rexnet``'s subparsers."""
    _add_study_parser(subparsers)
    _add_analyze_parser(subparsers)
    _add_verify_parser(subparsers)
    _add_audit_parser(subparsers)


def _add_study_parser(subparsers: "argparse._SubParsersAction") -> None:
    from ..flags import add_bool_flag
    from .measures import DEFAULT_TOLS, MEASURE_KINDS
    from .networks import ACTIVATIONS, BLOCK_TYPES, QUICK_NETWORKS

    s = subparsers.add_parser(
        "rank-study", help="the paper's Section 3 rank study (Fig. 1) with every choice explicit; resumable",
        description="Random one-block networks: rank of f(BN(WX)) against d_in/d_out, per block type, "
                    "activation and rank measure. Writes rank_study.csv, figures, summary and report.md to "
                    "--out; rerunning the same command continues an interrupted study.")
    s.add_argument("--out", default="rank_study", help="output directory (default: rank_study)")
    s.add_argument("--quick", action="store_true",
                   help=f"the same design with {QUICK_NETWORKS} networks per block type (well under a minute)")
    s.add_argument("--networks", type=int, default=None, help="networks per block type (default 1000)")
    s.add_argument("--blocks", default=None, help=f"comma list of {','.join(BLOCK_TYPES)} (default: all)")
    s.add_argument("--acts", default=None, help=f"comma list of {','.join(ACTIVATIONS)} (default: all)")
    s.add_argument("--d-out", type=int, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="range of d_out (default 32 256)")
    s.add_argument("--ratios", default=None, help="comma list of d_in/d_out in (0, 1] (default 0.1,0.2,...,1.0)")
    s.add_argument("--spatial", type=int, default=None, help="spatial size s of the s x s input (default 8)")
    s.add_argument("--batch", type=int, default=None,
                   help="batch size; N = batch x s^2 (default: the smallest with N >= 4 x max d_out)")
    s.add_argument("--input", choices=("normal", "blur"), default=None,
                   help="i.i.d. normal (default) or a Gaussian-blurred, spatially correlated normal field")
    s.add_argument("--blur-sigma", type=float, default=None, help="blur width in pixels for --input blur (1.0)")
    s.add_argument("--bn", choices=("train", "eval"), default=None,
                   help="BN with batch statistics (train, default) or identity running stats (eval)")
    s.add_argument("--expansion", type=float, default=None, help="IB expansion ratio (default 6)")
    s.add_argument("--shortcut", choices=("partial", "full", "none"), default=None,
                   help="IB shortcut: partial (ReXNet, default), full (only when d_in == d_out), none")
    s.add_argument("--measures", default=None, help=f"comma list of {','.join(MEASURE_KINDS)} (default: all)")
    s.add_argument("--tols", default=None,
                   help=f"relative tolerances of the numerical rank, 'f32' = matrix_rank's float32 default "
                        f"(default {','.join(DEFAULT_TOLS)})")
    add_bool_flag(s, "--center", default=None, help="subtract each channel's mean before the spectrum (default: false)")
    s.add_argument("--seed", type=int, default=None, help="study seed (default 0)")
    s.add_argument("--workers", type=int, default=None,
                   help="processes (default: the CPU cores this process may use, capped by OMP_NUM_THREADS)")
    s.add_argument("--fresh", action="store_true", help="discard earlier results in --out")
    s.add_argument("--compress", choices=("auto", "yes", "no"), default="auto",
                   help="gzip the final CSV (auto: when larger than 5 MB)")
    s.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="compute at most K networks in this run; the next run continues")
    s.add_argument("--compare", action="append", default=[], metavar="DIR",
                   help="another finished study (e.g. the same with --center) to set side by side in report.md")
    add_bool_flag(s, "--progress", default=True, help="progress bar on stderr (default: true; --no-progress)")
    s.set_defaults(func=cmd_rank_study)


def _add_analyze_parser(subparsers: "argparse._SubParsersAction") -> None:
    from ..flags import add_bool_flag

    z = subparsers.add_parser(
        "rank-analyze", help="Section 6: rank of every layer's output features of (trained) models on real images")
    z.add_argument("--model", required=True, help="zoo name or NetSpec file")
    z.add_argument("--weights", default=None, help="checkpoint in any supported format (default: random init)")
    z.add_argument("--compare", nargs="*", default=[], metavar="NAME[=WEIGHTS]",
                   help="more models to analyse beside it, e.g. mobilenetv2_100=mnv2.pth")
    z.add_argument("--data", required=True, help="dataset name or image tree / zip (its val split is used)")
    z.add_argument("--data-root", default=None)
    z.add_argument("--images", type=int, default=128, help="number of images (class-balanced)")
    z.add_argument("--input-size", type=int, default=224)
    z.add_argument("--stride-plan", default="auto")
    z.add_argument("--columns", type=int, default=4096, help="feature columns sampled per layer")
    add_bool_flag(z, "--center", help="centre features before the spectrum")
    add_bool_flag(z, "--skip-bad-images", help="skip and count unreadable images")
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--out", required=True)
    z.set_defaults(func=cmd_rank_analyze)


def _add_verify_parser(subparsers: "argparse._SubParsersAction") -> None:
    from ..flags import add_bool_flag

    v = subparsers.add_parser("rank-verify", help="the paper's Table 2: rank and accuracy of 4 two-IB models on CIFAR-10")
    v.add_argument("--data", default="cifar10", help="cifar10, or an image tree / zip of CIFAR-10")
    v.add_argument("--epochs", type=int, default=5)
    v.add_argument("--train-subset", type=int, default=10000, help="0 = all training images")
    v.add_argument("--val-subset", type=int, default=2000, help="0 = all test images")
    v.add_argument("--out-chs", type=int, default=128, help="output width of the second IB")
    v.add_argument("--seed", type=int, default=0)
    add_bool_flag(v, "--progress", default=True, help="progress bar on stderr (default: true; --no-progress)")
    v.add_argument("--out", required=True, help="output folder: one run folder per model, table2.csv, .md and .json")
    v.add_argument("--overwrite", action="store_true", help="replace a Table 2 run made with other settings "
                   "(without it, such a run is refused; one with the same settings continues)")
    v.set_defaults(func=cmd_rank_verify)


def _add_audit_parser(subparsers: "argparse._SubParsersAction") -> None:
    a = subparsers.add_parser(
        "rank-audit", help="audit a model against the paper's channel-dimension design guides",
        description="Per conv layer: kind, in/out channels, dimension ratio, the activation after it; per "
                    "block: expansion and dimension ratio; and which design guides each meets. MODEL is one "
                    "of ours, a timm or a torchvision name (prefix rexnet:, timm: or torchvision: to choose); "
                    "weights are random, never downloaded.")
    a.add_argument("model")
    a.add_argument("--input-size", type=int, default=224, help="dummy input size (default 224)")
    a.add_argument("--csv", default=None, help="write the per-layer rows as CSV")
    a.add_argument("--json", default=None, help="write layers, blocks and summary as JSON")
    a.set_defaults(func=cmd_rank_audit)


def _analysis_models(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """``--model``/``--weights`` and each ``--compare NAME[=WEIGHTS]`` as ``(name, weights or None)``."""
    return [(args.model, args.weights)] + [tuple((c.split("=", 1) + [None])[:2]) for c in args.compare]


def cmd_rank_analyze(args: argparse.Namespace) -> int:
    from .analyze import run_analysis

    run = run_analysis(_analysis_models(args), args.data, args.out, images=args.images, input_size=args.input_size,
                       stride_plan=args.stride_plan, columns=args.columns, center=args.center, seed=args.seed,
                       data_root=args.data_root, skip_bad_images=args.skip_bad_images)
    print(f"{run.images} images from {args.data}; wrote {run.paths['csv']} and {run.paths['png']}")
    return 0


def cmd_rank_verify(args: argparse.Namespace) -> int:
    from ..train.loop import TrainingStopped
    from .verify import run_verification

    try:
        run_verification(args.data, args.out, epochs=args.epochs, train_subset=args.train_subset or None,
                         val_subset=args.val_subset or None, out_chs=args.out_chs, seed=args.seed,
                         progress=args.progress, overwrite=args.overwrite)
    except TrainingStopped as e:  # SIGINT / SIGTERM: the model in training kept its last.pt
        print(f"rexnet rank-verify: {e.what}; rerun the same command to continue", file=sys.stderr)
        return e.exit_code
    print((Path(args.out) / "table2.md").read_text())
    return 0
