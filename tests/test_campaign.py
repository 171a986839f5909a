"""The full-scale campaign's experiments.  The shape panel: its six shapes at equal MACs, Holm
within the protocol's families, the primary pair trained first, the R² regression against a
direct fit, and its report.  mobilenetv2_linear_full: one stated pair, registered as planned."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from rexnet import stats
from rexnet.experiments import EXPERIMENTS, ExperimentSettings, analyze_experiment
from rexnet.experiments.definitions import mobilenetv2_pair
from rexnet.experiments.paired import trial_rows
from rexnet.experiments.protocol import PROTOCOL_FILE, build_protocol, register_protocol
from rexnet.experiments.report import write_outputs
from rexnet.search.analysis import _fit
from rexnet.search.panel import SHAPE_PANEL, SHAPES, panel_arms, shape_regression
from rexnet.search.space import get_preset, stage_repeats
from rexnet.trials import Store


@pytest.fixture(scope="module")
def arms():
    return panel_arms("smoke")


def test_six_shapes_at_equal_macs_each_of_its_kind(arms):
    by = {a.name: a for a in arms}
    assert tuple(by) == SHAPES
    line = by["linear"]
    for a in arms:
        assert abs(a.macs / line.macs - 1) <= 0.01, a.name
    assert abs(by["stagewise_matched"].params / line.params - 1) <= 0.03
    w = {k: np.array([b.out_chs for b in a.spec.blocks]) for k, a in by.items()}
    assert all((np.diff(v) >= 0).all() for v in w.values())                     # non-decreasing, every shape
    assert w["linear"].tolist() == list(get_preset("smoke").space.references()[0].widths)
    # the practised staircase: flat inside every stage, MobileNetV2's ratios (x ~0.48), 2.5x the line's params
    stages = np.split(w["stagewise"], np.cumsum(stage_repeats(12))[:-1])
    assert all(len(set(s)) == 1 for s in stages) and len({s[0] for s in stages}) == 6
    assert by["stagewise"].params > 2 * line.params
    assert np.diff(w["input_starved"])[-1] > 4 * max(1, np.diff(w["input_starved"])[0])   # output-heavy
    assert w["input_starved"][0] == 8 and w["input_starved"][-1] > 3 * w["linear"][-1]
    assert np.diff(w["early_saturating"])[0] > 4 * np.diff(w["early_saturating"])[-1]    # input-heavy
    assert w["constant"].max() - w["constant"].min() <= 1
    assert _fit(w["linear"])["r2"] > 0.99 > _fit(w["input_starved"])["r2"]


def test_the_primary_pair_trains_every_seed_first(arms):
    s = ExperimentSettings(data="cifar10", seeds=3, epochs=1, batch_size=128).with_defaults({})
    keys = [r["key"] for r in trial_rows("shape_panel", arms, s, SHAPE_PANEL.first_arms)]
    assert keys[:6] == ["linear-r0", "stagewise-r0", "linear-r1", "stagewise-r1", "linear-r2", "stagewise-r2"]
    assert keys[6:10] == ["stagewise_matched-r0", "input_starved-r0", "early_saturating-r0", "constant-r0"]
    assert len(keys) == len(set(keys)) == 18
    assert [r["key"] for r in trial_rows("x", arms[:2], s)][:2] == ["linear-r0", "stagewise-r0"]


def _planted(out, arms, acc_of):
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "search.db")
    s = ExperimentSettings(data="cifar10", seeds=8, epochs=1, batch_size=128).with_defaults({})
    store.add(trial_rows("shape_panel", arms, s))
    while (t := store.claim("test")) is not None:
        store.finish(t["key"], "test", dict(test_top1=acc_of(t["kind"], t["seed"]), test_images=10000, wall_s=1.0,
                                            cpu_s=2.0))
    store.close()
    return s


def test_holm_within_families_regression_and_report(tmp_path, arms):
    rng = np.random.default_rng(0)
    noise = {k: rng.normal(0, 0.2, 8) for k in SHAPES}
    gain = dict(linear=0.0, stagewise=-1.0, stagewise_matched=-0.05, input_starved=-3.0, early_saturating=-0.6,
                constant=-0.4)
    s = _planted(tmp_path, arms, lambda k, sd: 80.0 + gain[k] + noise[k][sd])
    protocol = build_protocol(SHAPE_PANEL, s, arms)
    assert protocol["correction"] == ("Holm within each family, each at alpha: primary: 1 comparison; "
                                      "secondary: 4 comparisons")
    assert protocol["min_seeds_to_reject"] == 8 and protocol["seeds"]["n"] == 8
    assert [c.get("family") for c in protocol["comparisons"]] == ["primary"] + ["secondary"] * 4
    register_protocol(tmp_path, protocol, has_results=False)
    r = analyze_experiment(SHAPE_PANEL, tmp_path, s, arms)
    comps = {c["b"]: c for c in r["comparisons"]}
    assert comps["stagewise"]["holm_p"] == pytest.approx(comps["stagewise"]["permutation_p"])   # a family of one
    sec = [comps[k] for k in ("stagewise_matched", "input_starved", "early_saturating", "constant")]
    assert [c["holm_p"] for c in sec] == pytest.approx(stats.holm([c["permutation_p"] for c in sec]))
    assert r["verdict"] == "holds" and comps["input_starved"]["verdict"] == "holds"
    assert comps["stagewise"]["permutation_p"] == pytest.approx(2 / 256)
    # the regression, against a direct least-squares fit
    reg = r["secondary_analysis"]
    mean = np.array([80.0 + gain[k] + noise[k].mean() for k in SHAPES])
    x = np.column_stack([np.ones(6), [_fit([b.out_chs for b in a.spec.blocks])["r2"] for a in arms],
                         [a.params / 1e6 for a in arms]])
    coef = np.linalg.lstsq(x, mean, rcond=None)[0]
    assert reg["coefficient_r2"] == pytest.approx(coef[1], abs=1e-4) and reg["dof"] == 3
    assert reg["ci95"][0] < reg["coefficient_r2"] < reg["ci95"][1]
    assert shape_regression(r["arms"], {0})["dof"] == 3                                         # one seed still fits
    assert shape_regression({k: r["arms"][k] for k in SHAPES[:3]}, {0})["coefficient_r2"] is None   # 3 arms: too few
    write_outputs("shape_panel", tmp_path, dict(r, wall_s=1.0, command="rexnet experiment shape_panel",
                                                counts=dict(done=48, failed=0)), s)
    report = (tmp_path / "report.md").read_text()
    assert "## Accuracy on the widths' linearity (secondary, descriptive)" in report
    assert "all 45,000" not in report and "all 50,000 training images" in report
    assert {"widths.png", "accuracy.png", "differences.png"} <= {p.name for p in (tmp_path / "figures").iterdir()}
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["colours"]["linear"] == "tab:red" and saved["secondary_analysis"]["rows"][0][0] == "linear"


def test_plan_writes_the_protocol_with_families_and_an_estimate(tmp_path, capsys):
    from rexnet.cli import main

    out = tmp_path / "panel"
    assert main(["experiment", "shape_panel", "--plan", "--out", str(out), "--batch-size", "8"]) == 0
    p = yaml.safe_load((out / PROTOCOL_FILE).read_text())
    assert p["budget"]["holdout"] == 5000 and p["budget"]["epochs"] == SHAPE_PANEL.defaults["epochs"]
    assert p["registered"]["before_any_result"] and set(p["arms"]) == set(SHAPES)
    assert p["estimate"]["runs"] == 48 and p["estimate"]["core_hours"] > 0
    assert "commit it before the first run" in capsys.readouterr().out


def test_mobilenetv2_linear_full_states_one_pair_at_equal_macs():
    exp = EXPERIMENTS["mobilenetv2_linear_full"]
    s = ExperimentSettings(data="cifar10").with_defaults(exp.defaults)
    arms = exp.arms(s)
    assert [a.name for a in arms] == ["linear", "stagewise"] and abs(arms[0].macs / arms[1].macs - 1) <= 0.01
    assert arms[0].params < arms[1].params                                  # the line has fewer params
    assert [a.spec.hash() for a in arms] == [a.spec.hash() for a in mobilenetv2_pair(0.35)[:2]]
    p = build_protocol(exp, s, arms)
    assert [c["name"] for c in p["comparisons"]] == ["linear vs stage-wise at equal MACs"]
    assert p["correction"] == "none: one stated comparison, at alpha" and p["min_seeds_to_reject"] == 6
    assert p["budget"]["holdout"] == 5000 and p["budget"]["train_subset"] is None and p["seeds"]["n"] == 8


def _rank_store(path, arms_acc: dict[str, list[float]], extra=None):
    """A finished store whose runs carry the rank measures a campaign run records."""
    path.mkdir(parents=True, exist_ok=True)
    store = Store(path / "search.db")
    spec = get_preset("smoke").space.references()[0].spec
    store.add([dict(key=f"{arm}-r{r}", spec_hash=arm, repeat=r, seed=r, kind=arm, spec=spec.to_json(), widths=[8],
                    macs=1, params=1) for arm, accs in arms_acc.items() for r in range(len(accs))])
    while (t := store.claim("test")) is not None:
        acc = arms_acc[t["kind"]][t["repeat"]]
        res = dict(test_top1=acc, nuclear_norm_raw=acc / 4, nuclear_norm=acc / 400, effective_rank=100 - acc,
                   **{"rank_0.001": 30 + (t["repeat"] % 2), "rank_0.01": 20},
                   cumulative_singular_values=[0.5, 0.8, 1.0], **(extra or {}).get(t["key"], {}))
        store.finish(t["key"], "test", res)
    store.close()


def test_trained_rank_correlates_models_and_pairs_mobilenetv2(tmp_path):
    from scipy import stats as sp

    from rexnet.experiments.trained_rank import run_trained_rank

    panel, pair = tmp_path / "shape_panel", tmp_path / "mobilenetv2_linear_full"
    _rank_store(panel, dict(linear=[81.0, 81.4], stagewise=[80.1, 80.5], input_starved=[77.0, 77.2],
                            constant=[79.0, 79.6], early_saturating=[80.0, 79.8], stagewise_matched=[81.1, 81.0]))
    _rank_store(pair, dict(linear=[82.0, 82.6, 82.2], stagewise=[81.0, 81.9, 81.5]))
    out = tmp_path / "trained_rank"
    src = (str(panel), str(pair))
    p = run_trained_rank(out, plan=True, sources=src, pair=(str(pair), "linear", "stagewise"))
    assert p["registered"]["before_any_result"] and not (out / "result.json").exists()
    r = run_trained_rank(out, sources=src, pair=(str(pair), "linear", "stagewise"))
    acc = [m["test_top1"] for m in r["models"]]
    assert len(acc) == 8
    by = {t["measure"]: t for t in r["tests"]}
    raw = [m["nuclear_norm_raw"] for m in r["models"]]
    assert by["nuclear_norm_raw"]["rho"] == pytest.approx(sp.spearmanr(raw, acc).statistic)
    assert by["nuclear_norm_raw"]["rho"] == pytest.approx(1.0) and by["effective_rank"]["rho"] == pytest.approx(-1.0)
    assert by["nuclear_norm_raw"]["p"] == pytest.approx(2 / 40320)                  # exact: 8! orderings
    assert [t["holm_p"] for t in r["tests"]] == pytest.approx(stats.holm([t["p"] for t in r["tests"]]))
    assert r["verdict"] == "holds" and by["effective_rank"]["verdict"] == "contradicted"
    assert by["rank_0.01"]["rho"] is None and by["rank_0.01"]["verdict"] == "inconclusive"   # constant: undefined
    top = r["pair"]["comparisons"]["test_top1"]
    assert top["n"] == 3 and top["diff_mean"] == pytest.approx(np.mean([1.0, 0.7, 0.7]))
    assert r["pair"]["spectra"]["linear"] == [0.5, 0.8, 1.0]
    assert {"rank_vs_accuracy.png", "fig5_right.png"} <= {f.name for f in (out / "figures").iterdir()}
    assert "**Verdict: holds**" in (out / "report.md").read_text()
    # a run without measures, or a diverged one, is refused by name
    _rank_store(tmp_path / "bad", dict(linear=[80.0]), extra={"linear-r0": dict(diverged="epoch 2: loss")})
    with pytest.raises(ValueError, match=r"run linear-r0 of .*bad diverged"):
        run_trained_rank(tmp_path / "tr2", sources=(str(tmp_path / "bad"),), pair=(str(pair), "linear", "stagewise"))
    with pytest.raises(ValueError, match=r"no store at .*missing"):
        run_trained_rank(tmp_path / "tr3", sources=(str(tmp_path / "missing"),))


def test_trained_rank_is_a_command(tmp_path, capsys):
    from rexnet.cli import main
    from rexnet.experiments.trained_rank import SOURCES

    assert main(["experiment", "trained_rank", "--plan", "--out", str(tmp_path / "tr")]) == 0
    assert yaml.safe_load((tmp_path / "tr" / PROTOCOL_FILE).read_text())["sources"] == list(SOURCES)
    assert "commit it before the first analysis" in capsys.readouterr().out
