"""What a finished rank study says: summary tables, invariant checks and ``report.md``.

The paper's observations are turned into comparisons with 95% confidence
intervals, computed the same way under every measure:

(i)   *drastic expansion harms rank*: the drop of the mean rank ratio (over the
      nonlinear activations) from the largest to the smallest ratio of the grid,
      per block; "more in IBs" compares drops between blocks and "more with
      depthwise convs" compares ``ibdw`` with ``ib3x3``.
(ii)  *nonlinearities expand rank*: the paired gain of each nonlinear activation
      over the identity on the same network; "complex ones more" compares the
      mean of ELU and SiLU with the mean of ReLU, ReLU6 and LeakyReLU.
(iii) *the nonlinearity matters more after 1x1/3x3 convs than inside IBs*: the
      spread (max - min over the nonlinear activations) of each network's rank
      ratio, compared between single convs and IBs.

Networks share their index (dimensions and input) across block types and
their weights and input across activations, so differences between blocks or
activations are paired per network.  A comparison says "yes" when its 95% CI
lies on the claimed side of zero and the effect is at least ``MIN_EFFECT``
(0.01 of d_out), "opposite" for the same on the other side, "negligible" for
a significant effect below 0.01, and "no difference" otherwise.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .study import (CONFIG_NAME, StudyConfig, _atomic_write, _read_raw, load_config, rank_cap,
                    results_path)

__all__ = ["Results", "load_results", "mean_ci", "summary_rows", "observations", "invariants",
           "write_summary", "write_report", "write_outputs", "measure_slug"]

COMPLEX = ("elu", "silu")
# Smallest difference of rank ratios (1% of d_out) that a verdict counts; smaller significant ones are "negligible".
MIN_EFFECT = 0.01
SIMPLE = ("relu", "relu6", "leaky_relu")
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def _t975(df: int) -> float:
    """Student-t 97.5% quantile: exact table to 30 degrees of freedom, Cornish-Fisher beyond."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci(x: np.ndarray) -> tuple[float, float, int]:
    """Mean, 95% CI half-width (Student t) and count of the finite values of ``x``."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    return float(x.mean()), _t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n), n


def measure_slug(name: str) -> str:
    """A file-name-safe form of a measure name (``rank@1e-1`` -> ``rank_1e-1``)."""
    return name.replace("@", "_")


@dataclass
class Results:
    """A finished study as arrays: ``rr[block, measure, network, act]`` is the rank ratio."""
    cfg: StudyConfig
    blocks: list[str]
    measures: list[str]
    acts: list[str]
    rr: np.ndarray
    value: np.ndarray
    ratio: np.ndarray  # (networks,)
    d_in: np.ndarray  # (networks,)
    d_out: np.ndarray  # (networks,)
    d_mid: np.ndarray  # (blocks, networks)

    @property
    def ratios(self) -> list[float]:
        """The grid points that have networks (all of them unless networks < len(grid))."""
        return sorted({float(r) for r in self.ratio})

    @property
    def per_ratio(self) -> int:
        """The fewest networks at any grid point."""
        return min(int((self.ratio == r).sum()) for r in self.ratios)

    def m(self, block: str, measure: str) -> np.ndarray:
        """``(networks, acts)`` rank ratios of one block under one measure."""
        return self.rr[self.blocks.index(block), self.measures.index(measure)]

    def a(self, acts: Sequence[str]) -> list[int]:
        return [self.acts.index(x) for x in acts]

    def nonlinear(self) -> list[str]:
        return [x for x in self.acts if x != "identity"]


def load_results(out: str | os.PathLike) -> Results:
    """Read a finished study directory (``study.json`` + ``rank_study.csv[.gz]``) into arrays."""
    cfg = load_config(out)
    path = results_path(out)
    if path is None:
        raise FileNotFoundError(f"no rank_study.csv(.gz) in {out}: the study has not finished; rerun "
                                f"`rexnet rank-study` with the same --out to complete it")
    rows, bad = _read_raw(path)
    if bad:
        raise ValueError(f"{path} has {bad} malformed line(s); rerun the study with --fresh")
    blocks, acts = list(cfg.blocks), list(cfg.acts)
    measures = [m.name for m in cfg.measure_list]
    bi, ai, mi = ({x: i for i, x in enumerate(v)} for v in (blocks, acts, measures))
    shape = (len(blocks), len(measures), cfg.networks, len(acts))
    rr, value = np.full(shape, np.nan), np.full(shape, np.nan)
    ratio, d_in, d_out = (np.zeros(cfg.networks) for _ in range(3))
    d_mid = np.zeros((len(blocks), cfg.networks))
    for r in rows:
        b, i, a, meas = bi[r[0]], int(r[1]), ai[r[3]], mi[r[9]]
        rr[b, meas, i, a] = float(r[12])
        value[b, meas, i, a] = float(r[11])
        d_in[i], d_mid[b, i], d_out[i], ratio[i] = int(r[4]), int(r[5]), int(r[6]), float(r[7])
    missing = int(np.isnan(rr).sum())
    if missing:
        raise ValueError(f"{path} lacks {missing} result(s) of the study in study.json; rerun the study")
    return Results(cfg, blocks, measures, acts, rr, value, ratio, d_in, d_out, d_mid)


# -- summaries ---------------------------------------------------------------------------
def summary_rows(res: Results) -> list[dict[str, Any]]:
    """Mean rank ratio with 95% CI per measure x block x activation x ratio (the figures' numbers)."""
    rows = []
    for measure in res.measures:
        for block in res.blocks:
            mat = res.m(block, measure)
            for ai, act in enumerate(res.acts):
                for ratio in res.ratios:
                    sel = res.ratio == ratio
                    mean, ci, n = mean_ci(mat[sel, ai])
                    rows.append(dict(measure=measure, block=block, act=act, ratio=ratio, networks=n,
                                     mean_rank_ratio=round(mean, 6), ci95=round(ci, 6),
                                     min=round(float(mat[sel, ai].min()), 6),
                                     max=round(float(mat[sel, ai].max()), 6)))
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_summary(res: Results, out: str | os.PathLike) -> tuple[Path, Path]:
    """``summary.csv`` (long form) and ``summary.md`` (one table per measure: act x ratio)."""
    out = Path(out)
    rows = summary_rows(res)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _atomic_write(out / "summary.csv", buf.getvalue().encode())
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
        parts.append(f"## {measure}\n\n" + _md_table(["block", "act"] + [f"{r:g}" for r in ratios], table))
    _atomic_write(out / "summary.md", ("\n\n".join(parts) + "\n").encode())
    return out / "summary.csv", out / "summary.md"


# -- checks and observations --------------------------------------------------------------------
def _verdict(est: float, ci: float) -> str:
    """'yes' / 'opposite' when the 95% CI excludes zero *and* the effect is at least :data:`MIN_EFFECT`;
    'negligible' when it is significant but smaller; 'no difference' when the CI holds zero."""
    if not math.isfinite(ci):
        return "n/a"
    if abs(est) < 1e-9:  # identical values up to float rounding of the averages
        return "no difference"
    if est - ci > 0 or est + ci < 0:
        if abs(est) < MIN_EFFECT:
            return "negligible"
        return "yes" if est > 0 else "opposite"
    return "no difference"


def _fmt_ci(est: float, ci: float, digits: int = 3) -> str:
    return f"{est:+.{digits}f} ± {ci:.{digits}f}" if math.isfinite(ci) else f"{est:+.{digits}f}"


def invariants(res: Results) -> dict[str, Any] | None:
    """The linear-algebra facts at the float32 default tolerance, counted over the study's networks."""
    if "rank@f32" not in res.measures:
        return None
    cfg, out = res.cfg, {}
    value = res.value[:, res.measures.index("rank@f32")]
    for bi, block in enumerate(res.blocks):
        for ai, act in enumerate(res.acts):
            rank = value[bi, :, ai].astype(int)
            caps = np.array([rank_cap(block, act, int(res.d_in[i]), int(res.d_mid[bi, i]), int(res.d_out[i]),
                                      cfg.shortcut, cfg.n) for i in range(cfg.networks)])
            below = rank < caps
            out[(block, act)] = dict(networks=cfg.networks, equal_cap=int((rank == caps).sum()),
                                     above_cap=int((rank > caps).sum()), below_cap=int(below.sum()),
                                     max_d_in_below=int(res.d_in[below].max()) if below.any() else None,
                                     ratios_below=sorted({float(r) for r in res.ratio[below]}))
    same = {}
    if "relu" in res.acts and "relu6" in res.acts:
        r, r6 = res.a(["relu", "relu6"])
        is_rank = np.array([m.startswith("rank@") for m in res.measures])
        for bi, block in enumerate(res.blocks):
            a, b = res.value[bi][:, :, r], res.value[bi][:, :, r6]  # (measures, networks)
            rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
            same[block] = dict(all_equal=int(np.all(a == b, axis=0).sum()),
                               ranks_equal=int(np.all(a[is_rank] == b[is_rank], axis=0).sum()),
                               max_rel_diff=float(rel.max()) if rel.size else 0.0)
    return dict(caps=out, relu_eq_relu6=same)


def _harm(res: Results, measure: str, blocks: Sequence[str]) -> dict[str, Any]:
    """Observation (i)."""
    nl = res.a(res.nonlinear())
    lo, hi = res.ratios[0], res.ratios[-1]
    at_lo, at_hi = res.ratio == lo, res.ratio == hi
    per = {}
    for b in blocks:
        v = res.m(b, measure)[:, nl].mean(axis=1)
        ml, cl, _ = mean_ci(v[at_lo])
        mh, ch, _ = mean_ci(v[at_hi])
        drop, ci = mh - ml, math.hypot(cl, ch)
        per[b] = dict(at_min=ml, at_max=mh, drop=drop, ci=ci, verdict=_verdict(drop, ci))

    def more(a: str, b: str) -> dict[str, Any]:  # drop(a) - drop(b), paired across blocks per network
        da = res.m(a, measure)[:, nl].mean(axis=1) - res.m(b, measure)[:, nl].mean(axis=1)
        m_hi, c_hi, _ = mean_ci(da[at_hi])
        m_lo, c_lo, _ = mean_ci(da[at_lo])
        est, ci = m_hi - m_lo, math.hypot(c_hi, c_lo)
        return dict(a=a, b=b, est=est, ci=ci, verdict=_verdict(est, ci))

    ibs = [b for b in ("ib3x3", "ibdw") if b in blocks]
    convs = [b for b in ("conv1x1", "conv3x3") if b in blocks]
    ib_vs_conv = [more(i, c) for i in ibs for c in convs]
    dw = more("ibdw", "ib3x3") if {"ibdw", "ib3x3"} <= set(blocks) else None
    parts = [[p["verdict"] for p in per.values()], [p["verdict"] for p in ib_vs_conv],
             [dw["verdict"]] if dw else []]
    return dict(per_block=per, ib_vs_conv=ib_vs_conv, dw_vs_full=dw, lo=lo, hi=hi, verdict=_grade(parts))


def _grade(parts: Sequence[Sequence[str]]) -> str:
    """'holds' if every comparison of every part says yes, 'partly' if some do, else 'does not hold'."""
    flat = [v for part in parts for v in part]
    if not flat:
        return "not tested"
    if all(v == "yes" for v in flat):
        return "holds"
    return "partly" if any(v == "yes" for v in flat) else "does not hold"


def _expand(res: Results, measure: str, blocks: Sequence[str]) -> dict[str, Any] | None:
    """Observation (ii)."""
    if "identity" not in res.acts or not res.nonlinear():
        return None
    idx = res.acts.index("identity")
    lo = res.ratio == res.ratios[0]
    gains, cx = {}, {}
    for b in blocks:
        mat = res.m(b, measure)
        for act in res.nonlinear():
            g = mat[:, res.acts.index(act)] - mat[:, idx]
            est, ci, _ = mean_ci(g)
            est_lo, ci_lo, _ = mean_ci(g[lo])
            gains[(b, act)] = dict(est=est, ci=ci, at_min=est_lo, ci_min=ci_lo, verdict=_verdict(est, ci))
        if set(COMPLEX) <= set(res.acts) and set(SIMPLE) <= set(res.acts):
            d = mat[:, res.a(COMPLEX)].mean(axis=1) - mat[:, res.a(SIMPLE)].mean(axis=1)
            est, ci, _ = mean_ci(d)
            cx[b] = dict(est=est, ci=ci, verdict=_verdict(est, ci))
    n_yes = sum(g["verdict"] == "yes" for g in gains.values())
    verdict = _grade([[g["verdict"] for g in gains.values()], [c["verdict"] for c in cx.values()]])
    return dict(gains=gains, complex_vs_simple=cx, n_yes=n_yes, n=len(gains), verdict=verdict)


def _matters(res: Results, measure: str, blocks: Sequence[str]) -> dict[str, Any] | None:
    """Observation (iii)."""
    nl = res.a(res.nonlinear())
    if len(nl) < 2:
        return None
    spread = {b: res.m(b, measure)[:, nl].max(axis=1) - res.m(b, measure)[:, nl].min(axis=1) for b in blocks}
    per = {b: dict(zip(("est", "ci"), mean_ci(s)[:2])) for b, s in spread.items()}
    if "identity" in res.acts:
        idx = res.acts.index("identity")
        for b in blocks:
            mat = res.m(b, measure)
            per[b]["gain"] = float((mat[:, nl].mean(axis=1) - mat[:, idx]).mean())
    pairs = []
    for c in ("conv1x1", "conv3x3"):
        for i in ("ib3x3", "ibdw"):
            if c in blocks and i in blocks:
                est, ci, _ = mean_ci(spread[c] - spread[i])
                pairs.append(dict(a=c, b=i, est=est, ci=ci, verdict=_verdict(est, ci)))
    return dict(per_block=per, pairs=pairs, verdict=_grade([[p["verdict"] for p in pairs]]))


def _ordering(res: Results, measure: str, block: str) -> str:
    """Nonlinear activations by mean rank ratio; '>' where neighbours differ (paired CI, >= MIN_EFFECT), else '≈'."""
    mat = res.m(block, measure)
    acts = sorted(res.nonlinear(), key=lambda a: -mat[:, res.acts.index(a)].mean())
    text = acts[0] if acts else ""
    for prev, cur in zip(acts, acts[1:]):
        est, ci, _ = mean_ci(mat[:, res.acts.index(prev)] - mat[:, res.acts.index(cur)])
        text += (" > " if _verdict(est, ci) == "yes" else " ≈ ") + cur
    return text


def observations(res: Results) -> dict[str, dict[str, Any]]:
    """Observations (i)-(iii) and the activation ordering per block, for every measure."""
    out = {}
    for measure in res.measures:
        out[measure] = dict(i=_harm(res, measure, res.blocks), ii=_expand(res, measure, res.blocks),
                            iii=_matters(res, measure, res.blocks),
                            order={b: _ordering(res, measure, b) for b in res.blocks})
    return out


# -- report.md ------------------------------------------------------------------------------
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


def _tol_text(res: Results) -> str:
    f32 = [m for m in res.cfg.measure_list if m.kind == "rank" and m.tol_label == "f32"]
    if not f32:
        return ""
    t = f32[0].tol(res.cfg.d_out_max, res.cfg.n)
    return (f" `rank@f32` is `torch.linalg.matrix_rank`'s float32 default, max(d_out, N) x eps = {t:.3g} "
            f"relative (N = {res.cfg.n} > d_out).")


def _invariants_md(inv: dict[str, Any], res: Results) -> list[str]:
    lines = ["## Linear-algebra checks at the float32 default tolerance", "",
             "The cap (`rank_cap` in `study.py`): identity conv1x1 min(d_out, d_in); identity conv3x3 "
             "min(d_out, 9 d_in); nonlinear single convs d_out; IBs min(d_out, d_mid + d_in) with the "
             "partial shortcut (d_mid = expansion x d_in, so min(d_out, 7 d_in) at expansion 6), because the "
             "projection sees only d_mid channels and the shortcut adds a rank-d_in term, whatever the "
             "nonlinearity. Counts are networks out of "
             f"{res.cfg.networks} per block.", "",
             "| block | act | = cap | below | above | largest d_in below | ratios below |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (b, a), c in inv["caps"].items():
        lines.append(f"| {b} | {a} | {c['equal_cap']} | {c['below_cap']} | {c['above_cap']} | "
                     f"{c['max_d_in_below'] if c['max_d_in_below'] is not None else '-'} | "
                     f"{', '.join(f'{r:g}' for r in c['ratios_below']) or '-'} |")
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
    lines = ["| measure | (i) expansion harms rank | (ii) nonlinearities expand rank | (iii) matters more in convs |",
             "| --- | --- | --- | --- |"]
    for m, o in obs.items():
        cells = [o["i"]["verdict"], o["ii"]["verdict"] if o["ii"] else "not tested",
                 o["iii"]["verdict"] if o["iii"] else "not tested"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


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
            "value well below the large-ratio one.", "", _md_table(header, rows)]


def _fragility(res: Results, obs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## How fragile is the ordering of nonlinearities?", "",
             "Nonlinear activations sorted by mean rank ratio over all networks; `>` where the paired 95% CI "
             f"of the difference excludes zero and the difference is at least {MIN_EFFECT:g}, `≈` otherwise.", ""]
    lines.append(_md_table(["measure"] + res.blocks, [[m] + [o["order"][b] for b in res.blocks]
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
    lines += ["## Verdicts", "", "Each observation as defined at the top of `src/rexnet/rank/report.py`; "
              "\"partly\" means some of its parts hold (details per measure below).", ""]
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
    path = out / "report.md"
    _atomic_write(path, ("\n".join(lines) + "\n").encode())
    return path


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
                f"(iii) {o['iii']['verdict'] if o['iii'] else 'n/a'}."]
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


def _pair_sign(res: Results, measure: str, block: str, a: str, b: str) -> str:
    """'+' if act ``a`` has a higher mean rank ratio than ``b`` (paired 95% CI), '-' if lower, '=' if neither."""
    mat = res.m(block, measure)
    est, ci, _ = mean_ci(mat[:, res.acts.index(a)] - mat[:, res.acts.index(b)])
    return {"yes": "+", "opposite": "-"}.get(_verdict(est, ci), "=")


def _ordering_summary(res: Results, obs: dict[str, dict[str, Any]]) -> list[str]:
    """How much the ranking of nonlinearities depends on the measure, counted."""
    lines = []
    for a, b in (("silu", "relu"), ("elu", "relu")):
        if a in res.acts and b in res.acts:
            signs = [_pair_sign(res, m, blk, a, b) for m in res.measures for blk in res.blocks]
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
             f"{other.cfg.networks} networks per block type there (figures and report in `{other_dir.name}/`).", "",
             "| measure | verdicts here (i / ii / iii) | verdicts there | top nonlinearity here -> there, per block |",
             "| --- | --- | --- | --- |"]
    changed = total = 0
    for m in res.measures:
        if m not in other.measures:
            continue
        v = lambda o: " / ".join((o[k]["verdict"] if o[k] else "n/a") for k in ("i", "ii", "iii"))  # noqa: E731
        tops = []
        for blk in res.blocks:
            if blk not in other.blocks:
                continue
            t1, t2 = _top(obs[m]["order"][blk]), _top(o_obs[m]["order"][blk])
            same = set(t1.split(" ≈ ")) == set(t2.split(" ≈ "))  # a reordered tie is the same group
            total += 1
            changed += not same
            tops.append(f"{blk} {t1}" + ("" if same else f" -> **{t2}**"))
        lines.append(f"| {m} | {v(obs[m])} | {v(o_obs[m])} | {'; '.join(tops)} |")
    flips = []
    for m in res.measures:
        for blk in res.blocks:
            if m in other.measures and blk in other.blocks and {"silu", "relu"} <= set(res.acts) & set(other.acts):
                s1, s2 = _pair_sign(res, m, blk, "silu", "relu"), _pair_sign(other, m, blk, "silu", "relu")
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
    from .plots import plot_measure

    res = load_results(out)
    out = Path(out)
    paths: dict[str, Path] = {}
    paths["summary_csv"], paths["summary_md"] = write_summary(res, out)
    figures = {m: plot_measure(res, m, out / f"fig1_{measure_slug(m)}.png") for m in res.measures}
    paths.update({f"fig:{m}": p for m, p in figures.items()})
    paths["report"] = write_report(res, out, figures, command=command, compare=compare)
    return paths
