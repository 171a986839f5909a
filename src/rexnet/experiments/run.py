"""``run_experiment(name, out, settings)``: train what is missing, then write the results.

Paired experiments (linear_vs_stagewise, mobilenetv2_linear, table2) train their arms x
seeds through :func:`~rexnet.experiments.paired.run_arms`; search_cpu is a search
(:func:`~rexnet.search.runner.run_search`) analysed by
:func:`~rexnet.search.stats.analyze_search`.  ``pilot`` runs the first two seeds only
and says how many seeds the observed difference needs.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..search.runner import DB_NAME, protocol_of, run_search
from ..search.stats import analyze_search, gap_interval, gap_verdict, permutation_pvalues, split_groups
from .definitions import DEFAULTS, DESCRIPTIONS, EXPERIMENTS, arms_of, comparisons_of
from .paired import Clock, ExperimentSettings, accuracies, check_protocol, collect, paired_stats, run_arms, \
    seeds_needed
from .report import PRIMARY_METRIC, write_outputs

__all__ = ["run_experiment", "analyse", "PILOT_SEEDS"]

PILOT_SEEDS = 2
ALPHA = 0.05


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_experiment(name: str, out: str | Path, settings: ExperimentSettings, *, pilot: bool = False,
                   overwrite: bool = False, command: str = "", log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Run (or resume) experiment ``name`` in ``out`` and write its result; returns result.json's content."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    s = settings.with_defaults(DEFAULTS[name])
    if pilot:
        s = dataclasses.replace(s, seeds=PILOT_SEEDS)
    out = Path(out)
    from ..train.checkpoint import check_writable

    clock = Clock(out)
    if name == "search_cpu":
        ss = s.search_settings(preset=s.preset, trials=s.trials)
        check_protocol(out, protocol_of(ss.resolved(), ss), overwrite, name)
        check_writable(out)
        arms = arms_of(name, s)
        n = len(arms) * s.seeds + s.trials * s.seeds
        log(f"experiment {name}: a {s.preset} search of {s.trials} sampled models + 2 references, {s.seeds} "
            f"seed(s) each ({n} runs), {s.epochs} epoch(s) on {s.train_subset or 'all'} images; out {out}")
        counts = run_search(out, ss, log)
    else:
        arms = arms_of(name, s)   # refuses arms off the MACs / params match before any work
        check_writable(out)
        log(f"experiment {name}: {len(arms)} arms x {s.seeds} seeds = {len(arms) * s.seeds} runs, {s.epochs} "
            f"epoch(s) on {s.train_subset or 'all'} training images, test top-1 on "
            f"{s.test_images or 'all 10,000'} images; out {out}")
        counts = run_arms(name, out, arms, s, overwrite, log)
    log(f"experiment {name}: {counts['done']} runs done, {counts['failed']} failed")
    result = analyse(name, out, s, arms)
    result.update(wall_s=clock.total(), command=command, counts=counts)
    if pilot:
        result["pilot"] = pilot_advice(result, out, s)
    write_outputs(name, out, result, s, pilot=pilot)
    return result


def pilot_advice(result: dict[str, Any], out: Path, s: ExperimentSettings) -> dict[str, Any]:
    """Seeds needed for the main comparison's interval to exclude 0 at the pilot's mean and
    SD, and the wall time that many seeds would take at the pilot's measured run times."""
    main = result["main"]
    need = seeds_needed(main.get("diff_mean"), main.get("diff_sd"))
    trials, _ = collect(out)
    walls = [t["result"]["wall_s"] for t in trials if t["status"] == "done"]
    per_seed = sum(walls) / max(1, len({t["seed"] for t in trials if t["status"] == "done"}))
    workers = 1 if s.ray or s.in_process else (s.workers or _cores())
    eta = None if need is None else need * per_seed / workers
    return dict(seeds_needed=need, run_s_mean=round(float(np.mean(walls)), 1) if walls else None,
                seed_s=round(per_seed, 1), workers=workers, estimated_wall_s=None if eta is None else round(eta),
                note="seeds whose 95% t half-width falls below the pilot's |mean difference| if its SD holds; "
                     "the estimate is the CPU time of the pilot's runs per seed x seeds / workers")


def _cores() -> int:
    from .paired import _cores as cores
    return cores()


# -- analysis ---------------------------------------------------------------------------------
def analyse(name: str, out: Path, s: ExperimentSettings, arms) -> dict[str, Any]:
    trials, counts = collect(out)
    arm_rec = {a.name: dict(a.record(), accuracies=accuracies(trials, a.name, s.seeds)) for a in arms}
    base = dict(experiment=name, description=DESCRIPTIONS[name], primary_metric=PRIMARY_METRIC(s), arms=arm_rec,
                settings=dataclasses.asdict(s), runs=_run_rows(trials))
    if name == "search_cpu":
        return dict(base, **_search_result(out, trials, counts, s, arm_rec))
    comps = []
    for c in comparisons_of(name):
        if c.a not in arm_rec or c.b not in arm_rec:   # an optional arm this setting cannot build
            continue
        st = paired_stats(arm_rec[c.a]["accuracies"], arm_rec[c.b]["accuracies"])
        comps.append(dict(name=c.name, a=c.a, b=c.b, what=c.what, main=c.main,
                          expected=f"{c.a} > {c.b} (the paper's direction)",
                          macs_ratio=round(arm_rec[c.a]["macs"] / arm_rec[c.b]["macs"], 4),
                          params_ratio=round(arm_rec[c.a]["params"] / arm_rec[c.b]["params"], 4),
                          unit="points", over=f"{st['n']} seed(s)", **st))
    main = next(c for c in comps if c["main"])
    res = dict(base, main=main, n_seeds=main["n"], diff_mean=main["diff_mean"], ci95=main["ci95"],
               verdict=main["verdict"], expected=main["expected"])
    if len(comps) > 1:
        res["comparisons"] = comps
    return res


def _run_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        r = t.get("result") or {}
        rows.append(dict(arm=t["kind"], seed=t["seed"], key=t["key"], status=t["status"], test_top1=r.get("test_top1"),
                         test_images=r.get("test_images"), best_val_top1=r.get("best_val_top1"),
                         final_val_top1=r.get("final_val_top1"), epochs_done=r.get("epochs_done"),
                         train_images=r.get("train_images"), macs=t["macs"], params=t["params"],
                         wall_s=r.get("wall_s"), cpu_s=r.get("cpu_s"), images_per_s=r.get("images_per_s"),
                         widths="/".join(map(str, t["widths"]))))
    return rows


def _search_result(out: Path, trials, counts, s: ExperimentSettings, arm_rec) -> dict[str, Any]:
    """The search's analysis; the main question: is the top 10% more linear (R² of widths
    against the block index) than the rest of the sample?"""
    with_results = dict(dir=str(out), name=s.preset, preset=_meta(out, "preset"), counts=counts, trials=trials)
    a = analyze_search(with_results)
    samples = [x for x in a["specs"] if x["kind"] == "sample"]
    groups = split_groups(samples)
    top = {x["spec_hash"] for x in groups["top"]}
    idx = [i for i, x in enumerate(samples) if x["spec_hash"] in top]
    fams = sorted({x["family"] for x in samples})
    onehot = np.array([[x["family"] == f for f in fams] for x in samples], float)
    fam_p = permutation_pvalues(onehot, idx) if idx else [None] * len(fams)
    families = [dict(family=f, share_sample=round(float(onehot[:, j].mean()), 4),
                     share_top=round(float(onehot[idx, j].mean()), 4) if idx else None,
                     p=None if fam_p[j] is None else round(float(fam_p[j]), 4)) for j, f in enumerate(fams)]
    r2_top = {i: samples[i]["r2"] for i in idx}
    r2_rest = {len(samples) + i: x["r2"] for i, x in enumerate(samples) if x["spec_hash"] not in top}
    g = gap_interval(r2_top, r2_rest)
    shape_p = (a["shapes"].get("top") or {}).get("p", {})
    p_r2 = shape_p.get("r2")
    verdict = gap_verdict(g["ci95"])
    refs = a["references"]
    ref_rank = {k: dict(percentile_among_samples=(refs.get(k) or {}).get("percentile_among_samples"),
                        acc_mean=(refs.get(k) or {}).get("acc_mean"),
                        rank=1 + sum(x["acc_mean"] > (refs.get(k) or {}).get("acc_mean", math.inf) for x in samples),
                        of=len(samples)) for k in ("linear", "stagewise")}
    ref_gap = paired_stats(arm_rec["linear"]["accuracies"], arm_rec["stagewise"]["accuracies"])
    main = dict(name="top 10% vs the rest: R² of the widths' straight-line fit", a="top 10%", b="rest of the sample",
                expected="the top 10% is more linear (higher R²) than the rest (the paper's direction)",
                n=len(idx), n_rest=len(r2_rest), diff_mean=None if g["mean"] is None else round(g["mean"], 4),
                ci95=None if g["ci95"] is None else [round(c, 4) for c in g["ci95"]], method=g["method"],
                permutation_p_r2=p_r2, verdict=verdict, unit="R²",
                over=f"{len(idx)} top models against {len(r2_rest)} others (Welch interval)")
    return dict(main=main, n_seeds=s.seeds, diff_mean=main["diff_mean"], ci95=main["ci95"], verdict=verdict,
                expected=main["expected"], n_samples=len(samples), top_group=len(idx),
                family_test=dict(families=families, permutations=10_000,
                                 test="two-sided permutation p of each family's share in the top 10% against "
                                      "the whole sample (stats.permutation_pvalues)"),
                shape_test=dict(p=shape_p, top_mean=(a["shapes"].get("top") or {}).get("mean"),
                                sample_mean=a["shapes"].get("sample")),
                references=dict(rank=ref_rank, gap=ref_gap), noise=a["noise"],
                search_summary=dict(best=a["best"], worst=a["worst"], accuracy=a["accuracy"]),
                specs=a["specs"])


def _meta(out: Path, key: str):
    from ..search.store import Store

    with Store(out / DB_NAME) as store:
        return store.get_meta(key) or {}

