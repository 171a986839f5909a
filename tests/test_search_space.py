"""The search space: equal-budget references, shape families at stated rates, bounds."""
import json
import math
from collections import Counter

import pytest

from rexnet import schedule as sch
from rexnet.budget import BudgetError
from rexnet.cli import main
from rexnet.complexity import complexity
from rexnet.search.space import (FAMILY_RATES, MOBILENETV2_STAGE_WIDTHS, PAPER_PRESETS, PRESETS, SearchSpace,
                                 get_preset, stage_repeats)

N_SAMPLES = 300
SAMPLED = ("d18_30m_cifar10", "sec43_d18_30m")   # a loose and a tight params band


def _flat_runs(widths):
    """Maximal runs of >= 2 equal widths (flat stretches of a staircase)."""
    runs, n = 0, 1
    for x, y in zip(widths, widths[1:]):
        if y == x:
            n += 1
        else:
            runs, n = runs + (n >= 2), 1
    return runs + (n >= 2)


@pytest.fixture(scope="module")
def references():
    return {name: PRESETS[name].space.references() for name in PAPER_PRESETS + ("smoke",)}


@pytest.fixture(scope="module")
def sampled():
    return {name: PRESETS[name].space.samples(N_SAMPLES, seed=11) for name in SAMPLED}


def test_every_preset_bounds_macs_and_params_around_a_reachable_centre():
    assert {"sec43_d18_30m", "sec43_d18_70m", "sec43_d30_100m", "sec43_d30_200m"} <= set(PAPER_PRESETS)
    for name, p in PRESETS.items():
        s = p.space
        assert s.macs_min is not None and s.params_min is not None and s.params_max is not None, name
        assert 0 < s.macs_min < s.macs_max and 0 < s.params_min < s.params_max, name
        flat, steep = s.params_range()                      # what both references can reach
        assert flat < s.params_target < steep, name
        assert abs(s.params_target / s.params_center() - 1) < 0.05, name   # the table follows the rule
    assert get_preset("sec43_d18_30m").space.params_max / get_preset("sec43_d18_30m").space.params_min < \
        get_preset("d18_30m_cifar100").space.params_max / get_preset("d18_30m_cifar100").space.params_min


@pytest.mark.parametrize("name", PAPER_PRESETS + ("smoke",))
def test_references_share_macs_and_params_and_keep_their_shapes(name, references):
    s = PRESETS[name].space
    lin, stage = references[name]
    assert (lin.kind, stage.kind, lin.family, stage.family) == ("linear", "stagewise", "linear", "stagewise")
    assert abs(lin.macs - stage.macs) / stage.macs <= 0.01
    assert abs(lin.params - stage.params) / stage.params <= 0.03
    for c in (lin, stage):
        assert abs(c.macs / s.macs_target - 1) <= 0.01 and abs(c.params / s.params_target - 1) <= 0.03
        assert not s.violations(c.macs, c.params)
        assert (complexity(c.spec).macs, complexity(c.spec).params) == (c.macs, c.params)
        assert c.spec.meta["family"] == c.kind
    # the line: c_i = a * i / (d-1) + b up to rounding, with its own intercept
    a, b, d = lin.params_of_f["a"], lin.params_of_f["b"], s.depth
    assert all(abs(w - (a * i / (d - 1) + b)) <= 0.5 + 1e-3 for i, w in enumerate(lin.widths))
    steps = [y - x for x, y in zip(lin.widths, lin.widths[1:])]
    assert max(steps) - min(steps) <= 1 and lin.widths[-1] > lin.widths[0]
    # the staircase: w0 + multiplier * (W_k - 16), flat inside every stage
    m, w0 = stage.params_of_f["multiplier"], stage.params_of_f["w0"]
    i = 0
    for width, reps in zip(MOBILENETV2_STAGE_WIDTHS, stage_repeats(d)):
        block = stage.widths[i:i + reps]
        assert len(set(block)) == 1 and abs(block[0] - (w0 + m * (width - 16))) <= 0.5 + 1e-3
        i += reps


def test_linear_intercepts_are_free(references):
    firsts = {references[n][0].widths[0] for n in PAPER_PRESETS}
    assert len(firsts) >= 4 and firsts != {16}


def test_unreachable_targets_name_the_preset_and_the_target():
    s = get_preset("d18_30m_cifar10").space
    flat, steep = s.params_range()
    with pytest.raises(BudgetError, match=r"d18_30m_cifar10: the stagewise reference cannot reach the params target"):
        s.replace(params_min=3 * steep, params_max=4 * steep).references()
    tiny = SearchSpace("tiny", depth=12, macs_max=2e6, pen_chs=64)
    for space in (tiny, tiny.replace(params_min=1e4, params_max=2e4)):   # with and without params bounds
        with pytest.raises(BudgetError, match=r"tiny: the MACs target .* below the smallest network"):
            space.references()


@pytest.mark.parametrize("name", SAMPLED)
def test_samples_meet_every_bound_at_the_stated_family_rates(name, sampled):
    s = PRESETS[name].space
    cands = sampled[name]
    assert len({c.hash for c in cands}) == N_SAMPLES
    for c in cands:
        assert not s.violations(c.macs, c.params), (c.family, c.macs, c.params)
        assert s.lower_macs <= c.macs <= s.macs_max and s.params_min <= c.params <= s.params_max
        assert all(y >= x for x, y in zip(c.widths, c.widths[1:]))
        assert c.kind == "sample" and c.spec.meta["family"] == c.family
        assert json.loads(c.spec.to_json())["meta"]["family"] == c.family             # the store keeps it
    assert (complexity(cands[0].spec).macs, complexity(cands[0].spec).params) == (cands[0].macs, cands[0].params)
    counts = Counter(c.family for c in cands)
    assert set(counts) == set(FAMILY_RATES)
    for family, rate in FAMILY_RATES.items():   # rejection is redrawn in-family, so acceptance cannot skew this
        se = math.sqrt(rate * (1 - rate) / N_SAMPLES)
        assert abs(counts[family] / N_SAMPLES - rate) <= 4 * se, (family, counts[family])


@pytest.mark.parametrize("name", SAMPLED)
def test_each_family_has_its_shape(name, sampled):
    s = PRESETS[name].space
    reps = stage_repeats(s.depth)
    by = {f: [c for c in sampled[name] if c.family == f] for f in FAMILY_RATES}
    for c in by["linear"]:
        steps = [y - x for x, y in zip(c.widths, c.widths[1:])]
        assert max(steps) - min(steps) <= 1
    for c in by["staircase"]:
        starts = [sum(reps[:k]) for k in range(len(reps))]
        for k, (i, r) in enumerate(zip(starts, reps)):
            assert len(set(c.widths[i:i + r])) == 1                                    # flat inside a stage
        levels = c.params_of_f["levels"]
        assert levels[0] == 0 and levels[-1] == 1 and len(levels) == len(reps)
    assert max(_flat_runs(c.widths) for c in by["staircase"]) >= 4                     # >= 4 flat stages occur
    assert sum(_flat_runs(c.widths) >= 4 for c in by["staircase"]) >= len(by["staircase"]) // 4
    assert any(len(set(c.params_of_f["levels"])) < len(reps) for c in by["staircase"])  # flat (zero) steps occur
    assert all(c.params_of_f["power"] > 1 for c in by["convex"])
    assert all(c.params_of_f["power"] < 1 for c in by["concave"])
    knots = [len(c.params_of_f["knots"]) - 2 for c in by["piecewise"]]
    assert min(knots) >= 1 and max(knots) <= 6 and max(knots) >= 5


def test_sampling_is_deterministic_and_extends(sampled):
    s = PRESETS[SAMPLED[0]].space
    head = s.samples(40, seed=11)
    assert [c.hash for c in head] == [c.hash for c in sampled[SAMPLED[0]][:40]]        # a longer run extends
    assert [c.hash for c in s.samples(40, seed=11)] == [c.hash for c in head]
    assert [c.hash for c in s.samples(40, seed=12)] != [c.hash for c in head]


def test_shape_helpers():
    assert sch.power_shape(5, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    convex, concave = sch.power_shape(5, 2.0), sch.power_shape(5, 0.5)
    assert convex[2] < 0.5 < concave[2] and convex[-1] == concave[-1] == 1.0
    assert sch.staircase_shape([1, 2, 3], [0.0, 0.5, 1.0]) == [0.0, 0.5, 0.5, 1.0, 1.0, 1.0]
    assert sch.affine([0.0, 0.5, 1.0], 10.0, 8.0) == [8.0, 13.0, 18.0]
    with pytest.raises(ValueError, match="non-decreasing"):
        sch.staircase_shape([1, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match="a must be >= 0"):
        sch.affine([0.0, 1.0], -1.0, 8.0)
    with pytest.raises(ValueError, match="unknown shape family"):
        PRESETS["smoke"].space.draw_shape(__import__("random").Random(0), "zigzag")


def test_cli_references_and_sample(capsys, references):
    assert main(["search", "references", "--preset", "d18_30m_cifar10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    refs = references["d18_30m_cifar10"]
    assert [r["kind"] for r in out["references"]] == ["linear", "stagewise"]
    for r, c in zip(out["references"], refs):
        assert (r["macs"], r["params"], r["widths"], r["params_of_f"]) == (c.macs, c.params, list(c.widths),
                                                                             c.params_of_f)
    assert out["params_bounds"] == [PRESETS["d18_30m_cifar10"].space.params_min,
                                    PRESETS["d18_30m_cifar10"].space.params_max]

    assert main(["search", "references", "--preset", "smoke"]) == 0
    text = capsys.readouterr().out
    assert "linear" in text and "stagewise" in text and "/".join(map(str, references["smoke"][0].widths)) in text

    assert main(["search", "sample", "--preset", "smoke", "-n", "12", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = PRESETS["smoke"].space.samples(12, seed=2)
    assert [c["spec_hash"] for c in out["candidates"]] == [c.hash for c in want]
    assert all({"family", "macs", "params", "widths"} <= set(c) for c in out["candidates"])
    assert out["family_rates"] == FAMILY_RATES

    assert main(["search", "sample", "--preset", "smoke", "-n", "5", "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "families:" in text and want[0].family in text

    assert main(["search", "references", "--preset", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown search preset 'nope'" in err
