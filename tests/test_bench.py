"""Export round trips, the benchmark runner's statistics and interleaving, and its errors."""
import argparse
import csv
import json

import pytest
import torch
from torch import nn

from rexnet import create_model, save_weights
from rexnet.bench import export as export_mod
from rexnet.bench.cli import add_bench_commands
from rexnet.bench.export import ExportError, export_model, load_exported
from rexnet.bench.peers import PEERS, Entry, build_entries, check_device, parse_compare, parse_dtype, run_bench
from rexnet.bench.timing import latency_stats, time_interleaved
from test_deploy import _one_thread, randomize_bn  # noqa: F401  (_one_thread: an autouse fixture)


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="rexnet")
    add_bench_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# -- export ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_round_trip_with_dynamic_batch(tmp_path, fmt, suffix):
    model = randomize_bn(create_model("rexnet_100", num_classes=10))
    out = tmp_path / f"m{suffix}"
    res = export_model(model, fmt, out, input_size=64, batch=2)
    assert res["max_abs_diff"] <= 1e-4 and res["checked_batches"] == [2, 1, 3] and res["bn_folded"]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # the temporary file is gone
    loaded = load_exported(out)
    x = torch.randn(5, 3, 64, 64)  # a batch size the export never saw
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-4, rtol=0)


def test_export_that_does_not_verify_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "load_exported", lambda path: (lambda x: torch.zeros(x.shape[0], 10)))
    out = tmp_path / "bad.pt"
    with pytest.raises(ExportError, match="does not reproduce"):
        export_model(create_model("mobilenetv1_100", num_classes=10), "torchscript", out, input_size=32)
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_bad_format_and_suffix(tmp_path):
    model = create_model("mobilenetv1_100", num_classes=10)
    with pytest.raises(ValueError, match="onnx, torchscript"):
        export_model(model, "tflite", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="wrong suffix"):
        export_model(model, "onnx", tmp_path / "m.pt")


# -- statistics and interleaving --------------------------------------------------
class FakeClock:
    """A clock that only moves when a fake model runs, by that model's next duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeModel:
    def __init__(self, clock, durations_ms, log, name):
        self.clock, self.durations, self.log, self.name, self.calls = clock, list(durations_ms), log, name, 0

    def __call__(self, x):
        self.clock.now += self.durations[self.calls % len(self.durations)] / 1e3
        self.calls += 1
        self.log.append(self.name)
        return x


def test_interleaving_calls_every_model_equally_and_rotates_the_order():
    clock, log = FakeClock(), []
    models = {n: FakeModel(clock, [float(i + 1)], log, n) for i, n in enumerate("abc")}
    times = time_interleaved(models, {n: None for n in models}, runs=6, warmup=2, timer=clock)
    assert all(m.calls == 8 for m in models.values())
    assert times == {"a": pytest.approx([1.0] * 6), "b": pytest.approx([2.0] * 6), "c": pytest.approx([3.0] * 6)}
    rounds = [log[i:i + 3] for i in range(6, len(log), 3)]  # the timed rounds, after 2 warm-up rounds
    assert [r[0] for r in rounds] == ["a", "b", "c", "a", "b", "c"]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)


def test_latency_stats_are_ordered_and_exact_with_a_fake_timer():
    clock, log = FakeClock(), []
    durations = [7.0, 3.0, 10.0, 1.0, 5.0, 9.0, 2.0, 8.0, 4.0, 6.0]  # 1..10 ms, shuffled
    times = time_interleaved({"m": FakeModel(clock, durations, log, "m")}, {"m": None}, runs=10, warmup=0,
                             timer=clock)
    assert times["m"] == pytest.approx(durations)
    s = latency_stats(times["m"], batch=4)
    assert (s["p10_ms"], s["median_ms"], s["p90_ms"]) == pytest.approx((2.0, 5.0, 9.0))
    assert s["mean_ms"] == pytest.approx(5.5) and s["images_per_s"] == pytest.approx(4 / 5e-3)
    with pytest.raises(ValueError):
        latency_stats([], batch=1)


def test_run_bench_on_a_tiny_model_gives_ordered_rows():
    tiny = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    entries = [Entry("tiny", tiny, 16, "test", "eager", "tiny"), Entry("tiny2", tiny, 24, "test", "eager", "tiny")]
    rows = run_bench(entries, [1, 3], runs=7, warmup=1, progress=None)
    assert [(r["model"], r["batch"]) for r in rows] == [("tiny", 1), ("tiny2", 1), ("tiny", 3), ("tiny2", 3)]
    assert all(r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and r["runs"] == 7 for r in rows)
    assert all(r["images_per_s"] == pytest.approx(r["batch"] / r["median_ms"] * 1e3, rel=1e-2) for r in rows)


# -- errors -------------------------------------------------------------------------
def test_unknown_peer_names_the_choices():
    with pytest.raises(ValueError, match="unknown peer 'efficientnet_b9'.*efficientnet_b0.*mobilenet_v3_large"):
        parse_compare("efficientnet_b0,efficientnet_b9")
    assert parse_compare("all") == list(PEERS)
    assert parse_compare(" efficientnet_b3 , mobilenet_v2") == ["efficientnet_b3", "mobilenet_v2"]


def test_unknown_or_unavailable_device(monkeypatch):
    with pytest.raises(ValueError, match="unknown device 'tpu'; choose one of cpu, cuda"):
        check_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="torch.cuda.is_available.*--device cpu"):
        check_device("cuda")
    with pytest.raises(ValueError, match="cuda"):
        build_entries(["rexnet_100"], device="cuda")
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        parse_dtype("fp8")


def test_unknown_model_names_ours_and_peers():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*rexnet_100.*efficientnet_b0"):
        build_entries(["resnet50"])


def test_entries_carry_complexity_and_published_accuracy():
    ours, peer = build_entries(["rexnet_100"], ["mobilenet_v2"], input_size=32)
    assert ours.top1 == 77.9 and "ReXNet" in ours.top1_source and ours.macs > 0
    assert peer.top1 == 72.0 and "Sandler" in peer.top1_source and peer.params == 3504872
    assert PEERS["efficientnet_b3"].input_size == 300 and PEERS["efficientnet_b0"].top1 == 77.1


# -- the commands ---------------------------------------------------------------------
def test_export_and_bench_commands_end_to_end(tmp_path, capsys):
    onnx = tmp_path / "rexnet_lite.onnx"
    assert run_cli(["export", "rexnet_lite_100", "--out", str(onnx), "--input-size", "32"]) == 0
    out = tmp_path / "bench"
    assert run_cli(["bench", "rexnet_lite_100", str(onnx), "--compare", "mobilenet_v2", "--deploy",
                    "--batch", "1,2", "--input-size", "32", "--runs", "3", "--warmup", "1",
                    "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "logits match" in text and "not measured here" in text
    with open(out / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["form"], r["batch"]) for r in rows[:3]] == [
        ("rexnet_lite_100", "deployed", "1"), ("rexnet_lite.onnx", "onnxruntime", "1"),
        ("mobilenet_v2", "eager", "1")]
    assert len(rows) == 6 and rows[0]["top1_published"] == "76.2" and rows[1]["top1_published"] == ""
    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["torch"] == torch.__version__ and len(data["rows"]) == 6
    assert (out / "bench.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="--batch"):
        run_cli(["bench", "--batch", "0", "--out", str(out)])
    with pytest.raises(ValueError, match="exported for 32px"):
        run_cli(["bench", str(onnx), "--input-size", "64", "--out", str(out)])


def test_export_command_uses_the_checkpoint_and_its_spec(tmp_path):
    model = randomize_bn(create_model("rexnet_100", num_classes=7))
    save_weights(model, tmp_path / "w.safetensors")
    out = tmp_path / "m.ts"
    assert run_cli(["export", "rexnet_100", "--weights", str(tmp_path / "w.safetensors"), "--format",
                    "torchscript", "--out", str(out), "--input-size", "32"]) == 0
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(x), model(x), atol=1e-4, rtol=0)
