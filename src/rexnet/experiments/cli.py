"""``rexnet experiment NAME``: argument parsing over :mod:`rexnet.experiments`."""
from __future__ import annotations

import argparse
import shlex
from typing import Mapping

from ..flags import add_dataclass_flags, dataclass_overrides
from .definitions import Experiment
from .paired import ExperimentSettings

__all__ = ["add_experiment_commands", "cmd_experiment"]


def cmd_experiment(args: argparse.Namespace) -> int:
    from .run import plan_experiment, run_experiment

    out = args.out or f"docs/experiments/{args.name}"
    if args.name == "trained_rank":
        return _trained_rank(out, args.plan)
    exp = args.catalogue[args.name]
    given = dataclass_overrides(args, ExperimentSettings)
    settings = ExperimentSettings(**given)
    if args.plan:
        import yaml

        protocol = plan_experiment(exp, out, settings)
        print(yaml.safe_dump(protocol, sort_keys=False, width=110), end="")
        est = protocol.get("estimate") or {}
        print(f"{out}/protocol.yaml: commit it before the first run; estimated {est.get('core_hours')} core-hours "
              f"({est.get('wall_hours_at_2_workers')} h on 2 single-thread workers)")
        return 0
    flags = [(f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k} {shlex.quote(str(v))}"
             for k, v in ((k.replace("_", "-"), v) for k, v in given.items())]
    flags += ["--pilot"] * args.pilot + [f"--out {shlex.quote(args.out)}"] * bool(args.out)
    command = " ".join(["rexnet experiment", args.name, *flags])
    r = run_experiment(exp, out, settings, pilot=args.pilot, overwrite=args.overwrite, command=command)
    m = r["main"]
    print(f"{args.name}: {m['name']}: {r['diff_mean']} {m['unit']}, 95% CI {r['ci95']} over {m['over']}: "
          f"{r['verdict']} (expected {r['expected']}); wall {r['wall_s']:.0f} s")
    if args.pilot:
        p = r["pilot"]
        print(f"pilot: {p['seeds_for_power']} seeds for {p['power']:.0%} power at {p['smallest_effect']} points "
              f"({p['seeds_for_power_at_sd_upper']} at the SD's 95% upper bound); estimated wall "
              f"{p['estimated_wall_s']} s")
    print(f"wrote {out}/{'pilot.json' if args.pilot else 'result.json'} and {out}/report.md")
    return 0 if r["counts"]["failed"] == 0 else 1


def _trained_rank(out: str, plan: bool) -> int:
    from .trained_rank import run_trained_rank

    r = run_trained_rank(out, plan=plan)
    if plan:
        print(f"{out}/protocol.yaml: commit it before the first analysis")
        return 0
    m = r["main"]
    print(f"trained_rank: {m['measure']} vs test top-1 over {m['n']} models: rho {m['rho']}, 95% CI {m['ci95']}, "
          f"Holm p {m['holm_p']}: {r['verdict']}; wrote {out}/result.json and {out}/report.md")
    return 0


def add_experiment_commands(sub, catalogue: Mapping[str, Experiment]) -> None:
    """``rexnet experiment NAME`` over the experiments of ``catalogue`` (name -> Experiment)."""
    lines = "; ".join(f"{e.name}: {e.description} (defaults: " + ", ".join(f"{k} {v}" for k, v in e.defaults.items()
                                                                            if v is not None) + ")"
                      for e in catalogue.values())
    e = sub.add_parser("experiment", help="the paper's claims as paired-seed experiments with 95%% intervals",
                       description="Train the arms of one experiment over paired seeds (finished runs are kept: "
                                   "rerun the same command to resume, or with more --seeds to extend it), then "
                                   "write OUT/result.json, report.md, runs.csv and figures/. " + lines
                                   + "; trained_rank: the rank of the trained models of shape_panel and "
                                     "mobilenetv2_linear_full against their accuracy (reads their stores, trains "
                                     "nothing)")
    e.add_argument("name", choices=[*catalogue, "trained_rank"])
    e.add_argument("--out", default=None, help="output folder (default docs/experiments/NAME)")
    e.add_argument("--pilot", action="store_true", help="run the first 2 seeds only and print how many seeds the "
                   "observed difference needs, with the estimated wall time")
    e.add_argument("--overwrite", action="store_true", help="replace an experiment in --out made with other settings")
    e.add_argument("--plan", action="store_true", help="print the protocol (arms, seeds, budget, comparisons, "
                   "effect of interest, margin, analysis) with the estimated core-hours, write OUT/protocol.yaml "
                   "when none is there, and stop: commit it before the first run")
    add_dataclass_flags(e, ExperimentSettings, skip=("progress",))
    e.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    e.set_defaults(func=cmd_experiment, catalogue=dict(catalogue))
