"""The search analysis: its statistics on hand-made inputs with known answers, and
whole analyses of synthetic stores whose accuracies are a known function of the widths."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rexnet.cli import main
from rexnet import stats
from rexnet.search import analysis
from rexnet.search.report import analyze
from rexnet.search.space import PRESETS
from rexnet.trials import Store

SMOKE_DB = Path(__file__).resolve().parents[1] / "docs" / "search" / "smoke" / "search.db"

PRESET = PRESETS["smoke"]
SPACE = PRESET.space
# two perfectly linear shapes (integer slopes) that the synthetic accuracy makes the best
LINEAR_BEST = [[8 + 2 * i for i in range(SPACE.depth)], [10 + 3 * i for i in range(SPACE.depth)]]


def _r2(widths) -> float:
    y = np.asarray(widths, float)
    x = np.arange(len(y))
    res = y - np.polyval(np.polyfit(x, y, 1), x)
    return 1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum()


# references built from fixed shapes (the analysis reads a store; how the space solves them is
# tested in test_search.py): a straight line and a MobileNetV2-like staircase
LINEAR_REF = [16 + 2 * i for i in range(SPACE.depth)]
STAGEWISE_REF = [8, 12, 12, 16, 16, 16, 32, 32, 32, 48, 48, 48][:SPACE.depth]


def _random_widths(rng: np.random.Generator) -> list[int]:
    """A random non-decreasing shape: integer steps of 0-7 channels, about a third of them flat."""
    steps = rng.integers(1, 8, SPACE.depth - 1) * (rng.random(SPACE.depth - 1) > 0.35)
    return (int(rng.integers(8, 24)) + np.concatenate([[0], np.cumsum(steps)])).tolist()


def _candidates(n_samples: int, seed: int = 0):
    """The two references, ``n_samples`` random shapes and the two handmade lines (samples too)."""
    rng = np.random.default_rng(seed)
    cands = [SPACE.candidate("linear", LINEAR_REF), SPACE.candidate("stagewise", STAGEWISE_REF)]
    seen = {tuple(w) for w in LINEAR_BEST}
    while len(cands) < 2 + n_samples:
        w = _random_widths(rng)
        if tuple(w) not in seen and abs(_r2(w) - 1) > 1e-9:
            seen.add(tuple(w))
            cands.append(SPACE.candidate("sample", w))
    return cands + [SPACE.candidate("sample", w) for w in LINEAR_BEST]


def _true_acc(c) -> float:
    """Linearity decides: the handmade straight lines best, then by the R² of the shape."""
    if list(c.widths) in LINEAR_BEST:
        return 95.0 - LINEAR_BEST.index(list(c.widths))
    return 40.0 + 45.0 * max(0.0, _r2(c.widths))


def _make(tmp_path, name: str, cands, repeats: int, noise=lambda i, r: 0.0, fail=(), rank=True,
          preset_name: str | None = None, family=None, test_offset: float | None = None):
    """A store built through the real API (rows as ``prepare()`` writes them).  ``family(c)``
    writes spec.meta.family as the new sampler does; ``test_offset`` records test_top1 =
    accuracy + offset and the raw nuclear norm, as the new runner does."""
    d = tmp_path / name
    store = Store(d / "search.db")
    preset = PRESET.to_dict()
    preset["repeats"] = repeats
    if preset_name:
        preset["space"]["name"] = preset_name
    store.set_meta("preset", preset)
    def spec_json(c) -> str:
        if family is None:
            return c.spec.to_json()
        d = json.loads(c.spec.to_json())
        d.setdefault("meta", {})["family"] = family(c)
        return json.dumps(d)

    store.add([dict(key=f"{c.hash}-r{r}", spec_hash=c.hash, repeat=r, seed=r, kind=c.kind, spec=spec_json(c),
                    widths=list(c.widths), macs=c.macs, params=c.params, params_of_f=c.params_of_f)
               for c in cands for r in range(repeats)])
    by_hash = {c.hash: (i, c) for i, c in enumerate(cands)}
    while (t := store.claim("test")) is not None:
        i, c = by_hash[t["spec_hash"]]
        if t["key"] in fail:
            store.fail(t["key"], "test", "RuntimeError: synthetic failure\n")
            continue
        acc = _true_acc(c) + noise(i, t["repeat"])
        res = dict(best_val_top1=acc, best_epoch=1, final_val_top1=acc - 0.5, epochs_done=2, val_top1=[acc - 1, acc],
                   train_loss=[2.0, 1.5], images_per_s=100.0, wall_s=3.0, train_images=2000, val_images=1000)
        if rank:   # the nuclear norm grows with accuracy here, so the correlation is +1
            res.update(nuclear_norm=acc / 100, effective_rank=acc / 4, feature_channels=c.widths[-1])
        if test_offset is not None:
            res.update(test_top1=acc + test_offset, test_images=10000)
            if rank:
                res.update(nuclear_norm_raw=acc / 100 * c.widths[-1])
        store.finish(t["key"], "test", res)
    store.close()
    return d


def test_groups_fit_noise_and_files(tmp_path):
    cands = _candidates(18)   # 20 samples: k = 2 per group
    # repeats 0/1 at +-delta_i around the true accuracy: a known within-spec spread
    deltas = np.linspace(0.1, 1.0, len(cands))
    d = _make(tmp_path, "s", cands, repeats=2, noise=lambda i, r: deltas[i] * (1 if r == 0 else -1))
    out = tmp_path / "out"
    a = analyze([d], out)["searches"]["smoke"]

    samples = sorted((c for c in cands if c.kind == "sample"), key=_true_acc)
    assert a["n_samples"] == 20 and a["group_size"] == 2 and not a["groups_overlap"]
    assert a["groups"]["top"]["members"] == [samples[-1].hash, samples[-2].hash]   # the handmade lines
    assert a["groups"]["bottom"]["members"] == [samples[1].hash, samples[0].hash]
    # between the top 50% and 60%: ranks 11 and 12 from the top of 20, i.e. 0-based 9 and 8 from the bottom
    assert a["groups"]["middle"]["members"] == [samples[9].hash, samples[8].hash]
    assert a["accuracy"]["key"] == "best_val_top1"   # no test_top1 recorded in this store
    top = a["groups"]["top"]
    assert top["fit"]["r2"] == pytest.approx(1.0, abs=1e-9)
    assert top["fit"]["slope"] == pytest.approx(2.5) and top["fit"]["intercept"] == pytest.approx(9.0)
    assert top["mean_model_r2"] == pytest.approx(1.0, abs=1e-9)
    assert top["acc_mean"] == pytest.approx(94.5)
    assert a["best"]["spec_hash"] == samples[-1].hash and a["worst"]["acc_mean"] == pytest.approx(
        min(_true_acc(c) for c in cands), abs=1e-3)

    # noise against an independent computation
    accs = np.array([[_true_acc(c) + deltas[i], _true_acc(c) - deltas[i]] for i, c in enumerate(cands)])
    within = np.sqrt(np.var(accs, axis=1, ddof=1).mean())   # pooled by RMS, not by mean SD
    between = np.std(accs.mean(axis=1), ddof=1)
    nz = a["noise"]
    assert nz["available"] and nz["specs"] == len(cands)
    assert nz["within_std"] == pytest.approx(within, abs=1e-4)
    assert nz["between_std"] == pytest.approx(between, abs=1e-4)
    assert nz["ratio"] == pytest.approx(within / between, abs=1e-4)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731 - no ties in these accuracies
    dr = rank(accs[:, 0]) - rank(accs[:, 1])
    n = len(cands)
    assert nz["spearman_r0_r1"] == pytest.approx(1 - 6 * (dr ** 2).sum() / (n * (n ** 2 - 1)), abs=1e-4)
    assert "mostly signal" in nz["verdict"]

    # the A/B: linear reference is straight, so it beats the stage-wise one here
    ab = a["references"]
    assert ab["diff_linear_minus_stagewise"] == pytest.approx(ab["linear"]["acc_mean"] - ab["stagewise"]["acc_mean"])
    assert ab["diff_linear_minus_stagewise"] > 0
    assert 0 <= ab["stagewise"]["percentile_among_samples"] <= ab["linear"]["percentile_among_samples"] <= 100
    assert a["rank"]["available"] and a["rank"]["spearman"] == pytest.approx(1.0)

    for f in ("trials.csv", "specs.csv", "report.md", "analysis.json", "fig2_smoke.png", "error_edf.png",
              "fig4_top_widths.png", "acc_vs_nuclear_norm.png", "shapes_smoke.png"):
        assert (out / f).stat().st_size > 0, f
    assert not list(out.glob("*.tmp*"))
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 2 * len(cands) and rows[0]["widths"].count("/") == SPACE.depth - 1
    assert json.loads((out / "analysis.json").read_text())["searches"]["smoke"]["n_specs"] == len(cands)
    report = (out / "report.md").read_text()
    for section in ("## Fig. 2", "## Linear fit", "## Shape statistics", "## Shape families", "## Table 3",
                    "## Best and worst", "## Linear vs stage-wise", "## Error EDFs", "## Accuracy vs nuclear norm",
                    "## Fig. 4", "## Noise", "## Failed trials", "](shapes_smoke.png)",
                    "](fig2_smoke.png)", "](error_edf.png)", "](acc_vs_nuclear_norm.png)", "](fig4_top_widths.png)"):
        assert section in report, section


def test_noise_dominated_ranking_is_flagged(tmp_path):
    cands = _candidates(8)
    big = lambda i, r: 30.0 * (1 if (i + r) % 2 else -1)   # noqa: E731 - repeat noise >> true spread
    a = analyze([_make(tmp_path, "s", cands, repeats=2, noise=big, rank=False)], tmp_path / "out")
    assert "mostly noise" in a["searches"]["smoke"]["noise"]["verdict"]


def test_single_repeat_failures_no_rank_and_two_searches(tmp_path):
    cands = _candidates(1)   # 3 samples, one of which fails: 2 models for groups of 1, so they overlap
    failed_key = f"{cands[2].hash}-r0"
    d1 = _make(tmp_path, "a", cands, repeats=1, fail={failed_key}, rank=False)
    d2 = _make(tmp_path, "b", _candidates(6, seed=1), repeats=1, rank=False)
    out = tmp_path / "out"
    res = analyze([d1, d2], out)["searches"]
    assert set(res) == {"smoke@a", "smoke@b"}   # same preset twice: told apart by the folder
    a = res["smoke@a"]
    assert a["counts"]["failed"] == 1 and a["failed"][0]["key"] == failed_key
    assert cands[2].hash not in [s["spec_hash"] for s in a["specs"]]   # excluded from statistics
    assert a["n_samples"] == 2 and a["groups_overlap"]
    assert not a["noise"]["available"] and ">= 2 repeats" in a["noise"]["reason"]
    assert not a["rank"]["available"] and not (out / "acc_vs_nuclear_norm.png").exists()
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["status"] for r in rows if r["key"] == failed_key] == ["failed"]
    report = (out / "report.md").read_text()
    assert "needs >= 2 repeats" in report and failed_key in report and "overlap" in report
    assert "plot skipped" in report
    assert (out / "fig2_smoke_a.png").exists() and (out / "fig2_smoke_b.png").exists()


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="rexnet search run"):
        analyze([tmp_path / "nothing"], tmp_path / "out")
    d = tmp_path / "empty"
    with Store(d / "search.db") as store:   # trials added, none finished
        c = SPACE.candidate("linear", LINEAR_REF)
        store.add([dict(key=f"{c.hash}-r0", spec_hash=c.hash, repeat=0, seed=0, kind=c.kind, spec=c.spec.to_json(),
                        widths=list(c.widths), macs=c.macs, params=c.params, params_of_f={})])
    with pytest.raises(ValueError, match=r"empty.*no done trials.*rexnet search run"):
        analyze([d], tmp_path / "out")
    with pytest.raises(ValueError, match="no search directories"):
        analyze([], tmp_path / "out")


# -- the statistics on hand-made inputs ------------------------------------------------------
MOBILENETV2 = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]   # 17 blocks


def test_shape_stats_separate_hand_made_shapes():
    d = len(MOBILENETV2)
    x = np.linspace(0, 1, d)
    line = analysis.shape_stats([16 + 19 * i for i in range(d)])
    stair = analysis.shape_stats(MOBILENETV2)
    convex = analysis.shape_stats(np.round(16 + 304 * x ** 2))
    concave = analysis.shape_stats(np.round(16 + 304 * np.sqrt(x)))
    assert line["chord_area"] == pytest.approx(0, abs=1e-12) and line["flat_share"] == 0
    assert line["max_step_share"] == pytest.approx(1 / (d - 1)) and line["r2"] == pytest.approx(1)
    # the staircase: its largest step (160 -> 320) is 160 of 304 channels, 10 of 16 steps are flat
    assert stair["max_step_share"] == pytest.approx(160 / 304) and stair["flat_share"] == pytest.approx(10 / 16)
    assert stair["r2"] < 0.8
    # x² lies below its chord by 1/6 of the unit square (trapezoid rule and rounding: within 0.01)
    assert convex["chord_area"] == pytest.approx(-1 / 6, abs=0.01) and convex["flat_share"] == 0
    assert concave["chord_area"] > 0.1
    flat = analysis.shape_stats([20] * 5)
    assert flat == dict(chord_area=0.0, max_step_share=0.0, flat_share=1.0, r2=1.0)
    with pytest.raises(ValueError, match="at least two widths"):
        analysis.shape_stats([16])


def _ranked(n: int) -> list[dict]:
    return [dict(acc_mean=float(i), spec_hash=f"h{i:03d}") for i in range(n)]


def test_group_rule_middle_is_top_50_to_60_percent():
    g = analysis.split_groups(_ranked(20))   # k = 2; accuracy i, so rank r from the top has accuracy 20 - r
    assert [s["acc_mean"] for s in g["top"]] == [19, 18]
    assert [s["acc_mean"] for s in g["middle"]] == [9, 8]        # ranks 11 and 12 of 20 from the top
    assert [s["acc_mean"] for s in g["bottom"]] == [1, 0]
    g = analysis.split_groups(_ranked(100))  # the paper's 100 models: ranks 51-60 from the top
    assert [s["acc_mean"] for s in g["middle"]] == list(range(49, 39, -1))
    tied = _ranked(20)
    tied[9]["acc_mean"] = tied[8]["acc_mean"] = 8.5                 # ties broken by spec hash, higher first
    assert [s["spec_hash"] for s in analysis.split_groups(tied)["middle"]] == ["h009", "h008"]
    assert analysis.split_groups([]) == dict(top=[], middle=[], bottom=[])


def test_permutation_test_small_p_for_separated_group_large_for_random():
    v = np.arange(100, dtype=float)
    top = list(range(90, 100))
    centred = [0, 99]                                               # mean 49.5 = the sample mean
    p_top = stats.subset_mean_pvalues(v, top)
    assert p_top[0] == pytest.approx(1 / (1 + analysis.PERMUTATIONS))  # no random 10-subset is as extreme
    assert stats.subset_mean_pvalues(v, centred)[0] == 1.0
    # random groups: p is about uniform, so rarely small (calibration over 300 groups)
    rng = np.random.default_rng(3)
    p_rnd = np.array([stats.subset_mean_pvalues(v, rng.choice(100, 10, replace=False), n_perm=1000, seed=i)[0]
                      for i in range(300)])
    assert 0.02 < np.mean(p_rnd < 0.05) < 0.09 and 0.4 < np.median(p_rnd) < 0.6
    # columns are tested together, and a fixed seed makes it repeatable
    both = stats.subset_mean_pvalues(np.column_stack([v, -v]), top)
    assert both.tolist() == [p_top[0], p_top[0]]
    assert stats.subset_mean_pvalues(v, [3, 50, 77])[0] == stats.subset_mean_pvalues(v, [3, 50, 77])[0]
    with pytest.raises(ValueError, match="members"):
        stats.subset_mean_pvalues(v, [])


def _two_way_table(n_spec=30, seed_offsets=(-2.0, 1.5, 0.3, 0.2), noise=0.1, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    spec_means = rng.uniform(50, 80, n_spec)
    y = spec_means[:, None] + np.asarray(seed_offsets)[None, :] + rng.normal(0, noise, (n_spec, len(seed_offsets)))
    return {f"s{i}": {j: float(y[i, j]) for j in range(len(seed_offsets))} for i in range(n_spec)}, y


def test_two_way_noise_recovers_a_known_seed_effect():
    offsets = np.array([-2.0, 1.5, 0.3, 0.2])
    table, y = _two_way_table(seed_offsets=offsets)
    two, one = analysis.two_way_noise(table), analysis.one_way_noise(table)
    # residual SD against an independent least-squares fit of spec and seed dummies
    i, j = np.indices(y.shape)
    design = np.column_stack([np.eye(y.shape[0])[i.ravel()], np.eye(y.shape[1])[j.ravel()][:, 1:]])
    resid = y.ravel() - design @ np.linalg.lstsq(design, y.ravel(), rcond=None)[0]
    df = (y.shape[0] - 1) * (y.shape[1] - 1)
    assert two["residual_sd"] == pytest.approx(np.sqrt((resid ** 2).sum() / df), rel=1e-9)
    assert 0.07 < two["residual_sd"] < 0.14                         # the noise SD put in: 0.1
    assert one["within_std"] > 10 * two["residual_sd"]              # one-way counts the seed effect as noise
    assert two["seed_sd"] == pytest.approx(np.std(offsets, ddof=1), rel=0.05)
    assert [two["seed_effects"][s] for s in range(4)] == pytest.approx(offsets - offsets.mean(), abs=0.05)
    assert two["noise_share"] < one["noise_share"] / 50
    assert two["specs"] == 30 and two["seeds"] == [0, 1, 2, 3] and two["dropped_specs"] == 0
    assert one["within_std"] == pytest.approx(np.sqrt(np.var(y, axis=1, ddof=1).mean()))   # RMS pooling

    # missing repeats: the two-way model keeps the complete specs and says how many it left out
    del table["s0"][3], table["s1"][2]
    table["extra"] = {0: 60.0, 7: 61.0}
    two = analysis.two_way_noise(table)
    # the largest complete block: 28 specs x seeds 0-3 (112 cells) beats 29 x 3 and 30 x 2
    assert two["specs"] == 28 and two["seeds"] == [0, 1, 2, 3] and two["dropped_specs"] == 3
    assert analysis.two_way_noise({"a": {0: 1.0}, "b": {1: 2.0}}) is None


def test_partial_correlation_removes_a_width_artefact():
    rng = np.random.default_rng(1)
    n = 200
    width = rng.integers(20, 200, n).astype(float)
    params = 1000 * width + rng.normal(0, 20000, n)
    z = rng.normal(0, 1, n)                                         # what the width does not explain
    acc = 50 + 0.1 * width + 2 * z
    points = [dict(acc_mean=float(a), widths=[8, int(w)], params=float(p),
                   nuclear_norm=float(1 - w / 400 + rng.normal(0, 0.002)),  # a pure function of width
                   nuclear_norm_raw=float(0.5 * w + 5 * zz))              # width and the signal
              for a, w, p, zz in zip(acc, width, params, z)]
    norm = analysis.nuclear_correlations(points, "nuclear_norm")
    raw = analysis.nuclear_correlations(points, "nuclear_norm_raw")
    assert norm["pearson"] < -0.7 and norm["spearman_vs_width"] < -0.95   # strong, and all width
    assert abs(norm["partial_pearson"]) < 0.25   # a null correlation: SE 1/sqrt(197) = 0.07
    assert raw["partial_pearson"] > 0.9 and raw["partial_spearman"] > 0.8
    # one control: the textbook formula
    r = lambda a, b: np.corrcoef(a, b)[0, 1]  # noqa: E731
    x, y, c = np.array([p["nuclear_norm_raw"] for p in points]), acc, width
    expect = (r(x, y) - r(x, c) * r(y, c)) / np.sqrt((1 - r(x, c) ** 2) * (1 - r(y, c) ** 2))
    assert stats.partial_corr(x, y, [c]) == pytest.approx(expect, abs=1e-9)
    missing = analysis.nuclear_correlations([dict(p, nuclear_norm_raw=None) for p in points], "nuclear_norm_raw")
    assert not missing["available"] and "predates" in missing["reason"]


def test_gap_interval_and_verdict():
    assert [stats.t975(df) for df in (1, 2, 10, 30)] == pytest.approx([12.706, 4.303, 2.228, 2.042], abs=1e-3)
    a, b = {0: 70.0, 1: 72.0, 2: 71.0}, {0: 68.0, 1: 70.5, 2: 68.5}   # per-seed differences 2, 1.5, 2.5
    g = stats.gap_interval(a, b)
    half = stats.t975(2) * 0.5 / np.sqrt(3)
    assert g["method"] == "paired by seed" and g["mean"] == pytest.approx(2.0)
    assert g["ci95"] == pytest.approx([2 - half, 2 + half]) and stats.interval_verdict(g["ci95"]) == "holds"
    assert stats.interval_verdict(stats.gap_interval(b, a)["ci95"]) == "contradicted"
    w = stats.gap_interval({0: 70.0, 1: 72.0}, {2: 69.0, 3: 73.0})    # different seeds: Welch
    assert w["method"] == "welch" and w["df"] == pytest.approx(1.471, abs=1e-3)   # Welch-Satterthwaite df
    assert stats.interval_verdict(w["ci95"]) == "inconclusive"
    p = stats.gap_interval({0: 70.0}, {0: 68.0}, fallback_sd=1.0, fallback_df=10)
    assert p["method"] == "pooled noise" and p["se"] == pytest.approx(np.sqrt(2))
    assert stats.gap_interval({0: 70.0}, {0: 68.0})["ci95"] is None and stats.interval_verdict(None) == "inconclusive"


# -- whole analyses ------------------------------------------------------------------------
def _family(c) -> str:
    if c.kind != "sample":
        return c.kind
    if list(c.widths) in LINEAR_BEST:
        return "linear"
    return "staircase" if analysis.shape_stats(c.widths)["flat_share"] > 0.3 else "piecewise"


def test_new_store_test_top1_families_raw_norm_and_incomplete_repeats(tmp_path):
    cands = _candidates(18)
    failed_key = f"{cands[5].hash}-r2"
    noise = lambda i, r: 0.2 * ((7 * i + 3 * r) % 5 - 2)   # noqa: E731 - small, deterministic
    d = _make(tmp_path, "s", cands, repeats=3, noise=noise, fail={failed_key}, family=_family, test_offset=-3.0)
    out = tmp_path / "out"
    a = analyze([d], out)["searches"]["smoke"]
    assert a["accuracy"]["key"] == "test_top1"
    assert a["groups"]["top"]["acc_mean"] == pytest.approx(np.mean([95.0, 94.0]) - 3.0 + np.mean(
        [np.mean([noise(len(cands) - 2 + j, r) for r in range(3)]) for j in range(2)]), abs=1e-3)

    fam = {r["family"]: r for r in a["families"]["rows"]}
    assert a["families"]["known"] and sum(r["sampled"] for r in fam.values()) == 20
    assert fam["linear"]["sampled"] == 2 and fam["linear"]["top"] == 2
    assert all(sum(r[g] for r in fam.values()) == a["group_size"] for g in analysis.GROUPS)
    assert fam["staircase"]["shape"]["flat_share"] > fam["piecewise"]["shape"]["flat_share"]
    sh = a["shapes"]
    assert sh["top"]["mean"]["r2"] == pytest.approx(1.0) and sh["top"]["mean"]["flat_share"] == 0
    assert set(sh["top"]["p"]) == set(analysis.SHAPE_STATS) | {"params"}

    two = a["noise"]["two_way"]
    assert two["available"] and two["specs"] == len(cands) - 1 and two["dropped_specs"] == 1
    assert two["seeds"] == [0, 1, 2] and a["noise"]["model"] == "two-way"

    ab = a["references"]
    assert ab["linear"]["params"] > 0 and ab["stagewise"]["params"] > 0
    assert ab["params_ratio"] == pytest.approx(ab["linear"]["params"] / ab["stagewise"]["params"], abs=1e-4)
    assert ab["gap"]["method"] == "paired by seed" and ab["gap"]["verdict"] == "holds"
    assert ab["gap"]["ci95"][0] > 0

    assert a["rank"]["raw"]["available"] and a["rank"]["normalised"]["available"]
    assert a["rank"]["raw"]["points"] == len(cands)
    report = (out / "report.md").read_text()
    assert "`test_top1`" in report and "1 spec(s) with missing repeats left out" in report
    assert "Verdict: holds" in report and "staircase" in report
    rows = list(csv.DictReader((out / "specs.csv").open()))
    assert {r["family"] for r in rows} == {"linear", "stagewise", "staircase", "piecewise"}
    assert all(r["nuclear_norm_raw"] for r in rows)


def _as_old_format_store(src: Path, dst: Path) -> None:
    """A copy of a store as stores were before families, test_top1 and the raw nuclear norm
    (what earlier runs on disk look like): those fields removed from every trial."""
    import sqlite3

    shutil.copy(src, dst)
    db = sqlite3.connect(dst)
    for key, spec, result in db.execute("SELECT key, spec, result FROM trials").fetchall():
        spec, result = json.loads(spec), json.loads(result) if result else None
        spec.get("meta", {}).pop("family", None)
        if result:
            for k in ("test_top1", "test_images", "nuclear_norm_raw"):
                result.pop(k, None)
        db.execute("UPDATE trials SET spec = ?, result = ? WHERE key = ?",
                   (json.dumps(spec), json.dumps(result) if result else None, key))
    db.commit()
    db.close()


def test_analyze_cli_on_an_old_format_store(tmp_path):
    """A store that predates families, test_top1 and the raw nuclear norm (made from a copy
    of the committed smoke store) is analysed with the fallbacks; the committed file is untouched."""
    before = SMOKE_DB.read_bytes()
    d = tmp_path / "smoke"
    d.mkdir()
    _as_old_format_store(SMOKE_DB, d / "search.db")
    assert main(["search", "analyze", str(d), "--out", str(tmp_path / "out")]) == 0
    a = json.loads((tmp_path / "out" / "analysis.json").read_text())["searches"]["smoke"]
    assert a["accuracy"]["key"] == "best_val_top1" and not a["families"]["known"]
    assert {r["family"] for r in a["families"]["rows"]} == {"unknown"}
    assert a["rank"]["normalised"]["available"] and not a["rank"]["raw"]["available"]
    nz = a["noise"]
    assert nz["two_way"]["available"] and nz["two_way"]["residual_sd"] > 0 and nz["within_std"] > 0
    assert a["references"]["gap"]["verdict"] in ("holds", "contradicted", "inconclusive")
    assert "not recorded" in (tmp_path / "out" / "report.md").read_text()
    assert SMOKE_DB.read_bytes() == before
