"""``rexnet bench`` and ``rexnet export``: argument parsing over :mod:`rexnet.bench`.

``add_bench_commands(subparsers)`` adds both subcommands to the main parser;
each handler returns an exit code and raises ``ValueError`` for user errors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_bench_commands", "cmd_bench", "cmd_export"]


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--batch takes comma-separated positive integers, e.g. 1,32,64; got {text!r}")
    return sizes


def _input_size(text: str) -> int | None:
    if text == "native":
        return None
    if not text.isdigit() or int(text) < 16:
        raise ValueError(f"--input-size takes 'native' (each model's own resolution) or a size >= 16; got {text!r}")
    return int(text)


# what `rexnet bench` writes into --out (rexnet.bench.peers.write_results)
BENCH_FILES = ("bench.csv", "bench.json", "bench.png")


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from ..tables import format_table
    from ..io import check_writable, refuse_existing
    from .peers import TABLE_COLUMNS, build_entries, check_device, machine_info, parse_compare, parse_dtype, \
        run_bench, write_results

    device, dtype = check_device(args.device), parse_dtype(args.dtype)
    batches, size, compare = _batches(args.batch), _input_size(args.input_size), parse_compare(args.compare)
    if args.compile and args.warmup < 1:
        raise ValueError("--compile compiles on the first call: give --warmup >= 1 so that is not timed")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    check_writable(args.out)
    entries = build_entries(args.models or ["rexnet_100"], compare, device=device, dtype=dtype,
                            channels_last=args.channels_last, deploy=args.deploy, compile=args.compile,
                            input_size=size, threads=args.threads)
    # after the entries (which check the models against the input size), before the timing
    refuse_existing([Path(args.out) / f for f in BENCH_FILES], args.overwrite)
    rows = run_bench(entries, batches, device=device, dtype=dtype, channels_last=args.channels_last,
                     runs=args.runs, warmup=args.warmup)
    meta = dict(machine_info(device), args={k: v for k, v in vars(args).items() if k not in ("func", "command")})
    print(format_table(rows, TABLE_COLUMNS))
    print(f"\nmedian / p10 / p90 of {args.runs} interleaved runs per model after {args.warmup} warm-up runs, "
          f"{meta['device_name']}, {args.dtype}, {torch.get_num_threads()} threads; images_per_s = batch / median")
    print("params_m, gmacs: at each row's input size (MACs of conv and linear layers)")
    print("top1_published: ImageNet top-1 from the papers (sources in the JSON), not measured here")
    if args.deploy and any(e.source != "rexnet" for e in entries):
        print("note: --deploy folds BN in our models only; peers and exported files run as they are")
    paths = write_results(rows, args.out, meta)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _export_model(name: str, weights: str | None):
    from ..models.resolve import create_model
    from ..models.weights import read_spec

    if weights and read_spec(weights) is not None:  # our checkpoints carry their spec (classes, stride plan)
        return create_model(weights)
    return create_model(name, weights=weights)


def cmd_export(args: argparse.Namespace) -> int:
    from ..io import check_writable_file, refuse_existing
    from .export import EXPORT_FORMATS, ExportError, export_model, exported_format

    fmt = args.format or exported_format(args.out)
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    check_writable_file(args.out)
    refuse_existing([args.out], args.overwrite)
    if not args.weights:
        print("note: no --weights given: exporting random weights (fine for timing, not for predictions)")
    model = _export_model(args.model, args.weights)
    try:
        res = export_model(model, fmt, args.out, input_size=args.input_size, batch=args.batch,
                           atol=args.atol, fold=not args.no_fold, opset=args.opset)
    except ExportError as e:
        print(f"rexnet export: error: {e}; nothing was written to {args.out}", file=sys.stderr)
        return 3
    print(f"wrote {res['path']} ({fmt}, {res['bytes'] / 1e6:.1f} MB, BN {'folded' if res['bn_folded'] else 'kept'}): "
          f"logits match the model within {res['max_abs_diff']:.1e} at batch sizes "
          f"{', '.join(map(str, res['checked_batches']))} (dynamic batch axis), {res['input_size']}px")
    return 0


def add_bench_commands(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``bench`` and ``export`` to the ``rexnet`` command's subparsers."""
    from .peers import DEVICES, DTYPES, PEERS

    b = subparsers.add_parser(
        "bench", help="latency and throughput of our models against EfficientNet / MobileNet peers",
        description="Times models in turns (interleaved, so machine drift falls on all alike) and writes "
                    "bench.csv, bench.json and bench.png (published top-1 vs measured latency, as the "
                    "paper's Fig. 3) to --out.")
    b.add_argument("models", nargs="*", help="zoo names or patterns (rexnet_1*), peers, or .onnx / .pt files "
                                             "from `rexnet export` (default: rexnet_100)")
    b.add_argument("--compare", default="", help=f"comma list of peers: {','.join(PEERS)}, or 'all'")
    b.add_argument("--device", default="cpu", help=f"one of {', '.join(DEVICES)} (default cpu)")
    b.add_argument("--batch", default="1,32", help="comma list of batch sizes (default 1,32)")
    b.add_argument("--input-size", default="native",
                   help="'native' (each model's own: EfficientNet-B0..B3 at 224/240/260/300, others 224) or a size")
    b.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    b.add_argument("--runs", type=int, default=30, help="timed runs per model and batch size (default 30)")
    b.add_argument("--warmup", type=int, default=5, help="untimed runs per model first (default 5)")
    b.add_argument("--dtype", default="fp32", help=f"one of {', '.join(DTYPES)} (default fp32)")
    b.add_argument("--channels-last", action="store_true", help="channels_last weights and inputs")
    b.add_argument("--deploy", action="store_true", help="fold BN into the convolutions of our models")
    b.add_argument("--compile", action="store_true", help="torch.compile every torch model (slow to start)")
    b.add_argument("--out", default="bench", help="output directory (default: bench)")
    b.add_argument("--overwrite", action="store_true", help="replace bench.csv/json/png already in --out")
    b.set_defaults(func=cmd_bench)

    e = subparsers.add_parser(
        "export", help="export a model to ONNX or TorchScript (dynamic batch), verified against the model",
        description="Folds BN, exports, loads the file back (ONNX Runtime for ONNX), checks its logits at "
                    "several batch sizes against the model, and only then moves it onto --out.")
    e.add_argument("model", help="zoo name or NetSpec file (a checkpoint's stored spec wins)")
    e.add_argument("--weights", default=None, help="checkpoint in any supported format (default: random init)")
    e.add_argument("--format", default=None, help="onnx or torchscript (default: from --out's suffix)")
    e.add_argument("--out", required=True, help="file to write: .onnx, or .pt / .ts for TorchScript")
    e.add_argument("--input-size", type=int, default=None, help="example input size (default: the spec's)")
    e.add_argument("--batch", type=int, default=2, help="example batch; the batch axis stays dynamic (default 2)")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    e.add_argument("--atol", type=float, default=1e-4, help="max |logit difference| allowed (default 1e-4)")
    e.add_argument("--no-fold", action="store_true", help="export with BN layers as they are")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    e.set_defaults(func=cmd_export)
