"""``run_experiment(experiment, out, settings)``: train what is missing, then write the results.

A paired experiment trains its arms x seeds through :func:`~rexnet.experiments.paired.run_arms`
(or its own ``train``) and is analysed by its stated comparisons (or its own ``analyze``);
``pilot`` runs the first two seeds only and says how many seeds the observed difference needs.
:func:`analyze_experiment` recomputes a result from the store alone, without training.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io import check_writable
from ..stats import (holm, paired_stats, pearson, sd_upper_bound, seeds_for_power, seeds_needed, sign_flip_p, tost,
                     verdict)
from .definitions import EXPERIMENTS, Experiment
from ..trials import STORE_NAME
from .paired import Arm, Clock, ExperimentSettings, accuracies, arms_protocol, check_protocol, collect, run_arms
from .protocol import build_protocol, estimate_core_hours, load_protocol, register_protocol
from .report import primary_metric, write_outputs

__all__ = ["run_experiment", "plan_experiment", "analyze_experiment", "resolve_experiment", "PILOT_SEEDS"]

PILOT_SEEDS = 2


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve_experiment(experiment: Experiment | str) -> Experiment:
    """An :class:`Experiment` as given, or one of :data:`~rexnet.experiments.definitions.EXPERIMENTS` by name."""
    if isinstance(experiment, Experiment):
        return experiment
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[experiment]


def run_experiment(experiment: Experiment | str, out: str | Path, settings: ExperimentSettings, *,
                   pilot: bool = False, overwrite: bool = False, command: str = "",
                   log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Run (or resume) ``experiment`` in ``out`` and write its result; returns result.json's content.
    A paired experiment registers its protocol first (:func:`~rexnet.experiments.protocol.register_protocol`;
    a pilot does not: its seeds are the protocol's first two, analysed as they come)."""
    exp = resolve_experiment(experiment)
    s = settings.with_defaults(exp.defaults)
    if pilot:
        s = dataclasses.replace(s, seeds=PILOT_SEEDS)
    out = Path(out)
    clock = Clock(out)
    arms, counts = (exp.train or train_arms)(exp, out, s, overwrite, log, register=not pilot)
    log(f"experiment {exp.name}: {counts['done']} runs done, {counts['failed']} failed")
    result = analyze_experiment(exp, out, s, arms)
    result.update(wall_s=clock.total(), command=command, counts=counts)
    result["core_hours"] = round(sum((r.get("cpu_s") or 0) for r in result["runs"]) / 3600, 3)
    if pilot:
        result["pilot"] = pilot_advice(result, out, s, exp.smallest_effect)
    write_outputs(exp.name, out, result, s, pilot=pilot)
    return result


def plan_experiment(experiment: Experiment | str, out: str | Path, settings: ExperimentSettings) -> dict[str, Any]:
    """The protocol the experiment would run under, with its estimated core-hours (measured now);
    written to ``out`` when none is there yet, so it can be committed before the first run."""
    exp = resolve_experiment(experiment)
    s = settings.with_defaults(exp.defaults)
    out = Path(out)
    arms = exp.arms(s)
    check_writable(out)
    protocol = build_protocol(exp, s, arms)
    return register_protocol(out, protocol, has_results=_has_results(out), estimate=estimate_core_hours(arms, s))


def _has_results(out: Path) -> bool:
    if not (out / STORE_NAME).is_file():
        return False
    return collect(out)[1]["done"] > 0


def train_arms(exp: Experiment, out: Path, s: ExperimentSettings, overwrite: bool,
               log: Callable[[str], None], register: bool = True) -> tuple[list[Arm], dict[str, int]]:
    """Every arm x seed of ``exp`` (the arms are built, and refused off their budget match, before
    any work; the protocol is registered before the first run)."""
    arms = exp.arms(s)
    check_writable(out)
    check_protocol(out, arms_protocol(exp.name, arms, s), overwrite, exp.name)
    if register:
        register_protocol(out, build_protocol(exp, s, arms), has_results=_has_results(out))
    log(f"experiment {exp.name}: {len(arms)} arms x {s.seeds} seeds = {len(arms) * s.seeds} runs, {s.epochs} "
        f"epoch(s) on {s.train_subset or 'all'} training images, test top-1 on "
        f"{s.test_images or 'all 10,000'} images; out {out}")
    return arms, run_arms(exp.name, out, arms, s, overwrite, log, first=exp.first_arms)


def pilot_advice(result: dict[str, Any], out: Path, s: ExperimentSettings, smallest_effect: float = 0.5,
                 power: float = 0.8) -> dict[str, Any]:
    """Seeds for ``power`` at the smallest effect of interest from the pilot's SD of the paired
    differences, and from that SD's one-sided 95% upper bound (a 1-df SD is a weak estimate);
    the seeds at which the observed mean would just exclude 0; and the wall time of the first
    at the pilot's measured run times."""
    main = result["main"]
    sd = main.get("diff_sd")
    need = seeds_needed(main.get("diff_mean"), sd)
    at_effect = None if sd is None else seeds_for_power(sd, smallest_effect, power)
    upper = None if sd is None or main["n"] < 2 else sd_upper_bound(sd, main["n"] - 1)
    at_upper = None if upper is None else seeds_for_power(upper, smallest_effect, power)
    trials, _ = collect(out)
    walls = [t["result"]["wall_s"] for t in trials if t["status"] == "done"]
    per_seed = sum(walls) / max(1, len({t["seed"] for t in trials if t["status"] == "done"}))
    workers = 1 if s.ray or s.in_process else s.resolved_workers
    eta = None if at_effect is None else at_effect * per_seed / workers
    return dict(seeds_for_power=at_effect, seeds_for_power_at_sd_upper=at_upper, sd=sd,
                sd_upper95=None if upper is None else round(upper, 4), smallest_effect=smallest_effect, power=power,
                seeds_needed=need, run_s_mean=round(float(np.mean(walls)), 1) if walls else None,
                seed_s=round(per_seed, 1), workers=workers, estimated_wall_s=None if eta is None else round(eta),
                note=f"seeds for {power:.0%} power of a two-sided paired t-test at the smallest effect of interest "
                     f"({smallest_effect} points) if the pilot's SD holds, and if it is as large as its 95% upper "
                     f"bound; seeds_needed: where the observed mean's interval would just exclude 0. The estimate "
                     f"is the pilot's run time per seed x seeds_for_power / workers")


# -- analysis ---------------------------------------------------------------------------------
def analyze_experiment(experiment: Experiment | str, out: str | Path, s: ExperimentSettings,
                       arms: list[Arm] | None = None) -> dict[str, Any]:
    """Every figure of the experiment's result from its store alone (no training, no clock):
    ``s`` with its defaults resolved; ``arms`` default to the experiment's for ``s``."""
    exp = resolve_experiment(experiment)
    out = Path(out)
    arms = exp.arms(s) if arms is None else arms
    trials, counts = collect(out)
    refuse_diverged(trials)
    arm_rec = {a.name: dict(a.record(), accuracies=accuracies(trials, a.name, s.seeds)) for a in arms}
    base = dict(experiment=exp.name, description=exp.description, primary_metric=primary_metric(s), arms=arm_rec,
                settings=dataclasses.asdict(s), runs=_run_rows(trials), **({"colours": dict(exp.colours)}
                                                                           if exp.colours else {}))
    if exp.analyze is not None:
        return dict(base, **exp.analyze(out, trials, counts, s, arm_rec))
    protocol = load_protocol(out)
    if protocol is None:   # results made before protocols: the paired intervals they were reported with
        return dict(base, **_paired_result(exp, arm_rec))
    return dict(base, **_registered_result(exp, arm_rec, protocol))


def refuse_diverged(trials: list[dict[str, Any]]) -> None:
    """A run that diverged is a defect of the recipe, not data: the analysis stops, naming it."""
    bad = [(t["key"], t["result"]["diverged"]) for t in trials
           if t["status"] == "done" and (t.get("result") or {}).get("diverged")]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ValueError(f"run {bad[0][0]} diverged ({bad[0][1]}){more}: an analysis of diverged runs measures "
                         f"recovery from a blow-up; fix the recipe (a longer --warmup, a lower --lr, clipping) "
                         f"and run the experiment again in a new --out")


def _paired_result(exp: Experiment, arm_rec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    comps = []
    for c in exp.comparisons:
        if c.a not in arm_rec or c.b not in arm_rec:   # an optional arm this setting cannot build
            continue
        st = paired_stats(arm_rec[c.a]["accuracies"], arm_rec[c.b]["accuracies"])
        comps.append(dict(name=c.name, a=c.a, b=c.b, what=c.what, main=c.main,
                          expected=f"{c.a} > {c.b} (the paper's direction)",
                          macs_ratio=round(arm_rec[c.a]["macs"] / arm_rec[c.b]["macs"], 4),
                          params_ratio=round(arm_rec[c.a]["params"] / arm_rec[c.b]["params"], 4),
                          unit="points", over=f"{st['n']} seed(s)", **st))
    main = next(c for c in comps if c["main"])
    res = dict(main=main, n_seeds=main["n"], diff_mean=main["diff_mean"], ci95=main["ci95"],
               verdict=main["verdict"], expected=main["expected"])
    if len(comps) > 1:
        res["comparisons"] = comps
    return res


def _compare(c: dict[str, Any], arm_rec: dict[str, dict[str, Any]], seeds: set[int] | None,
             margin: float) -> dict[str, Any]:
    """One comparison over ``seeds`` (None: every seed both arms have): the paired interval,
    the exact sign-flip p, TOST at ``margin`` and the between-arm correlation over seeds."""
    pick = lambda arm: {k: v for k, v in arm_rec[arm]["accuracies"].items() if seeds is None or k in seeds}  # noqa: E731
    a, b = pick(c["a"]), pick(c["b"])
    st = paired_stats(a, b)
    both = st["seeds"]
    return dict(c, **st, permutation_p=sign_flip_p(st["diffs"]), tost=tost(st["diffs"], margin),
                pair_correlation=pearson([a[k] for k in both], [b[k] for k in both]),
                macs_ratio=round(arm_rec[c["a"]]["macs"] / arm_rec[c["b"]]["macs"], 4),
                params_ratio=round(arm_rec[c["a"]]["params"] / arm_rec[c["b"]]["params"], 4),
                unit="points", over=f"{st['n']} seed(s)")


def _registered_result(exp: Experiment, arm_rec: dict[str, dict[str, Any]], protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol's comparisons on its seeds (Holm-corrected, with verdicts), and everything
    else the store holds (arms or seeds added after it) as exploratory."""
    first, n = protocol["seeds"]["first"], protocol["seeds"]["n"]
    seeds, margin = set(range(first, first + n)), protocol["equivalence_margin"]
    stated = [_compare(c, arm_rec, seeds, margin) for c in protocol["comparisons"]
              if c["a"] in arm_rec and c["b"] in arm_rec]
    for family in {c.get("family", "") for c in stated}:   # Holm within each family the protocol names
        members = [c for c in stated if c.get("family", "") == family]
        for c, p_adj in zip(members, holm([c["permutation_p"] for c in members])):
            c.update(holm_p=p_adj, verdict=verdict(c["ci95"], p_adj, c["tost"]["p"], protocol["alpha"]),
                     exploratory=False)
    names = {c["name"] for c in stated}
    extra = [dict(name=c.name, a=c.a, b=c.b, expected=f"{c.a} > {c.b}", main=False, what=c.what)
             for c in exp.comparisons if c.name not in names and c.a in arm_rec and c.b in arm_rec]
    more_seeds = any(set(a["accuracies"]) - seeds for a in arm_rec.values())
    exploratory = [dict(_compare(c, arm_rec, None, margin), exploratory=True) for c in extra]
    if more_seeds:
        exploratory += [dict(_compare(dict(c, name=f"{c['name']} (every seed)"), arm_rec, None, margin),
                             exploratory=True) for c in protocol["comparisons"]]
    main = next(c for c in stated if c["main"])
    secondary = {} if exp.secondary is None else dict(secondary_analysis=exp.secondary(arm_rec, seeds))
    return dict(**secondary, main=main, n_seeds=main["n"], diff_mean=main["diff_mean"], ci95=main["ci95"],
                permutation_p=main["permutation_p"], holm_p=main["holm_p"], tost=main["tost"],
                verdict=main["verdict"], expected=main["expected"], comparisons=stated, exploratory=exploratory,
                diverged_runs=0, seeds_stated=n, complete=main["n"] >= n,
                protocol=dict(file="protocol.yaml", registered=protocol.get("registered"),
                                               smallest_effect=protocol["smallest_effect"],
                                               equivalence_margin=margin, alpha=protocol["alpha"]))


def _run_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        r = t.get("result") or {}
        rows.append(dict(arm=t["kind"], seed=t["seed"], key=t["key"], status=t["status"], test_top1=r.get("test_top1"),
                         test_images=r.get("test_images"), best_val_top1=r.get("best_val_top1"),
                         final_val_top1=r.get("final_val_top1"), epochs_done=r.get("epochs_done"),
                         train_images=r.get("train_images"), macs=t["macs"], params=t["params"],
                         wall_s=r.get("wall_s"), cpu_s=r.get("cpu_s"), images_per_s=r.get("images_per_s"),
                         diverged=r.get("diverged") or "", widths="/".join(map(str, t["widths"]))))
    return rows
