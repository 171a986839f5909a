"""Benchmark: the default full rank study (Section 3) on this machine, with wall time and peak memory.

    python benchmarks/rank_study.py                      # -> docs/rank_study/ (figures, report.md, benchmark.json)
    python benchmarks/rank_study.py --out /tmp/rs --networks 100

Runs ``rexnet rank-study`` with the default settings (1000 networks per block
type, 8 activations, all measures) from scratch, then writes the summary,
figures and report, and records in ``benchmark.json``:

* wall time of the study and of the outputs;
* peak memory three ways: ``getrusage`` of this process and of its largest
  child (``ru_maxrss`` over children is the largest one, not a sum), and the
  peak of the *summed* RSS of this process and all its descendants, sampled
  from /proc every 0.2 s (the number that matters for "fits in 4 GiB");
* the singular-value route: Gram + ``eigvalsh`` (float64) against ``svdvals``
  on the wide matrix (float32 and float64), at d_out = 256, N = 1024.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakSampler  # noqa: E402  (a sibling script)


def spectrum_speed(d_out: int = 256, n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Milliseconds per spectrum: Gram + eigvalsh (float64) vs svdvals on the wide matrix."""
    import torch

    from rexnet.rank.measures import singular_values

    torch.manual_seed(0)
    a = torch.randn(d_out, n).relu()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times) * 1e3

    out = dict(gram_eigvalsh_f64_ms=best(lambda: singular_values(a)),
               svdvals_f32_ms=best(lambda: torch.linalg.svdvals(a)),
               svdvals_f64_ms=best(lambda: torch.linalg.svdvals(a.double())))
    out["speedup_vs_svdvals_f32"] = out["svdvals_f32_ms"] / out["gram_eigvalsh_f64_ms"]
    out["speedup_vs_svdvals_f64"] = out["svdvals_f64_ms"] / out["gram_eigvalsh_f64_ms"]
    out["max_rel_diff"] = float(((singular_values(a) - torch.linalg.svdvals(a.double())).abs().max()
                                 / torch.linalg.svdvals(a.double())[0]))
    out.update(d_out=d_out, n=n, threads=torch.get_num_threads())
    return {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "docs" / "rank_study"))
    p.add_argument("--networks", type=int, default=None, help="networks per block type (default: the study's 1000)")
    p.add_argument("--workers", type=int, default=None, help="default: the CPU cores this process may use")
    p.add_argument("--resume", action="store_true", help="keep finished networks (the timing then covers only the rest)")
    p.add_argument("--centered-networks", type=int, default=250,
                   help="also run the study with centred features at this many networks per block into "
                        "OUT/centered/ and compare in report.md (0: skip; not part of the timed study)")
    args = p.parse_args(argv)

    from rexnet.cores import available_cores
    from rexnet.io import write_json
    from rexnet.rank.networks import StudyConfig
    from rexnet.rank.report import write_outputs
    from rexnet.rank.study import command_for, run_study

    cfg = StudyConfig() if args.networks is None else StudyConfig(networks=args.networks)
    out = Path(args.out)
    workers = args.workers or available_cores()
    sampler = PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    run = run_study(cfg, out, workers=workers, fresh=not args.resume)
    t_study = time.perf_counter() - t0
    command = command_for(cfg, out.relative_to(REPO) if out.is_relative_to(REPO) else out)
    t1 = time.perf_counter()
    write_outputs(out, command=command)
    t_outputs = time.perf_counter() - t1
    peak_total = sampler.stop()
    wall = time.perf_counter() - t0
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # before the centred run's workers
    compare = []
    if args.centered_networks:
        ccfg = StudyConfig(networks=args.centered_networks, center=True)
        cout = out / "centered"
        t2 = time.perf_counter()
        run_study(ccfg, cout, workers=workers, fresh=not args.resume, compress="yes")  # keep docs/ small
        write_outputs(cout, command=command_for(ccfg, cout.relative_to(REPO) if cout.is_relative_to(REPO) else cout))
        t_centered = time.perf_counter() - t2
        compare = [cout]

    import torch
    speed = spectrum_speed()
    csv_path = run.csv_path
    bench = dict(
        when=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        command=f"python benchmarks/rank_study.py  (equivalent: {command})",
        python=platform.python_version(), torch=torch.__version__,
        workers=workers, networks_per_block=cfg.networks, blocks=len(cfg.blocks), acts=len(cfg.acts),
        measures=len(cfg.measure_list), networks_total=cfg.networks * len(cfg.blocks),
        networks_computed=run.computed, complete=run.complete,
        wall_s=round(wall, 1), study_s=round(t_study, 1), outputs_s=round(t_outputs, 1),
        peak_rss_total_mib=round(peak_total / 2 ** 20, 1),
        peak_rss_main_mib=round(self_kib / 1024, 1), peak_rss_largest_child_mib=round(child_kib / 1024, 1),
        peak_rss_bound_mib=round((self_kib + workers * child_kib) / 1024, 1),
        budget=dict(wall_s=600, peak_rss_mib=4096),
        within_budget=bool(wall < 600 and max(peak_total / 2 ** 20, 0) < 4096),
        results_file=csv_path.name if csv_path else None,
        results_file_bytes=csv_path.stat().st_size if csv_path else None,
        centered=dict(networks_per_block=args.centered_networks, wall_s=round(t_centered, 1))
        if compare else None,
        spectrum=speed)
    write_json(bench, out / "benchmark.json")
    write_outputs(out, command=command, compare=compare)  # once more: report.md quotes the benchmark
    print(json.dumps(bench, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
