"""``rexnet experiment trained_rank``: the rank of trained models against their accuracy
(Section 6, Fig. 5), read from the stores of experiments that already trained them.

Every run of ``shape_panel`` and ``mobilenetv2_linear_full`` measures its final features
(the last block's output) on 1,000 held-out training images when it finishes
(:func:`rexnet.trials.trial.run_trial`): nuclear norm raw (sum sigma / sigma_max) and
width-normalised, effective rank, numerical ranks at 1e-3 and 1e-2, and the cumulative
normalised singular values.  A *model* is one arm of one source experiment, its measures
and test top-1 averaged over the seeds it has.  Stated before any result
(``OUT/protocol.yaml``): Spearman's rho across models between each measure and the mean
test top-1, with its 95% interval and exact permutation p, Holm over the measures, and the
paper's direction (more rank, more accuracy); and MobileNetV2 against its linear version,
paired by seed, per measure, with the two spectra drawn as Fig. 5 (right) draws them.
Nothing is trained: this costs seconds once the models exist.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..io import check_writable, markdown_table, pyplot, save_figure, write_csv, write_json, write_text
from ..stats import holm, paired_stats, spearman_test
from ..trials import STORE_NAME, Store
from .protocol import PROTOCOL_FILE, load_protocol, register_protocol

__all__ = ["SOURCES", "MEASURES", "PAIR", "trained_rank_protocol", "analyze_trained_rank", "run_trained_rank"]

SOURCES = ("docs/experiments/shape_panel", "docs/experiments/mobilenetv2_linear_full")
MEASURES = ("nuclear_norm_raw", "nuclear_norm", "effective_rank", "rank_0.001", "rank_0.01")
PAIR = ("docs/experiments/mobilenetv2_linear_full", "linear", "stagewise")   # Fig. 5 (right): linear vs MobileNetV2
ALPHA = 0.05


def trained_rank_protocol(sources: tuple[str, ...] = SOURCES, pair: tuple[str, str, str] = PAIR) -> dict[str, Any]:
    return dict(experiment="trained_rank", sources=list(sources), measures=list(MEASURES),
                features="the last block's output on 1,000 class-balanced held-out training images, centred",
                model="one arm of one source experiment: its measures and test top-1 averaged over its seeds",
                primary_measure="nuclear_norm_raw", expected="rho > 0 (more rank, more accuracy: the paper's Section 6)",
                analysis="Spearman's rho across models between each measure and the mean test top-1: 95% interval "
                         "(Fisher z, Bonett-Wright SE), exact two-sided permutation p, Holm over the measures; holds "
                         "/ contradicted when the Holm p < alpha and the interval excludes 0 on that side, else "
                         "inconclusive. The pair: per measure, linear - stagewise paired by seed (95% t-interval)",
                pair=dict(source=pair[0], a=pair[1], b=pair[2]), alpha=ALPHA)


def _models(sources: list[str]) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[int, dict]]]:
    """Per (source, arm): seeds -> the run's result; refuses a missing store, a diverged run
    or a finished run without rank measures, naming it."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for src in sources:
        db = Path(src) / STORE_NAME
        if not db.is_file():
            raise ValueError(f"trained_rank: no store at {db}; run `rexnet experiment {Path(src).name}` first")
        with Store(db) as store:
            trials = [t for t in store.trials() if t["status"] == "done"]
        for t in trials:
            r = t["result"]
            if r.get("diverged"):
                raise ValueError(f"trained_rank: run {t['key']} of {src} diverged ({r['diverged']}); fix the recipe")
            if any(m not in r for m in MEASURES):
                raise ValueError(f"trained_rank: run {t['key']} of {src} has no rank measures (trained without "
                                 f"--rank-images); its experiment must measure them")
            runs.setdefault((src, t["kind"]), {})[int(t["seed"])] = r
    models = [dict(source=Path(src).name, arm=arm, seeds=len(by), test_top1=float(np.mean([r["test_top1"] for r in
                                                                                          by.values()])),
                   **{m: float(np.mean([r[m] for r in by.values()])) for m in MEASURES})
              for (src, arm), by in runs.items()]
    return models, runs


def analyze_trained_rank(protocol: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the result from the source stores and the protocol."""
    models, runs = _models(protocol["sources"])
    acc = [m["test_top1"] for m in models]
    tests = [dict(measure=k, **spearman_test([m[k] for m in models], acc)) for k in protocol["measures"]]
    for t, p_adj in zip(tests, holm([t["p"] for t in tests])):
        ci = t["ci95"]
        ok = p_adj is not None and p_adj < protocol["alpha"] and ci is not None
        t.update(holm_p=p_adj, verdict="holds" if ok and ci[0] > 0 else "contradicted" if ok and ci[1] < 0
                 else "inconclusive")
    pr = protocol["pair"]
    a, b = runs.get((pr["source"], pr["a"]), {}), runs.get((pr["source"], pr["b"]), {})
    pair = {k: paired_stats({s: r[k] for s, r in a.items()}, {s: r[k] for s, r in b.items()})
            for k in ("test_top1", *protocol["measures"])}
    spectra = {arm: np.mean([r["cumulative_singular_values"] for r in by.values()], axis=0).round(5).tolist()
               for arm, by in ((pr["a"], a), (pr["b"], b)) if by}
    main = next(t for t in tests if t["measure"] == protocol["primary_measure"])
    return dict(experiment="trained_rank", models=models, tests=tests, main=main, verdict=main["verdict"],
                pair=dict(pr, comparisons={k: {x: v[x] for x in ("n", "diff_mean", "ci95", "verdict")}
                                           for k, v in pair.items()}, spectra=spectra),
                expected=protocol["expected"])


def _figures(result: dict[str, Any], figs: Path) -> list[Path]:
    plt = pyplot()
    made = []
    ms = result["models"]
    fig, axes = plt.subplots(1, len(result["tests"]), figsize=(3.2 * len(result["tests"]), 3.2), squeeze=False)
    for ax, t in zip(axes[0], result["tests"]):
        ax.plot([m[t["measure"]] for m in ms], [m["test_top1"] for m in ms], "o")
        for m in ms:
            ax.annotate(m["arm"], (m[t["measure"]], m["test_top1"]), fontsize=6)
        ax.set_xlabel(t["measure"], fontsize=8)
        ax.set_title(f"rho {t['rho']:.2f}" if t["rho"] is not None else "rho -", fontsize=8)
    axes[0][0].set_ylabel("test top-1 (%), mean over seeds")
    fig.tight_layout()
    made.append(save_figure(fig, figs / "rank_vs_accuracy.png", dpi=120))
    spectra = result["pair"]["spectra"]
    if spectra:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for arm, cum in spectra.items():
            ax.plot(np.arange(1, len(cum) + 1) / len(cum), cum, label=arm)
        ax.set_xlabel("singular value index / width")
        ax.set_ylabel("cumulative normalised singular values")
        ax.legend(fontsize=8)
        fig.tight_layout()
        made.append(save_figure(fig, figs / "fig5_right.png", dpi=120))
    return made


def _report(result: dict[str, Any], protocol: dict[str, Any], made: list[Path]) -> str:
    f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    reg = protocol.get("registered") or {}
    lines = ["# Experiment `trained_rank`", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"Protocol registered {reg.get('at', '?')}; {protocol['analysis']}.", "",
             f"**Main result** ({protocol['primary_measure']}): rho {f(result['main']['rho'])}, 95% CI "
             f"{result['main']['ci95']}, Holm p {f(result['main']['holm_p'])} over {result['main']['n']} models. "
             f"**Verdict: {result['verdict']}** (expected {protocol['expected']}).", "",
             markdown_table(["measure", "models", "rho", "95% CI", "permutation p", "Holm p", "verdict"],
                            [[t["measure"], t["n"], f(t["rho"]), t["ci95"], f(t["p"]), f(t["holm_p"]), t["verdict"]]
                             for t in result["tests"]]), "",
             "## Models", "", markdown_table(["source", "arm", "seeds", "test top-1", *MEASURES],
                                             [[m["source"], m["arm"], m["seeds"], f"{m['test_top1']:.2f}",
                                               *(f"{m[k]:.3f}" for k in MEASURES)] for m in result["models"]]), "",
             f"## {result['pair']['a']} vs {result['pair']['b']} ({Path(result['pair']['source']).name}), by seed", "",
             markdown_table(["quantity", "seeds", "a - b", "95% CI", "verdict"],
                            [[k, v["n"], f(v["diff_mean"]), v["ci95"], v["verdict"]]
                             for k, v in result["pair"]["comparisons"].items()]), "",
             "## Figures", "", *(f"![{p.stem}](figures/{p.name})" for p in made), ""]
    return "\n".join(lines)


def run_trained_rank(out: str | Path = "docs/experiments/trained_rank", plan: bool = False,
                     sources: tuple[str, ...] = SOURCES, pair: tuple[str, str, str] = PAIR) -> dict[str, Any]:
    """Register the protocol (``plan``: and stop), else analyse the source stores and write
    ``OUT/result.json``, ``report.md``, ``models.csv`` and ``figures/``."""
    out = Path(out)
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    had = (out / "result.json").is_file()
    protocol = register_protocol(out, trained_rank_protocol(sources, pair), has_results=had)
    if plan:
        return protocol
    t0 = time.time()
    result = analyze_trained_rank(load_protocol(out) or protocol)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    made = _figures(result, figs)
    write_csv(result["models"], out / "models.csv")
    write_json(dict(result, wall_s=round(time.time() - t0, 2), protocol_file=PROTOCOL_FILE), out / "result.json")
    write_text(out / "report.md", _report(result, protocol, made))
    return result
