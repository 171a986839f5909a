"""A finished rank study as files a person reads: ``summary.csv`` / ``summary.md``, the figures and ``report.md``.

The numbers come from :mod:`rexnet.rank.results` (where the observations and
their verdicts are defined); this module only words and tabulates them.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from ..io import markdown_table, write_csv, write_text
from .plots import plot_measure
from .results import (CONFIG_NAME, MIN_EFFECT, Results, invariants, load_results, observations, pair_sign,
                      summary_rows)

__all__ = ["measure_slug", "write_summary", "write_report", "write_outputs"]


def measure_slug(name: str) -> str:
    """A file-name-safe form of a measure name (``rank@1e-1`` -> ``rank_1e-1``)."""
    return name.replace("@", "_")


# -- summary.md ------------------------------------------------------------------------------
def write_summary(res: Results, out: str | os.PathLike) -> tuple[Path, Path]:
    """``summary.csv`` (long form) and ``summary.md`` (one table per measure: act x ratio)."""
    out = Path(out)
    write_csv(summary_rows(res), out / "summary.csv")
    parts = [f"# Rank study summary\n\nMean rank ratio (measure / d_out) per block, activation and "
             f"ratio d_in/d_out; {res.cfg.networks} networks per block type, "
             f"{res.per_ratio}+ per ratio. 95% CIs are in summary.csv.\n"]
    ratios = res.ratios
    for measure in res.measures:
        table = []
        for block in res.blocks:
            mat = res.m(block, measure)
            for ai, act in enumerate(res.acts):
                table.append([block, act] + [f"{mat[res.ratio == r, ai].mean():.3f}" for r in ratios])
        parts.append(f"## {measure}\n\n" + markdown_table(["block", "act"] + [f"{r:g}" for r in ratios], table))
    write_text(out / "summary.md", "\n\n".join(parts) + "\n")
    return out / "summary.csv", out / "summary.md"


# -- report.md ------------------------------------------------------------------------------
def _fmt_ci(est: float, ci: float, digits: int = 3) -> str:
    return f"{est:+.{digits}f} ± {ci:.{digits}f}" if math.isfinite(ci) else f"{est:+.{digits}f}"


def _describe_i(o: dict[str, Any]) -> list[str]:
    lines = [f"- Mean rank ratio over the nonlinear activations at ratio {o['lo']:g} -> {o['hi']:g} "
             "(drop, 95% CI):"]
    for b, p in o["per_block"].items():
        lines.append(f"  - {b}: {p['at_min']:.3f} -> {p['at_max']:.3f} (drop {_fmt_ci(p['drop'], p['ci'])}): "
                     + {"yes": "harms rank", "no difference": "no measurable harm",
                        "negligible": f"a significant but negligible drop (< {MIN_EFFECT:g})",
                        "opposite": "rank is *higher* at the small ratio", "n/a": "too few networks"}[p["verdict"]])
    if o["ib_vs_conv"]:
        s = "; ".join(f"{p['a']} - {p['b']} {_fmt_ci(p['est'], p['ci'])} ({p['verdict']})" for p in o["ib_vs_conv"])
        lines.append(f"- More in IBs (difference of drops, paired): {s}.")
    if o["dw_vs_full"]:
        p = o["dw_vs_full"]
        lines.append(f"- More with depthwise convs (drop of ibdw - drop of ib3x3): {_fmt_ci(p['est'], p['ci'])} "
                     f"({p['verdict']}).")
    return lines


def _describe_ii(o: dict[str, Any] | None, nonlinear: Sequence[str]) -> list[str]:
    if o is None:
        return ["- Not tested: needs the identity baseline and at least one nonlinearity."]
    blocks = list(dict.fromkeys(b for b, _ in o["gains"]))
    lines = [f"- Gain over the identity on the same network (mean over all ratios; at the smallest ratio in "
             f"brackets); {o['n_yes']}/{o['n']} block x activation pairs gain significantly:"]
    for b in blocks:
        cells = ", ".join(f"{a} {o['gains'][(b, a)]['est']:+.3f} [{o['gains'][(b, a)]['at_min']:+.3f}]"
                          for a in nonlinear)
        lines.append(f"  - {b}: {cells}")
    if o["complex_vs_simple"]:
        s = "; ".join(f"{b} {_fmt_ci(c['est'], c['ci'])} ({c['verdict']})" for b, c in o["complex_vs_simple"].items())
        lines.append(f"- Complex (mean of ELU, SiLU) minus simple (mean of ReLU, ReLU6, LeakyReLU), paired: {s}.")
    return lines


def _describe_iii(o: dict[str, Any] | None) -> list[str]:
    if o is None:
        return ["- Not tested: needs at least two nonlinearities."]
    s = ", ".join(f"{b} {p['est']:.3f} ± {p['ci']:.3f}" for b, p in o["per_block"].items())
    lines = [f"- Spread of the rank ratio across the nonlinear activations (mean per network): {s}."]
    if all("gain" in p for p in o["per_block"].values()):
        lines.append("- Mean gain of a nonlinearity over the identity: "
                     + ", ".join(f"{b} {p['gain']:+.3f}" for b, p in o["per_block"].items()) + ".")
    if o["pairs"]:
        lines.append("- Spread in a single conv minus spread in an IB (paired): "
                     + "; ".join(f"{p['a']} - {p['b']} {_fmt_ci(p['est'], p['ci'])} ({p['verdict']})"
                                 for p in o["pairs"]) + ".")
    return lines


_MARK = {"holds": "+", "contradicted": "-", "inconclusive": "?", "n/a": "n/a"}  # per-nonlinearity verdicts


def _describe_iii_gain(o: dict[str, Any] | None) -> list[str]:
    """Observation (iii) as stated: the gain over the identity in a single conv minus that in an IB, paired."""
    if o is None:
        return ["- Not tested: needs the identity baseline, a nonlinearity, a single conv and an IB."]
    blocks = ", ".join(f"{b} {_fmt_ci(p['est'], p['ci'])}" for b, p in o["per_block"].items())
    c = o["counts"]
    n = sum(c.values())
    lines = [f"- Gain of the nonlinear activations (their mean) over the identity on the same network, 95% CI: "
             f"{blocks}.",
             "- Gain in the single conv minus gain in the IB, paired per network (same d_out, ratio and input; "
             "mean over all ratios, at the smallest ratio in brackets); per nonlinearity "
             f"{c['holds']}/{n} hold, {c['contradicted']}/{n} contradicted, {c['inconclusive']}/{n} inconclusive:"]
    for p in o["pairs"]:
        q = p["pooled"]
        cells = ", ".join(f"{a} {_fmt_ci(s['est'], s['ci'])} [{s['at_min']:+.3f}] {_MARK[s['verdict']]}"
                          for a, s in p["acts"].items())
        small = f"; |effect| < {MIN_EFFECT:g}" if q["small"] and q["verdict"] != "inconclusive" else ""
        lines.append(f"  - {p['a']} - {p['b']}: all nonlinearities {_fmt_ci(q['est'], q['ci'])} "
                     f"[{q['at_min']:+.3f}] ({q['verdict']}{small}); {cells}")
    lines.append("  (`+` holds: CI above 0; `-` contradicted: CI below 0; `?` inconclusive: CI holds 0.)")
    return lines


def _tol_text(res: Results) -> str:
    f32 = [m for m in res.cfg.measure_list if m.kind == "rank" and m.tol_label == "f32"]
    if not f32:
        return ""
    t = f32[0].tol(res.cfg.d_out_max, res.cfg.n)
    return (f" `rank@f32` is `torch.linalg.matrix_rank`'s float32 default, max(d_out, N) x eps = {t:.3g} "
            f"relative (N = {res.cfg.n} > d_out).")


def _invariants_md(inv: dict[str, Any], res: Results) -> list[str]:
    lines = ["## Linear-algebra checks at the float32 default tolerance", "",
             "The cap (`rank_cap` in `networks.py`): identity conv1x1 min(d_out, d_in); identity conv3x3 "
             "min(d_out, 9 d_in); nonlinear single convs d_out; IBs min(d_out, d_mid + d_in) with the "
             "partial shortcut (d_mid = expansion x d_in, so min(d_out, 7 d_in) at expansion 6), because the "
             "projection sees only d_mid channels and the shortcut adds a rank-d_in term, whatever the "
             "nonlinearity. Counts are networks out of "
             f"{res.cfg.networks} per block.", ""]
    rows = [[b, a, c["equal_cap"], c["below_cap"], c["above_cap"],
             c["max_d_in_below"] if c["max_d_in_below"] is not None else "-",
             ", ".join(f"{r:g}" for r in c["ratios_below"]) or "-"] for (b, a), c in inv["caps"].items()]
    lines.append(markdown_table(["block", "act", "= cap", "below", "above", "largest d_in below", "ratios below"],
                                rows))
    total_above = sum(c["above_cap"] for c in inv["caps"].values())
    lines += ["", f"- No network exceeds its linear-algebra cap: {'true' if total_above == 0 else 'FALSE'} "
              f"({total_above} above)."]
    below = [(b, a, c) for (b, a), c in inv["caps"].items() if c["below_cap"]]
    if below:
        lines.append("- Falling short of the cap: " + "; ".join(
            f"{b}/{a} {c['below_cap']} networks (d_in <= {c['max_d_in_below']}, ratios "
            f"{', '.join(f'{r:g}' for r in c['ratios_below'])})" for b, a, c in below) + ".")
    if any(a == "identity" and b == "conv1x1" and c["ratios_below"] == [1.0] for b, a, c in below):
        lines.append("  An identity network below its cap is a numerical, not an algebraic, loss: at ratio 1 the "
                     "weight W is a square Gaussian matrix, whose smallest singular value is now and then below "
                     "the float32 tolerance times its largest, so one direction drops under the tolerance.")
    if any(a != "identity" and b in ("conv1x1", "conv3x3") for b, a, _ in below):
        lines.append("  A smooth activation of a very low-dimensional input is numerically close to a low-degree "
                     "polynomial of it (Hard Swish is exactly quadratic on [-3, 3]), so its d_out outputs span fewer "
                     "numerically distinct directions than d_out: \"every nonlinear single conv is full rank\" "
                     "holds only above a small d_in.")
    if inv["relu_eq_relu6"]:
        n = res.cfg.networks
        lines.append(f"- ReLU vs ReLU6 (BN mode: {res.cfg.bn}; in train mode the pre-activations are standardised, "
                     "so values above 6 are rare): numerical ranks equal at every tolerance on "
                     + ", ".join(f"{b} {s['ranks_equal']}/{n}" for b, s in inv["relu_eq_relu6"].items())
                     + " networks; every measure identical on "
                     + ", ".join(f"{b} {s['all_equal']}/{n}" for b, s in inv["relu_eq_relu6"].items())
                     + "; largest relative difference of any measure "
                     + ", ".join(f"{b} {s['max_rel_diff']:.1e}" for b, s in inv["relu_eq_relu6"].items()) + ".")
    return lines


def _verdict_table(obs: dict[str, dict[str, Any]]) -> list[str]:
    rows = [[m, o["i"]["verdict"], o["ii"]["verdict"] if o["ii"] else "not tested",
             o["iii"]["verdict"] if o["iii"] else "not tested", _gain_verdict(o)] for m, o in obs.items()]
    return [markdown_table(["measure", "(i) expansion harms rank", "(ii) nonlinearities expand rank",
                            "(iii) matters more in convs (spread)",
                            "(iii) as stated: gain over identity, conv - IB"], rows)]


def _gain_verdict(o: dict[str, Any]) -> str:
    """The verdict of observation (iii) as stated (gain over the identity, conv - IB, paired)."""
    return o["iii_gain"]["verdict"] if o.get("iii_gain") else "not tested"


def _overview(res: Results) -> list[str]:
    lo, hi = res.ratios[0], res.ratios[-1]
    nl = res.a(res.nonlinear())
    header = ["measure"] + res.blocks
    rows = []
    for m in res.measures:
        cells = [m]
        for b in res.blocks:
            mat = res.m(b, m)
            v = mat[:, nl].mean(axis=1)
            txt = f"{v[res.ratio == lo].mean():.3f} / {v[res.ratio == hi].mean():.3f}"
            if "identity" in res.acts:
                txt += f" (id {mat[res.ratio == lo, res.acts.index('identity')].mean():.3f})"
            cells.append(txt)
        rows.append(cells)
    return [f"Mean rank ratio of the nonlinear activations at ratio {lo:g} / {hi:g} (identity at {lo:g} in "
            "brackets). A flat 1.000 / 1.000 means no curve at all: the paper's Fig. 1 shape needs the small-ratio "
            "value well below the large-ratio one.", "", markdown_table(header, rows)]


def _fragility(res: Results, obs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## How fragile is the ordering of nonlinearities?", "",
             "Nonlinear activations sorted by mean rank ratio over all networks; `>` where the paired 95% CI "
             f"of the difference excludes zero and the difference is at least {MIN_EFFECT:g}, `≈` otherwise.", ""]
    lines.append(markdown_table(["measure"] + res.blocks, [[m] + [o["order"][b] for b in res.blocks]
                                                      for m, o in obs.items()]))
    lines.append("")
    for b in res.blocks:
        tops = {m: _top(o["order"][b]) for m, o in obs.items()}
        counts = "; ".join(f"{t} ({', '.join(m for m, v in tops.items() if v == t)})" for t in dict.fromkeys(tops.values()))
        lines.append(f"- {b}: leading group {counts}.")
    return lines


def write_report(res: Results, out: str | os.PathLike, figures: dict[str, Path] | None = None,
                 command: str | None = None, compare: Sequence[str | os.PathLike] = ()) -> Path:
    """``report.md``: setup, invariants, each observation under each measure with numbers, and verdicts."""
    out = Path(out)
    cfg = res.cfg
    meta = json.loads((out / CONFIG_NAME).read_text())
    obs = observations(res)
    inv = invariants(res)
    lines = ["# Rank study (paper Section 3, Fig. 1), reproduced", ""]
    if command:
        lines += [f"Produced by `{command}`.", ""]
    bench = out / "benchmark.json"
    if bench.is_file():
        b = json.loads(bench.read_text())
        text = (f"Run on {b.get('machine', '?')} at {b.get('when', '?')}: the study took {b.get('study_s', '?')} s "
                f"with {b.get('workers', '?')} worker processes ({b.get('wall_s', '?')} s with figures and report), "
                f"peak memory {b.get('peak_rss_total_mib', '?')} MiB summed over all processes (`benchmark.json`).")
        sp = b.get("spectrum")
        if sp:
            text += (f" One spectrum of a {sp['d_out']} x {sp['n']} output: Gram + eigvalsh (float64) "
                     f"{sp['gram_eigvalsh_f64_ms']:.2f} ms, svdvals {sp['svdvals_f32_ms']:.2f} ms (float32) / "
                     f"{sp['svdvals_f64_ms']:.2f} ms (float64) on {sp['threads']} threads.")
        lines += [text, ""]
    lines += ["## Setup", "",
              f"- {cfg.networks} random networks per block type ({', '.join(cfg.blocks)}), "
              f"{len(cfg.acts)} activations ({', '.join(cfg.acts)}), paired: each network's weights and input "
              f"are shared by all activations, and its d_out, ratio and input by all block types.",
              f"- d_out uniform in [{cfg.d_out_min}, {cfg.d_out_max}], d_in = round(ratio x d_out), ratios "
              f"{', '.join(f'{r:g}' for r in cfg.ratios)} ({res.per_ratio}+ networks each); "
              f"N = batch {cfg.batch} x {cfg.spatial}x{cfg.spatial} = {cfg.n} samples per channel.",
              f"- Input {meta['definitions']['input']}; BN in {cfg.bn} mode; IB expansion {cfg.expansion:g}, "
              f"shortcut {cfg.shortcut} ({meta['definitions']['shortcut']}); output "
              f"{'centred' if cfg.center else 'not centred'} before the spectrum; seed {cfg.seed}.",
              f"- Measures (rank_ratio = measure / d_out): {', '.join(res.measures)}." + _tol_text(res)
              + " `effective` = exp(entropy of sigma / sum sigma), `stable` = ||A||_F^2 / ||A||_2^2, "
                "`nuclear` = sum sigma / sigma_max.",
              "- Files: `rank_study.csv[.gz]` (one row per network x activation x measure), `summary.csv` / "
              "`summary.md` (means and 95% CIs per ratio), `study.json` (every choice), one figure per measure.",
              ""]
    lines += ["## Verdicts", "", "Each observation as defined at the top of `src/rexnet/rank/results.py`; "
              "\"partly\" means some of its parts hold (details per measure below). Observation (iii) twice: "
              "by the spread between nonlinearities, and as the paper states it (nonlinearities raise rank more in "
              "single convs than in IBs): each nonlinearity's gain over the identity, single conv minus IB, paired "
              "per network; per conv x IB pair the 95% CI of the mean over the nonlinearities gives \"holds\" "
              "(above 0), \"contradicted\" (below 0) or \"inconclusive\" (holds 0), and the column shows the "
              "pairs' common verdict, \"mixed\" when some hold and others are contradicted, \"partly holds\" / "
              "\"partly contradicted\" beside inconclusive ones.", ""]
    lines += _verdict_table(obs) + [""]
    lines += ["## Where the curves are", ""] + _overview(res) + [""]
    lines += _what_it_shows(res, obs, inv)
    if inv is not None:
        lines += _invariants_md(inv, res) + [""]
    lines += _fragility(res, obs) + [""]
    for other in compare:
        lines += _compare_md(res, obs, Path(other)) + [""]
    lines += ["## Each observation under each measure", ""]
    for m, o in obs.items():
        lines += [f"### {m}", ""]
        if figures and m in figures:
            lines += [f"![{m}]({figures[m].name})", ""]
        lines += ["**(i) Drastic expansion harms rank, more in IBs and with depthwise convs** -- "
                  f"{o['i']['verdict']}"] + _describe_i(o["i"]) + [""]
        lines += ["**(ii) Nonlinearities expand rank, complex ones more** -- "
                  f"{o['ii']['verdict'] if o['ii'] else 'not tested'}"] + _describe_ii(o["ii"], res.nonlinear()) + [""]
        lines += ["**(iii) The nonlinearity matters more after 1x1/3x3 convs than inside IBs** -- "
                  f"{o['iii']['verdict'] if o['iii'] else 'not tested'}"] + _describe_iii(o["iii"]) + [""]
        lines += ["**(iii) as stated: nonlinearities raise rank more in 1x1/3x3 convs than in IBs (gain over the "
                  f"identity, conv - IB, paired)** -- {_gain_verdict(o)}"]
        lines += _describe_iii_gain(o.get("iii_gain")) + [""]
    return write_text(out / "report.md", "\n".join(lines) + "\n")


def _what_it_shows(res: Results, obs: dict[str, dict[str, Any]], inv: dict[str, Any] | None) -> list[str]:
    """The headline, written from the numbers: where the paper's picture appears and where it does not."""
    lines = ["## What it shows", ""]
    lo = res.ratios[0]
    nl = res.a(res.nonlinear())
    singles = [b for b in ("conv1x1", "conv3x3") if b in res.blocks]
    for m in res.measures:
        o = obs[m]
        flat = [b for b in singles
                if res.m(b, m)[res.ratio == lo][:, nl].mean() > 0.999]
        bits = [f"**{m}**: (i) {o['i']['verdict']}, (ii) {o['ii']['verdict'] if o['ii'] else 'n/a'}, "
                f"(iii) {o['iii']['verdict'] if o['iii'] else 'n/a'} by the spread, "
                f"{_gain_verdict(o)} as stated."]
        if flat:
            bits.append(f"Nonlinear {' and '.join(flat)} are (almost) full rank even at ratio {lo:g} "
                        f"(mean rank ratio > 0.999), so there is no expansion curve for single convs.")
        lines.append("- " + " ".join(bits))
    if singles:
        curved = []
        for m in res.measures:
            drops = {b: obs[m]["i"]["per_block"][b]["drop"] for b in singles}
            if all(d >= 0.1 for d in drops.values()):
                curved.append(f"{m} (" + ", ".join(f"{b} {d:.2f}" for b, d in drops.items()) + ")")
        lines.append(f"- Single convs whose mean rank ratio (nonlinear activations) falls by at least 0.1 from ratio "
                     f"{res.ratios[-1]:g} to {lo:g}, the shape of the paper's Fig. 1: "
                     + ("; ".join(curved) if curved else "under no measure") + ".")
    if "rank@f32" in res.measures and inv is not None:
        ib = [b for b in ("ib3x3", "ibdw") if b in res.blocks]
        if ib:
            eq = sum(inv["caps"][(b, a)]["equal_cap"] for b in ib for a in res.acts)
            tot = sum(inv["caps"][(b, a)]["networks"] for b in ib for a in res.acts)
            text = (f"- At the float32 default tolerance the IB rank equals its linear-algebra cap "
                    f"min(d_out, d_mid + d_in) on {eq}/{tot} network x activation pairs")
            if eq == tot:
                text += (": the rank loss of IBs at small ratios is the cap set by the block's structure, the same "
                         "for every nonlinearity (the identity included), not a property of the activation")
            lines.append(text + ".")
    lines += _ordering_summary(res, obs) + [""]
    return lines


def _top(order: str) -> str:
    """The leading group of an ordering string ("a ≈ b > c" -> "a ≈ b"); "all tied" when nothing separates."""
    if ">" not in order:
        return "all tied"
    return order.split(" > ")[0]


def _ordering_summary(res: Results, obs: dict[str, dict[str, Any]]) -> list[str]:
    """How much the ranking of nonlinearities depends on the measure, counted."""
    lines = []
    for a, b in (("silu", "relu"), ("elu", "relu")):
        if a in res.acts and b in res.acts:
            signs = [pair_sign(res, m, blk, a, b) for m in res.measures for blk in res.blocks]
            lines.append(f"- {a} vs {b} over the {len(signs)} measure x block cells: higher in {signs.count('+')}, "
                         f"lower in {signs.count('-')}, indistinguishable in {signs.count('=')}.")
    varying = []
    for blk in res.blocks:
        tops = {m: _top(o["order"][blk]) for m, o in obs.items() if ">" in o["order"][blk]}
        groups: dict[frozenset, list[str]] = {}  # a reordered tie is the same leading group
        for m, t in tops.items():
            groups.setdefault(frozenset(t.split(" ≈ ")), []).append(m)
        if len(groups) > 1:
            varying.append(f"{blk} (" + "; ".join(f"{tops[ms[0]]}: {', '.join(ms)}" for ms in groups.values()) + ")")
    if varying:
        lines.append(f"- The top nonlinearity depends on the measure in {len(varying)} of {len(res.blocks)} blocks: "
                     + "; ".join(varying) + ".")
    else:
        lines.append("- The top nonlinearity is the same under every measure that separates them.")
    return lines


def _compare_md(res: Results, obs: dict[str, dict[str, Any]], other_dir: Path) -> list[str]:
    """The same observations on another finished study (e.g. centred features), side by side."""
    other = load_results(other_dir)
    o_obs = observations(other)
    a, b = res.cfg.identity(), other.cfg.identity()
    diff = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a) if a.get(k) != b.get(k)) or "none"
    lines = [f"## Against `{other_dir.name}/`: the same study with {diff}", "",
             f"{other.cfg.networks} networks per block type there (figures and report in `{other_dir.name}/`).", ""]
    rows = []
    changed = total = 0
    for m in res.measures:
        if m not in other.measures:
            continue
        v = lambda o: " / ".join([(o[k]["verdict"] if o[k] else "n/a") for k in ("i", "ii", "iii")]  # noqa: E731
                                 + [_gain_verdict(o)])
        tops = []
        for blk in res.blocks:
            if blk not in other.blocks:
                continue
            t1, t2 = _top(obs[m]["order"][blk]), _top(o_obs[m]["order"][blk])
            same = set(t1.split(" ≈ ")) == set(t2.split(" ≈ "))  # a reordered tie is the same group
            total += 1
            changed += not same
            tops.append(f"{blk} {t1}" + ("" if same else f" -> **{t2}**"))
        rows.append([m, v(obs[m]), v(o_obs[m]), "; ".join(tops)])
    lines.append(markdown_table(["measure", "verdicts here (i / ii / iii spread / iii as stated)", "verdicts there",
                                 "top nonlinearity here -> there, per block"], rows))
    flips = []
    for m in res.measures:
        for blk in res.blocks:
            if m in other.measures and blk in other.blocks and {"silu", "relu"} <= set(res.acts) & set(other.acts):
                s1, s2 = pair_sign(res, m, blk, "silu", "relu"), pair_sign(other, m, blk, "silu", "relu")
                if {s1, s2} == {"+", "-"}:
                    flips.append(f"{m}/{blk}")
    lines += ["", f"- The top nonlinearity changes in {changed} of {total} measure x block cells.",
              f"- SiLU vs ReLU reverses (significant both ways) in {len(flips)} cells"
              + (f": {', '.join(flips)}." if flips else ".")]
    return lines


def write_outputs(out: str | os.PathLike, command: str | None = None,
                  compare: Sequence[str | os.PathLike] = ()) -> dict[str, Path]:
    """Summary tables, one figure per measure and ``report.md`` for a finished study in ``out``.

    ``compare``: other finished study directories (e.g. the same study with
    ``--center``) whose verdicts and orderings the report sets side by side.
    """
    res = load_results(out)
    out = Path(out)
    paths: dict[str, Path] = {}
    paths["summary_csv"], paths["summary_md"] = write_summary(res, out)
    figures = {m: plot_measure(res, m, out / f"fig1_{measure_slug(m)}.png") for m in res.measures}
    paths.update({f"fig:{m}": p for m, p in figures.items()})
    paths["report"] = write_report(res, out, figures, command=command, compare=compare)
    return paths
