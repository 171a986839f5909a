"""A small held-out sweep of the CIFAR recipe's stability knobs over the hardest arms.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recipe_sweep.py \
        [--data ../shared/data/cifar10-jpeg.zip] [--out docs/experiments/recipe_sweep] [--workers 2] [--plan]

Every arm is trained with every variant of the ``cifar`` recipe (lr, warm-up, gradient
clipping) on ``--train-subset`` training images, validated on ``--val-subset`` of
``--holdout`` training images held out; the test split is never read.  The protocol
(arms, variants, budget, the divergence rule and the selection rule) is written to
``OUT/protocol.json`` before the first run and a rerun with other settings is refused;
finished runs are kept (a rerun continues).  The selection rule: among the variants
under which no arm diverged, the highest mean held-out top-1 over the arms.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from rexnet.experiments.definitions import mobilenetv2_pair
from rexnet.io import changed_settings, markdown_table, read_jsonl, refuse_other_settings, write_json, write_text
from rexnet.search.experiments import reference_arms
from rexnet.train.health import divergence

VARIANTS = {
    "lr0.1_warmup1": dict(lr=0.1, warmup_epochs=1.0, clip_grad_norm=0.0, zero_init_last=False),   # as it was
    "lr0.1_warmup3_clip5": dict(lr=0.1, warmup_epochs=3.0, clip_grad_norm=5.0, zero_init_last=False),
    "lr0.1_warmup3_zero_init": dict(lr=0.1, warmup_epochs=3.0, clip_grad_norm=0.0, zero_init_last=True),
    "lr0.05_warmup2": dict(lr=0.05, warmup_epochs=2.0, clip_grad_norm=0.0, zero_init_last=False),
    "lr0.05_warmup2_clip5_zero_init": dict(lr=0.05, warmup_epochs=2.0, clip_grad_norm=5.0, zero_init_last=True),
}
# the rule of this sweep's committed protocol: chance itself, without the later tolerance
DIVERGENCE_RULE = ("diverged: an epoch after warm-up with mean training loss above ln(classes), or a held-out loss "
                   "above 3x the first epoch's")
SELECTION = ("among the variants under which no arm diverged, the highest mean held-out top-1 (best epoch) "
             "over the arms")


def arms() -> dict[str, object]:
    """The hardest arms: MobileNetV2 x0.35 and its linear re-channelling (every one of their
    earlier runs blew up), and the search network's linear reference (the scale pilot's arm)."""
    mbv2 = {a.name: a.spec for a in mobilenetv2_pair(0.35)}
    ref = {a.name: a.spec for a in reference_arms("smoke")}
    return {"mobilenetv2": mbv2["stagewise"], "mobilenetv2_linear": mbv2["linear"], "search_linear": ref["linear"]}


def _one(job: tuple[str, str, dict, str]) -> dict:
    import torch

    from rexnet.spec import NetSpec
    from rexnet.train.loop import train
    from rexnet.train.recipe import load_recipe

    torch.set_num_threads(1)
    arm, variant, p, folder = job
    spec = NetSpec.from_json(p["spec"])
    cfg = load_recipe("cifar", dict(data=p["data"], epochs=p["epochs"], train_subset=p["train_subset"],
                                    holdout=p["holdout"], val_subset=p["val_subset"], seed=p["seed"],
                                    progress=False, dropout=spec.head.dropout, **VARIANTS[variant]))
    t0 = time.time()
    summary = train(cfg, folder, spec=spec, resume=True)
    curve = read_jsonl(Path(folder) / "metrics.jsonl")
    return dict(arm=arm, variant=variant, best_val_top1=summary["best_val_top1"],
                final_val_top1=summary["final"]["val_top1"] if summary["final"] else None,
                train_loss=[round(r["train_loss"], 4) for r in curve], val_loss=[round(r["val_loss"], 4) for r in curve],
                val_top1=[r["val_top1"] for r in curve], diverged=divergence(curve, VARIANTS[variant]["warmup_epochs"], 10, tolerance=0.0),
                wall_s=round(time.time() - t0, 1))


def _protocol(args: argparse.Namespace) -> dict:
    specs = arms()
    return dict(arms={k: v.hash() for k, v in specs.items()}, variants=VARIANTS, data=args.data, epochs=args.epochs,
                train_subset=args.train_subset, holdout=args.holdout, val_subset=args.val_subset, seed=args.seed,
                divergence=DIVERGENCE_RULE, selection=SELECTION, test_split="never read")


def _report(out: Path, protocol: dict, rows: list[dict]) -> str:
    by = {(r["arm"], r["variant"]): r for r in rows}
    table = [[v] + [f"{by[(a, v)]['best_val_top1']:.2f}" + (" (diverged)" if by[(a, v)]["diverged"] else "")
                    if (a, v) in by else "-" for a in protocol["arms"]] for v in VARIANTS]
    ok = [v for v in VARIANTS if all((a, v) in by and not by[(a, v)]["diverged"] for a in protocol["arms"])]
    mean = {v: sum(by[(a, v)]["best_val_top1"] for a in protocol["arms"]) / len(protocol["arms"]) for v in ok}
    chosen = max(mean, key=mean.get) if mean else None
    lines = ["# CIFAR recipe sweep: stability on the hardest arms", "",
             f"Command: `{' '.join(sys.argv)}`", "",
             f"Budget: {protocol['epochs']} epochs on {protocol['train_subset']} training images, held-out top-1 "
             f"on {protocol['val_subset']} of {protocol['holdout']} held-out training images; seed "
             f"{protocol['seed']}; the test split is never read.", "",
             f"Divergence rule: {DIVERGENCE_RULE}.", "", f"Selection rule (fixed before the runs): {SELECTION}.", "",
             "Held-out top-1 (%) at the best epoch:", "",
             markdown_table(["variant", *protocol["arms"]], table), "",
             f"Chosen: **{chosen}** ({VARIANTS.get(chosen)})" if chosen else "Chosen: none (every variant diverged)",
             "", "Per-epoch training and held-out losses are in `sweep.json`."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("REXNET_CIFAR10") or "cifar10")
    ap.add_argument("--out", default="docs/experiments/recipe_sweep")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-subset", type=int, default=4000)
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--val-subset", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plan", action="store_true", help="write OUT/protocol.json and stop (commit it before the runs)")
    args = ap.parse_args()
    out = Path(args.out)
    protocol = _protocol(args)
    if (out / "protocol.json").is_file():
        old = json.loads((out / "protocol.json").read_text())
        refuse_other_settings(out, "recipe sweep", changed_settings(old, json.loads(json.dumps(protocol))),
                              replace_flag=None)
    else:
        write_json(protocol, out / "protocol.json")
    if args.plan:
        print(json.dumps(protocol, indent=2))
        return 0
    specs = arms()
    jobs = [(a, v, dict(protocol, spec=specs[a].to_json()), str(out / "runs" / f"{a}-{v}"))
            for v in VARIANTS for a in specs]
    done = {(r["arm"], r["variant"]): r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/sweep_row.json"))}
    todo = [j for j in jobs if (j[0], j[1]) not in done]
    print(f"recipe sweep: {len(done)} of {len(jobs)} runs done; {len(todo)} to go", flush=True)
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for row in pool.imap_unordered(_one, todo):
            write_json(row, out / "runs" / f"{row['arm']}-{row['variant']}" / "sweep_row.json")
            done[(row["arm"], row["variant"])] = row
            print(f"{row['arm']} / {row['variant']}: held-out top-1 {row['best_val_top1']:.2f}, "
                  f"{row['diverged'] or 'stable'}, {row['wall_s']:.0f} s", flush=True)
    rows = [done[(a, v)] for v in VARIANTS for a in specs if (a, v) in done]
    write_json(dict(protocol=protocol, runs=rows), out / "sweep.json")
    write_text(out / "report.md", _report(out, protocol, rows))
    print(f"wrote {out}/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
