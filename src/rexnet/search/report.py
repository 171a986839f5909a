"""The report of a search analysis: ``analyze(dirs, out)`` loads one or more searches
(``DIR/search.db`` through :class:`Store`), computes their numbers
(:mod:`rexnet.search.stats`) and figures (:mod:`rexnet.search.plots`), and writes
``report.md`` (the paper's Fig. 2, Table 3 and Fig. 4, error EDFs, accuracy against the
final features' rank, the linear vs stage-wise A/B, and how much of the ranking is
repeat noise), ``analysis.json`` (every number), ``trials.csv`` (one row per trial,
failed and unfinished ones included) and ``specs.csv`` (one row per spec)."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

from ..io import write_csv, write_json, write_text
from ..report import format_table
from .plots import plot_edf, plot_fig2, plot_fig4, plot_rank
from .runner import DB_NAME
from .stats import GROUP_RULE, GROUPS, analyze_search, fmt
from .store import Store

__all__ = ["analyze"]

CSV_COLUMNS = ("search", "key", "kind", "spec_hash", "repeat", "seed", "macs", "params", "best_val_top1",
               "final_val_top1", "epochs_done", "wall_s", "nuclear_norm", "effective_rank", "widths",
               "status", "error")
SPEC_COLUMNS = ("search", "spec_hash", "kind", "n", "acc_mean", "acc_std", "macs", "params", "nuclear_norm",
                "widths")


# -- loading and rows ----------------------------------------------------------------------
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


def _trial_rows(label: str, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        res = t.get("result") or {}
        rows.append(dict(search=label, key=t["key"], kind=t["kind"], spec_hash=t["spec_hash"], repeat=t["repeat"],
                         seed=t["seed"], macs=t["macs"], params=t["params"], widths=_widths(t["widths"]),
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


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


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
    L += table([dict(search=lab, group=g, n=a["groups"][g]["n"], slope=fmt(a["groups"][g]["fit"]["slope"], 3),
                     intercept=fmt(a["groups"][g]["fit"]["intercept"], 2),
                     r2=fmt(a["groups"][g]["fit"]["r2"], 4), model_r2=fmt(a["groups"][g]["mean_model_r2"], 4))
                for lab, a in results.items() for g in GROUPS if a["groups"][g]["n"]])

    L += ["## Table 3: accuracy and complexity per group", ""]
    rows = []
    for lab, a in results.items():
        for g in GROUPS:
            st = a["groups"][g]
            if st["n"]:
                rows.append(dict(search=lab, group=g, n=st["n"], acc=_pm(st["acc_mean"], st["acc_std"]),
                                 mmacs=fmt(st["macs_mean"] / 1e6), params_m=fmt(st["params_mean"] / 1e6, 3)))
        for kind in ("linear", "stagewise"):
            ref = a["references"][kind]
            if ref:
                rows.append(dict(search=lab, group=f"{kind} ref", n=1, acc=_pm(ref["acc_mean"], ref["acc_std"]),
                                 mmacs=fmt(ref["macs"] / 1e6), params_m=fmt(ref["params"] / 1e6, 3)))
    L += table(rows) + ["`acc` = mean ± std over the group's models (reference rows: over repeats).", ""]

    L += ["## Best and worst configurations", ""]
    L += table([dict(search=lab, which=w, kind=a[w]["kind"], acc=fmt(a[w]["acc_mean"]), repeats=a[w]["n"],
                     mmacs=fmt(a[w]["macs"] / 1e6), widths=_widths(a[w]["widths"]))
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
            row[f"{kind}_pct"] = fmt(ref[kind]["percentile_among_samples"], 1) if ref[kind] else "-"
        row["linear_minus_stagewise"] = fmt(ref["diff_linear_minus_stagewise"])
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
        L += table([dict(search=lab, points=a["rank"]["points"], pearson=fmt(a["rank"]["pearson"], 3),
                         spearman=fmt(a["rank"]["spearman"], 3)) for lab, a in results.items()])
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
        L += [f"- **{lab}**: within {fmt(nz['within_std'])}, between {fmt(nz['between_std'])}, ratio "
              f"{fmt(nz['ratio'])}, noise_share {fmt(nz['noise_share'])}, spearman_r0_r1 "
              f"{fmt(nz['spearman_r0_r1'])} ({nz['pairs']} specs). **Verdict: {nz['verdict']}.**", ""]

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
    results = {lab: analyze_search(s) for lab, s in zip(labels, loaded)}

    write_csv([r for lab, s in zip(labels, loaded) for r in _trial_rows(lab, s["trials"])],
              out / "trials.csv", CSV_COLUMNS)
    write_csv([dict(x, search=lab, widths=_widths(x["widths"])) for lab, a in results.items() for x in a["specs"]],
              out / "specs.csv", SPEC_COLUMNS)
    figs: dict[str, Any] = {"fig2": {}}
    for lab, a in results.items():
        figs["fig2"][lab] = plot_fig2(lab, a, out / f"fig2_{_slug(lab)}.png").name
    figs["edf"] = plot_edf(results, out / "error_edf.png").name
    figs["fig4"] = plot_fig4(results, out / "fig4_top_widths.png").name
    rank_png = out / "acc_vs_nuclear_norm.png"
    if any(a["rank"]["available"] for a in results.values()):
        figs["rank"] = plot_rank(results, rank_png).name
    else:   # no stale plot from an earlier analysis in the same folder
        figs["rank"] = None
        rank_png.unlink(missing_ok=True)
    analysis = dict(searches=results, figures=figs)
    write_json(analysis, out / "analysis.json")
    write_text(out / "report.md", _report(results, figs))
    return analysis
