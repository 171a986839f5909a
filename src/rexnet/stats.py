"""The one place for intervals, tests, correlations and verdicts, on ``scipy.stats``.

Every module that states an uncertainty (the rank study's means, the search's A/B and
correlations, the paired experiments) takes it from here, so one number means one
thing everywhere: a 95% interval is Student's t (``scipy.stats.t.ppf``) on the stated
degrees of freedom, a correlation is Pearson's or Spearman's with ties at their
average rank, and a verdict on an interval reads the interval alone.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["t_quantile", "t975", "mean_ci", "sample_sd", "ranks", "pearson", "spearman", "partial_corr",
           "gap_interval", "interval_verdict", "paired_stats", "seeds_needed", "subset_mean_pvalues",
           "sign_flip_p", "holm", "tost", "verdict", "seeds_for_power", "sd_upper_bound", "VERDICTS",
           "MAX_SEEDS_NEEDED", "spearman_test"]

VERDICTS = ("holds", "contradicted", "equivalent", "inconclusive")

MAX_SEEDS_NEEDED = 1000   # a sizing beyond this is reported as "more than 1000"


# -- quantiles and means ---------------------------------------------------------------------
def t_quantile(df: float, q: float = 0.975) -> float:
    """Student-t quantile ``q`` on ``df`` degrees of freedom (fractional for Welch; inf: normal)."""
    if not df > 0:
        raise ValueError(f"a t quantile needs df > 0, got {df}")
    return float(_st.norm.ppf(q) if math.isinf(df) else _st.t.ppf(q, df))


def t975(df: float) -> float:
    """The two-sided 95% interval's t multiplier."""
    return t_quantile(df, 0.975)


def mean_ci(x: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean, 95% t half-width and count of the finite values of ``x`` (nan where undefined)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    return float(x.mean()), t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n), n


def sample_sd(xs: Sequence[float]) -> float | None:
    """Sample SD (ddof=1); None for fewer than two values."""
    return float(np.std(xs, ddof=1)) if len(xs) >= 2 else None


# -- correlations ----------------------------------------------------------------------------
def ranks(xs: Sequence[float]) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their average rank."""
    return _st.rankdata(np.asarray(xs, dtype=float), method="average") - 1.0


def _constant(v: np.ndarray) -> bool:
    return bool(v.std() < 1e-12 * max(1.0, float(np.abs(v).max())))


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None for fewer than 3 points (meaningless) or a constant side (undefined)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or _constant(x) or _constant(y):
        return None
    return float(_st.pearsonr(x, y).statistic)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson's r of the average ranks); None where :func:`pearson` is."""
    return pearson(ranks(x), ranks(y)) if len(x) >= 3 else None


def partial_corr(x: Sequence[float], y: Sequence[float], controls: Sequence[Sequence[float]]) -> float | None:
    """Pearson correlation of ``x`` and ``y`` after removing from each its least-squares
    linear fit on the ``controls`` (with an intercept).  None when fewer than
    len(controls) + 3 points or a residual is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < len(controls) + 3:
        return None
    design = np.column_stack([np.ones(len(x))] + [np.asarray(c, float) for c in controls])
    design = design / np.maximum(np.abs(design).max(axis=0), 1e-300)   # params ~1e6 next to widths ~1e2
    res = lambda v: v - design @ np.linalg.lstsq(design, v, rcond=None)[0]  # noqa: E731
    return pearson(res(x), res(y))


# -- differences of means --------------------------------------------------------------------
def gap_interval(a: Mapping[int, float], b: Mapping[int, float], fallback_sd: float | None = None,
                 fallback_df: float | None = None) -> dict[str, Any]:
    """Mean of ``a`` minus mean of ``b`` (accuracies by seed) with a 95% t-interval: paired
    by seed when both have the same >= 2 seeds; else Welch when both have >= 2 values; else
    with a pooled repeat-noise SD (``fallback_sd`` on ``fallback_df`` degrees of freedom)."""
    va, vb = np.array(list(a.values()), float), np.array(list(b.values()), float)
    out: dict[str, Any] = dict(mean=float(va.mean() - vb.mean()) if len(va) and len(vb) else None)
    if out["mean"] is None:
        return dict(out, method=None, se=None, df=None, ci95=None)
    if set(a) == set(b) and len(a) >= 2:
        d = np.array([a[s] - b[s] for s in sorted(a)])
        se, df, method = float(d.std(ddof=1) / math.sqrt(len(d))), float(len(d) - 1), "paired by seed"
    elif len(va) >= 2 and len(vb) >= 2:
        qa, qb = va.var(ddof=1) / len(va), vb.var(ddof=1) / len(vb)
        se = float(math.sqrt(qa + qb))
        df = float((qa + qb) ** 2 / (qa ** 2 / (len(va) - 1) + qb ** 2 / (len(vb) - 1))) if qa + qb > 0 else math.inf
        method = "welch"
    elif fallback_sd is not None and fallback_df:
        se, df, method = fallback_sd * math.sqrt(1 / len(va) + 1 / len(vb)), float(fallback_df), "pooled noise"
    else:
        return dict(out, method=None, se=None, df=None, ci95=None)
    half = t975(df) * se
    return dict(out, method=method, se=se, df=df, ci95=[out["mean"] - half, out["mean"] + half])


def interval_verdict(ci: Sequence[float] | None) -> str:
    """An expected direction ``a > b`` against the 95% interval of ``a - b``: holds above 0,
    contradicted below 0, inconclusive when it holds 0 (or is undefined)."""
    if ci is None:
        return "inconclusive"
    return "holds" if ci[0] > 0 else "contradicted" if ci[1] < 0 else "inconclusive"


def paired_stats(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """``a - b`` over the seeds both have: per-seed differences, their mean, SD, the paired
    95% t-interval (:func:`gap_interval`) and the verdict on ``a > b`` (:func:`interval_verdict`)."""
    seeds = sorted(set(a) & set(b))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    g = gap_interval({s: a[s] for s in seeds}, {s: b[s] for s in seeds})
    sd = sample_sd(diffs)
    return dict(seeds=seeds, n=len(seeds), diffs=[round(d, 4) for d in diffs],
                diff_mean=None if g["mean"] is None else round(g["mean"], 4),
                diff_sd=None if sd is None else round(sd, 4), se=None if g["se"] is None else round(g["se"], 4),
                df=g["df"], ci95=None if g["ci95"] is None else [round(c, 4) for c in g["ci95"]],
                method=g["method"], verdict=interval_verdict(g["ci95"]))


def seeds_needed(diff_mean: float | None, diff_sd: float | None) -> int | None:
    """The smallest number of paired seeds whose 95% half-width t(n-1) * sd / sqrt(n) is
    below the observed |mean difference| (so the interval would exclude 0 if the pilot's
    mean and SD held); None when undefined (no SD, or a zero mean)."""
    if diff_mean is None or diff_sd is None or diff_mean == 0:
        return None
    if diff_sd == 0:
        return 2
    for n in range(2, MAX_SEEDS_NEEDED + 1):
        if t975(n - 1) * diff_sd / math.sqrt(n) < abs(diff_mean):
            return n
    return MAX_SEEDS_NEEDED + 1


# -- permutation tests -----------------------------------------------------------------------
def subset_mean_pvalues(values: np.ndarray | Sequence[float], members: Sequence[int], n_perm: int = 10_000,
                        seed: int = 0) -> np.ndarray:
    """Two-sided permutation p-value of the mean of ``values[members]`` against the whole
    sample, per column: the share of ``n_perm`` random subsets of the same size (drawn
    without replacement, fixed seed) whose mean is at least as far from the sample mean,
    counted as (1 + hits) / (1 + n_perm).  (A subset of one fixed sample, which
    ``scipy.stats.permutation_test``'s two-sample form does not express.)"""
    v = np.asarray(values, float)
    v = v[:, None] if v.ndim == 1 else v
    n, k = len(v), len(members)
    if not 0 < k <= n:
        raise ValueError(f"permutation test needs 1..{n} members, got {k}")
    idx = np.random.default_rng(seed).random((n_perm, n)).argsort(axis=1)[:, :k]
    null = v[idx].mean(axis=1)                       # (n_perm, columns)
    center = v.mean(axis=0)
    obs = v[list(members)].mean(axis=0)
    tol = 1e-9 * np.maximum(1.0, np.abs(v).max(axis=0))
    hits = (np.abs(null - center) >= np.abs(obs - center) - tol).sum(axis=0)
    return (1 + hits) / (1 + n_perm)


# -- what a referee asks for -----------------------------------------------------------------
def sign_flip_p(diffs: Sequence[float]) -> float | None:
    """Exact two-sided sign-flip permutation p-value of the mean of paired differences: the
    share of all 2^n sign assignments whose |mean| is at least the observed one (scipy's
    paired permutation test, exhaustive up to 2^20 assignments).  None for no differences."""
    d = np.asarray(diffs, float)
    if d.size == 0:
        return None
    if not np.any(d):
        return 1.0
    res = _st.permutation_test((d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis=axis),
                               permutation_type="samples", n_resamples=2 ** 20, alternative="two-sided",
                               vectorized=True, random_state=0)
    return float(res.pvalue)


def spearman_test(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Spearman's rho with its 95% interval (Fisher z with Bonett and Wright's standard error
    ``sqrt((1 + rho^2 / 2) / (n - 3))``, n >= 4) and the two-sided permutation p of rho (exact
    over every ordering of ``y`` up to n = 8, else 100,000 seeded resamples)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearman(x, y)
    out: dict[str, Any] = dict(rho=rho, n=int(len(x)), ci95=None, p=None)
    if rho is None:
        return out
    if len(x) >= 4:
        z, se = math.atanh(max(-0.999999, min(0.999999, rho))), math.sqrt((1 + rho ** 2 / 2) / (len(x) - 3))
        out["ci95"] = [round(math.tanh(z - 1.959964 * se), 4), round(math.tanh(z + 1.959964 * se), 4)]
    ry = ranks(y) - ranks(y).mean()

    def rho_of(rx: np.ndarray, axis: int = -1) -> np.ndarray:   # Pearson of ranks; x's ranks permuted
        c = rx - rx.mean(axis=axis, keepdims=True)
        return (c * ry).sum(axis=axis) / np.sqrt((c ** 2).sum(axis=axis) * (ry ** 2).sum())

    res = _st.permutation_test((ranks(x),), rho_of, permutation_type="pairings", vectorized=True,
                               n_resamples=100_000 if len(x) > 8 else math.inf, alternative="two-sided",
                               random_state=0)
    out["p"] = float(res.pvalue)
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (family-wise error over the p-values given, in
    their order; None stays None and does not count)."""
    known = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running, m = 0.0, len(known)
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def tost(diffs: Sequence[float], margin: float) -> dict[str, Any]:
    """Two one-sided paired t-tests of ``|mean difference| < margin``: the p-value is the larger
    of the two one-sided ones; ``ci90`` is the interval whose inclusion in (-margin, margin)
    is the same decision at alpha 0.05."""
    d = np.asarray(diffs, float)
    if d.size < 2 or margin <= 0:
        return dict(margin=margin, p=None, ci90=None)
    lower = _st.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = _st.ttest_1samp(d, margin, alternative="less").pvalue
    half = t_quantile(d.size - 1, 0.95) * d.std(ddof=1) / math.sqrt(d.size)
    return dict(margin=margin, p=float(max(lower, upper)), ci90=[float(d.mean() - half), float(d.mean() + half)])


def verdict(ci95: Sequence[float] | None, p_adjusted: float | None, tost_p: float | None,
            alpha: float = 0.05) -> str:
    """holds / contradicted: the corrected test rejects (``p_adjusted < alpha``) *and* the 95%
    interval excludes 0 on that side; equivalent: TOST at the protocol's margin rejects
    (``tost_p < alpha``); anything else, the noise included, is inconclusive."""
    if ci95 is not None and p_adjusted is not None and p_adjusted < alpha:
        if ci95[0] > 0:
            return "holds"
        if ci95[1] < 0:
            return "contradicted"
    if tost_p is not None and tost_p < alpha:
        return "equivalent"
    return "inconclusive"


def seeds_for_power(sd: float, effect: float, power: float = 0.8, alpha: float = 0.05,
                    max_n: int = MAX_SEEDS_NEEDED) -> int:
    """The smallest number of paired seeds at which a two-sided paired t-test at ``alpha``
    detects a true mean difference ``effect`` with probability ``power``, when the
    differences have SD ``sd`` (non-central t); ``max_n + 1`` when even ``max_n`` is short."""
    if sd <= 0:
        return 2
    for n in range(2, max_n + 1):
        df, nc = n - 1, abs(effect) / (sd / math.sqrt(n))
        crit = t_quantile(df, 1 - alpha / 2)
        if _st.nct.sf(crit, df, nc) + _st.nct.cdf(-crit, df, nc) >= power:
            return n
    return max_n + 1


def sd_upper_bound(sd: float, df: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a standard deviation estimated on ``df`` degrees
    of freedom (chi-square): what a pilot's SD may really be, for sizing without optimism."""
    return float(sd * math.sqrt(df / _st.chi2.ppf(1 - confidence, df)))
