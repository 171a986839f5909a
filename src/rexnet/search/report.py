"""The report of a search analysis: ``analyze(dirs, out)`` loads one or more searches
(``DIR/search.db`` through :class:`Store`), computes their numbers
(:mod:`rexnet.search.analysis`) and figures (:mod:`rexnet.search.plots`), and writes
``report.md`` (the paper's Fig. 2, Table 3 and Fig. 4, error EDFs, accuracy against the
final features' rank (raw and width-normalised, with partial correlations), the groups'
shape statistics and the sampled shape families, the linear vs stage-wise A/B with a 95%
interval, and how much of the ranking is repeat noise, one-way and spec x seed),
``analysis.json`` (every number), ``trials.csv`` (one row per trial,
failed and unfinished ones included) and ``specs.csv`` (one row per spec)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from ..io import write_csv, write_json, write_text
from ..tables import format_table
from .plots import plot_edf, plot_fig2, plot_fig4, plot_rank, plot_shapes
from ..trials import STORE_NAME
from .run import SearchSettings
from .analysis import GROUP_RULE, GROUPS, SHAPE_DESCRIPTIONS, SHAPE_STATS, analyze_search, fmt, trial_family
from ..trials import Store

__all__ = ["analyze"]

RESULT_KEYS = ("test_top1", "best_val_top1", "final_val_top1", "epochs_done", "wall_s", "nuclear_norm",
               "nuclear_norm_raw", "effective_rank")
CSV_COLUMNS = ("search", "key", "kind", "family", "spec_hash", "repeat", "seed", "macs", "params", *RESULT_KEYS,
               "widths", "status", "error")
SPEC_COLUMNS = ("search", "spec_hash", "kind", "family", "n", "acc_mean", "acc_std", "macs", "params",
                "nuclear_norm", "nuclear_norm_raw", *SHAPE_STATS, "widths")


# -- loading and rows ----------------------------------------------------------------------
def _load(d: str | os.PathLike) -> dict[str, Any]:
    path = Path(d)
    db = path if path.is_file() else path / STORE_NAME
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
        rows.append(dict(search=label, key=t["key"], kind=t["kind"], family=trial_family(t), spec_hash=t["spec_hash"],
                         repeat=t["repeat"], seed=t["seed"], macs=t["macs"], params=t["params"],
                         widths=_widths(t["widths"]), status=t["status"], error=(t.get("error") or "").strip(),
                         **{k: res.get(k) for k in RESULT_KEYS}))
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


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    return ["```text", format_table(rows), "```", ""]


def _shape_section(results: dict[str, dict[str, Any]], figs: dict[str, Any]) -> list[str]:
    lines = ["## Shape statistics of the groups", "",
         "Per sampled model, on the widths normalised to u = (w - w_first) / (w_last - w_first) against "
         "x = i / (depth - 1):", ""]
    lines += [f"- `{k}`: {SHAPE_DESCRIPTIONS[k]}" for k in SHAPE_STATS]
    lines += ["- `params`: the model's parameters (a budget confound, not a shape)", "",
          "Each cell: the group's mean, and in brackets the two-sided permutation p-value of that mean against "
          "the whole sample (random subsets of the group's size without replacement; permutations and seed in "
          "analysis.json). Small p: the group differs from a random draw of the search in that statistic.", ""]
    rows = []
    for lab, a in results.items():
        sh = a["shapes"]
        if not sh["available"]:
            continue
        rows.append(dict(search=lab, group="all", n=a["n_samples"],
                         **{c: fmt(sh["sample"][c], 0 if c == "params" else 3) for c in sh["stats"]}))
        for g in GROUPS:
            rows.append(dict(search=lab, group=g, n=sh[g]["n"],
                             **{c: f"{fmt(sh[g]['mean'][c], 0 if c == 'params' else 3)} (p={fmt(sh[g]['p'][c], 3)})"
                                for c in sh["stats"]}))
    lines += _table(rows) if rows else ["No sampled model is done.", ""]
    for lab in results:
        if figs["shapes"].get(lab):
            lines += [f"![{lab} shapes]({figs['shapes'][lab]})", ""]
    return lines


def _family_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Shape families: how often sampled, how often in each group", "",
         "The family the sampler drew each model from (`unknown`: the store predates families); `top`, `middle`, "
         "`bottom`: how many of the group's models come from the family; then the family's mean accuracy and "
         "shape statistics, which show how well the statistics separate the families.", ""]
    rows = [dict(search=lab, family=r["family"], sampled=r["sampled"], share=fmt(r["share"], 3),
                 **{g: r[g] for g in GROUPS}, acc=fmt(r["acc_mean"]),
                 **{c: fmt(r["shape"][c], 3) for c in SHAPE_STATS})
            for lab, a in results.items() for r in a["families"]["rows"]]
    lines += _table(rows) if rows else ["No sampled model is done.", ""]
    unknown = [lab for lab, a in results.items() if a["n_samples"] and not a["families"]["known"]]
    if unknown:
        lines += [f"No family recorded in {', '.join(unknown)} (a store written before the sampler recorded "
              f"spec.meta.family).", ""]
    return lines


def _confound(g: dict[str, Any]) -> str:
    """The A/B's budget confounds, as the end of its sentence."""
    why = (["more than 3% in params"] if g["confounded_by_params"] else []) + \
          (["more than 1% in MACs"] if g.get("confounded_by_macs") else [])
    return f" (and confounded: the references differ by {' and '.join(why)})." if why else "."


def _ab_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Linear vs stage-wise reference (the paper's thesis as an A/B)", "",
         "Both references are solved to the same budget; params are shown beside MACs because a params gap "
         "confounds the comparison (`params_ratio` = linear / stage-wise; flagged when it is off 1 by more "
         "than 3%, or the MACs by more than 1%). The percentile is among the sampled models (ties count half). "
         "`gap` = linear minus stage-wise with its 95% interval: paired by seed (mean of per-seed differences "
         "± t) when both have the same seeds, else Welch, else the pooled one-way repeat SD. Verdict on the "
         "paper's claim "
         "(linear is better): holds (interval above 0), contradicted (below 0), inconclusive (contains 0).", ""]
    rows = []
    for lab, a in results.items():
        ref = a["references"]
        row = dict(search=lab)
        for kind, short in (("linear", "lin"), ("stagewise", "stg")):
            r = ref[kind]
            row[f"{short}_acc"] = _pm(r["acc_mean"], r["acc_std"]) if r else "not done"
            row[f"{short}_mmacs"] = fmt(r["macs"] / 1e6) if r else "-"
            row[f"{short}_params_m"] = fmt(r["params"] / 1e6, 3) if r else "-"
            row[f"{short}_pct"] = fmt(r["percentile_among_samples"], 1) if r else "-"
        g = ref.get("gap")
        row.update(params_ratio=fmt(ref.get("params_ratio"), 3), gap=fmt(ref["diff_linear_minus_stagewise"]),
                   ci95=_ci(g["ci95"]) if g else "-", verdict=g["verdict"] if g else "-")
        rows.append(row)
    lines += _table(rows)
    for lab, a in results.items():
        g = a["references"].get("gap")
        if not g:
            continue
        how = (f"{g['method']}, se {fmt(g['se'])} on {fmt(g['df'], 1)} df" if g["method"]
               else "no interval: neither repeats of the references nor a repeat-noise estimate")
        model = (f"; the two-way noise model's se of this gap is {fmt(g['se_two_way_model'])}"
                 if g.get("se_two_way_model") is not None else "")
        lines += [f"- **{lab}**: gap {fmt(g['mean'])} points, 95% interval {_ci(g['ci95'])} ({how}{model}). "
              f"**Verdict: {g['verdict']}**" + _confound(g)]
    return lines + [""]


def _rank_section(results: dict[str, dict[str, Any]], figs: dict[str, Any]) -> list[str]:
    lines = ["## Accuracy vs nuclear norm of the final features", ""]
    if figs.get("rank"):
        lines += ["Nuclear norm of the last block's output, mean over repeats, in two forms: `raw` = sum of singular "
              "values / largest, `normalised` = raw / width. Pearson and Spearman with accuracy over the specs of "
              "each search; `partial` = the correlation after removing from both the least-squares linear fit on "
              "the final width and params (`partial_rho` the same on ranks); `rho_width` = Spearman of the "
              "measure with the final width. A measure whose plain correlation vanishes under `partial` and "
              "whose `rho_width` is near +-1 is a width artefact.", "",
              f"![accuracy vs nuclear norm]({figs['rank']})", ""]
        cols = (("pearson", "pearson"), ("spearman", "spearman"), ("partial", "partial_pearson"),
                ("partial_rho", "partial_spearman"), ("rho_width", "spearman_vs_width"),
                ("rho_params", "spearman_vs_params"))
        rows = [dict(search=lab, measure=name, points=a["rank"][name]["points"],
                     **{k: fmt(a["rank"][name].get(v), 3) for k, v in cols},
                     note="" if a["rank"][name]["available"] else "not recorded")
                for lab, a in results.items() for name in ("normalised", "raw")]
        lines += _table(rows)
        no_raw = [lab for lab, a in results.items() if a["rank"]["available"] and not a["rank"]["raw"]["available"]]
        if no_raw:
            lines += [f"The raw nuclear norm was not recorded in {', '.join(no_raw)} (a store written before trials "
                  f"recorded nuclear_norm_raw); only the width-normalised one is reported there.", ""]
    missing = [lab for lab, a in results.items() if not a["rank"]["available"]]
    if missing:
        lines += [f"Rank measures were not recorded for {', '.join(missing)} (search run with rank_images = 0)"
              + ("; plot skipped." if not figs.get("rank") else "."), ""]
    return lines


def _noise_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Noise: repeats vs trials", "",
         "Repeat r trains every spec with the same seed, so seed is a crossed factor. One-way: `within` = pooled "
         "(RMS: sqrt of the df-weighted mean variance) SD across repeats of a spec, seed ignored; `between` = SD "
         "of the spec means; `noise_share` = within-variance / repeats / between-variance. Two-way: the additive "
         "model accuracy = spec + seed + residual on the largest complete spec x seed block; `resid` = residual "
         "SD, `seed_sd` = SD of the seed effect (variance component), `noise_share` = residual variance / seeds "
         "/ variance of the spec means (seed effects cancel when specs share seeds). `spearman_r0_r1` = rank "
         "agreement of repeat 0 and repeat 1 across specs. The verdict uses the two-way share when it exists: "
         ">= 0.5 mostly noise, >= 0.2 partly noise, else mostly signal.", ""]
    rows = []
    for lab, a in results.items():
        nz = a["noise"]
        if not nz["available"]:
            continue
        two = nz["two_way"]
        rows.append(dict(search=lab, specs=nz["specs"], one_way_within=fmt(nz["within_std"]),
                         between=fmt(nz["between_std"]), one_way_share=fmt(nz["noise_share"]),
                         two_way_specs=f"{two['specs']} x {len(two['seeds'])}" if two["available"] else "-",
                         dropped=two["dropped_specs"] if two["available"] else "-",
                         resid=fmt(two.get("residual_sd")), seed_sd=fmt(two.get("seed_sd")),
                         two_way_share=fmt(two.get("noise_share")), spearman_r0_r1=fmt(nz["spearman_r0_r1"])))
    if rows:
        lines += _table(rows)
    for lab, a in results.items():
        nz = a["noise"]
        if not nz["available"]:
            lines += [f"- **{lab}**: not measured: {nz['reason']}.", ""]
            continue
        two = nz["two_way"]
        extra = (f" The two-way model uses {two['specs']} specs with every one of seeds {two['seeds']}"
                 + (f" ({two['dropped_specs']} spec(s) with missing repeats left out)" if two["dropped_specs"] else "")
                 + f"; seed effects {two['seed_effects']}." if two["available"] else f" Two-way: {two['reason']}.")
        lines += [f"- **{lab}**: {nz['pairs']} specs with repeats 0 and 1.{extra} **Verdict: {nz['verdict']}.**", ""]
    return lines


# -- the report ----------------------------------------------------------------------------
def _report(results: dict[str, dict[str, Any]], figs: dict[str, Any]) -> str:
    lines = _intro_section(results) + _groups_section(results, figs)
    lines += _shape_section(results, figs)
    lines += _family_section(results)
    lines += _table3_section(results)
    lines += ["## Best and worst configurations", ""]
    lines += _table([dict(search=lab, which=w, kind=a[w]["kind"], family=a[w]["family"], acc=fmt(a[w]["acc_mean"]),
                          repeats=a[w]["n"], mmacs=fmt(a[w]["macs"] / 1e6), widths=_widths(a[w]["widths"]))
                     for lab, a in results.items() for w in ("best", "worst")])
    lines += _ab_section(results)
    lines += ["## Error EDFs", "", "pycls style: error = 100 - mean top-1 of each sampled model, sorted; "
              "y = fraction of models with at most that error.", "", f"![error EDF]({figs['edf']})", ""]
    lines += _rank_section(results, figs)
    lines += ["## Fig. 4: top-group widths across searches", "",
              "Mean widths of each search's top group against block index / (depth - 1).", "",
              f"![top-group widths]({figs['fig4']})", ""]
    lines += _noise_section(results)
    lines += _failed_section(results)
    return "\n".join(lines) + "\n"


def _intro_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines: list[str] = ["# Channel-configuration search analysis", ""]
    lines += ["Files: [trials.csv](trials.csv) (one row per trial), [specs.csv](specs.csv) (one row per spec), "
              "[analysis.json](analysis.json) (every number below).", "",
              "A spec's accuracy is the mean over its done repeats of the primary accuracy: `test_top1` (the full "
              "10,000-image test set at the end of the trial) when every done trial of the search recorded it, "
              "else `best_val_top1` (older stores). Failed and unfinished trials are excluded from every "
              "statistic.", ""]
    lines += [f"- **{lab}**: primary accuracy `{a['accuracy']['key']}`: {a['accuracy']['description']}."
              for lab, a in results.items()]
    lines += ["", "## Searches", ""]
    lines += _table([dict(search=lab, dir=a["dir"], data=a["preset"].get("data"), epochs=a["preset"].get("epochs"),
                          repeats=a["preset"].get("repeats"), done=a["counts"]["done"],
                          failed=a["counts"]["failed"], unfinished=a["counts"]["pending"] + a["counts"]["running"],
                          specs=a["n_specs"], samples=a["n_samples"]) for lab, a in results.items()])
    if any(a["counts"]["pending"] + a["counts"]["running"] for a in results.values()):
        lines += ["Some searches are unfinished: the numbers cover the trials done so far.", ""]
    return lines


def _groups_section(results: dict[str, dict[str, Any]], figs: dict[str, Any]) -> list[str]:
    """The group rule, Fig. 2 and the groups' linear fits."""
    lines = ["## Groups: top, middle and bottom 10% of the sampled models", "", f"Rule: {GROUP_RULE}.", ""]
    for lab, a in results.items():
        if not a["n_samples"]:
            lines += [f"- **{lab}**: no sampled model is done yet; only the references can be reported.", ""]
        if a["groups_overlap"]:
            lines += [f"- **{lab}**: only {a['n_samples']} sampled model(s) for groups of {a['group_size']}, so "
                      f"the groups overlap (the same model can be in two groups); read them as anecdotes.", ""]
    lines += ["## Fig. 2: width per block of the top, middle and bottom models", "",
              "Mean width per group (line; the paper's colours: top red, middle blue, bottom green), ±1 std across "
              "the group's models (error bars), min-max (band), the linear (ReXNet) and stage-wise (MobileNetV2) "
              "references dashed.", ""]
    for lab in results:
        lines += [f"![{lab}]({figs['fig2'][lab]})", ""]
    lines += ["## Linear fit of the widths", "",
              "Least squares of each group's mean widths against the 0-based block index i "
              "(intercept = fitted width of block 0). The paper's finding: the best models grow linearly "
              "(top R² close to 1). `model R²` is the mean of the per-model fits, which a mean of "
              "staircases cannot fake.", ""]
    lines += _table([dict(search=lab, group=g, n=a["groups"][g]["n"], slope=fmt(a["groups"][g]["fit"]["slope"], 3),
                          intercept=fmt(a["groups"][g]["fit"]["intercept"], 2),
                          r2=fmt(a["groups"][g]["fit"]["r2"], 4), model_r2=fmt(a["groups"][g]["mean_model_r2"], 4))
                     for lab, a in results.items() for g in GROUPS if a["groups"][g]["n"]])
    return lines


def _table3_section(results: dict[str, dict[str, Any]]) -> list[str]:
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
    return (["## Table 3: accuracy and complexity per group", ""] + _table(rows)
            + ["`acc` = mean ± std over the group's models (reference rows: over repeats).", ""])


def _failed_section(results: dict[str, dict[str, Any]]) -> list[str]:
    failed = [dict(search=lab, **f, error_line=(f["error"].splitlines() or [""])[-1][:120])
              for lab, a in results.items() for f in a["failed"]]
    if not failed:
        return ["## Failed trials", "", "None."]
    return (["## Failed trials", ""]
            + _table([{k: f[k] for k in ("search", "key", "kind", "repeat", "error_line")} for f in failed])
            + ["Excluded from every statistic. `rexnet search run` on the same directory retries each failed "
               f"trial that has had fewer than `--max-attempts` attempts (default {SearchSettings.max_attempts}); "
               "`--no-retry` leaves them failed."])


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
    figs: dict[str, Any] = {"fig2": {}, "shapes": {}}
    for lab, a in results.items():
        figs["fig2"][lab] = plot_fig2(lab, a, out / f"fig2_{_slug(lab)}.png").name
        shapes_png = out / f"shapes_{_slug(lab)}.png"
        if a["n_samples"]:
            figs["shapes"][lab] = plot_shapes(lab, a, shapes_png).name
        else:
            shapes_png.unlink(missing_ok=True)
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
