"""Pre-registered experiments: the protocol file, the verdict rules on planted differences,
the sign-flip p and Holm step against direct computations, power sizing, and the refusal of
an analysis that holds a diverged run."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import yaml
from scipy import stats as sp

from rexnet import stats
from rexnet.experiments import Arm, Comparison, Experiment, ExperimentSettings, analyze_experiment
from rexnet.experiments.protocol import PROTOCOL_FILE, build_protocol, min_seeds_to_reject, register_protocol
from rexnet.models.zoo import cifar_stride_plan, rexnet_spec
from rexnet.train.health import divergence
from rexnet.trials import Store

SPEC = cifar_stride_plan(rexnet_spec("planted", multiplier=0.25, depth_multiplier=0.34, num_classes=10))
ARMS = [Arm(name, SPEC.replace(name=name, meta={"arm": name}), 1_000_000, 100_000) for name in ("a", "b", "c")]
COMPARISONS = (Comparison("a vs b", "a", "b", "planted", main=True), Comparison("a vs c", "a", "c", "planted"))


def _experiment(arms=ARMS) -> Experiment:
    return Experiment("planted", "planted differences", dict(seeds=8, epochs=1), lambda s: arms, COMPARISONS,
                      smallest_effect=1.0, margin=1.0)


def _settings(seeds: int = 8) -> ExperimentSettings:
    return ExperimentSettings(data="cifar10", seeds=seeds, epochs=1, batch_size=128).with_defaults({})


def _planted_store(out, accuracies: dict[str, list[float]], diverged: dict[str, str] | None = None) -> None:
    """A store through the real API whose runs finished with these test top-1 values by seed."""
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "search.db")
    rows = [dict(key=f"{arm}-r{r}", spec_hash=f"h{arm}", repeat=r, seed=r, kind=arm, spec=SPEC.to_json(),
                 widths=[b.out_chs for b in SPEC.blocks], macs=1_000_000, params=100_000, params_of_f={})
            for r in range(max(map(len, accuracies.values()))) for arm, acc in accuracies.items() if r < len(acc)]
    store.add(rows)
    while (t := store.claim("test")) is not None:
        arm, r = t["kind"], t["repeat"]
        store.finish(t["key"], "test", dict(test_top1=accuracies[arm][r], test_images=10000, wall_s=1.0, cpu_s=1.0,
                                            diverged=(diverged or {}).get(t["key"])))
    store.close()


def test_sign_flip_p_and_holm_against_direct_computation():
    d = [1.2, -0.3, 0.8, 2.0, 0.5, -0.1, 0.9]
    every = [abs(np.mean(np.multiply(signs, d))) >= abs(np.mean(d)) - 1e-12
             for signs in itertools.product((1, -1), repeat=len(d))]
    assert stats.sign_flip_p(d) == pytest.approx(np.mean(every))
    assert stats.sign_flip_p([1.0] * 6) == pytest.approx(2 / 64)          # the smallest p six seeds can give
    p = [0.01, 0.04, 0.03, None, 0.20]
    m = 4                                                                  # None does not count
    order = sorted(i for i in range(5) if p[i] is not None)
    by_p = sorted(order, key=lambda i: p[i])
    direct, running = {}, 0.0
    for rank, i in enumerate(by_p):
        running = max(running, min(1.0, (m - rank) * p[i]))
        direct[i] = running
    got = stats.holm(p)
    assert got[3] is None and [got[i] for i in order] == pytest.approx([direct[i] for i in order])
    assert [got[i] for i in order] == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert min_seeds_to_reject(1) == 6 and min_seeds_to_reject(5) == 8   # 2 / 2^n below alpha / m


def test_tost_and_power_sizing_against_scipy():
    d = np.array([0.2, -0.1, 0.05, 0.15, -0.05, 0.1, 0.0, 0.12])
    t = stats.tost(d, 0.5)
    lower = sp.ttest_1samp(d, -0.5, alternative="greater").pvalue
    upper = sp.ttest_1samp(d, 0.5, alternative="less").pvalue
    assert t["p"] == pytest.approx(max(lower, upper)) and -0.5 < t["ci90"][0] < t["ci90"][1] < 0.5
    assert stats.seeds_for_power(1.0, 1.0) == 10      # Cohen's d = 1, two-sided 5%, 80%: n = 10 pairs
    n = stats.seeds_for_power(1.0, 0.5)
    power = lambda k: (sp.nct.sf(sp.t.ppf(0.975, k - 1), k - 1, 0.5 * math.sqrt(k))  # noqa: E731
                       + sp.nct.cdf(-sp.t.ppf(0.975, k - 1), k - 1, 0.5 * math.sqrt(k)))
    assert power(n) >= 0.8 > power(n - 1)
    assert stats.sd_upper_bound(1.0, 5) == pytest.approx(math.sqrt(5 / sp.chi2.ppf(0.05, 5)))


@pytest.mark.parametrize("case, a, b, expected", [
    ("holds", [70 + 0.1 * i for i in range(8)], [67 + 0.1 * i + 0.2 * (i % 2) for i in range(8)], "holds"),
    ("contradicted", [65.0, 65.4, 64.8, 65.1, 65.3, 64.9, 65.2, 65.0], [68.0 + 0.1 * i for i in range(8)],
     "contradicted"),
    ("equivalent", [70 + 0.1 * i for i in range(8)], [70 + 0.1 * i + 0.05 * (-1) ** i for i in range(8)],
     "equivalent"),
    ("inconclusive", [70, 73, 68, 72, 66, 74, 69, 71], [71, 70, 72, 69, 70, 71, 70, 70], "inconclusive"),
])
def test_each_verdict_rule_on_planted_differences(tmp_path, case, a, b, expected):
    out = tmp_path / case
    _planted_store(out, dict(a=a, b=b, c=b))
    exp, s = _experiment(), _settings()
    register_protocol(out, build_protocol(exp, s, ARMS), has_results=False)
    r = analyze_experiment(exp, out, s, ARMS)
    main = r["main"]
    assert r["verdict"] == main["verdict"] == expected
    assert main["permutation_p"] == pytest.approx(stats.sign_flip_p(np.subtract(a, b)))
    assert main["holm_p"] == pytest.approx(stats.holm([c["permutation_p"] for c in r["comparisons"]])[0])
    assert r["diverged_runs"] == 0 and r["exploratory"] == []


def test_protocol_is_written_once_refuses_changes_and_labels_what_came_after(tmp_path):
    out = tmp_path / "exp"
    exp, s = _experiment(ARMS[:2]), _settings(seeds=8)
    first = register_protocol(out, build_protocol(exp, s, ARMS[:2]), has_results=False)
    on_disk = yaml.safe_load((out / PROTOCOL_FILE).read_text())
    assert on_disk["registered"]["before_any_result"] and on_disk["seeds"]["n"] == 8
    assert [c["name"] for c in on_disk["comparisons"]] == ["a vs b"] and first["arms"]["a"]["macs"] == 1_000_000
    with pytest.raises(ValueError, match=r"holds a planted protocol \(protocol.yaml\) made with other settings "
                                         r"\(.*epochs: 1 -> 2"):
        register_protocol(out, build_protocol(exp, dataclasses.replace(s, epochs=2), ARMS[:2]), has_results=True)
    # an arm and two seeds added after the protocol: analysed, but only as exploratory
    _planted_store(out, dict(a=[70.0 + i for i in range(10)], b=[69.0 + i + 0.1 * (i % 3) for i in range(10)],
                             c=[60.0 + i + 0.2 * (i % 2) for i in range(10)]))
    r = analyze_experiment(_experiment(), out, _settings(seeds=10), ARMS)
    assert r["n_seeds"] == 8 and [c["name"] for c in r["comparisons"]] == ["a vs b"]
    assert {c["name"] for c in r["exploratory"]} == {"a vs c", "a vs b (every seed)"}
    assert all(c["exploratory"] for c in r["exploratory"]) and not r["comparisons"][0]["exploratory"]


def test_a_diverged_run_is_detected_and_the_analysis_refuses(tmp_path):
    curve = [dict(epoch=0, train_loss=2.1, val_loss=2.0), dict(epoch=1, train_loss=3.3, val_loss=46.0),
             dict(epoch=2, train_loss=1.9, val_loss=1.8)]
    assert divergence(curve, warmup_epochs=1, num_classes=10).startswith("epoch 2: training loss 3.300 > ln 10")
    assert divergence([dict(epoch=1, train_loss=2.35, val_loss=2.3)], 1, 10) is None             # not learning yet
    assert divergence([dict(epoch=1, train_loss=2.35, val_loss=2.3)], 1, 10, tolerance=0) is not None
    assert divergence(curve[:1] + [dict(epoch=1, train_loss=1.9, val_loss=7.0)], 1, 10).startswith(
        "epoch 2: held-out loss 7.000 > 3 x the first 2.000")
    # inside the warm-up the training-loss rule waits; the held-out rule does not
    assert divergence(curve, warmup_epochs=3, num_classes=10).startswith("epoch 2: held-out loss 46.000 > 3 x")
    assert divergence([dict(epoch=0, train_loss=2.5, val_loss=2.2), dict(epoch=1, train_loss=1.5, val_loss=1.4)],
                      1, 10) is None
    out = tmp_path / "exp"
    _planted_store(out, dict(a=[70.0] * 4, b=[69.0] * 4, c=[68.0] * 4),
                   diverged={"b-r2": "epoch 2: training loss 3.300 > ln 10 = 2.303"})
    with pytest.raises(ValueError, match=r"run b-r2 diverged \(epoch 2: training loss 3.300 > ln 10"):
        analyze_experiment(_experiment(), out, _settings(seeds=4), ARMS)
