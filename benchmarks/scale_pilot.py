"""The scale pilot: the search network's linear arm trained at a few budgets on the full
CIFAR-10 training set minus a held-out split, to choose a budget where the networks are trained.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_pilot.py [--budgets 5,10] [--plan] \
        [--data ../shared/data/cifar10-jpeg.zip] [--out docs/experiments/scale_pilot]

Each budget is one run (seed 0) of the linear reference of the ``smoke`` preset (the
12-block network of the CPU searches; ``--arm mobilenetv2:0.35``: MobileNetV2 x0.35 instead) in its own store ``OUT/e<epochs>/``, all budgets at
once (one single-thread process each).  Held-out top-1 picks the best epoch on
``--holdout`` training images; the test split is read once, at the end.  The protocol
(``OUT/protocol.json``: arm, budgets, data, the decision rule) is written by ``--plan`` to
be committed before the runs; a rerun with other settings is refused, one that only adds a
budget (``--budgets 4,8,16``) is recorded and runs the new budget alone.  The report gives,
per budget: test and held-out top-1, training images/s per core, wall time and
core-hours; the gain of doubling the epochs; the decision; and the measured training
throughput of the paper's depth-18 network for the campaign's envelope.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from rexnet.experiments.definitions import mobilenetv2_pair
from rexnet.experiments.paired import Arm, ExperimentSettings, collect, run_arms
from rexnet.experiments.protocol import estimate_core_hours
from rexnet.io import changed_settings, markdown_table, refuse_other_settings, write_json, write_text
from rexnet.search.experiments import reference_arms
from rexnet.train.recipe import recipe_values

TARGET, AIM, DOUBLING_GAIN = 80.0, 85.0, 3.0
DECISION = (f"the smallest budget whose test top-1 is at least {TARGET:.0f}% and whose doubling adds at most "
            f"{DOUBLING_GAIN:.0f} points (the doubled budget measured here); none when no budget qualifies "
            f"(then 20 epochs, or a GPU)")

REACHES = (f"the width qualifies for the campaign at every budget here whose test top-1 is at least {TARGET:.0f}% "
           f"(MobileNetV2 is trained at the budget the linear reference's pilot chose)")


def _settings(args: argparse.Namespace, epochs: int) -> ExperimentSettings:
    return ExperimentSettings(data=args.data, seeds=1, seed=0, epochs=epochs, train_subset=None, holdout=args.holdout,
                              val_subset=None, test_images=None, batch_size=128, rank_images=0, workers=1,
                              progress=False)


def _arm(preset: str, which: str = "linear") -> Arm:
    """The preset's linear reference, or (``mobilenetv2:W``) MobileNetV2 xW on the CIFAR stride plan."""
    if which.startswith("mobilenetv2:"):
        return next(a for a in mobilenetv2_pair(float(which.split(":")[1])) if a.name == "stagewise")
    if which != "linear":
        raise SystemExit(f"--arm {which!r}: choose linear or mobilenetv2:WIDTH (e.g. mobilenetv2:0.35)")
    return next(a for a in reference_arms(preset) if a.name == "linear")


def _arm_name(args: argparse.Namespace) -> str:
    if args.arm == "linear":
        return f"{args.preset} linear reference"
    return f"MobileNetV2 x{float(args.arm.split(':')[1]):g} on the CIFAR stride plan"


def _protocol(args: argparse.Namespace) -> dict:
    arm = _arm(args.preset, args.arm)
    return dict(arm=dict(name=_arm_name(args), macs=arm.macs, params=arm.params,
                         spec_hash=arm.spec.hash()),
                budgets=args.budgets, data=args.data, holdout=args.holdout, train_images=50_000 - args.holdout,
                test="all 10,000 test images, read once at the end of each run", seed=0,
                recipe=recipe_values("cifar"), decision=DECISION if args.arm == "linear" else REACHES)


def _one(job: tuple[dict, int, str]) -> int:
    args_d, epochs, out = job
    args = argparse.Namespace(**args_d)
    counts = run_arms(f"scale_pilot_e{epochs}", Path(out), [_arm(args.preset, args.arm)], _settings(args, epochs),
                      log=lambda m: print(f"[e{epochs}] {m}", flush=True))
    return counts["done"]


def _row(out: Path, epochs: int) -> dict | None:
    if not (out / f"e{epochs}" / "search.db").is_file():
        return None
    trials, _ = collect(out / f"e{epochs}")
    done = [t for t in trials if t["status"] == "done"]
    if not done:
        return None
    r = done[0]["result"]
    return dict(epochs=epochs, test_top1=r["test_top1"], heldout_top1=r["best_val_top1"], best_epoch=r["best_epoch"],
                train_images=r["train_images"], images_per_s_per_core=r["images_per_s"], wall_s=r["wall_s"],
                core_hours=round(r["cpu_s"] / 3600, 3), diverged=r.get("diverged"), threads=r["threads"])


def _decide(rows: dict[int, dict], rule: str = DECISION) -> dict:
    if rule == REACHES:
        ok = [e for e in sorted(rows) if rows[e]["test_top1"] >= TARGET]
        return dict(budget_epochs=None, reaches_target_at=ok,
                    why=f"at least {TARGET:.0f}% at {ok or 'no'} epochs of those measured ({sorted(rows)})")
    for e in sorted(rows):
        doubled = rows.get(2 * e)
        if rows[e]["test_top1"] >= TARGET and doubled is not None and \
                doubled["test_top1"] - rows[e]["test_top1"] <= DOUBLING_GAIN:
            return dict(budget_epochs=e, why=f"{rows[e]['test_top1']:.2f}% test top-1, doubling adds "
                                              f"{doubled['test_top1'] - rows[e]['test_top1']:+.2f}")
    return dict(budget_epochs=None, why="no budget measured here qualifies")


def _report(args: argparse.Namespace, protocol: dict, rows: dict[int, dict], paper: dict) -> str:
    table = [[e, f"{r['test_top1']:.2f}", f"{r['heldout_top1']:.2f}", r["best_epoch"] + 1, r["train_images"],
              f"{r['images_per_s_per_core']:.1f}", f"{r['wall_s']:.0f}", r["core_hours"], r["diverged"] or "no"]
             for e, r in sorted(rows.items())]
    decision = _decide(rows, protocol["decision"])
    lines = ["# Scale pilot: how long must the search network train on CIFAR-10 here?", "",
             f"Command: `{' '.join(sys.argv)}`", "",
             f"Arm: {protocol['arm']['name']} ({protocol['arm']['macs']:,} MACs, {protocol['arm']['params']:,} params, "
             f"spec {protocol['arm']['spec_hash']}); seed 0; {protocol['train_images']:,} training images, "
             f"{protocol['holdout']:,} held out for the best epoch; {protocol['test']}.", "",
             markdown_table(["epochs", "test top-1", "held-out top-1", "best epoch", "training images",
                             "train img/s per core", "wall s", "core-hours", "diverged"], table), "",
             f"Decision rule (fixed before the runs): {protocol['decision']}.", "",
             (f"**Decision: {decision['budget_epochs'] or 'none'}** ({decision['why']})." if "reaches_target_at"
              not in decision else f"**Reaches {TARGET:.0f}%: {'yes' if decision['reaches_target_at'] else 'no'}** "
                                   f"({decision['why']})."), "",
             f"The paper's depth-18 network at 30 MMACs (`d18_30m_cifar10` linear reference): {paper['rate']} "
             f"training images/s per core measured beside the runs ({paper['how']}), against "
             f"{paper['smoke_rate']} for this arm by the same measure (a synthetic measure, slower than the "
             f"runs' own figure above; its ratio is what carries over)."]
    ratio = paper["rate"] / paper["smoke_rate"] if paper["smoke_rate"] else None
    if ratio:
        lines += ["", "At that ratio a run of the paper's network would cost " + ", ".join(
            f"{r['core_hours'] / ratio:.2f} core-hours at {e} epochs" for e, r in sorted(rows.items())) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("REXNET_CIFAR10") or "cifar10")
    ap.add_argument("--out", default="docs/experiments/scale_pilot")
    ap.add_argument("--budgets", default="5,10", type=lambda v: [int(x) for x in v.split(",")])
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--arm", default="linear", help="linear (the preset's linear reference) or mobilenetv2:WIDTH "
                    "(MobileNetV2 xWIDTH on the CIFAR stride plan, the hardest arm of the campaign)")
    ap.add_argument("--plan", action="store_true", help="write OUT/protocol.json and stop")
    args = ap.parse_args()
    out = Path(args.out)
    protocol = _protocol(args)
    if (out / "protocol.json").is_file():
        old = json.loads((out / "protocol.json").read_text())
        changes = changed_settings(old, json.loads(json.dumps(protocol)))
        if set(changes) == {"budgets"} and set(old["budgets"]) <= set(args.budgets):   # a budget added: recorded
            write_json(protocol, out / "protocol.json")
            changes = {}
        refuse_other_settings(out, "scale pilot", changes, replace_flag=None)
    else:
        write_json(protocol, out / "protocol.json")
    if args.plan:
        print(json.dumps(protocol, indent=2))
        return 0
    todo = [(vars(args), e, str(out / f"e{e}")) for e in args.budgets if _row(out, e) is None]
    t0 = time.time()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_one, args=(job,)) for job in todo]   # not a Pool: each starts a trial process
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rows = {e: r for e in args.budgets if (r := _row(out, e)) is not None}
    s = _settings(args, 1)
    paper = estimate_core_hours([dataclasses.replace(_arm("d18_30m_cifar10"), name="paper"),
                                 dataclasses.replace(_arm(args.preset, args.arm), name="this")], s)
    paper = dict(rate=paper["images_per_s_per_core"]["paper"], smoke_rate=paper["images_per_s_per_core"]["this"],
                 how=paper["how"])
    write_json(dict(protocol=protocol, runs=rows, decision=_decide(rows, protocol["decision"]), paper_network=paper,
                    wall_s=round(time.time() - t0, 1)), out / "result.json")
    write_text(out / "report.md", _report(args, protocol, rows, paper))
    print(f"wrote {out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
