"""The numbers of a search analysis: per-spec aggregates, the top / middle / bottom
groups with their linear fits and shape statistics (permutation-tested against the whole
sample), the sampled shape families, the linear vs stage-wise A/B with a 95% interval,
repeat noise (one-way and two-way spec x seed), the nuclear norm's correlations (raw and
width-normalised, plain and partial) and error EDFs, on the trial records of a
:class:`~rexnet.trials.Store`; intervals, tests and correlations come from
:mod:`rexnet.stats`.  No files, no matplotlib.

A spec's accuracy is the mean over its done repeats of the *primary accuracy*
(:func:`accuracy_key`): ``test_top1`` (the full test set at the end of the trial) when
every done trial has it, else ``best_val_top1`` (stores written before the runner
recorded ``test_top1``).  Failed and unfinished trials never enter a statistic.

Group rule (:data:`GROUP_RULE`): the n sampled specs sorted by mean accuracy, best
first (ties by spec hash), ``k = max(1, floor(n/10 + 1/2))``; top = the first k,
middle = the k starting at 0-based rank ``min(floor(n/2), n-k)`` from the top (the
paper's "between the top 50% and 60%": ranks 51-60 of 100), bottom = the last k.
Small samples can make groups overlap; ``groups_overlap`` says when.

Every pooled standard deviation is a root mean square (sqrt of the df-weighted mean
variance), never a mean of SDs.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from ..stats import gap_interval, interval_verdict, partial_corr, pearson, ranks, sample_sd, spearman, subset_mean_pvalues

__all__ = ["GROUP_RULE", "GROUPS", "SHAPE_STATS", "PERMUTATIONS", "accuracy_key", "trial_family", "shape_stats",
           "split_groups", "one_way_noise", "two_way_noise", "nuclear_correlations", "analyze_search", "error_edf",
           "fmt"]

GROUP_RULE = ("sampled specs sorted by mean accuracy over repeats, best first (ties by spec hash); "
              "k = max(1, floor(n/10 + 1/2)); top = the first k; middle = the k starting at 0-based rank "
              "min(floor(n/2), n-k) from the top (the paper's 'between the top 50% and 60%': ranks 51-60 of "
              "100); bottom = the last k")
GROUPS = ("top", "middle", "bottom")
ACC_KEYS = ("test_top1", "best_val_top1")
ACC_DESCRIPTIONS = {"test_top1": "top-1 on the full CIFAR test set (10,000 images) at the end of each trial",
                    "best_val_top1": "best validation top-1 over the epochs of each trial (the store predates "
                                     "test_top1; a maximum over epochs on a validation subset, so optimistic)"}
# Shape statistics of one width vector (see shape_stats); each separates some shape families.
SHAPE_STATS = ("chord_area", "max_step_share", "flat_share", "r2")
SHAPE_DESCRIPTIONS = {
    "chord_area": "signed area between the normalised widths and their chord (> 0 above the chord: concave, "
                  "width early; < 0 below: convex, width late; 0 for a line)",
    "max_step_share": "largest single step as a share of the total growth (1/(d-1) for a line; large for a "
                      "staircase)",
    "flat_share": "share of consecutive blocks with equal widths (0 for a line steeper than 1 channel per "
                  "block; large for a staircase)",
    "r2": "R² of the least-squares line of widths against the block index",
}
PERMUTATIONS = 10_000
PERMUTATION_SEED = 0
MIN_PARTIAL_POINTS = 5   # two controls and an intercept leave at least two degrees of freedom


def _fit(widths: Sequence[float]) -> dict[str, float]:
    """Least-squares line of widths against the 0-based block index, with R²."""
    y = np.asarray(widths, float)
    x = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(((y - (slope * x + intercept)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    # a constant shape is fitted exactly by a flat line: call that R² = 1, not 0/0
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 1e-12 else 1.0
    return dict(slope=float(slope), intercept=float(intercept), r2=float(r2))


def _percentile(value: float, population: Sequence[float]) -> float | None:
    """Percent of the population below ``value`` (ties count half)."""
    if not population:
        return None
    below = sum(p < value for p in population) + 0.5 * sum(p == value for p in population)
    return 100.0 * below / len(population)


def _rms(variances: Sequence[float], dfs: Sequence[float] | None = None) -> float:
    """Pooled SD: sqrt of the (df-weighted) mean variance."""
    w = np.ones(len(variances)) if dfs is None else np.asarray(dfs, float)
    return float(math.sqrt(float(np.dot(w, variances)) / float(w.sum())))


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), nd)


def fmt(x: float | None, nd: int = 2) -> str:
    """A number for a table or a legend; ``-`` for a missing one."""
    return "-" if x is None else f"{x:.{nd}f}"


# -- one trial, one spec ---------------------------------------------------------------------
def accuracy_key(trials: list[dict[str, Any]]) -> str:
    """``test_top1`` when every done trial recorded it, else ``best_val_top1``."""
    done = [t for t in trials if t["status"] == "done"]
    return "test_top1" if done and all((t["result"] or {}).get("test_top1") is not None for t in done) \
        else "best_val_top1"


def trial_family(trial: Mapping[str, Any]) -> str:
    """The shape family the sampler recorded in the spec's meta; ``unknown`` for stores
    written before it did."""
    spec = trial.get("spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return "unknown"
    meta = spec.get("meta") if isinstance(spec, dict) else None
    return str((meta or {}).get("family") or "unknown")


def shape_stats(widths: Sequence[float]) -> dict[str, float]:
    """Statistics of one width vector that separate shape families (:data:`SHAPE_DESCRIPTIONS`).
    Widths are normalised to u_i = (w_i - w_0) / (w_last - w_0) on x_i = i / (d - 1), so
    the chord is u = x; a shape that does not grow has area 0 and max step share 0."""
    w = np.asarray(widths, float)
    if len(w) < 2:
        raise ValueError(f"shape statistics need at least two widths, got {list(widths)}")
    steps = np.diff(w)
    growth = float(w[-1] - w[0])
    x = np.linspace(0.0, 1.0, len(w))
    if growth > 0:
        u = (w - w[0]) / growth
        dev = u - x
        area = float(((dev[1:] + dev[:-1]) / 2 * np.diff(x)).sum())   # trapezoid rule
        max_share = float(steps.max() / growth)
    else:
        area, max_share = 0.0, 0.0
    return dict(chord_area=area, max_step_share=max_share,
                flat_share=float(np.mean(np.abs(steps) < 1e-9)), r2=_fit(w)["r2"])


def _aggregate(trials: list[dict[str, Any]], acc_key: str) -> list[dict[str, Any]]:
    """One record per spec from its done repeats."""
    by: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        if t["status"] == "done":
            by.setdefault(t["spec_hash"], []).append(t)
    specs = []
    for h, ts in by.items():
        ts.sort(key=lambda t: t["repeat"])
        accs = [float(t["result"][acc_key]) for t in ts]
        mean_of = lambda key: (float(np.mean(v)) if (v := [t["result"][key] for t in ts  # noqa: E731
                                                           if t["result"].get(key) is not None]) else None)
        specs.append(dict(spec_hash=h, kind=ts[0]["kind"], family=trial_family(ts[0]), widths=list(ts[0]["widths"]),
                          macs=ts[0]["macs"], params=ts[0]["params"], n=len(ts),
                          accs={t["repeat"]: a for t, a in zip(ts, accs)},
                          by_seed={int(t["seed"]): a for t, a in zip(ts, accs)},
                          acc_mean=float(np.mean(accs)), acc_std=sample_sd(accs),
                          nuclear_norm=mean_of("nuclear_norm"), nuclear_norm_raw=mean_of("nuclear_norm_raw"),
                          shape=shape_stats(ts[0]["widths"])))
    return specs


# -- groups, shapes and families ------------------------------------------------------------
def split_groups(samples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Top, middle and bottom groups, each best first (see :data:`GROUP_RULE`)."""
    desc = sorted(samples, key=lambda s: (s["acc_mean"], s["spec_hash"]), reverse=True)
    n = len(desc)
    if n == 0:
        return {g: [] for g in GROUPS}
    k = max(1, math.floor(n / 10 + 0.5))
    m = min(n // 2, n - k)
    return dict(top=desc[:k], middle=desc[m:m + k], bottom=desc[n - k:])


def _shape_table(samples: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean shape statistics (and params) of the whole sample and of each group, with each
    group's permutation p-value against the whole sample."""
    cols = SHAPE_STATS + ("params",)
    if not samples:
        return dict(available=False, reason="no sampled model is done")
    v = np.array([[s["shape"][c] for c in SHAPE_STATS] + [s["params"]] for s in samples], float)
    pos = {s["spec_hash"]: i for i, s in enumerate(samples)}
    out: dict[str, Any] = dict(available=True, stats=list(cols), permutations=PERMUTATIONS, seed=PERMUTATION_SEED,
                               sample={c: _r(m, 4 if c != "params" else 0) for c, m in zip(cols, v.mean(axis=0))},
                               sample_std={c: _r(s, 4 if c != "params" else 0)
                                           for c, s in zip(cols, v.std(axis=0, ddof=1) if len(v) > 1 else
                                                           [None] * len(cols))})
    for g, members in groups.items():
        idx = [pos[s["spec_hash"]] for s in members]
        p = subset_mean_pvalues(v, idx)
        out[g] = dict(n=len(idx), mean={c: _r(m, 4 if c != "params" else 0) for c, m in zip(cols, v[idx].mean(0))},
                      p={c: _r(x, 4) for c, x in zip(cols, p)})
    return out


def _families(samples: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """How often each family was sampled, how often it lands in each group, and its mean
    shape statistics and accuracy."""
    sampled = Counter(s["family"] for s in samples)
    rows = []
    for fam, n in sorted(sampled.items(), key=lambda kv: (-kv[1], kv[0])):
        mem = [s for s in samples if s["family"] == fam]
        rows.append(dict(family=fam, sampled=n, share=_r(n / len(samples), 4),
                         **{g: sum(s["family"] == fam for s in groups[g]) for g in GROUPS},
                         acc_mean=_r(np.mean([s["acc_mean"] for s in mem])),
                         shape={c: _r(np.mean([s["shape"][c] for s in mem])) for c in SHAPE_STATS}))
    return dict(known=any(f != "unknown" for f in sampled), rows=rows)


def _group_stats(members: list[dict[str, Any]]) -> dict[str, Any]:
    if not members:
        return dict(n=0)
    w = np.array([s["widths"] for s in members], float)
    mean_w = w.mean(axis=0)
    accs = [s["acc_mean"] for s in members]
    std_w = w.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(w.shape[1])
    return dict(n=len(members), members=[s["spec_hash"] for s in members],
                families=[s["family"] for s in members],
                acc_mean=_r(np.mean(accs)), acc_std=_r(sample_sd(accs)),
                macs_mean=_r(np.mean([s["macs"] for s in members]), 1),
                params_mean=_r(np.mean([s["params"] for s in members]), 1),
                mean_widths=[_r(v, 3) for v in mean_w], std_widths=[_r(v, 3) for v in std_w],
                min_widths=w.min(axis=0).astype(int).tolist(), max_widths=w.max(axis=0).astype(int).tolist(),
                fit={k: _r(v) for k, v in _fit(mean_w).items()},
                # the mean of per-model R²: a group mean of staircases can look straight
                mean_model_r2=_r(np.mean([s["shape"]["r2"] for s in members])))


# -- noise ----------------------------------------------------------------------------------
def one_way_noise(table: Mapping[str, Mapping[int, float]]) -> dict[str, Any] | None:
    """Repeats as replicates within a spec (seed ignored), over the specs with >= 2 repeats:
    pooled (RMS) within-spec SD, SD of the spec means, noise share = within-variance /
    mean repeats / variance of the means.  None with fewer than two such specs."""
    rows = [np.array(list(v.values()), float) for v in table.values() if len(v) >= 2]
    if len(rows) < 2:
        return None
    within = _rms([float(np.var(r, ddof=1)) for r in rows], [len(r) - 1 for r in rows])
    means = np.array([r.mean() for r in rows])
    between = float(np.std(means, ddof=1))
    r_mean = float(np.mean([len(r) for r in rows]))
    share = within ** 2 / r_mean / between ** 2 if between > 0 else math.inf
    return dict(specs=len(rows), repeats_mean=r_mean, within_std=within, between_std=between,
                df=int(sum(len(r) - 1 for r in rows)), sem=within / math.sqrt(r_mean),
                ratio=within / between if between > 0 else None, noise_share=share)


def _complete_block(table: Mapping[str, Mapping[int, float]]) -> tuple[list[str], list[int]]:
    """The specs and seeds of the largest complete spec x seed block: seeds taken in order
    of how many specs have them, the count of seeds maximising cells (>= 2 specs, >= 2 seeds)."""
    freq = Counter(s for v in table.values() for s in v)
    order = [s for s, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))]
    best: tuple[list[str], list[int]] = ([], [])
    for r in range(2, len(order) + 1):
        seeds = sorted(order[:r])
        rows = [h for h, v in table.items() if all(s in v for s in seeds)]
        if len(rows) >= 2 and len(rows) * r > len(best[0]) * len(best[1]):
            best = (rows, seeds)
    return best


def two_way_noise(table: Mapping[str, Mapping[int, float]]) -> dict[str, Any] | None:
    """Additive spec x seed model y = mu + a_spec + b_seed + e on the largest complete block
    of the table (repeat r uses the same seed for every spec, so seed is a crossed factor).
    Residual SD = sqrt(SS_res / ((I-1)(J-1))); seed SD = sqrt(max(0, (MS_seed - MS_res) / I))
    (the seed variance component); noise share = residual variance / J / variance of the
    spec means, the part of the spread of spec means (all over the same seeds, so seed
    effects cancel in the ranking) that is noise.  None without a 2 x 2 complete block."""
    rows, seeds = _complete_block(table)
    if not rows:
        return None
    y = np.array([[table[h][s] for s in seeds] for h in rows], float)
    n_spec, n_seed = y.shape
    grand = y.mean()
    spec_eff, seed_eff = y.mean(axis=1) - grand, y.mean(axis=0) - grand
    resid = y - grand - spec_eff[:, None] - seed_eff[None, :]
    df_res = (n_spec - 1) * (n_seed - 1)
    ms_res = float((resid ** 2).sum() / df_res)
    ms_seed = float(n_spec * (seed_eff ** 2).sum() / (n_seed - 1))
    spec_var = float(np.var(y.mean(axis=1), ddof=1))
    res_sd = math.sqrt(ms_res)
    return dict(specs=n_spec, seeds=seeds, dropped_specs=len(table) - n_spec, df=df_res, residual_sd=res_sd,
                seed_sd=math.sqrt(max(0.0, (ms_seed - ms_res) / n_spec)),
                seed_effects={int(s): float(e) for s, e in zip(seeds, seed_eff)},
                between_std=math.sqrt(spec_var), sem=res_sd / math.sqrt(n_seed),
                noise_share=ms_res / n_seed / spec_var if spec_var > 0 else math.inf,
                # the same table, one-way (seed ignored), for comparison on identical data
                one_way_within_std=_rms([float(v) for v in np.var(y, axis=1, ddof=1)]))


def _noise(specs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """One-way and two-way repeat noise, and a verdict from the two-way model when it exists."""
    if max((s["n"] for s in specs), default=0) < 2:
        return dict(available=False, reason=f"needs >= 2 repeats per spec; every spec has at most 1 done "
                                            f"repeat (the preset asks for {repeats})")
    one = one_way_noise({s["spec_hash"]: s["by_seed"] for s in specs})
    if one is None:
        return dict(available=False, reason="needs >= 2 specs with >= 2 done repeats")
    two = two_way_noise({s["spec_hash"]: s["by_seed"] for s in specs})
    multi = [s for s in specs if s["n"] >= 2]
    pairs = [(s["accs"][0], s["accs"][1]) for s in multi if 0 in s["accs"] and 1 in s["accs"]]
    rho = spearman([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) >= 3 else None
    model, share, sem = ("two-way", two["noise_share"], two["sem"]) if two else \
        ("one-way", one["noise_share"], one["sem"])
    if share >= 0.5:
        verdict = ("mostly noise: repeat noise is at least half of the variance between spec means, so the "
                   "order of the sampled models is not trustworthy; add repeats, epochs or images")
    elif share >= 0.2:
        verdict = ("partly noise: group-level trends and large gaps are reliable, the order of neighbouring "
                   "models is not")
    else:
        verdict = "mostly signal: the ranking reflects real differences between the models at this scale"
    threshold = 2 * math.sqrt(2) * sem   # 2 x the std error of a difference of two spec means
    verdict += (f" ({model} model); gaps between two spec means under {threshold:.2f} points (2 x the std error "
                f"of their difference) are within noise")
    return dict(available=True, pooling="rms", model=model, specs=one["specs"], repeats_mean=_r(one["repeats_mean"], 2),
                within_std=_r(one["within_std"]), sem=_r(one["sem"]), between_std=_r(one["between_std"]),
                ratio=_r(one["ratio"]), noise_share=_r(one["noise_share"]), df=one["df"],
                spearman_r0_r1=_r(rho), pairs=len(pairs), threshold=_r(threshold), verdict=verdict,
                two_way=dict(available=False, reason="needs a complete block of >= 2 specs x >= 2 seeds")
                if two is None else dict(available=True, **{k: (_r(v) if isinstance(v, float) else v)
                                                             for k, v in two.items() if k != "seed_effects"},
                                         seed_effects={s: _r(e) for s, e in two["seed_effects"].items()}))


# -- the A/B --------------------------------------------------------------------------------
def _ab(specs: list[dict[str, Any]], samples: list[dict[str, Any]], noise: dict[str, Any]) -> dict[str, Any]:
    pop = [s["acc_mean"] for s in samples]
    refs = {kind: next((s for s in specs if s["kind"] == kind), None) for kind in ("linear", "stagewise")}
    out: dict[str, Any] = {}
    for kind, ref in refs.items():
        out[kind] = None if ref is None else dict(
            spec_hash=ref["spec_hash"], acc_mean=_r(ref["acc_mean"]), acc_std=_r(ref["acc_std"]), n=ref["n"],
            seeds=sorted(ref["by_seed"]), widths=ref["widths"], macs=ref["macs"], params=ref["params"],
            family=ref["family"], shape={k: _r(v) for k, v in ref["shape"].items()},
            percentile_among_samples=_r(_percentile(ref["acc_mean"], pop), 1))
    lin, stg = refs["linear"], refs["stagewise"]
    out["diff_linear_minus_stagewise"] = _r(lin["acc_mean"] - stg["acc_mean"]) if lin and stg else None
    if not (lin and stg):
        out["gap"] = None
        return out
    fb_sd, fb_df = (noise["within_std"], noise["df"]) if noise.get("available") else (None, None)
    g = gap_interval(lin["by_seed"], stg["by_seed"], fb_sd, fb_df)
    two = noise.get("two_way") or {}
    se_model = (two["residual_sd"] * math.sqrt(1 / lin["n"] + 1 / stg["n"])
                if two.get("available") and g["method"] == "paired by seed" else None)
    out["params_ratio"] = _r(lin["params"] / stg["params"]) if stg["params"] else None
    out["macs_ratio"] = _r(lin["macs"] / stg["macs"]) if stg["macs"] else None
    off = lambda ratio, tol: bool(ratio is not None and abs(ratio - 1) > tol)  # noqa: E731
    out["gap"] = dict(mean=_r(g["mean"]), method=g["method"], se=_r(g["se"]), df=_r(g["df"], 2),
                      ci95=[_r(c) for c in g["ci95"]] if g["ci95"] else None, se_two_way_model=_r(se_model),
                      verdict=interval_verdict(g["ci95"]), confounded_by_params=off(out["params_ratio"], 0.03),
                      confounded_by_macs=off(out["macs_ratio"], 0.01))
    return out


# -- the nuclear norm -----------------------------------------------------------------------
def nuclear_correlations(points: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Pearson / Spearman of accuracy with one nuclear-norm measure (``key``), the partial
    correlations controlling the final width and params (on values and on ranks), and the
    measure's Spearman with the final width (a width artefact shows as |rho| near 1)."""
    pts = [p for p in points if p.get(key) is not None]
    if len(pts) < 3:
        return dict(available=False, points=len(pts),
                    reason=f"{key} recorded for {len(pts)} spec(s); the store predates it or rank_images = 0")
    m = [p[key] for p in pts]
    acc = [p["acc_mean"] for p in pts]
    width = [p["widths"][-1] for p in pts]
    params = [p["params"] for p in pts]
    ok = len(pts) >= MIN_PARTIAL_POINTS
    return dict(available=True, points=len(pts), pearson=_r(pearson(m, acc)), spearman=_r(spearman(m, acc)),
                partial_pearson=_r(partial_corr(m, acc, [width, params])) if ok else None,
                partial_spearman=_r(partial_corr(ranks(m), ranks(acc), [ranks(width), ranks(params)]))
                if ok else None,
                spearman_vs_width=_r(spearman(m, width)), spearman_vs_params=_r(spearman(m, params)))


def _rank(specs: list[dict[str, Any]]) -> dict[str, Any]:
    norm = nuclear_correlations(specs, "nuclear_norm")
    raw = nuclear_correlations(specs, "nuclear_norm_raw")
    pts = [x for x in specs if x["nuclear_norm"] is not None]
    return dict(available=bool(pts), points=len(pts), pearson=norm.get("pearson"), spearman=norm.get("spearman"),
                controls=["final width", "params"], normalised=norm, raw=raw)


# -- one search ----------------------------------------------------------------------------
def analyze_search(s: dict[str, Any]) -> dict[str, Any]:
    """Every number of one loaded search (``dir``, ``name``, ``preset``, ``counts``, ``trials``)."""
    acc_key = accuracy_key(s["trials"])
    specs = _aggregate(s["trials"], acc_key)
    samples = [x for x in specs if x["kind"] == "sample"]
    groups = split_groups(samples)
    n, k = len(samples), len(groups["top"])
    members = [set(x["spec_hash"] for x in m) for m in groups.values()]
    best = max(specs, key=lambda x: (x["acc_mean"], x["spec_hash"]))
    worst = min(specs, key=lambda x: (x["acc_mean"], x["spec_hash"]))
    pick = lambda x: {key: x[key] for key in ("spec_hash", "kind", "family", "acc_mean", "acc_std",  # noqa: E731
                                               "n", "macs", "params", "widths")}
    failed = [dict(key=t["key"], kind=t["kind"], repeat=t["repeat"], error=(t.get("error") or "").strip())
              for t in s["trials"] if t["status"] == "failed"]
    preset = s["preset"]
    noise = _noise(specs, int(preset.get("repeats") or 1))
    return dict(
        dir=s["dir"], name=s["name"], preset=preset, counts=s["counts"], n_specs=len(specs), n_samples=n,
        accuracy=dict(key=acc_key, description=ACC_DESCRIPTIONS[acc_key]),
        depth=len(specs[0]["widths"]), group_size=k, group_rule=GROUP_RULE,
        groups_overlap=sum(map(len, members)) > len(set().union(*members)),
        groups={g: _group_stats(m) for g, m in groups.items()},
        shapes=_shape_table(samples, groups), families=_families(samples, groups),
        references=_ab(specs, samples, noise), best=pick(best), worst=pick(worst), noise=noise,
        rank=_rank(specs), failed=failed,
        specs=[dict(spec_hash=x["spec_hash"], kind=x["kind"], family=x["family"], n=x["n"],
                    acc_mean=_r(x["acc_mean"]), acc_std=_r(x["acc_std"]), macs=x["macs"], params=x["params"],
                    nuclear_norm=_r(x["nuclear_norm"]), nuclear_norm_raw=_r(x["nuclear_norm_raw"]),
                    **{c: _r(x["shape"][c]) for c in SHAPE_STATS}, widths=x["widths"])
               for x in sorted(specs, key=lambda x: (-x["acc_mean"], x["spec_hash"]))])


def error_edf(a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """pycls-style error EDF of an analysed search's sampled models: sorted errors
    (100 - mean top-1) and the fraction of models with at most that error."""
    err = np.sort([100.0 - x["acc_mean"] for x in a["specs"] if x["kind"] == "sample"])
    return err, np.arange(1, len(err) + 1) / max(1, len(err))
