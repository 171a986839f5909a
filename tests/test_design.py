"""`rexnet design`: a ReXNet solved to a MACs / params / measured-latency budget."""
import shutil
from pathlib import Path

import pytest
import torch

from rexnet.budget import BudgetError
from rexnet.cli import main
from rexnet.complexity import complexity
from rexnet.design import M_LO, Family, Targets, get_family, parse_count, solve_design
from rexnet.design.families import _shape_widths
from rexnet.models.resolve import create_model, resolve_spec
from rexnet.models.zoo import model_spec, rexnet_spec
from rexnet.spec import NetSpec
from train_helpers import CIFAR_ZIP, needs_cifar

SMOKE_SEARCH = Path(__file__).resolve().parents[1] / "docs" / "search" / "smoke"


def test_counts_take_units():
    assert parse_count("150M") == 150e6 and parse_count("0.40G") == 0.4e9
    assert parse_count("3M") == 3e6 and parse_count("3e6") == 3e6 and parse_count("250k") == 250e3
    for bad in ("150X", "-3M", "0", "M", "1.5.0G"):
        with pytest.raises(ValueError):
            parse_count(bad, "--macs")


def test_macs_target_within_one_percent_and_the_file_loads(tmp_path, capsys):
    out = tmp_path / "a.yaml"
    assert main(["design", "--macs", "150M", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "block15" in printed and "nearest zoo models" in printed and "<= 150M" in printed
    spec = NetSpec.load(out)
    macs = complexity(spec).macs
    assert abs(macs / 150e6 - 1) <= 0.01 and macs <= 150e6
    assert spec.meta["designed_for"]["macs"] == 150e6 and spec.meta["depth_multiplier"] == 1.0
    # widths grow linearly with the block index: the design rule, scaled
    steps = [b - a for a, b in zip(spec.widths, spec.widths[1:])]
    assert min(steps) >= 3 and max(steps) <= 5
    assert resolve_spec(str(out)) == spec   # how train / export / bench resolve --model


def test_macs_and_params_are_both_met_and_used():
    d = solve_design(Targets(macs=300e6, params=3e6))
    assert d.macs <= 300e6 and d.params <= 3e6
    assert min(d.use().values()) >= 0.9   # the default --fill: neither budget is wasted
    c = complexity(d.spec)
    assert (c.macs, c.params) == (d.macs, d.params)


def test_zoo_budget_reproduces_rexnet_100():
    d = solve_design(Targets(macs=parse_count("0.40G")), "rexnet", input_size=224)
    ref = complexity(model_spec("rexnet_100"))
    assert abs(d.params / ref.params - 1) <= 0.02
    assert d.depth_multiplier == 1.0 and d.final == 180 and d.multiplier == 1.0
    assert d.spec.hash() == model_spec("rexnet_100").hash()   # the published network itself


def test_lite_family_and_json_output(tmp_path):
    out = tmp_path / "lite.json"
    assert main(["design", "--params", "3M", "--family", "rexnet_lite", "--out", str(out)]) == 0
    spec = NetSpec.load(out)
    c = complexity(spec)
    assert 0.97 * 3e6 <= c.params <= 3e6
    assert spec.head.hidden_chs == 1024 and all(b.se_chs == 0 for b in spec.blocks)   # ReXNet-lite's blocks


@pytest.mark.parametrize("argv, words", [
    (["--macs", "20M"], "smallest this family expresses is"),
    (["--params", "100k"], "smallest this family expresses is"),
    (["--macs", "100G"], "beyond what the rexnet family reaches"),
    (["--macs", "300M", "--params", "1M"], "conflict under --fill 0.9"),
    (["--macs", "300M", "--params", "3M", "--family", "rexnet_lite"], "conflict under --fill 0.9"),
    (["--macs", "150X"], "is not a count"),
    ([], "give at least one target"),
    (["--macs", "150M", "--family", "mobilenet"], "unknown family"),
    (["--macs", "150M", "--out", "spec.txt"], "write the NetSpec as .yaml"),
    (["--macs", "150M", "--fill", "1.5"], "--fill must be in [0, 1]"),
    (["--macs", "150M", "--from-search", "no/such/dir"], "no search in"),
])
def test_impossible_targets_are_one_line_errors(argv, words, capsys):
    assert main(["design", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1, err


def test_impossible_targets_name_the_smallest_figures():
    with pytest.raises(BudgetError, match=r"66\.77M MACs and 244\.1k params at 224px"):
        solve_design(Targets(macs=20e6))
    # --fill 0 accepts a design that leaves most of one budget unused
    d = solve_design(Targets(macs=300e6, params=1e6, fill=None))
    assert d.params <= 1e6 and d.macs < 0.9 * 300e6


def test_searched_shape_on_rexnet_blocks(tmp_path):
    store = tmp_path / "smoke"
    shutil.copytree(SMOKE_SEARCH, store)
    fam = get_family(from_search=store)
    assert fam.name == "searched" and fam.shape[0] == 0.0 and fam.shape[-1] == 1.0
    assert fam.source["spec_hash"] and fam.source["family"]
    d = solve_design(Targets(macs=150e6), fam)
    assert abs(d.macs / 150e6 - 1) <= 0.01
    assert d.spec.meta["schedule"] == "searched" and d.spec.meta["shape_from"]["spec_hash"] == fam.source["spec_hash"]
    with pytest.raises(ValueError, match="drop --family rexnet_lite"):
        get_family("rexnet_lite", from_search=store)
    # a straight searched shape is the ReXNet rule itself
    line = Family("searched", 180.0, shape=tuple(i / 11 for i in range(12)))
    for m in (0.6, 1.0, 1.5):
        assert line.make(m).widths == rexnet_spec(multiplier=m).widths
    assert [round(w, 6) for w in _shape_widths([0, 1], 16, 1.0, 180)] == \
        [round(16 + i * 180 / 16, 6) for i in range(16)]


def test_written_spec_builds_and_exports(tmp_path, capsys):
    out = tmp_path / "d.yaml"
    assert main(["design", "--macs", "20M", "--input-size", "32", "--num-classes", "10", "--out", str(out)]) == 0
    spec = NetSpec.load(out)
    assert spec.input_size == 32 and spec.stem.stride == 1 and spec.head.num_classes == 10
    model = create_model(str(out)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert main(["export", str(out), "--out", str(tmp_path / "d.onnx")]) == 0
    assert (tmp_path / "d.onnx").stat().st_size > 0
    assert main(["design", "--macs", "20M", "--out", str(out)]) == 2   # an existing spec is kept
    assert "--overwrite" in capsys.readouterr().err


@needs_cifar
def test_written_spec_trains_one_step(tmp_path, capsys):
    out = tmp_path / "d.yaml"
    assert main(["design", "--macs", "20M", "--input-size", "32", "--num-classes", "10", "--out", str(out)]) == 0
    assert main(["train", "--model", str(out), "--data", str(CIFAR_ZIP), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--train-subset", "32", "--val-subset", "32", "--batch-size", "16",
                 "--stop-after-steps", "1", "--no-progress"]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()


def test_latency_target_is_met_when_measured_again(capsys):
    """Generous tolerances, and ratios where possible: the 2-core test machine is shared, so
    absolute times drift (4x between minutes was seen); a ratio of two models timed in turns
    does not."""
    from rexnet.bench.timing import interleaved_latency

    torch.set_num_threads(1)
    size = 64
    base = interleaved_latency({"r": create_model("rexnet_100")}, input_size=size, runs=6, warmup=2)["r"]["median_ms"]
    target = 1.2 * base   # the smallest design takes about 0.6x of rexnet_100 here
    d = solve_design(Targets(latency_ms=target), "rexnet", input_size=size, runs=6, warmup=2, threads=1)
    lat = d.latency
    assert lat["reference"].startswith("rexnet_") and lat["candidates_timed"] >= 2
    # an interior width, not the floor: no absolute floor on the multiplier, since the target is
    # absolute and a slower spell between timing ``base`` and the search shrinks the design
    # (x0.133 was chosen once under a loaded `make test -n 2`); what it promises is checked below
    assert d.spec.meta["latency"]["target_ms"] == target and d.multiplier > M_LO
    # measured again after the search (twice the runs): near the target
    assert abs(lat["ms"] / target - 1) < 0.4, lat
    # and again on its own stopwatch, in turns with the reference: the same ratio
    again = interleaved_latency({"design": create_model(d.spec), "ref": create_model(lat["reference"])},
                                input_size=size, runs=10, warmup=2)
    share = again["design"]["median_ms"] / again["ref"]["median_ms"]
    assert abs(share / lat["ratio"] - 1) < 0.4, (again, lat)
    # a target below the smallest design is one line naming what is reachable
    assert main(["design", "--latency-ms", "0.001", "--input-size", str(size), "--runs", "3", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "below the smallest rexnet design here" in err and err.count("\n") == 1
