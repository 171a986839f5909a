"""Observation (iii) of the rank study tested as the paper states it.

"Nonlinearities expand the rank of 1x1 and 3x3 convs more than that of inverted
bottlenecks": per nonlinearity, its gain over the identity on the same network,
single conv minus IB, paired per network index (``results._gain_more_in_convs``).
Synthetic studies with a planted effect check the three verdicts, the pairing and
the difference from the spread-based verdict; a tiny real study checks the
structural case (an IB's rank is capped whatever the nonlinearity) and the report.
"""
from __future__ import annotations

import numpy as np
import pytest

from rexnet.io import write_json, write_text
from rexnet.rank import networks as N
from rexnet.rank import results as R
from rexnet.rank import study as S
from rexnet.rank.report import write_report
from rexnet.stats import mean_ci

BLOCKS = ("conv1x1", "conv3x3", "ib3x3", "ibdw")
ACTS = ("identity", "relu", "silu")
CONVS, IBS = ("conv1x1", "conv3x3"), ("ib3x3", "ibdw")


def synthetic(gain: dict[str, float], noise: float = 0.01, networks: int = 60, seed: int = 0,
              act_gain: dict[tuple[str, str], float] | None = None) -> R.Results:
    """A study whose rank ratios are a shared per-network base plus a planted gain per block (and act).

    The base varies a lot between networks (0.2-0.6), as d_out and the ratio do in the real study, so only a
    paired comparison sees a small planted difference; ``noise`` is independent per block x network x act.
    """
    cfg = N.StudyConfig(blocks=BLOCKS, acts=ACTS, networks=networks, ratios=(0.25, 0.5, 1.0),
                        d_out_min=16, d_out_max=32, measures=("effective",))
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.6, networks)
    rr = np.zeros((len(BLOCKS), 1, networks, len(ACTS)))
    for bi, b in enumerate(BLOCKS):
        rr[bi, 0, :, 0] = base
        for ai, a in enumerate(ACTS[1:], start=1):
            g = (act_gain or {}).get((b, a), gain[b])
            rr[bi, 0, :, ai] = base + g + noise * rng.standard_normal(networks)
    ratio = np.array([cfg.ratios[i % len(cfg.ratios)] for i in range(networks)])
    d_out = rng.integers(16, 33, networks).astype(float)
    d_in = np.maximum(1, np.round(ratio * d_out))
    d_mid = np.stack([d_in * 6 if b.startswith("ib") else 0 * d_in for b in BLOCKS])
    return R.Results(cfg, list(BLOCKS), ["effective"], list(ACTS), rr, rr * d_out[None, None, :, None],
                     ratio, d_in, d_out, d_mid)


def obs3(res: R.Results, measure: str = "effective") -> dict:
    return R.observations(res)[measure]["iii_gain"]


def test_larger_gain_in_convs_holds_and_the_ci_covers_the_planted_effect():
    o = obs3(synthetic({"conv1x1": 0.30, "conv3x3": 0.25, "ib3x3": 0.10, "ibdw": 0.05}))
    assert o["verdict"] == "holds"
    assert o["counts"] == {"holds": 8, "contradicted": 0, "inconclusive": 0}  # 4 pairs x 2 nonlinearities
    planted = {("conv1x1", "ib3x3"): 0.20, ("conv1x1", "ibdw"): 0.25, ("conv3x3", "ib3x3"): 0.15,
               ("conv3x3", "ibdw"): 0.20}
    for p in o["pairs"]:
        q = p["pooled"]
        assert abs(q["est"] - planted[(p["a"], p["b"])]) < q["ci"] and q["n"] == 60
        assert all(s["verdict"] == "holds" for s in p["acts"].values())
    assert o["per_block"]["conv1x1"]["est"] == pytest.approx(0.30, abs=0.01)


def test_larger_gain_in_ibs_is_contradicted():
    o = obs3(synthetic({"conv1x1": 0.05, "conv3x3": 0.10, "ib3x3": 0.30, "ibdw": 0.25}))
    assert o["verdict"] == "contradicted"
    assert all(p["pooled"]["est"] + p["pooled"]["ci"] < 0 for p in o["pairs"])
    assert o["counts"]["contradicted"] == 8


def test_equal_gains_with_noise_are_inconclusive():
    o = obs3(synthetic({b: 0.2 for b in BLOCKS}, noise=0.05, seed=3))
    assert o["verdict"] == "inconclusive"
    for p in o["pairs"]:
        q = p["pooled"]
        assert q["ci"] > 0 and abs(q["est"]) < q["ci"]  # the CI holds zero


def test_the_comparison_is_paired_per_network():
    # gains vary with the network (as they do with the ratio) the same way in both blocks; the planted
    # conv - IB difference (0.02) is far below that spread, so an unpaired comparison cannot see it
    res = synthetic({"conv1x1": 0.22, "conv3x3": 0.22, "ib3x3": 0.20, "ibdw": 0.20}, noise=0.005)
    rng = np.random.default_rng(7)
    shared = rng.uniform(-0.2, 0.2, res.cfg.networks)
    res.rr[:, 0, :, 1:] += shared[None, :, None]
    o = obs3(res)
    assert o["verdict"] == "holds"
    nl, idx = res.a(res.nonlinear()), res.acts.index("identity")
    gain = {b: (res.m(b, "effective")[:, nl] - res.m(b, "effective")[:, [idx]]).mean(axis=1) for b in BLOCKS}
    unpaired = np.hypot(mean_ci(gain["conv1x1"])[1], mean_ci(gain["ib3x3"])[1])
    pair = next(p for p in o["pairs"] if (p["a"], p["b"]) == ("conv1x1", "ib3x3"))
    assert pair["pooled"]["ci"] < unpaired / 5 and unpaired > pair["pooled"]["est"]


def test_gain_over_identity_differs_from_the_spread_verdict():
    # conv: relu gains nothing and silu 0.2 (spread 0.2, mean gain 0.1); IBs: both gain 0.3 (spread 0)
    act_gain = {(c, "relu"): 0.0 for c in CONVS} | {(c, "silu"): 0.2 for c in CONVS}
    res = synthetic({"conv1x1": 0.0, "conv3x3": 0.0, "ib3x3": 0.3, "ibdw": 0.3}, act_gain=act_gain)
    o = R.observations(res)["effective"]
    assert o["iii"]["verdict"] == "holds"  # the spread is larger in convs
    assert o["iii_gain"]["verdict"] == "contradicted"  # but nonlinearities raise rank less there


def test_disagreeing_pairs_are_mixed_and_untestable_studies_are_none():
    o = obs3(synthetic({"conv1x1": 0.30, "conv3x3": 0.05, "ib3x3": 0.15, "ibdw": 0.15}))
    assert {(p["a"], p["verdict"]) for p in o["pairs"]} == {("conv1x1", "holds"), ("conv3x3", "contradicted")}
    assert o["verdict"] == "mixed"
    assert R._overall(["holds", "inconclusive"]) == "partly holds"
    assert R._overall(["contradicted", "inconclusive"]) == "partly contradicted"
    assert R._claim(0.1, float("nan")) == "n/a" and R._claim(0.0, 0.0) == "inconclusive"
    res = synthetic({b: 0.1 for b in BLOCKS})
    no_id = R.Results(res.cfg, res.blocks, res.measures, ["relu", "silu"], res.rr[..., 1:], res.value[..., 1:],
                      res.ratio, res.d_in, res.d_out, res.d_mid)
    assert obs3(no_id) is None
    convs_only = R.Results(res.cfg, list(CONVS), res.measures, res.acts, res.rr[:2], res.value[:2],
                           res.ratio, res.d_in, res.d_out, res.d_mid[:2])
    assert obs3(convs_only) is None


def _save(res: R.Results, out) -> None:
    """Write a (synthetic) study as the runner does: study.json and rank_study.csv."""
    write_json(S._meta(res.cfg, "complete"), out / R.CONFIG_NAME)
    rows = []
    for bi, b in enumerate(res.blocks):
        for i in range(res.cfg.networks):
            for ai, a in enumerate(res.acts):
                rows.append([b, str(i), "0", a, str(int(res.d_in[i])), str(int(res.d_mid[bi, i])),
                             str(int(res.d_out[i])), repr(float(res.ratio[i])), str(res.cfg.n), "effective", "",
                             f"{res.value[bi, 0, i, ai]:.6f}", f"{res.rr[bi, 0, i, ai]:.6f}"])
    write_text(out / R.CSV_NAME, "".join(",".join(r) + "\n" for r in [list(N.COLUMNS)] + rows))


def test_report_shows_both_verdicts_of_observation_iii(tmp_path):
    _save(synthetic({"conv1x1": 0.05, "conv3x3": 0.10, "ib3x3": 0.30, "ibdw": 0.25}), tmp_path)
    res = R.load_results(tmp_path)
    assert obs3(res)["verdict"] == "contradicted"  # survives the CSV round trip
    text = write_report(res, tmp_path).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| measure | (i)"))
    row = next(line for line in text.splitlines() if line.startswith("| effective |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    spread = cols.index("(iii) matters more in convs (spread)")
    stated = cols.index("(iii) as stated: gain over identity, conv - IB")
    assert cells[stated] == "contradicted" and cells[spread] == R.observations(res)["effective"]["iii"]["verdict"]
    assert "**(iii) as stated: nonlinearities raise rank more in 1x1/3x3 convs than in IBs" in text
    assert "0/8 hold, 8/8 contradicted, 0/8 inconclusive" in text
    line = next(x for x in text.splitlines() if x.startswith("  - conv1x1 - ib3x3: all nonlinearities"))
    est, ci = (float(v) for v in line.split("all nonlinearities ")[1].split(" [")[0].split(" ± "))
    assert abs(est - (0.05 - 0.30)) < ci and "(contradicted)" in line  # the planted difference, rendered


def test_real_study_ib_cap_makes_the_gain_larger_in_single_convs(tmp_path):
    # At matrix_rank's float32 tolerance an IB's rank is capped at min(d_out, 7 d_in) for every activation, the
    # identity included, so its gain is exactly 0; a nonlinear 1x1 conv is full rank where the identity has d_in.
    cfg = N.StudyConfig(networks=12, d_out_min=16, d_out_max=24, ratios=(0.2, 0.5, 1.0), acts=ACTS,
                        blocks=("conv1x1", "ib3x3"), measures=("rank",), tols=("f32",))
    run = S.run_study(cfg, tmp_path, workers=1, progress=False)
    assert run.complete
    res = R.load_results(tmp_path)
    o = obs3(res, "rank@f32")
    assert o["per_block"]["ib3x3"]["est"] == 0.0
    (pair,) = o["pairs"]
    rr = res.m("conv1x1", "rank@f32")
    expected = (rr[:, 1:] - rr[:, [0]]).mean()  # the IB's gain is 0, so this is the whole difference
    assert pair["pooled"]["est"] == pytest.approx(expected) and expected > 0.2
    assert o["verdict"] == "holds"
    text = write_report(res, tmp_path).read_text()
    assert "| rank@f32 | " in text and "(iii) as stated: gain over identity, conv - IB" in text
