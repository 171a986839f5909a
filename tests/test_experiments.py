"""``rexnet experiment``: each experiment end to end at a tiny size on real CIFAR-10 images,
its paired statistics against a direct computation, resumption and refusals."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rexnet import stats
from rexnet.experiments import ExperimentSettings, paired_stats, seeds_needed
from rexnet.experiments.definitions import mobilenetv2_pair, table2_arms
from rexnet.experiments.run import run_experiment
from rexnet.search.experiments import catalogue
from rexnet.search.run import SearchSettings, prepare
from rexnet.search.analysis import analyze_search
from rexnet.trials import Store
from train_helpers import CIFAR_ZIP, needs_cifar

CATALOGUE = catalogue()
T975 = {1: 12.706204736174707, 2: 4.302652729749464}   # Student t 97.5% quantiles (tables)
# in_process: the runs one after another in the test's process (no interpreter start, imports and
# zip index per run: 2-3 CPU-s a run instead of 9-10); the child-process path is exercised below
TINY = dict(data=str(CIFAR_ZIP), seeds=2, epochs=1, train_subset=100, val_subset=50, test_images=100,
            batch_size=50, workers=1, in_process=True, progress=False)
FIELDS = ("primary_metric", "arms", "n_seeds", "diff_mean", "ci95", "verdict", "wall_s")


def _direct(a: dict, b: dict) -> tuple[float, list[float]]:
    """Mean paired difference and its 95% t-interval, computed here from the per-seed values."""
    d = np.array([a[s] - b[s] for s in sorted(a)])
    half = T975[len(d) - 1] * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), [float(d.mean() - half), float(d.mean() + half)]


def _check_result(out: Path, a: str = "linear", b: str = "stagewise") -> dict:
    r = json.loads((out / "result.json").read_text())
    assert all(k in r for k in FIELDS)
    assert (out / "report.md").is_file() and list((out / "figures").glob("*.png"))
    rows = list(csv.DictReader((out / "runs.csv").open()))
    acc = {arm: {int(x["seed"]): float(x["test_top1"]) for x in rows if x["arm"] == arm} for arm in (a, b)}
    assert all(int(x["test_images"]) == TINY["test_images"] for x in rows)
    assert {int(k): v for k, v in r["arms"][a]["accuracies"].items()} == acc[a]
    mean, ci = _direct(acc[a], acc[b])
    assert r["diff_mean"] == pytest.approx(mean, abs=1e-3) and r["ci95"] == pytest.approx(ci, abs=1e-3)
    if r.get("protocol"):   # registered: the interval and the Holm-corrected exact sign-flip test must agree
        diffs = [acc[a][s] - acc[b][s] for s in sorted(acc[a])]
        assert r["permutation_p"] == pytest.approx(stats.sign_flip_p(diffs))
        assert r["verdict"] == stats.verdict(ci, r["holm_p"], r["tost"]["p"])
        assert len(diffs) > 5 or r["verdict"] in ("inconclusive", "equivalent")   # p >= 2/2^n: no rejection
    else:
        assert r["verdict"] == ("holds" if ci[0] > 0 else "contradicted" if ci[1] < 0 else "inconclusive")
    return r


def _check_comparisons(r: dict) -> None:
    """Every comparison's paired mean and interval against a direct computation."""
    for c in r["comparisons"]:
        acc = {k: {int(s): v for s, v in r["arms"][k]["accuracies"].items()} for k in (c["a"], c["b"])}
        mean, ci = _direct(acc[c["a"]], acc[c["b"]])
        assert c["diff_mean"] == pytest.approx(mean, abs=1e-3) and c["ci95"] == pytest.approx(ci, abs=1e-3)


def test_paired_stats_and_seeds_needed():
    a, b = {0: 60.0, 1: 62.0, 2: 61.0}, {0: 59.0, 1: 60.5, 2: 60.9}
    st = paired_stats(a, b)
    d = np.array([1.0, 1.5, 0.1])
    half = T975[2] * d.std(ddof=1) / math.sqrt(3)
    assert st["method"] == "paired by seed" and st["n"] == 3
    assert st["ci95"] == pytest.approx([d.mean() - half, d.mean() + half], abs=1e-3)
    assert paired_stats(a, {0: 59.0, 1: 60.5})["n"] == 2          # only the seeds both have
    assert seeds_needed(1.0, 1.0) == 7    # t(5) / sqrt(6) = 2.571 / 2.449 > 1 > t(6) / sqrt(7) = 2.447 / 2.646
    assert seeds_needed(0.0, 1.0) is None


def test_search_with_zero_trials_is_the_two_references_paired_by_seed(tmp_path):
    store, p = prepare(tmp_path, SearchSettings(preset="smoke", trials=0, repeats=3, seed=5))
    rows = store.trials()
    store.close()
    assert sorted(t["kind"] for t in rows) == ["linear"] * 3 + ["stagewise"] * 3
    assert {t["seed"] for t in rows if t["kind"] == "linear"} == {t["seed"] for t in rows if t["kind"] == "stagewise"} \
        == {5, 6, 7}


def test_arms_match_their_budgets():
    for width in (0.35, 1.0):   # the linear arm: only the block widths re-assigned, a straight line at equal MACs
        lin, stage, small, wide = mobilenetv2_pair(width)
        assert (lin.name, stage.name, small.name, wide.name) == ("linear", "stagewise", "stagewise_at_params",
                                                                 "linear_wide_head")
        assert abs(lin.macs / stage.macs - 1) <= 0.01 and lin.params < 0.9 * stage.params   # the line is smaller
        assert abs(small.params / lin.params - 1) <= 0.03 and small.macs < 0.9 * lin.macs     # the bracket
        w = [b.out_chs for b in lin.spec.blocks]
        m = lin.spec.meta
        assert w[0] == stage.spec.blocks[0].out_chs and all(abs(c - (m["start"] + i * m["increment"] / 17)) <= 0.5
                                                             for i, c in enumerate(w))
        heads = [dataclasses.replace(a.spec.head, in_chs=1) for a in (lin, stage, small)]
        assert heads[0] == heads[1] == heads[2] and lin.spec.head.pen_chs == 1280
        # the fourth arm: a line at both MACs and params, its start in [first / 2, first], its head wider
        assert abs(wide.macs / stage.macs - 1) <= 0.01 and abs(wide.params / stage.params - 1) <= 0.03
        first, m = stage.spec.blocks[0].out_chs, wide.spec.meta
        assert (first + 1) // 2 <= m["start"] <= first and wide.spec.head.pen_chs > stage.spec.head.pen_chs
        assert all(abs(b.out_chs - (m["start"] + i * m["increment"] / 17)) <= 0.501   # increment kept to 4 decimals
                   for i, b in enumerate(wide.spec.blocks))
        assert dataclasses.replace(wide.spec.head, in_chs=1, pen_chs=1) == dataclasses.replace(heads[1], pen_chs=1)
        for arm in (lin, small, wide):
            assert [b.shortcut for b in arm.spec.blocks] == [b.shortcut for b in stage.spec.blocks]
            assert [b.stride for b in arm.spec.blocks] == [b.stride for b in stage.spec.blocks]
            assert [b.mid_chs / b.in_chs for b in arm.spec.blocks] == pytest.approx(
                [b.mid_chs / b.in_chs for b in stage.spec.blocks], rel=0.2)
        s = small.spec.meta["scale"]   # the staircase scaled: each stage keeps one width
        assert all(abs(x.out_chs - y.out_chs * s) <= 0.6 for x, y in zip(small.spec.blocks, stage.spec.blocks))
        assert lin.spec.stem == stage.spec.stem == small.spec.stem == wide.spec.stem
    arms = {a.name: a for a in table2_arms(64)}
    assert len(arms) == 9
    for n in ("first_1x1_ratio_1_6", "ib_ratio_0.8", "chain_1_6_ib_0.8_silu"):
        assert abs(arms[f"baseline_at_{n}"].macs / arms[n].macs - 1) < 0.02


@needs_cifar
def test_linear_vs_stagewise_pilot_resume_and_refusal(tmp_path, capsys):
    out = tmp_path / "exp"
    pilot = run_experiment(CATALOGUE["linear_vs_stagewise"], out, ExperimentSettings(**TINY), pilot=True)
    assert (out / "pilot.json").is_file() and "seeds_needed" in pilot["pilot"]
    with Store(out / "search.db") as store:
        finished = {t["key"]: t["finished"] for t in store.trials()}
    assert len(finished) == 4
    r = run_experiment(CATALOGUE["linear_vs_stagewise"], out, ExperimentSettings(**TINY))   # the pilot's runs are the runs
    with Store(out / "search.db") as store:
        assert {t["key"]: t["finished"] for t in store.trials()} == finished
        loaded = dict(dir=str(out), name="x", preset=store.get_meta("plan"), counts=store.counts(),
                      trials=store.trials())
    res = _check_result(out)
    a = res["arms"]
    assert abs(a["linear"]["macs"] / a["stagewise"]["macs"] - 1) <= 0.01
    assert abs(a["linear"]["params"] / a["stagewise"]["params"] - 1) <= 0.03
    gap = analyze_search(loaded)["references"]["gap"]      # the search's A/B pairs by seed too
    assert gap["method"] == "paired by seed" and gap["ci95"] == pytest.approx(r["ci95"], abs=1e-3)
    from rexnet.cli import main

    assert main(["experiment", "linear_vs_stagewise", "--out", str(out), "--data", str(CIFAR_ZIP), "--seeds", "2",
                 "--epochs", "2", "--train-subset", "100", "--val-subset", "50", "--test-images", "100",
                 "--batch-size", "50", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "other settings (epochs: 1 -> 2)" in err and "--overwrite" in err and "Traceback" not in err
    # a third seed extends it, its runs in child processes (the default path); the first four are kept
    threads = torch.get_num_threads()
    run_experiment(CATALOGUE["linear_vs_stagewise"], out, ExperimentSettings(**dict(TINY, seeds=3, in_process=False)))
    assert torch.get_num_threads() == threads
    with Store(out / "search.db") as store:
        rows = store.trials()
    assert {t["key"]: t["finished"] for t in rows if t["repeat"] < 2} == finished
    assert len(rows) == 6 and all(t["status"] == "done" for t in rows)
    # the third seed came after results existed: the headline stays on the protocol's two seeds,
    # and the three-seed comparison is reported as exploratory
    r = json.loads((out / "result.json").read_text())
    assert r["n_seeds"] == r["seeds_stated"] == 2 and r["complete"]
    every = next(c for c in r["exploratory"] if c["name"].endswith("(every seed)"))
    acc = {arm: {int(k): v for k, v in r["arms"][arm]["accuracies"].items()} for arm in ("linear", "stagewise")}
    mean, ci = _direct(acc["linear"], acc["stagewise"])
    assert every["n"] == 3 and every["exploratory"] and every["diff_mean"] == pytest.approx(mean, abs=1e-3)
    assert every["ci95"] == pytest.approx(ci, abs=1e-3)
    two = {arm: {k: v for k, v in a.items() if k < 2} for arm, a in acc.items()}
    assert r["ci95"] == pytest.approx(_direct(two["linear"], two["stagewise"])[1], abs=1e-3)


def test_zip_index_read_once_per_process_and_again_when_the_file_changes(tmp_path):
    from rexnet.train import data

    src = zipfile.ZipFile(CIFAR_ZIP) if CIFAR_ZIP.is_file() else pytest.skip("no CIFAR-10 zip")
    jpgs = {split: [n for n in src.namelist() if n.startswith(f"{split}/airplane/")][:3] for split in ("train", "test")}
    path = tmp_path / "tiny.zip"

    def write(k: int) -> None:
        with zipfile.ZipFile(path.with_suffix(".tmp"), "w") as z:
            for split, names in jpgs.items():
                for n in names[:k]:
                    z.writestr(n, src.read(n))
        path.with_suffix(".tmp").replace(path)

    write(2)
    a, b = data.build_dataset(str(path), "train"), data.build_dataset(str(path), "val")
    assert len(a) == len(b) == 2 and a._zipfile() is b._zipfile() is data._zip(path)
    assert a[0][0].size == (32, 32)
    write(3)                                  # replaced: read again
    assert len(data.build_dataset(str(path), "train")) == 3 and data._zip(path) is not a._zipfile()


@needs_cifar
def test_mobilenetv2_linear_end_to_end_and_an_added_arm_extends_the_store(tmp_path):
    exp = CATALOGUE["mobilenetv2_linear"]
    out = tmp_path / "mbv2"
    four = exp.arms(ExperimentSettings(width=0.35))
    # first without the fourth arm (how the committed store began), then with it: an added arm
    # extends the store like more seeds do, the finished runs kept; a changed arm is refused
    first = run_experiment(dataclasses.replace(exp, arms=lambda s: four[:3]), out,
                           ExperimentSettings(**TINY, width=0.35))
    assert [c["b"] for c in first["comparisons"]] == ["stagewise", "stagewise_at_params"]
    with Store(out / "search.db") as store:
        finished = {t["key"]: t["finished"] for t in store.trials()}
    assert len(finished) == 6
    changed = dataclasses.replace(four[2], spec=four[1].spec)
    with pytest.raises(ValueError, match="other settings .*--overwrite"):
        run_experiment(dataclasses.replace(exp, arms=lambda s: four[:2] + [changed]), out,
                       ExperimentSettings(**TINY, width=0.35))
    run_experiment(exp, out, ExperimentSettings(**TINY, width=0.35))
    with Store(out / "search.db") as store:
        rows = store.trials()
    assert {t["key"]: t["finished"] for t in rows if t["kind"] != "linear_wide_head"} == finished
    assert len(rows) == 8 and all(t["status"] == "done" for t in rows)
    r = _check_result(out)
    a = r["arms"]
    assert abs(a["linear"]["macs"] / a["stagewise"]["macs"] - 1) <= 0.01
    assert abs(a["linear_wide_head"]["macs"] / a["stagewise"]["macs"] - 1) <= 0.01
    assert abs(a["linear_wide_head"]["params"] / a["stagewise"]["params"] - 1) <= 0.03
    # the fourth arm came after the protocol: its comparison is analysed, but as exploratory
    assert [c["b"] for c in r["comparisons"]] == ["stagewise", "stagewise_at_params"]
    assert [(c["a"], c["b"]) for c in r["exploratory"]] == [("linear_wide_head", "stagewise")]
    assert r["comparisons"][0]["main"] and not any(c["main"] for c in r["comparisons"][1:] + r["exploratory"])
    _check_comparisons(r)
    _check_comparisons(dict(r, comparisons=r["exploratory"]))


@needs_cifar
@pytest.mark.slow
def test_table2_end_to_end(tmp_path):
    out = tmp_path / "t2"
    r = run_experiment("table2", out, ExperimentSettings(**dict(TINY, train_subset=50), out_chs=32))
    assert len(r["comparisons"]) == 9 and r["comparisons"][0]["main"]
    _check_comparisons(r)
    saved = json.loads((out / "result.json").read_text())
    assert saved["diff_mean"] == r["comparisons"][0]["diff_mean"] and saved["verdict"] in ("holds", "contradicted",
                                                                                           "equivalent", "inconclusive")


@needs_cifar
@pytest.mark.slow
def test_search_cpu_end_to_end(tmp_path):
    out = tmp_path / "search"
    r = run_experiment(CATALOGUE["search_cpu"], out, ExperimentSettings(**dict(TINY, seeds=1), trials=4, rank_images=0))
    saved = json.loads((out / "result.json").read_text())
    assert all(k in saved for k in FIELDS) and r["n_samples"] == 4 and r["top_group"] == 1
    assert {f["family"] for f in r["family_test"]["families"]} <= {"linear", "piecewise", "staircase", "convex",
                                                                    "concave"}
    assert all(0 < f["p"] <= 1 for f in r["family_test"]["families"])
    assert set(r["references"]["rank"]) == {"linear", "stagewise"}
    assert all(1 <= v["rank"] <= 5 for v in r["references"]["rank"].values())
    # a second seed extends the search (each model's mean over two), the first seed's runs kept
    with Store(out / "search.db") as store:
        finished = {t["key"]: t["finished"] for t in store.trials()}
    r2 = run_experiment(CATALOGUE["search_cpu"], out, ExperimentSettings(**dict(TINY, seeds=2), trials=4, rank_images=0))
    with Store(out / "search.db") as store:
        rows = store.trials()
    assert len(finished) == 6 and len(rows) == 12 and all(t["status"] == "done" for t in rows)
    assert {t["key"]: t["finished"] for t in rows if t["repeat"] == 0} == finished
    assert r2["n_seeds"] == 2 and r2["references"]["gap"]["n"] == 2
    report = (out / "report.md").read_text()
    assert "Linear - stage-wise, paired by seed: " in report and "[[" not in report   # one interval, bracketed once
    with pytest.raises(ValueError, match=r"repeats: 2 -> 1"):   # fewer seeds is another setting here
        run_experiment(CATALOGUE["search_cpu"], out, ExperimentSettings(**dict(TINY, seeds=1), trials=4, rank_images=0))
