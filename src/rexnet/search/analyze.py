"""Analyse finished channel-configuration searches: the paper's Fig. 2, Table 3 and
Fig. 4, pycls-style error EDFs, accuracy against the final features' rank, the linear
vs stage-wise A/B, and how much of the ranking is repeat noise.

Everything reads ``DIR/search.db`` through :class:`Store`.  A spec's accuracy is the
mean of ``best_val_top1`` over its done repeats.  Failed and unfinished trials appear
in ``trials.csv`` and the report but never enter a statistic.

Group rule (:data:`GROUP_RULE`): the n sampled specs sorted by mean accuracy (ties by
spec hash), ``k = max(1, floor(n/10 + 1/2))``; bottom = the k lowest, middle = the k
starting at rank ``min(floor(n/2), n-k)`` from the lowest (the 50th-60th percentile),
top = the k highest.  With ``n < 3k`` (fewer than 15 samples) the groups overlap.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..report import format_table, save_figure, write_json
from .runner import DB_NAME
from .store import Store

__all__ = ["analyze", "GROUP_RULE"]

GROUP_RULE = ("sampled specs sorted by mean best_val_top1 over repeats (ties by spec hash); "
              "k = max(1, floor(n/10 + 1/2)); bottom = the k lowest; middle = the k starting at rank "
              "min(floor(n/2), n-k) from the lowest (50th-60th percentile); top = the k highest")
GROUPS = ("top", "middle", "bottom")
COLORS = {"top": "tab:green", "middle": "tab:orange", "bottom": "tab:red",
          "linear": "black", "stagewise": "tab:purple"}
CSV_COLUMNS = ("search", "key", "kind", "spec_hash", "repeat", "seed", "macs", "params", "best_val_top1",
               "final_val_top1", "epochs_done", "wall_s", "nuclear_norm", "effective_rank", "widths",
               "status", "error")
SPEC_COLUMNS = ("search", "spec_hash", "kind", "n", "acc_mean", "acc_std", "macs", "params", "nuclear_norm",
                "widths")


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


def _fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


# -- loading -------------------------------------------------------------------------------
def _load(d: str | os.PathLike) -> dict[str, Any]:
    path = Path(d)
    db = path if path.is_file() else path / DB_NAME
    if not db.exists():   # Store() would create an empty database here
        raise FileNotFoundError(f"no search in {d} (expected {db}); start one with `rexnet search run`")
    with Store(db) as store:
        trials, counts, preset = store.trials(), store.counts(), store.get_meta("preset") or {}
    if counts["done"] == 0:
        raise ValueError(f"the search in {d} has no done trials ({counts}); run `rexnet search run` "
                         f"on it first (or wait for its first trials to finish)")
    return dict(dir=str(path), preset=preset, counts=counts, trials=trials,
                name=(preset.get("space") or {}).get("name") or path.resolve().name)


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


def _analyze_search(s: dict[str, Any]) -> dict[str, Any]:
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


# -- figures -------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plot_fig2(label: str, a: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=120)
    x = np.arange(a["depth"])
    for g in GROUPS:
        st = a["groups"][g]
        if not st["n"]:
            continue
        ax.plot(x, st["mean_widths"], color=COLORS[g], marker="o", ms=3,
                label=f"{g} {st['n']} (R²={st['fit']['r2']:.3f}, acc {st['acc_mean']:.2f})")
        ax.fill_between(x, st["min_widths"], st["max_widths"], color=COLORS[g], alpha=0.15, lw=0)
    for kind in ("linear", "stagewise"):
        ref = a["references"][kind]
        if ref:
            ax.plot(x, ref["widths"], color=COLORS[kind], ls="--", lw=1.2,
                    label=f"{kind} reference (acc {ref['acc_mean']:.2f})")
    ax.set(xlabel="block index i", ylabel="output channels",
           title=f"{label}: widths of the top / middle / bottom models (n={a['n_samples']}; band = min-max)")
    ax.title.set_fontsize(9)
    return _finish(fig, ax, path, 7)


def _finish(fig, ax, path: Path, legend_size: int = 8) -> Path:
    """Grid, a legend when anything is labelled (nothing is while no sampled model is done), save."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_edf(results: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for label, a in results.items():
        err = np.sort([100.0 - x["acc_mean"] for x in a["specs"] if x["kind"] == "sample"])
        if len(err):
            ax.step(err, np.arange(1, len(err) + 1) / len(err), where="post", label=f"{label} (n={len(err)})")
    ax.set(xlabel="error (%) = 100 - mean top-1", ylabel="cumulative fraction of models",
           title="Error EDF of the sampled models")
    return _finish(fig, ax, path)


def _plot_rank(results: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    markers = {"sample": "o", "linear": "^", "stagewise": "s"}
    for i, (label, a) in enumerate(results.items()):
        color = plt.get_cmap("tab10")(i % 10)
        for kind, mk in markers.items():
            pts = [x for x in a["specs"] if x["kind"] == kind and x["nuclear_norm"] is not None]
            if pts:
                ax.scatter([x["nuclear_norm"] for x in pts], [x["acc_mean"] for x in pts], color=color,
                           marker=mk, s=40 if kind != "sample" else 14, edgecolor="k" if kind != "sample" else None,
                           label=f"{label} ({kind})" if kind != "sample" else
                           f"{label} (Pearson {_fmt(a['rank']['pearson'])}, Spearman {_fmt(a['rank']['spearman'])})")
    ax.set(xlabel="normalised nuclear norm of the final features", ylabel="mean best top-1 (%)",
           title="Accuracy vs rank of the last block's output")
    return _finish(fig, ax, path, 7)


def _plot_fig4(results: dict[str, dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for label, a in results.items():
        st = a["groups"]["top"]
        if st["n"]:
            d = a["depth"]
            ax.plot(np.arange(d) / max(1, d - 1), st["mean_widths"], marker="o", ms=3,
                    label=f"{label} (top {st['n']}, R²={st['fit']['r2']:.3f})")
    ax.set(xlabel="block index / (depth - 1)", ylabel="mean output channels of the top models",
           title="Top-group channel configurations across searches")
    return _finish(fig, ax, path)


# -- files ---------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return _write_text(path, buf.getvalue())


def _trial_rows(label: str, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        res = t.get("result") or {}
        rows.append(dict(search=label, key=t["key"], kind=t["kind"], spec_hash=t["spec_hash"], repeat=t["repeat"],
                         seed=t["seed"], macs=t["macs"], params=t["params"], widths="/".join(map(str, t["widths"])),
                         status=t["status"], error=(t.get("error") or "").strip(),
                         **{k: res.get(k) for k in ("best_val_top1", "final_val_top1", "epochs_done", "wall_s",
                                                    "nuclear_norm", "effective_rank")}))
    return rows


def _labels(loaded: list[dict[str, Any]]) -> list[str]:
    """Preset names, made unique with the directory name (two runs of one preset)."""
    names = [s["name"] for s in loaded]
    labels = [n if names.count(n) == 1 else f"{n}@{Path(s['dir']).resolve().name}" for n, s in zip(names, loaded)]
    return [lab if labels.count(lab) == 1 else f"{lab}#{i}" for i, lab in enumerate(labels)]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _widths(ws: Sequence[int]) -> str:
    return "/".join(map(str, ws))


# -- the report ----------------------------------------------------------------------------
def _report(results: dict[str, dict[str, Any]], figs: dict[str, Any]) -> str:
    L: list[str] = ["# Channel-configuration search analysis", ""]
    table = lambda rows: ["```text", format_table(rows), "```", ""]  # noqa: E731
    L += ["Files: [trials.csv](trials.csv) (one row per trial), [specs.csv](specs.csv) (one row per spec), "
          "[analysis.json](analysis.json) (every number below).", "",
          "A spec's accuracy is the mean best validation top-1 over its done repeats; failed and unfinished "
          "trials are excluded from every statistic.", "", "## Searches", ""]
    L += table([dict(search=lab, dir=a["dir"], data=a["preset"].get("data"), epochs=a["preset"].get("epochs"),
                     repeats=a["preset"].get("repeats"), done=a["counts"]["done"], failed=a["counts"]["failed"],
                     unfinished=a["counts"]["pending"] + a["counts"]["running"], specs=a["n_specs"],
                     samples=a["n_samples"]) for lab, a in results.items()])
    if any(a["counts"]["pending"] + a["counts"]["running"] for a in results.values()):
        L += ["Some searches are unfinished: the numbers cover the trials done so far.", ""]

    L += ["## Groups: top, middle and bottom 10% of the sampled models", "", f"Rule: {GROUP_RULE}.", ""]
    for lab, a in results.items():
        if not a["n_samples"]:
            L += [f"- **{lab}**: no sampled model is done yet; only the references can be reported.", ""]
        if a["groups_overlap"]:
            L += [f"- **{lab}**: only {a['n_samples']} sampled model(s) for groups of {a['group_size']}, so the "
                  f"groups overlap (the same model can be in two groups); read them as anecdotes.", ""]

    L += ["## Fig. 2: width per block of the top, middle and bottom models", "",
          "Mean width per group (line), min-max over the group's models (band), the linear (ReXNet) and "
          "stage-wise (MobileNetV2) references dashed.", ""]
    for lab in results:
        L += [f"![{lab}]({figs['fig2'][lab]})", ""]

    L += ["## Linear fit of the widths", "",
          "Least squares of each group's mean widths against the 0-based block index i "
          "(intercept = fitted width of block 0). The paper's finding: the best models grow linearly "
          "(top R² close to 1). `model R²` is the mean of the per-model fits, which a mean of "
          "staircases cannot fake.", ""]
    L += table([dict(search=lab, group=g, n=a["groups"][g]["n"], slope=_fmt(a["groups"][g]["fit"]["slope"], 3),
                     intercept=_fmt(a["groups"][g]["fit"]["intercept"], 2),
                     r2=_fmt(a["groups"][g]["fit"]["r2"], 4), model_r2=_fmt(a["groups"][g]["mean_model_r2"], 4))
                for lab, a in results.items() for g in GROUPS if a["groups"][g]["n"]])

    L += ["## Table 3: accuracy and complexity per group", ""]
    rows = []
    for lab, a in results.items():
        for g in GROUPS:
            st = a["groups"][g]
            if st["n"]:
                rows.append(dict(search=lab, group=g, n=st["n"], acc=_pm(st["acc_mean"], st["acc_std"]),
                                 mmacs=_fmt(st["macs_mean"] / 1e6), params_m=_fmt(st["params_mean"] / 1e6, 3)))
        for kind in ("linear", "stagewise"):
            ref = a["references"][kind]
            if ref:
                rows.append(dict(search=lab, group=f"{kind} ref", n=1, acc=_pm(ref["acc_mean"], ref["acc_std"]),
                                 mmacs=_fmt(ref["macs"] / 1e6), params_m=_fmt(ref["params"] / 1e6, 3)))
    L += table(rows) + ["`acc` = mean ± std over the group's models (reference rows: over repeats).", ""]

    L += ["## Best and worst configurations", ""]
    L += table([dict(search=lab, which=w, kind=a[w]["kind"], acc=_fmt(a[w]["acc_mean"]), repeats=a[w]["n"],
                     mmacs=_fmt(a[w]["macs"] / 1e6), widths=_widths(a[w]["widths"]))
                for lab, a in results.items() for w in ("best", "worst")])

    L += ["## Linear vs stage-wise reference (the paper's thesis as an A/B)", "",
          "Both references are solved to the same MACs budget; the percentile is among the sampled models "
          "(ties count half).", ""]
    rows = []
    for lab, a in results.items():
        ref = a["references"]
        row = dict(search=lab)
        for kind in ("linear", "stagewise"):
            row[f"{kind}_acc"] = _pm(ref[kind]["acc_mean"], ref[kind]["acc_std"]) if ref[kind] else "not done"
            row[f"{kind}_pct"] = _fmt(ref[kind]["percentile_among_samples"], 1) if ref[kind] else "-"
        row["linear_minus_stagewise"] = _fmt(ref["diff_linear_minus_stagewise"])
        rows.append(row)
    L += table(rows)
    for lab, a in results.items():
        d, nz = a["references"]["diff_linear_minus_stagewise"], a["noise"]
        if d is not None and nz.get("available") and nz["within_std"] is not None:
            se = nz["within_std"] * math.sqrt(2 / max(1.0, nz["repeats_mean"]))   # std error of a difference
            L += [f"- {lab}: the difference {d:+.2f} is {abs(d) / se:.1f}x its repeat-noise standard error "
                  f"({se:.2f})" if se > 0 else f"- {lab}: no repeat noise measured"]
    L += [""]

    L += ["## Error EDFs", "", "pycls style: error = 100 - mean top-1 of each sampled model, sorted; "
          "y = fraction of models with at most that error.", "", f"![error EDF]({figs['edf']})", ""]

    L += ["## Accuracy vs nuclear norm of the final features", ""]
    if figs.get("rank"):
        L += ["Normalised nuclear norm (sum of singular values / largest / width) of the last block's output, "
              "mean over repeats; Pearson and Spearman over the specs of each search.", "",
              f"![accuracy vs nuclear norm]({figs['rank']})", ""]
        L += table([dict(search=lab, points=a["rank"]["points"], pearson=_fmt(a["rank"]["pearson"], 3),
                         spearman=_fmt(a["rank"]["spearman"], 3)) for lab, a in results.items()])
    missing = [lab for lab, a in results.items() if not a["rank"]["available"]]
    if missing:
        L += [f"Rank measures were not recorded for {', '.join(missing)} (search run with rank_images = 0)"
              + ("; plot skipped." if not figs.get("rank") else "."), ""]

    L += ["## Fig. 4: top-group widths across searches", "",
          "Mean widths of each search's top group against block index / (depth - 1).", "",
          f"![top-group widths]({figs['fig4']})", ""]

    L += ["## Noise: repeats vs trials", "",
          "`within` = mean over specs of the std across repeats; `between` = std of the spec means; "
          "`ratio` = within / between; `noise_share` = mean within-variance / repeats / between-variance, "
          "the estimated part of the spread of spec means that is repeat noise; `spearman_r0_r1` = rank "
          "agreement of repeat 0 and repeat 1 across specs. Verdict: noise_share >= 0.5 mostly noise, "
          ">= 0.2 partly noise, else mostly signal.", ""]
    for lab, a in results.items():
        nz = a["noise"]
        if not nz["available"]:
            L += [f"- **{lab}**: not measured: {nz['reason']}.", ""]
            continue
        L += [f"- **{lab}**: within {_fmt(nz['within_std'])}, between {_fmt(nz['between_std'])}, ratio "
              f"{_fmt(nz['ratio'])}, noise_share {_fmt(nz['noise_share'])}, spearman_r0_r1 "
              f"{_fmt(nz['spearman_r0_r1'])} ({nz['pairs']} specs). **Verdict: {nz['verdict']}.**", ""]

    L += ["## Failed trials", ""]
    failed = [dict(search=lab, **f, error_line=(f["error"].splitlines() or [""])[-1][:120])
              for lab, a in results.items() for f in a["failed"]]
    L += (table([{k: f[k] for k in ("search", "key", "kind", "repeat", "error_line")} for f in failed])
          + ["Excluded from every statistic; `rexnet search run` on the same directory retries them."]
          if failed else ["None."])
    return "\n".join(L) + "\n"


# -- the entry point -----------------------------------------------------------------------
def analyze(dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict[str, Any]:
    """Analyse one or more search directories into ``out`` (CSV, PNGs, report.md,
    analysis.json); returns what analysis.json holds."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    if not dirs:
        raise ValueError("no search directories given")
    loaded = [_load(d) for d in dirs]
    labels = _labels(loaded)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {lab: _analyze_search(s) for lab, s in zip(labels, loaded)}

    _write_csv(out / "trials.csv", CSV_COLUMNS,
               [r for lab, s in zip(labels, loaded) for r in _trial_rows(lab, s["trials"])])
    _write_csv(out / "specs.csv", SPEC_COLUMNS, [dict(x, search=lab, widths=_widths(x["widths"]))
                                                 for lab, a in results.items() for x in a["specs"]])
    figs: dict[str, Any] = {"fig2": {}}
    for lab, a in results.items():
        figs["fig2"][lab] = _plot_fig2(lab, a, out / f"fig2_{_slug(lab)}.png").name
    figs["edf"] = _plot_edf(results, out / "error_edf.png").name
    figs["fig4"] = _plot_fig4(results, out / "fig4_top_widths.png").name
    rank_png = out / "acc_vs_nuclear_norm.png"
    if any(a["rank"]["available"] for a in results.values()):
        figs["rank"] = _plot_rank(results, rank_png).name
    else:   # no stale plot from an earlier analysis in the same folder
        figs["rank"] = None
        rank_png.unlink(missing_ok=True)
    analysis = dict(searches=results, figures=figs)
    write_json(analysis, out / "analysis.json")
    _write_text(out / "report.md", _report(results, figs))
    return analysis
