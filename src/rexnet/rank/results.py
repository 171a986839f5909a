"""What a finished rank study says: its files read back as arrays, the invariant checks and the observations.

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
(iii) as stated (``iii_gain``): *nonlinearities raise rank more in 1x1/3x3
      convs than in IBs*: per nonlinearity, its gain over the identity on the
      same network (same weights and input) in a single conv minus that gain in
      an IB with the same network index (same d_out, ratio d_in/d_out and input;
      one expansion ratio per study), paired per network.  Its verdicts are
      "holds" / "contradicted" when the 95% CI lies above / below zero and
      "inconclusive" when it holds zero (no minimum effect; a significant effect
      below ``MIN_EFFECT`` is flagged ``small``).

Networks share their index (dimensions and input) across block types and
their weights and input across activations, so differences between blocks or
activations are paired per network.  A comparison says "yes" when its 95% CI
lies on the claimed side of zero and the effect is at least ``MIN_EFFECT``
(0.01 of d_out), "opposite" for the same on the other side, "negligible" for
a significant effect below 0.01, and "no difference" otherwise.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..stats import interval_verdict, mean_ci
from .networks import COLUMNS, StudyConfig, rank_cap

__all__ = ["CSV_NAME", "GZ_NAME", "CONFIG_NAME", "results_path", "read_rows", "read_raw", "load_config",
           "Results", "load_results", "summary_rows", "observations", "invariants", "pair_sign"]

CSV_NAME, GZ_NAME, CONFIG_NAME = "rank_study.csv", "rank_study.csv.gz", "study.json"

COMPLEX = ("elu", "silu")
# Smallest difference of rank ratios (1% of d_out) that a verdict counts; smaller significant ones are "negligible".
MIN_EFFECT = 0.01
SIMPLE = ("relu", "relu6", "leaky_relu")


# -- files -------------------------------------------------------------------------
def results_path(out: str | os.PathLike) -> Path | None:
    """The final results file of a study directory (``rank_study.csv`` or ``.csv.gz``), if any."""
    out = Path(out)
    for name in (CSV_NAME, GZ_NAME):
        if (out / name).is_file():
            return out / name
    return None


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a results CSV (plain or gzip) as dicts of strings."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def load_config(out: str | os.PathLike) -> StudyConfig:
    """The :class:`StudyConfig` recorded in ``OUT/study.json``."""
    path = Path(out) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a rank-study output directory")
    return StudyConfig.from_dict(json.loads(path.read_text())["config"])


def read_raw(path: Path) -> tuple[list[list[str]], int]:
    """Rows of a results file as lists of strings, and how many lines were unreadable (a torn write)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        text = fh.read()
    lines = text.split("\n")
    if not lines or lines[0].split(",") != list(COLUMNS):
        raise ValueError(f"{path} does not start with the expected header {','.join(COLUMNS)}; "
                         f"move it away or pass --fresh")
    rows, bad = [], 0
    complete = text.endswith("\n")
    body = lines[1:-1] if complete else lines[1:]
    for k, line in enumerate(body):
        if not line:
            continue
        fields_ = line.split(",")
        last_unterminated = not complete and k == len(body) - 1
        if len(fields_) != len(COLUMNS) or last_unterminated:
            bad += 1
            continue
        rows.append(fields_)
    return rows, bad


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
    rows, bad = read_raw(path)
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


def _claim(est: float, ci: float) -> str:
    """A directional claim's verdict: 'holds' / 'contradicted' when the 95% CI lies above / below zero,
    'inconclusive' when it holds zero, 'n/a' without a CI (fewer than two networks)."""
    if not math.isfinite(ci):
        return "n/a"
    if abs(est) < 1e-9:  # identical values up to float rounding of the averages
        return "inconclusive"
    return interval_verdict([est - ci, est + ci])


def _overall(verdicts: Sequence[str]) -> str:
    """One verdict from several: the common one when they agree, 'mixed' when some hold and others are
    contradicted, else 'partly holds' / 'partly contradicted' beside inconclusive ones."""
    v = set(verdicts) - {"n/a"}
    if not v:
        return "not tested"
    if len(v) == 1:
        return v.pop()
    if {"holds", "contradicted"} <= v:
        return "mixed"
    return "partly holds" if "holds" in v else "partly contradicted"


def _stat(d: np.ndarray, lo: np.ndarray) -> dict[str, Any]:
    """Mean and 95% CI of paired differences ``d`` over all networks and at the smallest ratio (``lo``)."""
    est, ci, n = mean_ci(d)
    est_lo, ci_lo, _ = mean_ci(d[lo])
    return dict(est=est, ci=ci, n=n, at_min=est_lo, ci_min=ci_lo, verdict=_claim(est, ci),
                small=bool(math.isfinite(est) and abs(est) < MIN_EFFECT))


def _gain_more_in_convs(res: Results, measure: str, blocks: Sequence[str]) -> dict[str, Any] | None:
    """Observation (iii) as the paper states it: nonlinearities *raise* rank more in single convs than in IBs.

    For network ``n`` and nonlinearity ``a``, ``gain_b[n, a] = rr[b, n, a] - rr[b, n, identity]`` (the same
    weights and input with and without the nonlinearity) and the tested difference is
    ``gain_conv[n, a] - gain_ib[n, a]``, paired on the network index, which the study shares across block
    types (same d_out, ratio and input).  Per (conv, IB) pair: one comparison per nonlinearity and one of the
    mean over the nonlinearities (``pooled``, which gives the pair's verdict).  ``None`` without the identity,
    a nonlinearity, a single conv and an IB.
    """
    convs = [b for b in ("conv1x1", "conv3x3") if b in blocks]
    ibs = [b for b in ("ib3x3", "ibdw") if b in blocks]
    if "identity" not in res.acts or not res.nonlinear() or not convs or not ibs:
        return None
    idx, acts = res.acts.index("identity"), res.nonlinear()
    nl = res.a(acts)
    lo = res.ratio == res.ratios[0]
    gain = {b: res.m(b, measure)[:, nl] - res.m(b, measure)[:, [idx]] for b in convs + ibs}  # (networks, acts)
    per_block = {b: dict(zip(("est", "ci"), mean_ci(g.mean(axis=1))[:2])) for b, g in gain.items()}
    pairs = []
    for c in convs:
        for i in ibs:
            d = gain[c] - gain[i]
            per_act = {a: _stat(d[:, k], lo) for k, a in enumerate(acts)}
            pairs.append(dict(a=c, b=i, acts=per_act, pooled=_stat(d.mean(axis=1), lo)))
    for p in pairs:
        p["verdict"] = p["pooled"]["verdict"]
    counts = {v: sum(s["verdict"] == v for p in pairs for s in p["acts"].values())
              for v in ("holds", "contradicted", "inconclusive")}
    return dict(per_block=per_block, pairs=pairs, counts=counts, verdict=_overall([p["verdict"] for p in pairs]))


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
    """Observations (i)-(iii), (iii) as stated (``iii_gain``) and the activation ordering per block, per measure."""
    out = {}
    for measure in res.measures:
        out[measure] = dict(i=_harm(res, measure, res.blocks), ii=_expand(res, measure, res.blocks),
                            iii=_matters(res, measure, res.blocks),
                            iii_gain=_gain_more_in_convs(res, measure, res.blocks),
                            order={b: _ordering(res, measure, b) for b in res.blocks})
    return out


def pair_sign(res: Results, measure: str, block: str, a: str, b: str) -> str:
    """'+' if act ``a`` has a higher mean rank ratio than ``b`` (paired 95% CI), '-' if lower, '=' if neither."""
    mat = res.m(block, measure)
    est, ci, _ = mean_ci(mat[:, res.acts.index(a)] - mat[:, res.acts.index(b)])
    return {"yes": "+", "opposite": "-"}.get(_verdict(est, ci), "=")

