"""The experiments that live in the search's fixed network, on :mod:`rexnet.experiments`' engine.

``shape_panel`` (:mod:`rexnet.search.panel`) trains six fixed shapes at equal MACs over
paired seeds; ``linear_vs_stagewise`` pairs a preset's two references (a line and MobileNetV2's
staircase, solved to equal MACs and params) over seeds; ``search_cpu`` is a whole
search whose analysis asks whether the top 10% is more linear than the rest.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..experiments.definitions import COMMON, Comparison, Experiment
from ..experiments.paired import Arm, ExperimentSettings, check_budget_match, check_protocol
from ..io import check_writable
from ..stats import gap_interval, interval_verdict, paired_stats, subset_mean_pvalues
from ..trials import STORE_NAME, Store
from .analysis import analyze_search, split_groups
from .run import SearchSettings, protocol_of, run_search
from .panel import SHAPE_PANEL
from .space import get_preset

__all__ = ["LINEAR_VS_STAGEWISE", "SEARCH_CPU", "SEARCH_EXPERIMENTS", "catalogue", "reference_arms"]

REFERENCE_COMPARISON = Comparison("linear vs stage-wise", "linear", "stagewise", "equal MACs (1%) and params (3%)",
                                  main=True)


def reference_arms(preset: str) -> list[Arm]:
    """The search preset's linear and stage-wise references (equal MACs and params)."""
    refs = {c.kind: c for c in get_preset(preset).space.references()}
    arms = [Arm(k, refs[k].spec, refs[k].macs, refs[k].params, f"{k} reference of preset {preset}: widths "
                + "/".join(map(str, refs[k].widths)) + f", {refs[k].params_of_f}") for k in ("linear", "stagewise")]
    check_budget_match(arms[0], arms[1])
    return arms


def search_settings(s: ExperimentSettings) -> SearchSettings:
    """The search an experiment's settings describe (its preset, sampled models and seeds)."""
    return SearchSettings(preset=s.preset, data=s.data, trials=s.trials, epochs=s.epochs, repeats=s.seeds,
                          seed=s.seed, train_subset=s.train_subset, val_subset=s.val_subset, holdout=s.holdout or 0,
                          batch_size=s.batch_size, early_stop_patience=0, test_images=s.test_images or None,
                          rank_images=s.rank_images or 0, device=s.device, workers=s.resolved_workers, ray=s.ray,
                          ray_address=s.ray_address, cpus_per_trial=s.cpus_per_trial,
                          gpus_per_trial=s.gpus_per_trial, progress=s.progress, in_process=s.in_process)


def _train_search(exp: Experiment, out: Path, s: ExperimentSettings, overwrite: bool,
                  log: Callable[[str], None], register: bool = True) -> tuple[list[Arm], dict[str, int]]:
    """The whole search (its analysis is the search's own; no paired protocol is registered)."""
    ss = search_settings(s)
    check_protocol(out, protocol_of(ss.resolved(), ss), overwrite, exp.name)
    check_writable(out)
    arms = exp.arms(s)
    n = len(arms) * s.seeds + s.trials * s.seeds
    log(f"experiment {exp.name}: a {s.preset} search of {s.trials} sampled models + 2 references, {s.seeds} "
        f"seed(s) each ({n} runs), {s.epochs} epoch(s) on {s.train_subset or 'all'} images; out {out}")
    return arms, run_search(out, ss, log)


def _family_test(samples: list[dict[str, Any]], idx: list[int]) -> list[dict[str, Any]]:
    """Each family's share of the sample and of the top group, with its permutation p."""
    fams = sorted({x["family"] for x in samples})
    onehot = np.array([[x["family"] == f for f in fams] for x in samples], float)
    fam_p = subset_mean_pvalues(onehot, idx) if idx else [None] * len(fams)
    return [dict(family=f, share_sample=round(float(onehot[:, j].mean()), 4),
                 share_top=round(float(onehot[idx, j].mean()), 4) if idx else None,
                 p=None if fam_p[j] is None else round(float(fam_p[j]), 4)) for j, f in enumerate(fams)]


def _reference_ranks(a: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    refs = a["references"]
    return {k: dict(percentile_among_samples=(refs.get(k) or {}).get("percentile_among_samples"),
                    acc_mean=(refs.get(k) or {}).get("acc_mean"),
                    rank=1 + sum(x["acc_mean"] > (refs.get(k) or {}).get("acc_mean", math.inf) for x in samples),
                    of=len(samples)) for k in ("linear", "stagewise")}


def _analyze_search(out: Path, trials, counts, s: ExperimentSettings, arm_rec) -> dict[str, Any]:
    """The search's analysis; the main question: is the top 10% more linear (R² of widths
    against the block index) than the rest of the sample?"""
    with Store(out / STORE_NAME) as store:
        preset = store.get_meta("preset") or {}
    a = analyze_search(dict(dir=str(out), name=s.preset, preset=preset, counts=counts, trials=trials))
    samples = [x for x in a["specs"] if x["kind"] == "sample"]
    top = {x["spec_hash"] for x in split_groups(samples)["top"]}
    idx = [i for i, x in enumerate(samples) if x["spec_hash"] in top]
    r2_rest = {len(samples) + i: x["r2"] for i, x in enumerate(samples) if x["spec_hash"] not in top}
    g = gap_interval({i: samples[i]["r2"] for i in idx}, r2_rest)
    shape_p = (a["shapes"].get("top") or {}).get("p", {})
    verdict = interval_verdict(g["ci95"])
    main = dict(name="top 10% vs the rest: R² of the widths' straight-line fit", a="top 10%", b="rest of the sample",
                expected="the top 10% is more linear (higher R²) than the rest (the paper's direction)",
                n=len(idx), n_rest=len(r2_rest), diff_mean=None if g["mean"] is None else round(g["mean"], 4),
                ci95=None if g["ci95"] is None else [round(c, 4) for c in g["ci95"]], method=g["method"],
                permutation_p_r2=shape_p.get("r2"), verdict=verdict, unit="R²",
                over=f"{len(idx)} top models against {len(r2_rest)} others (Welch interval)")
    ref_gap = paired_stats(arm_rec["linear"]["accuracies"], arm_rec["stagewise"]["accuracies"])
    return dict(main=main, n_seeds=s.seeds, diff_mean=main["diff_mean"], ci95=main["ci95"], verdict=verdict,
                expected=main["expected"], n_samples=len(samples), top_group=len(idx),
                family_test=dict(families=_family_test(samples, idx), permutations=10_000,
                                 test="two-sided permutation p of each family's share in the top 10% against "
                                      "the whole sample (stats.permutation_pvalues)"),
                shape_test=dict(p=shape_p, top_mean=(a["shapes"].get("top") or {}).get("mean"),
                                sample_mean=a["shapes"].get("sample")),
                references=dict(rank=_reference_ranks(a, samples), gap=ref_gap), noise=a["noise"],
                search_summary=dict(best=a["best"], worst=a["worst"], accuracy=a["accuracy"]),
                specs=a["specs"])


LINEAR_VS_STAGEWISE = Experiment(
    "linear_vs_stagewise",
    "Linear vs stage-wise channel configuration at equal MACs and params, in the search's fixed network (the "
    "paper's thesis, Section 4)",
    dict(COMMON, preset="smoke", seeds=8, epochs=5, train_subset=4000),                  # 16 runs
    lambda s: reference_arms(s.preset), (REFERENCE_COMPARISON,))

SEARCH_CPU = Experiment(
    "search_cpu",
    "A CPU-scale search with the shape-family sampler: does the top 10% differ in shape from the whole sample, "
    "and where do the two references rank",
    dict(COMMON, preset="smoke", trials=40, seeds=2, epochs=4, train_subset=2500, rank_images=256),   # 84 runs
    lambda s: reference_arms(s.preset), (REFERENCE_COMPARISON,), train=_train_search, analyze=_analyze_search)

SEARCH_EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (SHAPE_PANEL, LINEAR_VS_STAGEWISE, SEARCH_CPU)}


def catalogue() -> dict[str, Experiment]:
    """Every experiment, those of the search's network and the others, in the README's order."""
    from ..experiments import EXPERIMENTS

    every = {**SEARCH_EXPERIMENTS, **EXPERIMENTS}
    order = ("shape_panel", "mobilenetv2_linear_full", "linear_vs_stagewise", "mobilenetv2_linear", "table2",
             "search_cpu")
    return {name: every[name] for name in (*order, *(n for n in every if n not in order))}
