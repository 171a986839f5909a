"""``rexnet demo``: the paper's study end to end at smoke scale.

The zoo table, ReXNet x1.0 block by block, the schedule plot, the quick rank
study (Section 3) and a smoke channel search with its report (Section 4).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_demo_command", "run_demo"]


def _zoo_and_schedules(out: Path, runs: int, profile: bool) -> None:
    """The zoo table (and models.json), ReXNet x1.0's block table and the schedule plot."""
    from .io import write_json
    from .models.zoo import list_models, model_spec
    from .tables import block_rows, format_table, plot_widths, zoo_rows

    print("== The model zoo (params and MACs at 224x224; CPU latency at batch 1) ==")
    names = list_models()
    latency = None
    if profile:
        from .bench.timing import zoo_latency
        latency = zoo_latency(names, runs=runs)
    rows = zoo_rows(names, latency_ms=latency)
    print(format_table(rows))
    write_json(rows, out / "models.json")
    print("\n== ReXNet x1.0, block by block ==")
    print(format_table(block_rows(model_spec("rexnet_100"))))
    specs = [model_spec(n) for n in ("mobilenetv2_100", "mobilenetv2_linear", "rexnet_100")]
    plot = plot_widths(specs, out / "schedules.png",
                       title="Stage-wise (MobileNetV2) vs linear channel widths")
    print(f"\nwrote {out / 'models.json'} and {plot}")


def _rank_study(out: Path) -> None:
    from .rank.cli import print_study
    from .rank.networks import QUICK_NETWORKS, StudyConfig
    from .rank.study import run_and_report

    print("\n== Section 3: rank study (--quick) ==")
    print_study(run_and_report(StudyConfig(networks=QUICK_NETWORKS), out / "rank_study"))


def _search_and_report(folder: Path, data: str, workers: int) -> tuple[dict, Path]:
    """Run the smoke search in ``folder`` and write its report: the trial counts and the report's path.

    The one place the demo touches the search API."""
    from .search.report import analyze
    from .search.run import SearchSettings, run_search

    counts = run_search(folder, SearchSettings(preset="smoke", data=data, workers=workers))
    res = analyze([folder], folder / "report")
    return counts, res.get("report", folder / "report" / "report.md")


def _search(out: Path, search_data: str) -> int:
    from .cores import available_cores
    from .train.data import best_real_dataset

    data = best_real_dataset(search_data)
    print(f"\n== Section 4: channel-configuration search (smoke preset) on {data} ==")
    # two trials at once beat one on 2 cores (README has the measurement)
    workers = min(2, available_cores())
    counts, report = _search_and_report(out / "search", data, workers)
    print(f"{counts['done']} trials done, {counts['failed']} failed; wrote {report}")
    if counts["failed"]:   # a demo with a failed trial is not a demo that worked
        print(f"rexnet demo: {counts['failed']} search trial(s) failed (see the report's Failed trials); "
              f"rerun to retry them", file=sys.stderr)
        return 1
    return 0


def run_demo(out: str | Path = "out", runs: int = 10, profile: bool = True, rank_study: bool = True,
             search: bool = True, search_data: str = "auto") -> int:
    """The paper's study end to end at smoke scale, written under ``out``: 0 when it all worked,
    1 when a search trial failed."""
    from .io import check_writable

    folder = check_writable(out)  # before the zoo is timed, the study run and the search trained
    _zoo_and_schedules(folder, runs, profile)
    if rank_study:
        _rank_study(folder)
    if search:
        return _search(folder, search_data)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out, runs=args.runs, profile=not args.no_profile, rank_study=not args.no_rank_study,
                    search=not args.no_search, search_data=args.search_data)


def add_demo_command(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``demo`` to the ``rexnet`` command's subparsers."""
    parser = subparsers.add_parser(
        "demo", help="the paper at smoke scale: zoo, block table, schedule plot, rank study, search",
        description="The paper's study end to end at smoke scale: the zoo table (params, MACs, CPU latency), "
                    "ReXNet x1.0 block by block, the schedule plot, the quick rank study (Section 3) and a "
                    "smoke channel search with its report (Section 4). Writes models.json, schedules.png, "
                    "rank_study/ and search/ under --out.")
    parser.add_argument("--out", default="out", help="output folder (default: out)")
    parser.add_argument("--runs", type=int, default=10,
                        help="timed runs per model for the latency column (default: 10)")
    parser.add_argument("--no-profile", action="store_true", help="skip the latency column")
    parser.add_argument("--no-rank-study", action="store_true", help="skip the quick rank study")
    parser.add_argument("--no-search", action="store_true", help="skip the smoke channel search")
    parser.add_argument("--search-data", default="auto",
                        help="data for the smoke search: auto (CIFAR-10 if present or downloadable, else "
                             "Fashion-MNIST from dataset-fashion-mnist) or a dataset name / image tree / zip")
    parser.set_defaults(func=cmd_demo)
