"""Fault injection (issue 14): what a user sees when a run folder already holds a run, when
training is stopped by SIGINT / SIGTERM, when the output cannot be written, and when the loss
diverges.  Each case checks the exit code, that the message is one line (no traceback), and
that every file which existed before is byte-identical afterwards."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rexnet.cli import main
from rexnet.train.checkpoint import load_checkpoint
from train_helpers import CIFAR_ZIP, SHARED, needs_cifar, tiny_spec_file

TIMING = {"images_per_s", "epoch_time_s"}


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (the state a refusal must leave alone)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(err: str) -> str:
    """The single line a failing command printed on stderr (and nothing else)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _train_args(folder: Path, out: Path, *extra: str) -> list[str]:
    """A 2-steps-per-epoch CIFAR-10 run of the tiny network (seconds on a CPU)."""
    return ["train", "--model", tiny_spec_file(folder), "--data", str(CIFAR_ZIP), "--epochs", "1",
            "--train-subset", "64", "--val-subset", "20", "--batch-size", "32", "--lr-base-batch", "32",
            "--progress", "false", "--out", str(out), *extra]


# -- 1. an existing run (and other outputs) is never replaced silently -----------------------
@needs_cifar
def test_a_second_train_into_a_run_is_refused_until_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out)) == 0
    before = _files(out)
    capsys.readouterr()
    assert main(_train_args(tmp_path, out, "--seed", "7")) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert _files(out) == before
    assert main(_train_args(tmp_path, out, "--resume", "--overwrite")) == 2
    assert "pass one of them" in _one_line_error(capsys.readouterr().err)
    assert _files(out) == before
    assert main(_train_args(tmp_path, out, "--seed", "7", "--overwrite")) == 0   # explicit: replaces the run
    assert "seed: 7" in (out / "config.yaml").read_text()
    assert load_checkpoint(out / "last.pt")["config"]["seed"] == 7


def test_export_and_bench_refuse_an_existing_output_until_overwrite(tmp_path, capsys):
    model = tmp_path / "m.pt"
    export = ["export", "rexnet_lite_100", "--format", "torchscript", "--input-size", "32", "--out", str(model)]
    assert main(export) == 0
    before = model.read_bytes()
    capsys.readouterr()
    assert main(export) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(model) in line and "--overwrite" in line
    assert model.read_bytes() == before
    assert main(export + ["--overwrite"]) == 0

    bench = ["bench", "rexnet_lite_100", "--batch", "1", "--input-size", "32", "--runs", "1", "--warmup", "1",
             "--out", str(tmp_path / "bench")]
    assert main(bench) == 0
    before = _files(tmp_path / "bench")
    assert {"bench.csv", "bench.json"} <= set(before)
    capsys.readouterr()
    assert main(bench) == 2
    assert "--overwrite" in _one_line_error(capsys.readouterr().err)
    assert _files(tmp_path / "bench") == before
    assert main(bench + ["--overwrite"]) == 0


@needs_cifar
def test_rank_verify_refuses_an_output_made_with_other_settings_until_overwrite(tmp_path, capsys):
    from rexnet.io import write_json
    from rexnet.rank.verify import verification_spec
    from rexnet.train.recipe import load_recipe, save_config

    # the baseline variant's folder as `rank-verify --epochs 2 --out-chs 32` leaves it when stopped
    out = tmp_path / "v"
    spec = verification_spec("baseline", 32)
    cfg = load_recipe("cifar", dict(model=spec.name, data=str(CIFAR_ZIP), epochs=2, train_subset=128, val_subset=20,
                                    seed=0, dropout=0.0, batch_size=128))
    save_config(cfg, out / "baseline" / "config.yaml")
    write_json(spec.to_dict(), out / "baseline" / "spec.json")
    (out / "baseline" / "metrics.jsonl").write_text('{"epoch": 0, "val_top1": 12.5}\n')
    before = _files(out)
    args = ["rank-verify", "--data", str(CIFAR_ZIP), "--epochs", "1", "--train-subset", "128", "--val-subset", "20",
            "--out-chs", "32", "--no-progress", "--out", str(out)]   # one step of 128 images per model
    assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "other settings (baseline: epochs: 2 -> 1)" in line and "--overwrite" in line
    assert _files(out) == before
    # --overwrite replaces the earlier run: every model trains afresh with the new settings
    assert main(args + ["--overwrite"]) == 0
    names = ["baseline", "first_1x1_ratio_1_6", "ib_ratio_0.8", "silu"]
    for name in names:   # baseline's old metrics row (no train_loss) is gone, not appended to
        assert "epochs: 1" in (out / name / "config.yaml").read_text()
        rows = _metrics(out / name)
        assert len(rows) == 1 and rows[0]["epoch"] == 0 and "train_loss" in rows[0]
    assert [r["model"] for r in json.loads((out / "table2.json").read_text())] == names


# -- 5. SIGINT / SIGTERM: finish the step, checkpoint, exit with one line; --resume is exact ------
def _cli(folder: Path, out: Path) -> list[str]:
    """2 epochs of 16 steps, a periodic checkpoint every 2 steps (to see how far the run is); the
    signal comes after step 2, so 14 steps of margin keep it inside the first epoch on a fast machine."""
    return [sys.executable, "-m", "rexnet.cli", "train", "--model", tiny_spec_file(folder), "--data", str(CIFAR_ZIP),
            "--epochs", "2", "--train-subset", "256", "--val-subset", "20", "--batch-size", "16",
            "--lr-base-batch", "16", "--progress", "false", "--ckpt-every-steps", "2", "--out", str(out)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(folder, folder / "run"), check=True, env=env, capture_output=True, timeout=600)
    return _metrics(folder / "run")


@needs_cifar
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_epoch_checkpoints_and_resume_gives_the_same_metrics(tmp_path, uninterrupted, sig):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(tmp_path, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = out / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and load_checkpoint(last)["state"]["global_step"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    stops = [ln for ln in err.splitlines() if "stopped by" in ln]
    assert len(stops) == 1, err
    m = re.fullmatch(rf"rexnet train: stopped by {sig.name} in epoch 1/2 after step (\d+) of 16 \(global step \1\); "
                     rf"checkpoint written to {re.escape(str(last))}; rerun with --resume to continue", stops[0])
    assert m, stops[0]
    state = load_checkpoint(last)["state"]
    assert state["global_step"] == state["step_in_epoch"] == int(m.group(1)) >= 2   # the signal's own checkpoint
    assert not (out / "summary.json").exists()
    subprocess.run(_cli(tmp_path, out) + ["--resume"], check=True, env=env, capture_output=True, timeout=600)
    assert _metrics(out) == uninterrupted and len(uninterrupted) == 2


# -- 6. an unwritable output fails in one line before any work --------------------------------
def _unwritable_commands(bad: Path) -> list[list[str]]:
    coco = str(SHARED / "coco128")
    return [
        _train_args(bad.parent, bad / "run"),
        ["eval", "--model", "rexnet_lite_100", "--weights", "missing.safetensors", "--data", str(CIFAR_ZIP),
         "--out", str(bad / "eval.json")],
        ["detect", "train", "--data", coco, "--model", "rexnet_lite_100", "--epochs", "1", "--out", str(bad / "det")],
        ["detect", "eval", "--weights", "missing.pt", "--data", coco, "--out", str(bad / "det.json")],
        ["detect", "predict", "missing.jpg", "--weights", "missing.pt", "--out", str(bad / "pred")],
        ["bench", "rexnet_lite_100", "--out", str(bad / "bench")],
        ["export", "rexnet_lite_100", "--out", str(bad / "m.onnx")],
        ["rank-verify", "--data", str(CIFAR_ZIP), "--out", str(bad / "table2")],
        # the commands that read or compute first check where they will write, too
        ["models", "--profile", "--json", str(bad / "models.json")],
        ["info", "rexnet_100", "--plot", str(bad / "widths.png")],
        ["info", "rexnet_100", "--save-spec", str(bad / "spec.yaml")],
        ["data", "check", str(CIFAR_ZIP), "--json", str(bad / "check.json")],
        ["demo", "--out", str(bad / "demo")],
        ["rank-study", "--quick", "--out", str(bad / "study")],
        ["rank-analyze", "--model", "rexnet_lite_100", "--data", str(CIFAR_ZIP), "--out", str(bad / "analysis")],
        ["rank-audit", "rexnet_100", "--csv", str(bad / "audit.csv")],
        ["search", "run", "--preset", "smoke", "--out", str(bad / "search")],
        ["search", "analyze", str(bad.parent), "--out", str(bad / "report")],
    ]


def test_an_output_under_a_plain_file_fails_in_one_line_before_any_work(tmp_path, capsys):
    plain = tmp_path / "notes.txt"
    plain.write_text("not a folder\n")
    for args in _unwritable_commands(plain):
        t0 = time.time()
        assert main(args) == 2, args
        line = _one_line_error(capsys.readouterr().err)
        assert re.search(rf"error: cannot write to {re.escape(str(plain))}/\S+: {re.escape(str(plain))} is a file, "
                         r"not a folder; choose another output location$", line), line
        assert time.time() - t0 < 20, args   # refused up front, not after training or evaluating
    assert plain.read_text() == "not a folder\n"


def test_a_read_only_folder_fails_in_one_line_before_any_work(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "kept.txt").write_text("kept\n")
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("this user may write into a read-only folder (root)")
        for args in _unwritable_commands(ro):
            assert main(args) == 2, args
            line = _one_line_error(capsys.readouterr().err)
            assert "cannot write to" in line and "Permission denied" in line, line
        assert _files(ro) == {"kept.txt": b"kept\n"}
    finally:
        ro.chmod(0o755)


# -- 10. the NaN stop's advice works: lr / warm-up may change on resume, recorded in history ----
@needs_cifar
def test_the_nan_advice_works_and_resume_changes_are_recorded(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out)) == 0          # epoch 0 done: 2 steps, lr 0.1
    before = _files(out)
    capsys.readouterr()
    assert main(_train_args(tmp_path, out, "--resume", "--epochs", "2", "--lr", "1e30")) == 3
    line = _one_line_error(capsys.readouterr().err)
    assert "training diverged; the last good checkpoint" in line
    assert "rerun with --resume and a lower --lr, a --warmup-epochs above" in line
    assert (out / "last.pt").read_bytes() == before["last.pt"]
    # a field that may not change is refused, in one line that names those which may
    assert main(_train_args(tmp_path, out, "--resume", "--epochs", "2", "--seed", "3")) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "holds a run made with other settings" in line and "seed: 0 -> 3" in line and "warmup_epochs" in line and "--overwrite" in line
    assert (out / "last.pt").read_bytes() == before["last.pt"]
    # the advice, followed: --resume with a lower --lr and a longer warm-up
    caplog.set_level("INFO", logger="rexnet.train")
    assert main(_train_args(tmp_path, out, "--resume", "--epochs", "2", "--lr", "0.05", "--warmup-epochs", "5")) == 0
    expected = [dict(field="epochs", old=1, new=2, epoch=1, step=2), dict(field="lr", old=0.1, new=0.05, epoch=1, step=2),
                dict(field="warmup_epochs", old=3.0, new=5.0, epoch=1, step=2)]
    assert load_checkpoint(out / "last.pt")["state"]["history"] == expected
    assert json.loads((out / "summary.json").read_text())["history"] == expected
    assert "resume: lr 0.1 -> 0.05 from epoch 1, step 2 (kept in the run's history)" in caplog.text
    assert [r["epoch"] for r in _metrics(out)] == [0, 1]
