"""The search analysis on synthetic stores whose accuracies are a known function of the widths."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from rexnet.search.report import analyze
from rexnet.search.space import PRESETS
from rexnet.search.store import Store

PRESET = PRESETS["smoke"]
SPACE = PRESET.space
# two perfectly linear shapes (integer slopes) that the synthetic accuracy makes the best
LINEAR_BEST = [[8 + 2 * i for i in range(SPACE.depth)], [10 + 3 * i for i in range(SPACE.depth)]]


def _r2(widths) -> float:
    y = np.asarray(widths, float)
    x = np.arange(len(y))
    res = y - np.polyval(np.polyfit(x, y, 1), x)
    return 1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum()


def _candidates(n_samples: int, seed: int = 0):
    cands = SPACE.references() + SPACE.samples(n_samples, seed)
    cands += [SPACE.candidate("sample", w, a=0, b=w[0]) for w in LINEAR_BEST]
    return cands


def _true_acc(c) -> float:
    """Linearity decides: the handmade straight lines best, then by the R² of the shape."""
    if list(c.widths) in LINEAR_BEST:
        return 95.0 - LINEAR_BEST.index(list(c.widths))
    return 40.0 + 45.0 * max(0.0, _r2(c.widths))


def _make(tmp_path, name: str, cands, repeats: int, noise=lambda i, r: 0.0, fail=(), rank=True,
          preset_name: str | None = None):
    """A store built through the real API (rows as ``prepare()`` writes them)."""
    d = tmp_path / name
    store = Store(d / "search.db")
    preset = PRESET.to_dict()
    preset["repeats"] = repeats
    if preset_name:
        preset["space"]["name"] = preset_name
    store.set_meta("preset", preset)
    store.add([dict(key=f"{c.hash}-r{r}", spec_hash=c.hash, repeat=r, seed=r, kind=c.kind, spec=c.spec.to_json(),
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
    assert a["groups"]["middle"]["members"] == [samples[11].hash, samples[10].hash]   # ranks 10-11 of 20
    top = a["groups"]["top"]
    assert top["fit"]["r2"] == pytest.approx(1.0, abs=1e-9)
    assert top["fit"]["slope"] == pytest.approx(2.5) and top["fit"]["intercept"] == pytest.approx(9.0)
    assert top["mean_model_r2"] == pytest.approx(1.0, abs=1e-9)
    assert top["acc_mean"] == pytest.approx(94.5)
    assert a["best"]["spec_hash"] == samples[-1].hash and a["worst"]["acc_mean"] == pytest.approx(
        min(_true_acc(c) for c in cands), abs=1e-3)

    # noise against an independent computation
    accs = np.array([[_true_acc(c) + deltas[i], _true_acc(c) - deltas[i]] for i, c in enumerate(cands)])
    within = np.std(accs, axis=1, ddof=1).mean()
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
              "fig4_top_widths.png", "acc_vs_nuclear_norm.png"):
        assert (out / f).stat().st_size > 0, f
    assert not list(out.glob("*.tmp*"))
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 2 * len(cands) and rows[0]["widths"].count("/") == SPACE.depth - 1
    assert json.loads((out / "analysis.json").read_text())["searches"]["smoke"]["n_specs"] == len(cands)
    report = (out / "report.md").read_text()
    for section in ("## Fig. 2", "## Linear fit", "## Table 3", "## Best and worst", "## Linear vs stage-wise",
                    "## Error EDFs", "## Accuracy vs nuclear norm", "## Fig. 4", "## Noise", "## Failed trials",
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
        c = SPACE.references()[0]
        store.add([dict(key=f"{c.hash}-r0", spec_hash=c.hash, repeat=0, seed=0, kind=c.kind, spec=c.spec.to_json(),
                        widths=list(c.widths), macs=c.macs, params=c.params, params_of_f={})])
    with pytest.raises(ValueError, match=r"empty.*no done trials.*rexnet search run"):
        analyze([d], tmp_path / "out")
    with pytest.raises(ValueError, match="no search directories"):
        analyze([], tmp_path / "out")
