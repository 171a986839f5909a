"""The rank study (Section 3) and the design-guide audit.

The invariants are linear algebra at matrix_rank's float32 default tolerance:
identity baselines have rank d_in (1x1) and min(d_out, 9 d_in) (3x3); an IB with
expansion 6 and the partial shortcut is capped at min(d_out, 7 d_in) for every
nonlinearity; train-mode BN makes ReLU6 equal to ReLU.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math

import numpy as np
import pytest
import torch

from rexnet.rank import measures as M
from rexnet.rank import networks as N
from rexnet.rank import results as R
from rexnet.rank import study as S
from rexnet.rank.audit import audit, audit_model
from rexnet.rank.cli import add_rank_commands
from rexnet.rank.report import write_outputs
from rexnet.rank.results import load_results, observations
from rexnet.rank.study import command_for

NONLINEAR = [a for a in N.ACTIVATIONS if a != "identity"]
SMOOTH = ("elu", "softplus", "hard_swish", "silu")


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matrices gain nothing from threads; the study itself runs each network on one."""
    with S._single_thread():
        yield


def f32_rank(out: torch.Tensor) -> int:
    """The reference: torch.linalg.matrix_rank with its float32 defaults on the d_out x N output."""
    return int(torch.linalg.matrix_rank(out.transpose(0, 1).reshape(out.shape[1], -1)))


def rows_by(rows, **match):
    return [r for r in rows if all(r[N.COLUMNS.index(k)] == v for k, v in match.items())]


# -- measures ------------------------------------------------------------------------
def test_numerical_rank_equals_matrix_rank_at_the_same_tolerance():
    g = torch.Generator().manual_seed(1)
    for rows, cols, r in [(20, 100, 7), (40, 90, 40), (64, 300, 13), (30, 30, 29)]:
        a = torch.randn(rows, r, generator=g) @ torch.randn(r, cols, generator=g)
        sigma = M.singular_values(a)
        assert M.numerical_rank(sigma, M.f32_default_tol(rows, cols)) == int(torch.linalg.matrix_rank(a)) == r
        graded = torch.randn(rows, cols, generator=g) * torch.logspace(0, -4, rows)[:, None]
        s = M.singular_values(graded)
        for tol in (1e-3, 1e-2, 1e-1):
            assert M.numerical_rank(s, tol) == int(torch.linalg.matrix_rank(graded.double(), rtol=tol))
        ref = torch.linalg.svdvals(graded.double())
        assert torch.allclose(s, ref, atol=1e-7 * float(ref[0]))


def test_measures_on_known_spectra():
    flat = torch.ones(4, dtype=torch.float64)
    assert M.effective_rank(flat) == pytest.approx(4.0)
    assert M.stable_rank(flat) == pytest.approx(4.0)
    assert M.nuclear_ratio(flat) == pytest.approx(4.0)
    s = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    p = np.array([2 / 3, 1 / 3])
    assert M.effective_rank(s) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert M.stable_rank(s) == pytest.approx(1.25)
    assert M.nuclear_ratio(s) == pytest.approx(1.5)
    assert M.numerical_rank(s, 0.4) == 2 and M.numerical_rank(s, 0.6) == 1
    zero = torch.zeros(3, dtype=torch.float64)
    assert (M.numerical_rank(zero, 1e-3), M.effective_rank(zero), M.stable_rank(zero), M.nuclear_ratio(zero)) == (0, 0, 0, 0)
    # stable rank is ||A||_F^2 / ||A||_2^2 on a real matrix
    a = torch.randn(10, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert M.stable_rank(M.singular_values(a)) == pytest.approx(float(a.norm() ** 2 / torch.linalg.matrix_norm(a, 2) ** 2))


def test_centring_removes_a_constant_offset():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 200, generator=g)
    a = torch.randn(12, 3, generator=g) @ x + torch.randn(12, 1, generator=g)  # rank 3 + offset
    tol = M.f32_default_tol(12, 200)
    assert M.numerical_rank(M.singular_values(a), tol) == 4
    assert M.numerical_rank(M.singular_values(a, center=True), tol) == 3


def test_measure_selection_and_errors():
    names = [m.name for m in M.parse_measures(["nuclear", "rank"], ["f32", "1e-1"])]
    assert names == ["rank@f32", "rank@1e-1", "nuclear"]
    for kinds, tols, msg in [(["volume"], ["f32"], "unknown rank measure"), (["rank"], ["1e-9"], "must be in"),
                             (["rank"], ["tight"], "neither 'f32' nor a number"), (["rank"], [], "at least one"),
                             ([], ["f32"], "no rank measure")]:
        with pytest.raises(ValueError, match=msg):
            M.parse_measures(kinds, tols)


def test_config_errors_are_clear():
    cases = [(dict(ratios=(0.5, 1.5)), "must lie in"), (dict(ratios=(0.0, 0.5)), "must lie in"),
             (dict(ratios=(0.5, 0.5)), "duplicates"), (dict(ratios=()), "empty"),
             (dict(ratios=(0.01, 0.5)), "rounds to"), (dict(d_out_min=300), "range is empty"),
             (dict(batch=2), "must exceed the largest d_out"), (dict(blocks=("conv5x5",)), "unknown block type"),
             (dict(acts=("relu", "tanh")), "unknown activation"), (dict(measures=("rank", "volume")), "unknown rank"),
             (dict(shortcut="half"), "unknown shortcut"), (dict(bn="frozen"), "unknown BN mode"),
             (dict(spatial=2), "too small"), (dict(networks=0), "positive integer")]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            N.StudyConfig(**kw)
    assert N.StudyConfig().n == 1024 >= 4 * 256


# -- the invariants -------------------------------------------------------------------
SMALL = N.StudyConfig(networks=20, d_out_min=32, d_out_max=64, ratios=(0.1, 0.2, 0.4, 0.7, 1.0))


@pytest.fixture(scope="module")
def small_rows():
    with S._single_thread():  # as the study runs each network
        return {b: [r for i in range(SMALL.networks) for r in N.compute_network(SMALL, b, i)]
                for b in N.BLOCK_TYPES}


def test_identity_baselines_equal_their_linear_algebra_rank(small_rows):
    for r in rows_by(small_rows["conv1x1"], act="identity", measure="rank@f32"):
        assert int(r[11]) == int(r[4])  # d_in
    checked_9 = 0
    for r in rows_by(small_rows["conv3x3"], act="identity", measure="rank@f32"):
        d_in, d_out = int(r[4]), int(r[6])
        assert int(r[11]) == min(d_out, 9 * d_in)
        checked_9 += 9 * d_in < d_out
    assert checked_9 >= 3  # the 9 d_in branch is exercised, not only d_out


def test_ib_rank_is_capped_at_7_d_in_whatever_the_nonlinearity(small_rows):
    capped = 0
    for block in ("ib3x3", "ibdw"):
        for r in rows_by(small_rows[block], measure="rank@f32"):
            d_in, d_mid, d_out = int(r[4]), int(r[5]), int(r[6])
            assert d_mid == 6 * d_in
            assert int(r[11]) == min(d_out, 7 * d_in), r
            capped += 7 * d_in < d_out
    assert capped >= 2 * 8 * 3  # several small-ratio networks per IB type and activation sit at the cap


def test_ib_cap_is_the_true_rank_of_the_output():
    """matrix_rank on the block output itself (not our measure code), for the cap under other rules."""
    cfg = N.StudyConfig(networks=1, d_out_min=64, d_out_max=64, ratios=(0.0625,))  # d_in = 4
    dims = N.network_dims(cfg, 0)
    for block in ("ib3x3", "ibdw"):
        for kw, cap in [({}, 28), ({"shortcut": "none"}, 24), ({"shortcut": "full"}, 24),
                        ({"expansion": 3.0}, 16), ({"bn": "eval"}, 28), ({"input": "blur"}, 28)]:
            c = N.StudyConfig(networks=1, d_out_min=64, d_out_max=64, ratios=(0.0625,), **kw)
            for act, out in N.block_outputs(c, block, dims, acts=("identity", "relu", "silu")):
                assert f32_rank(out) == cap == N.rank_cap(block, act, 4, c.mid(4), 64, c.shortcut), (block, kw, act)


def test_relu6_equals_relu_under_train_mode_bn(small_rows):
    """Standardised pre-activations rarely pass 6: ranks agree exactly, smooth measures to a hair."""
    for block, rows in small_rows.items():
        relu, relu6 = rows_by(rows, act="relu"), rows_by(rows, act="relu6")
        assert len(relu) == len(relu6) == SMALL.networks * 7
        for a, b in zip(relu, relu6):
            assert a[9] == b[9]
            if a[9].startswith("rank@"):
                assert a[11] == b[11], (block, a, b)
            else:
                assert float(a[11]) == pytest.approx(float(b[11]), rel=1e-3)
        same = sum(a[11:] == b[11:] for a, b in zip(relu, relu6))
        assert same >= 0.9 * len(relu), block
    cfg = N.StudyConfig(networks=1, d_out_min=64, d_out_max=64, ratios=(0.5,), bn="eval")
    outs = dict(N.block_outputs(cfg, "conv1x1", N.network_dims(cfg, 0), acts=("relu", "relu6")))
    assert torch.equal(outs["relu"].clamp(max=6), outs["relu6"])  # eval mode: the same rule, no standardising


def test_nonlinear_single_convs_are_full_rank(small_rows):
    for block in ("conv1x1", "conv3x3"):
        for r in rows_by(small_rows[block], measure="rank@f32"):
            if r[3] == "identity":
                continue
            if block == "conv1x1" and r[3] in SMOOTH and int(r[4]) < 8:
                continue  # the small-d_in exception, tested below
            assert int(r[11]) == int(r[6]), r


def test_smooth_activations_of_a_tiny_input_fall_short_of_full_rank():
    """Hard Swish is quadratic on [-3, 3]: f(w.x) of a 3-dim x spans about 1 + 3 + 6 directions, not d_out."""
    cfg = N.StudyConfig(networks=1, d_out_min=64, d_out_max=64, ratios=(0.05,))  # d_in = 3
    ranks = {a: f32_rank(out) for a, out in N.block_outputs(cfg, "conv1x1", N.network_dims(cfg, 0))}
    assert ranks["identity"] == 3
    assert ranks["relu"] == ranks["leaky_relu"] == 64
    assert 10 <= ranks["hard_swish"] < 64


def test_blurred_input_is_spatially_correlated_with_unit_variance():
    cfg = N.StudyConfig(networks=1, d_out_min=200, d_out_max=200, ratios=(1.0,), input="blur", blur_sigma=1.0)
    x = N.make_input(cfg, N.network_dims(cfg, 0))
    assert x.shape == (cfg.batch, 200, 8, 8)
    assert float(x.var()) == pytest.approx(1.0, abs=0.05)
    corr = float((x[..., 1:] * x[..., :-1]).mean() / x.var())
    assert corr == pytest.approx(math.exp(-1 / 4), abs=0.04)  # Gaussian blur of white noise: exp(-d^2 / 4 sigma^2)
    white = N.make_input(N.StudyConfig(networks=1, d_out_min=200, d_out_max=200, ratios=(1.0,)), N.network_dims(cfg, 0))
    assert abs(float((white[..., 1:] * white[..., :-1]).mean())) < 0.02


# -- determinism, resume, outputs ---------------------------------------------------------
def test_networks_are_deterministic_by_seed_and_paired():
    cfg = N.StudyConfig(networks=4, d_out_min=32, d_out_max=48)
    assert N.compute_network(cfg, "ibdw", 3) == N.compute_network(cfg, "ibdw", 3)
    other = N.StudyConfig(networks=4, d_out_min=32, d_out_max=48, seed=1)
    assert N.compute_network(cfg, "ibdw", 3) != N.compute_network(other, "ibdw", 3)
    # the same dims and input for every block type; the ratio grid is balanced
    d = [N.network_dims(cfg, i) for i in range(20)]
    assert [x.ratio for x in d[:10]] == list(cfg.ratios)
    a = N.make_input(cfg, d[5])
    assert torch.equal(a, N.make_input(cfg, d[5]))
    rows = {b: N.compute_network(cfg, b, 2) for b in ("conv1x1", "ib3x3")}
    assert {tuple(r[4:9]) for r in rows["conv1x1"]} == {(r[4], "0", *r[6:9]) for r in rows["ib3x3"]}


TINY = dict(networks=6, d_out_min=16, d_out_max=32, blocks=("conv1x1", "conv3x3", "ibdw"))


def test_resume_after_interruption_recomputes_nothing_finished(tmp_path, monkeypatch):
    cfg = N.StudyConfig(**TINY)
    ref = S.run_study(cfg, tmp_path / "ref", workers=1, progress=False)
    assert ref.complete and ref.computed == 18

    out = tmp_path / "run"
    first = S.run_study(cfg, out, workers=1, progress=False, stop_after=7)
    assert (first.computed, first.complete) == (7, False)
    partial = out / S.PARTIAL_NAME
    assert not (out / R.CSV_NAME).exists() and partial.is_file()
    finished = {(r[0], int(r[1])) for r in R.read_raw(partial)[0]}
    assert len(finished) == 7
    torn = next((b, i) for b in cfg.blocks for i in range(cfg.networks) if (b, i) not in finished)
    with open(partial, "a") as fh:  # a torn write: part of a network's rows, then a cut line
        fh.write("\n".join(",".join(r) for r in N.compute_network(cfg, *torn)[:9]) + f"\n{torn[0]},{torn[1]},12")

    calls = []
    real = N.compute_network
    monkeypatch.setattr(S, "compute_network", lambda c, b, i: calls.append((b, i)) or real(c, b, i))
    second = S.run_study(cfg, out, workers=1, progress=False)
    assert second.complete and (second.computed, second.reused) == (11, 7)
    assert not set(calls) & finished and len(calls) == 11
    assert (out / R.CSV_NAME).read_bytes() == (tmp_path / "ref" / R.CSV_NAME).read_bytes()
    assert not partial.exists()
    meta = json.loads((out / "study.json").read_text())
    assert meta["status"] == "complete" and meta["run"]["torn_lines"] == 1 and meta["run"]["dropped_rows"] == 9

    calls.clear()
    assert S.run_study(cfg, out, workers=1, progress=False).computed == 0 and not calls
    with pytest.raises(ValueError, match=r"holds a rank study made with other settings \(seed: 0 -> 3\): .*--fresh"):
        S.run_study(N.StudyConfig(**{**TINY, "seed": 3}), out, workers=1, progress=False)
    bigger = S.run_study(N.StudyConfig(**{**TINY, "networks": 8}), out, workers=1, progress=False)
    assert (bigger.computed, bigger.reused) == (6, 18)


def test_parallel_workers_give_the_same_csv_and_gzip_reads_back(tmp_path):
    cfg = N.StudyConfig(**TINY)
    serial = S.run_study(cfg, tmp_path / "a", workers=1, progress=False)
    par = S.run_study(cfg, tmp_path / "b", workers=2, progress=False, compress="yes")
    assert par.csv_path.name == R.GZ_NAME and not (tmp_path / "b" / R.CSV_NAME).exists()
    assert gzip.decompress(par.csv_path.read_bytes()) == serial.csv_path.read_bytes()
    assert R.read_rows(par.csv_path) == R.read_rows(serial.csv_path)


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cfg = N.StudyConfig(networks=20, d_out_min=24, d_out_max=48)
    S.run_study(cfg, out, workers=1, progress=False)
    paths = write_outputs(out, command=command_for(cfg, out))
    return cfg, out, paths


def test_outputs_have_the_columns_figures_and_choices(finished_study):
    cfg, out, paths = finished_study
    rows = R.read_rows(out / R.CSV_NAME)
    assert len(rows) == 4 * 20 * 8 * 7
    assert set("block act d_in d_out ratio n seed measure tol rank rank_ratio".split()) <= set(rows[0])
    r = rows[0]
    assert float(r["rank_ratio"]) == pytest.approx(float(r["rank"]) / int(r["d_out"]), abs=1e-6)
    assert {x["measure"] for x in rows} == {"rank@f32", "rank@1e-3", "rank@1e-2", "rank@1e-1", "effective",
                                            "stable", "nuclear"}
    assert all(x["tol"] == "" for x in rows if not x["measure"].startswith("rank@"))
    for m in ("rank_f32", "rank_1e-1", "effective", "stable", "nuclear"):
        png = out / f"fig1_{m}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    meta = json.loads((out / "study.json").read_text())
    assert meta["config"]["seed"] == 0 and meta["config"]["shortcut"] == "partial"
    assert meta["derived"]["n"] == cfg.n and "output taken after the shortcut" in meta["definitions"]["output"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("measure,block,act,ratio,networks,mean_rank_ratio,ci95")
    assert len(summary) == 1 + 7 * 4 * 8 * 10


def test_report_tests_each_observation_under_each_measure(finished_study):
    cfg, out, _ = finished_study
    text = (out / "report.md").read_text()
    for needle in ("(i) Drastic expansion harms rank", "(ii) Nonlinearities expand rank",
                   "(iii) The nonlinearity matters more", "How fragile is the ordering",
                   "Linear-algebra checks", "rexnet rank-study --out"):
        assert needle in text
    for m in ("rank@f32", "rank@1e-1", "effective", "stable", "nuclear"):
        assert f"### {m}" in text and f"| {m} |" in text
    obs = observations(load_results(out))
    # at the float32 tolerance the IB cap makes every nonlinearity identical to the identity
    assert obs["rank@f32"]["ii"]["gains"][("ib3x3", "silu")]["est"] == 0.0
    assert "No network exceeds its linear-algebra cap: true" in text


def test_cli_runs_the_study_and_reports_user_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="rexnet")
    add_rank_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rank-study", "--out", str(tmp_path / "s"), "--networks", "4", "--d-out", "16", "24",
                              "--blocks", "conv1x1,ibdw", "--acts", "identity,relu,silu", "--measures", "rank",
                              "--tols", "f32,1e-1", "--workers", "1", "--no-progress"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "8 networks computed" in printed
    assert "(iii) by spread" in printed and "as stated (gain over identity)" in printed
    assert (tmp_path / "s" / "report.md").is_file() and (tmp_path / "s" / "fig1_rank_1e-1.png").is_file()
    bad = parser.parse_args(["rank-study", "--out", str(tmp_path / "x"), "--ratios", "0.2,2"])
    with pytest.raises(ValueError, match="must lie in"):
        bad.func(bad)
    bad = parser.parse_args(["rank-study", "--out", str(tmp_path / "x"), "--ratios", "0.2,half"])
    with pytest.raises(ValueError, match="--ratios"):
        bad.func(bad)
    bad = parser.parse_args(["rank-study", "--out", str(tmp_path / "x"), "--blocks", "conv7x7"])
    with pytest.raises(ValueError, match="unknown block type 'conv7x7'"):
        bad.func(bad)
    quick = parser.parse_args(["rank-study", "--quick"])
    from rexnet.rank.cli import config_from_args
    assert config_from_args(quick).networks == N.QUICK_NETWORKS


# -- rank-audit ------------------------------------------------------------------------------
def test_audit_rexnet_silu_after_1x1_and_expansion_6(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="rexnet")
    add_rank_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rank-audit", "rexnet_100", "--input-size", "96",
                              "--csv", str(tmp_path / "a.csv"), "--json", str(tmp_path / "a.json")])
    assert args.func(args) == 0
    assert "guide 3" in capsys.readouterr().out
    data = json.loads((tmp_path / "a.json").read_text())
    layers = data["layers"]
    silu = [r for r in layers if r["act"] == "silu"]
    assert silu and all(r["kind"] in ("1x1", "3x3") and r["act_guide"] == "ok" for r in silu)
    assert all(r["act"] == "relu6" for r in layers if r["kind"] == "dw3x3")
    ibs = [b for b in data["blocks"] if b["is_ib"]]
    assert len(ibs) == 16 and [b["expansion"] for b in ibs] == [None] + [6.0] * 15
    assert data["summary"]["complex_after_dw"] == 0 and data["summary"]["expansion_ok"] == 15
    assert (tmp_path / "a.csv").read_text().startswith("block,layer,kind,in_chs,out_chs,dim_ratio")


@pytest.mark.parametrize("name", ["timm:mobilenetv2_100", "torchvision:mobilenet_v2"])
def test_audit_mobilenetv2_from_timm_and_torchvision(name):
    res = audit(name, input_size=96)
    ibs = [b for b in res.blocks if b.is_ib]
    assert len(ibs) == 17
    assert [b.expansion for b in ibs] == [None] + [6.0] * 16 and all(b.expansion_ok for b in ibs[1:])
    assert {r.act for r in res.layers} <= {"relu6", "none"}
    assert res.summary()["complex_after_dw"] == res.summary()["complex_after_conv"] == 0
    first = ibs[1]  # 16 -> 24 channels, expand 16 -> 96
    assert (first.in_chs, first.out_chs, first.dim_ratio) == (16, 24, round(16 / 24, 4))


def test_audit_flags_complex_nonlinearities_after_depthwise_convs():
    res = audit("timm:efficientnet_b0", input_size=96)
    dw = [r for r in res.layers if r.kind.startswith("dw")]
    assert dw and all(r.act == "silu" and r.act_guide == "complex after depthwise" for r in dw)
    assert res.summary()["complex_after_dw"] == len(dw) == 16
    with pytest.raises(ValueError, match="unknown model"):
        audit("no_such_net_123")
    with pytest.raises(ValueError, match="no Conv2d"):
        audit_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64 * 64, 2)), input_size=64)
