"""An experiment's files: result.json, runs.csv, report.md and figures/ (paired lines per
seed, differences with their 95% intervals)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import markdown_table, pyplot, save_figure, write_csv, write_json, write_text

__all__ = ["primary_metric", "write_outputs"]


def primary_metric(s) -> str:
    """What the experiment compares, in words, for these settings."""
    n = f"the first {s.test_images:,} class-balanced" if s.test_images else "all 10,000"
    held = getattr(s, "holdout", None)
    chosen = (f"validation top-1 on {s.val_subset or 'all'} of {held:,} training images held out (the test "
              f"split is read once, for this score)" if held else
              f"validation top-1 on {s.val_subset or 'all'} test images")
    return f"final top-1 (%) on {n} CIFAR-10 test images (BN folded), of the weights of the best epoch by {chosen}"


def _ci(ci) -> str:
    return "-" if not ci else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _f(x, nd: int = 2) -> str:
    return "-" if x is None else f"{x:+.{nd}f}" if nd < 0 else f"{x:.{nd}f}"


def write_outputs(name: str, out: Path, result: dict[str, Any], s, pilot: bool = False) -> None:
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    write_csv(result["runs"], out / "runs.csv")
    made = _figures(name, result, figs)
    record = {k: v for k, v in result.items() if k != "runs"}
    if pilot:
        write_json(record, out / "pilot.json")
    else:
        write_json(record, out / "result.json")
    write_text(out / "report.md", _report(name, result, made, pilot))


# -- figures --------------------------------------------------------------------------------
def _paired_figure(comp: dict[str, Any], arms: dict[str, Any], path: Path, title: str) -> Path | None:
    a, b = arms[comp["a"]]["accuracies"], arms[comp["b"]]["accuracies"]
    seeds = comp["seeds"]
    if not seeds:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), gridspec_kw=dict(width_ratios=[1.3, 1]))
    for sd in seeds:
        ax1.plot([0, 1], [b[sd], a[sd]], "o-", color="tab:gray", alpha=0.7)
        ax1.annotate(str(sd), (1.02, a[sd]), fontsize=7, va="center")
    ax1.set_xticks([0, 1], [comp["b"], comp["a"]], fontsize=8)
    ax1.set_xlim(-0.3, 1.3)
    ax1.set_ylabel("test top-1 (%)")
    ax1.set_title("per seed (paired)", fontsize=9)
    ax2.axhline(0, color="black", lw=0.8)
    ax2.plot([0] * len(comp["diffs"]), comp["diffs"], "o", color="tab:blue", alpha=0.6, label="seeds")
    if comp["ci95"]:
        m, (lo, hi) = comp["diff_mean"], comp["ci95"]
        ax2.errorbar([0.3], [m], yerr=[[m - lo], [hi - m]], fmt="s", color="tab:red", capsize=5,
                     label="mean, 95% CI")
    ax2.set_xlim(-0.5, 0.8)
    ax2.set_xticks([])
    ax2.set_ylabel(f"{comp['a']} - {comp['b']} (points)", fontsize=8)
    ax2.set_title(f"difference: {comp['verdict']}", fontsize=9)
    ax2.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _forest(comps: list[dict[str, Any]], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(comps) + 1.2))
    for i, c in enumerate(comps):
        y = len(comps) - 1 - i
        if c["ci95"]:
            ax.plot(c["ci95"], [y, y], color="tab:red" if c["main"] else "tab:blue", lw=2)
        if c["diff_mean"] is not None:
            ax.plot([c["diff_mean"]], [y], "o", color="black")
        ax.plot(c["diffs"], [y] * len(c["diffs"]), "|", color="tab:gray", ms=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(comps)), [c["name"] for c in reversed(comps)], fontsize=7)
    ax.set_xlabel("paired difference in test top-1 (points), mean and 95% CI; ticks: seeds")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _search_figure(result: dict[str, Any], path: Path) -> Path | None:
    specs = [x for x in result["specs"] if x["kind"] == "sample"]
    if not specs:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    fams = sorted({x["family"] for x in specs})
    for f in fams:
        mem = [x for x in specs if x["family"] == f]
        ax1.plot([x["r2"] for x in mem], [x["acc_mean"] for x in mem], "o", alpha=0.7, label=f)
    for x in result["specs"]:
        if x["kind"] != "sample":
            ax1.plot([x["r2"]], [x["acc_mean"]], "*", ms=14, label=f"{x['kind']} reference")
    ax1.set_xlabel("R² of widths vs block index (1 = linear)")
    ax1.set_ylabel("test top-1 (%), mean over seeds")
    ax1.legend(fontsize=7)
    rows = result["family_test"]["families"]
    xs = range(len(rows))
    ax2.bar([x - 0.2 for x in xs], [r["share_sample"] for r in rows], 0.4, label="whole sample")
    ax2.bar([x + 0.2 for x in xs], [r["share_top"] or 0 for r in rows], 0.4, label="top 10%")
    ax2.set_xticks(list(xs), [f"{r['family']}\np={r['p']}" for r in rows], fontsize=7)
    ax2.set_ylabel("share")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _widths_figure(result: dict[str, Any], path: Path) -> Path | None:
    """Every arm's block widths against the block index (the arms' colours where stated)."""
    arms, colours = result["arms"], result.get("colours") or {}
    if len({len(a["widths"]) for a in arms.values()}) != 1:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, a in arms.items():
        ax.plot(range(1, len(a["widths"]) + 1), a["widths"], "o-", ms=3, color=colours.get(k),
                label=f"{k} ({a['macs'] / 1e6:.2f} M MACs, {a['params'] / 1e6:.3f} M params)")
    ax.set_xlabel("block index")
    ax.set_ylabel("output channels")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _accuracy_figure(result: dict[str, Any], path: Path) -> Path | None:
    """Each arm's mean test top-1 with its 95% t-interval over seeds (seeds as dots)."""
    from ..stats import mean_ci

    arms, colours = result["arms"], result.get("colours") or {}
    if not any(a["accuracies"] for a in arms.values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (k, a) in enumerate(arms.items()):
        accs = list(a["accuracies"].values())
        if not accs:
            continue
        m, half, _ = mean_ci(accs)
        ax.plot([i] * len(accs), accs, ".", color=colours.get(k, "tab:gray"), alpha=0.5)
        ax.errorbar([i + 0.15], [m], yerr=None if half != half else [[half], [half]], fmt="s", capsize=4,
                    color=colours.get(k, "black"))
    ax.set_xticks(range(len(arms)), list(arms), fontsize=7, rotation=20)
    ax.set_ylabel("test top-1 (%): seeds, mean and 95% CI")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _figures(name: str, result: dict[str, Any], figs: Path) -> list[Path]:
    made = []
    if name == "search_cpu":
        made.append(_search_figure(result, figs / "search.png"))
        made.append(_paired_figure(dict(result["references"]["gap"], a="linear", b="stagewise"), result["arms"],
                                   figs / "references.png", "search references: linear vs stage-wise"))
    else:
        comps = result.get("comparisons") or [result["main"]]
        for c in comps:
            slug = f"{c['a']}_vs_{c['b']}".replace(".", "")
            made.append(_paired_figure(c, result["arms"], figs / f"paired_{slug}.png", c["name"]))
        if len(comps) > 1:
            made.append(_forest(comps, figs / "differences.png"))
        if result.get("protocol"):
            made += [_widths_figure(result, figs / "widths.png"), _accuracy_figure(result, figs / "accuracy.png")]
    return [p for p in made if p is not None]


# -- report.md ------------------------------------------------------------------------------
def _comp_rows(comps: list[dict[str, Any]]) -> list[list[Any]]:
    return [[c["name"] + (" **(main)**" if c.get("main") else ""), c["n"], _f(c["diff_mean"]), _f(c.get("diff_sd")),
             _ci(c["ci95"]), c["verdict"], c.get("macs_ratio", "-"), c.get("params_ratio", "-")] for c in comps]


def _p(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _registered_section(r: dict[str, Any]) -> list[str]:
    """The protocol's comparisons with the referee's statistics, and what is exploratory."""
    pr = r["protocol"]
    reg = pr.get("registered") or {}
    head = ["comparison", "seeds", "mean", "95% CI", "sign-flip p", "Holm p", f"TOST p (±{pr['equivalence_margin']})",
            "r(a, b)", "verdict", "MACs a/b", "params a/b"]
    rows = lambda cs: [[c["name"] + (" **(main)**" if c.get("main") else ""), c["n"], _f(c["diff_mean"]),  # noqa: E731
                        _ci(c["ci95"]), _p(c["permutation_p"]), _p(c.get("holm_p")), _p(c["tost"]["p"]),
                        _f(c["pair_correlation"]), c.get("verdict", "exploratory"), c["macs_ratio"],
                        c["params_ratio"]] for c in cs]
    lines = ["## Stated comparisons (protocol.yaml)", "",
             f"Registered {reg.get('at', '?')}" + ("" if reg.get("before_any_result", True) else
                                                   " **after results existed**: read every verdict as exploratory")
             + f"; alpha {pr['alpha']}, smallest effect of interest {pr['smallest_effect']} points, equivalence "
             f"margin {pr['equivalence_margin']} points. Holds / contradicted: the Holm-adjusted sign-flip p is "
             f"below alpha and the 95% interval excludes 0 on that side; equivalent: TOST rejects at the margin; "
             f"otherwise inconclusive. r(a, b): the arms' correlation over seeds (what pairing removes).", "",
             markdown_table(head, rows(r["comparisons"])), ""]
    sec = r.get("secondary_analysis")
    if sec:
        lines += [f"## {sec['title']}", "", sec["text"] + ".", "", markdown_table(sec["headers"], sec["rows"]), ""]
    if r.get("exploratory"):
        lines += ["## Exploratory (not stated in the protocol; never a headline)", "",
                  markdown_table(head, rows(r["exploratory"])), ""]
    return lines


def _all_training(s: dict[str, Any]) -> str:
    held = s.get("holdout") or 0
    return f"all {50_000 - held:,} ({held:,} held out)" if held else "all 50,000"


def _report(name: str, r: dict[str, Any], figs: list[Path], pilot: bool) -> str:
    s = r["settings"]
    lines = [f"# Experiment `{name}`" + (" (pilot)" if pilot else ""), "", r["description"] + ".", "",
         f"**Primary metric** (stated before running): {r['primary_metric']}.", "",
         f"**Command:** `{r.get('command') or 'rexnet experiment ' + name}`", "",
         f"**Wall time:** {r['wall_s']:.0f} s over all invocations of the command ({r['counts']['done']} runs done, "
         f"{r['counts']['failed']} failed).", "",
         f"**Setting:** {s['epochs']} epoch(s) on {s['train_subset'] or _all_training(s)} training images (class-balanced), batch {s['batch_size']}, data `{s['data']}`, seeds "
         f"{s['seed']}..{s['seed'] + s['seeds'] - 1} "
         f"(the same seed gives both arms the same data order, augmentation and initialisation stream).", ""]
    m = r["main"]
    rule = ("the protocol's rule below" if r.get("protocol") else
            "holds = the interval lies above 0, contradicted = below, inconclusive = it contains 0")
    tests = (f", sign-flip p {_p(r['permutation_p'])}, Holm p {_p(r['holm_p'])}, TOST p {_p(r['tost']['p'])}"
             if r.get("protocol") else "")
    lines += [f"**Main result:** {m['name']}: difference {_f(r['diff_mean'])} {m['unit']}, 95% CI "
              f"{_ci(r['ci95'])} over {m['over']}{tests}. **Verdict: {r['verdict']}** (expected: {r['expected']}; "
              f"{rule}).", ""]
    if pilot and r.get("pilot"):
        p = r["pilot"]
        lines += ["## Pilot", "", f"Seeds for {p.get('power', 0.8):.0%} power at the smallest effect of interest "
                  f"({p.get('smallest_effect')} points): **{p.get('seeds_for_power')}** at the pilot's SD of the "
                  f"differences ({p.get('sd')}), {p.get('seeds_for_power_at_sd_upper')} at its 95% upper bound "
                  f"({p.get('sd_upper95')}); estimated wall time {p['estimated_wall_s']} s ({p['seed_s']} s of runs "
                  f"per seed, {p['workers']} worker(s)). For the observed mean's interval to exclude 0: "
                  f"{p['seeds_needed']} seeds.", ""]
    lines += ["## Arms", "", markdown_table(["arm", "MACs", "params", "block widths", "head 1x1", "test top-1 by seed",
                                         "note"],
                                        [[k, f"{a['macs']:,}", f"{a['params']:,}", "/".join(map(str, a["widths"])),
                                          a.get("pen_chs", "-"),
                                          ", ".join(f"{sd}: {v:.2f}" for sd, v in sorted(a["accuracies"].items())),
                                          a["note"]] for k, a in r["arms"].items()]), ""]
    if name == "search_cpu":
        lines += _search_section(r)
    elif r.get("protocol"):
        lines += _registered_section(r)
    else:
        comps = r.get("comparisons") or [m]
        lines += ["## Paired differences", "", "a - b per seed, mean, SD, paired 95% t-interval; ratios a / b.", "",
              markdown_table(["comparison", "seeds", "mean", "SD", "95% CI", "verdict", "MACs a/b", "params a/b"],
                             _comp_rows(comps)), ""]
        lines += ["Per-seed differences: " + "; ".join(f"{c['name']}: " + ", ".join(f"{d:+.2f}" for d in c["diffs"])
                                                   for c in comps), ""]
    lines += ["## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in figs] + [""]
    lines += ["## Files", "", "`result.json` (every number above), `runs.csv` (one row per run), `search.db` (the "
          "store; rerun the command to resume), `trials/` (each run's metrics and config).", ""]
    return "\n".join(lines)


def _search_section(r: dict[str, Any]) -> list[str]:
    ft, refs = r["family_test"], r["references"]
    lines = ["## Top 10% against the whole sample", "",
         f"{r['n_samples']} sampled models, top group {r['top_group']}. {ft['test']}.", "",
         markdown_table(["family", "share (sample)", "share (top 10%)", "p"],
                        [[x["family"], x["share_sample"], x["share_top"], x["p"]] for x in ft["families"]]), "",
         "Shape statistics, permutation p of the top group's mean against the whole sample: "
         + json.dumps(r["shape_test"]["p"]), "",
         "## Where the references rank", "",
         markdown_table(["reference", "test top-1", "rank among samples", "percentile"],
                        [[k, v["acc_mean"], f"{v['rank']} of {v['of']}", v["percentile_among_samples"]]
                         for k, v in refs["rank"].items()]), "",
         f"Linear - stage-wise, paired by seed: {_f(refs['gap']['diff_mean'])} {_ci(refs['gap']['ci95'])}, "
         f"{refs['gap']['verdict']}.", ""]
    return lines
