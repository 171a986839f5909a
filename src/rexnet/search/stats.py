"""The numbers of a search analysis: per-spec aggregates, the top / middle / bottom
groups and their linear fits, the linear vs stage-wise A/B, repeat noise, the rank
correlation and error EDFs.  Pure numpy on the trial records of a
:class:`~rexnet.search.store.Store`; no files, no matplotlib.

A spec's accuracy is the mean of ``best_val_top1`` over its done repeats.  Failed
and unfinished trials never enter a statistic.

Group rule (:data:`GROUP_RULE`): the n sampled specs sorted by mean accuracy (ties by
spec hash), ``k = max(1, floor(n/10 + 1/2))``; bottom = the k lowest, middle = the k
starting at rank ``min(floor(n/2), n-k)`` from the lowest (the 50th-60th percentile),
top = the k highest.  With ``n < 3k`` (fewer than 15 samples) the groups overlap.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["GROUP_RULE", "GROUPS", "analyze_search", "error_edf", "fmt"]

GROUP_RULE = ("sampled specs sorted by mean best_val_top1 over repeats (ties by spec hash); "
              "k = max(1, floor(n/10 + 1/2)); bottom = the k lowest; middle = the k starting at rank "
              "min(floor(n/2), n-k) from the lowest (50th-60th percentile); top = the k highest")
GROUPS = ("top", "middle", "bottom")


# -- small statistics (no scipy) -----------------------------------------------------------
def _std(xs: Sequence[float]) -> float | None:
    """Sample std (ddof=1); None for fewer than two values."""
    return float(np.std(xs, ddof=1)) if len(xs) >= 2 else None


def _ranks(xs: Sequence[float]) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their average rank (what Spearman needs)."""
    xs = np.asarray(xs, dtype=float)
    order = np.argsort(xs, kind="stable")
    ranks = np.empty(len(xs))
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None   # undefined for constants; meaningless for two points
    return float(np.corrcoef(x, y)[0, 1])


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    return _pearson(_ranks(x), _ranks(y)) if len(x) >= 3 else None


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


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def fmt(x: float | None, nd: int = 2) -> str:
    """A number for a table or a legend; ``-`` for a missing one."""
    return "-" if x is None else f"{x:.{nd}f}"


# -- per spec and per group ----------------------------------------------------------------
def _aggregate(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per spec from its done repeats."""
    by: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        if t["status"] == "done":
            by.setdefault(t["spec_hash"], []).append(t)
    specs = []
    for h, ts in by.items():
        ts.sort(key=lambda t: t["repeat"])
        accs = [float(t["result"]["best_val_top1"]) for t in ts]
        nuc = [t["result"]["nuclear_norm"] for t in ts if t["result"].get("nuclear_norm") is not None]
        specs.append(dict(spec_hash=h, kind=ts[0]["kind"], widths=list(ts[0]["widths"]), macs=ts[0]["macs"],
                          params=ts[0]["params"], n=len(ts), accs={t["repeat"]: a for t, a in zip(ts, accs)},
                          acc_mean=float(np.mean(accs)), acc_std=_std(accs),
                          nuclear_norm=float(np.mean(nuc)) if nuc else None))
    return specs


def _groups(samples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """See :data:`GROUP_RULE`."""
    asc = sorted(samples, key=lambda s: (s["acc_mean"], s["spec_hash"]))
    n = len(asc)
    if n == 0:
        return {g: [] for g in GROUPS}
    k = max(1, math.floor(n / 10 + 0.5))
    m = min(n // 2, n - k)
    return dict(top=asc[n - k:][::-1], middle=asc[m:m + k][::-1], bottom=asc[:k][::-1])


def _group_stats(members: list[dict[str, Any]]) -> dict[str, Any]:
    if not members:
        return dict(n=0)
    w = np.array([s["widths"] for s in members], float)
    mean_w = w.mean(axis=0)
    accs = [s["acc_mean"] for s in members]
    return dict(n=len(members), members=[s["spec_hash"] for s in members],
                acc_mean=_r(np.mean(accs)), acc_std=_r(_std(accs)),
                macs_mean=_r(np.mean([s["macs"] for s in members]), 1),
                params_mean=_r(np.mean([s["params"] for s in members]), 1),
                mean_widths=[_r(v, 3) for v in mean_w], min_widths=w.min(axis=0).astype(int).tolist(),
                max_widths=w.max(axis=0).astype(int).tolist(),
                fit={k: _r(v) for k, v in _fit(mean_w).items()},
                # the mean of per-model R²: a group mean of staircases can look straight
                mean_model_r2=_r(np.mean([_fit(s["widths"])["r2"] for s in members])))


# -- noise and the A/B ---------------------------------------------------------------------
def _noise(specs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Repeat spread vs trial spread.  ``noise_share`` estimates the fraction of the
    variance of the spec means (what the ranking sorts) that is repeat noise:
    mean within-spec variance / repeats / variance of the means."""
    multi = [s for s in specs if s["n"] >= 2]
    if max((s["n"] for s in specs), default=0) < 2:
        return dict(available=False, reason=f"needs >= 2 repeats per spec; every spec has at most 1 done "
                                            f"repeat (the preset asks for {repeats})")
    if len(multi) < 2:
        return dict(available=False, reason="needs >= 2 specs with >= 2 done repeats")
    within = float(np.mean([s["acc_std"] for s in multi]))
    means = [s["acc_mean"] for s in multi]
    between = float(np.std(means, ddof=1))
    r_mean = float(np.mean([s["n"] for s in multi]))
    within_var = float(np.mean([s["acc_std"] ** 2 for s in multi]))
    share = within_var / r_mean / between ** 2 if between > 0 else math.inf
    pairs = [(s["accs"][0], s["accs"][1]) for s in multi if 0 in s["accs"] and 1 in s["accs"]]
    rho = _spearman([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) >= 3 else None
    if share >= 0.5:
        verdict = ("mostly noise: repeat noise is at least half of the variance between spec means, so the "
                   "order of the sampled models is not trustworthy; add repeats, epochs or images")
    elif share >= 0.2:
        verdict = ("partly noise: group-level trends and large gaps are reliable, the order of neighbouring "
                   "models is not")
    else:
        verdict = "mostly signal: the ranking reflects real differences between the models at this scale"
    sem = math.sqrt(within_var / r_mean)   # std error of one spec's mean accuracy
    verdict += f"; gaps under 2 x the std error of a mean ({2 * sem:.2f} points) are within noise"
    return dict(available=True, specs=len(multi), repeats_mean=_r(r_mean, 2), within_std=_r(within), sem=_r(sem),
                between_std=_r(between), ratio=_r(within / between) if between > 0 else None,
                noise_share=_r(share) if math.isfinite(share) else None, spearman_r0_r1=_r(rho),
                pairs=len(pairs), verdict=verdict)


def _ab(specs: list[dict[str, Any]], samples: list[dict[str, Any]]) -> dict[str, Any]:
    pop = [s["acc_mean"] for s in samples]
    out: dict[str, Any] = {}
    for kind in ("linear", "stagewise"):
        ref = next((s for s in specs if s["kind"] == kind), None)
        out[kind] = None if ref is None else dict(
            spec_hash=ref["spec_hash"], acc_mean=_r(ref["acc_mean"]), acc_std=_r(ref["acc_std"]), n=ref["n"],
            widths=ref["widths"], macs=ref["macs"], params=ref["params"],
            percentile_among_samples=_r(_percentile(ref["acc_mean"], pop), 1))
    both = out["linear"] and out["stagewise"]
    out["diff_linear_minus_stagewise"] = _r(out["linear"]["acc_mean"] - out["stagewise"]["acc_mean"]) if both else None
    return out


# -- one search ----------------------------------------------------------------------------
def analyze_search(s: dict[str, Any]) -> dict[str, Any]:
    """Every number of one loaded search (``dir``, ``name``, ``preset``, ``counts``, ``trials``)."""
    specs = _aggregate(s["trials"])
    samples = [x for x in specs if x["kind"] == "sample"]
    groups = _groups(samples)
    n, k = len(samples), len(groups["top"])
    rank_pts = [x for x in specs if x["nuclear_norm"] is not None]
    best = max(specs, key=lambda x: (x["acc_mean"], x["spec_hash"]))
    worst = min(specs, key=lambda x: (x["acc_mean"], x["spec_hash"]))
    pick = lambda x: {key: x[key] for key in ("spec_hash", "kind", "acc_mean", "acc_std", "n", "macs",  # noqa: E731
                                               "params", "widths")}
    failed = [dict(key=t["key"], kind=t["kind"], repeat=t["repeat"], error=(t.get("error") or "").strip())
              for t in s["trials"] if t["status"] == "failed"]
    preset = s["preset"]
    return dict(
        dir=s["dir"], name=s["name"], preset=preset, counts=s["counts"], n_specs=len(specs), n_samples=n,
        depth=len(specs[0]["widths"]), group_size=k, group_rule=GROUP_RULE, groups_overlap=n < 3 * k,
        groups={g: _group_stats(m) for g, m in groups.items()},
        references=_ab(specs, samples), best=pick(best), worst=pick(worst),
        noise=_noise(specs, int(preset.get("repeats") or 1)),
        rank=dict(available=bool(rank_pts), points=len(rank_pts),
                  pearson=_r(_pearson([x["nuclear_norm"] for x in rank_pts], [x["acc_mean"] for x in rank_pts])),
                  spearman=_r(_spearman([x["nuclear_norm"] for x in rank_pts], [x["acc_mean"] for x in rank_pts]))),
        failed=failed,
        specs=[dict(spec_hash=x["spec_hash"], kind=x["kind"], n=x["n"], acc_mean=_r(x["acc_mean"]),
                    acc_std=_r(x["acc_std"]), macs=x["macs"], params=x["params"],
                    nuclear_norm=_r(x["nuclear_norm"]), widths=x["widths"])
               for x in sorted(specs, key=lambda x: (-x["acc_mean"], x["spec_hash"]))])


def error_edf(a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """pycls-style error EDF of an analysed search's sampled models: sorted errors
    (100 - mean top-1) and the fraction of models with at most that error."""
    err = np.sort([100.0 - x["acc_mean"] for x in a["specs"] if x["kind"] == "sample"])
    return err, np.arange(1, len(err) + 1) / max(1, len(err))
