"""Fault injection for the channel search (issue 14, items 2, 3, 4 and 7): failed trials are
retried on rerun within an attempt limit, a bad dataset fails once before any trial, a run of
trials failing with the same error stops the search, a damaged ``search.db`` says so in one
line and is rebuilt from the trials' result files, concurrent trial processes unpack
Fashion-MNIST safely, and the demo fails when a trial failed."""
from __future__ import annotations

import gzip
import multiprocessing as mp
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rexnet.cli import main
from rexnet.search.run import SearchSettings, prepare
from rexnet.trials import Store, status
from train_helpers import CIFAR_ZIP, needs_cifar

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "docs" / "search" / "smoke"


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A CIFAR-10 image tree of real images: 12 per class to train on, 6 per class to test."""
    root = tmp_path_factory.mktemp("cifar_tree")
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        names = z.namelist()
        for split, n in (("train", 12), ("test", 6)):
            taken: dict[str, int] = {}
            for name in names:
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == split and name.endswith(".jpg") and taken.get(parts[1], 0) < n:
                    taken[parts[1]] = taken.get(parts[1], 0) + 1
                    (root / parts[0] / parts[1]).mkdir(parents=True, exist_ok=True)
                    (root / name).write_bytes(z.read(name))
    return root


def _run(tree: Path, out: Path, *extra: str) -> list[str]:
    """``search run`` of the two smoke references on the tiny tree, one epoch: seconds a trial."""
    return ["search", "run", "--preset", "smoke", "--data", str(tree), "--trials", "0", "--repeats", "1",
            "--epochs", "1", "--train-subset", "0", "--val-subset", "0", "--batch-size", "40",
            "--rank-images", "16", "--no-progress", "--out", str(out), *extra]


# -- 4. the data is checked once, before any trial; --skip-bad-images is accepted -----------
@pytest.mark.slow
@needs_cifar
def test_a_corrupt_image_fails_once_before_any_trial_and_skip_bad_images_proceeds(tmp_path, tree, capsys):
    bad_tree = tmp_path / "tree"
    shutil.copytree(tree, bad_tree)
    bad = sorted((bad_tree / "test" / "cat").iterdir())[3]
    bad.write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    out = tmp_path / "search"
    assert main(_run(bad_tree, out)) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(bad) in line and "--skip-bad-images" in line
    assert not (out / "search.db").exists() and not (out / "trials").exists()     # no trial was started

    assert main(_run(bad_tree, out, "--skip-bad-images", "--workers", "2")) == 0
    printed = capsys.readouterr().out
    assert "1 unreadable, skipped (--skip-bad-images)" in printed and str(bad) in printed
    assert "2/2 trials done, 0 failed" in printed


# -- 4 and 2. the same error K times in a row stops the search; a rerun retries within a limit ---
@pytest.mark.slow
@needs_cifar
def test_failed_trials_stop_the_search_then_are_retried_within_the_attempt_limit(tmp_path, tree, capsys):
    out = tmp_path / "search"
    settings = SearchSettings(preset="smoke", data=str(tree), trials=1, repeats=1, epochs=1, train_subset=0,
                              val_subset=0, batch_size=40, rank_images=16)
    store, _ = prepare(out, settings)
    keys = [t["key"] for t in store.trials()]
    store.close()
    for k in keys:   # a damaged checkpoint in every trial: each fails as it tries to resume from it
        (out / "trials" / k).mkdir(parents=True)
        (out / "trials" / k / "last.pt").write_bytes(b"garbage, not a checkpoint")
    args = _run(tree, out, "--trials", "1")

    assert main(args + ["--stop-after-failures", "2"]) == 2      # 2 of 3 failed alike: stopped
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith("rexnet search: error: stopped: 2 trials in a row failed with the same error (")
    assert "rerun the same command" in line
    with Store(out / "search.db") as s:
        assert s.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 2}

    assert main(args + ["--no-retry"]) == 1                      # the pending one runs; failed ones stay
    with Store(out / "search.db") as s:
        assert s.counts()["failed"] == 3 and {t["attempts"] for t in s.trials()} == {1}

    assert main(args + ["--max-attempts", "1"]) == 1             # at the limit: not retried
    printed = capsys.readouterr().out
    assert "3 failed trial(s) had 1 attempts and stay failed" in printed and "0/3 trials done, 3 failed" in printed

    for k in keys:   # the fault fixed
        (out / "trials" / k / "last.pt").unlink()
    assert main(args + ["--workers", "2"]) == 0                  # retried (default limit 3): all done
    printed = capsys.readouterr().out
    assert "retrying 3 failed trial(s)" in printed and "3/3 trials done, 0 failed" in printed
    with Store(out / "search.db") as s:
        assert {t["attempts"] for t in s.trials()} == {2} and s.counts()["done"] == 3


# -- 7. a damaged search.db: one line, then `search recover` rebuilds it ----------------------
def _snapshot(d: Path) -> tuple[dict, dict, list]:
    from rexnet.search.report import _trial_rows

    with Store(d / "search.db") as s:
        trials, protocol = s.trials(), s.get_meta("protocol")
    keep = ("key", "idx", "kind", "spec_hash", "repeat", "seed", "spec", "widths", "macs", "params",
            "params_of_f", "status", "result", "error")
    return status(d), protocol, [{k: t[k] for k in keep} for t in trials] + _trial_rows("s", trials)


@pytest.mark.skipif(not (SMOKE / "search.db").is_file(), reason="docs/search/smoke is not there")
@pytest.mark.parametrize("damage", ["truncated", "random bytes", "empty file"])
def test_a_damaged_store_says_so_in_one_line_and_recover_rebuilds_it(tmp_path, capsys, damage):
    d = tmp_path / "smoke"
    shutil.copytree(SMOKE, d, ignore=shutil.ignore_patterns("report"))
    before = _snapshot(d)
    db = d / "search.db"
    raw = db.read_bytes()
    bad = {"truncated": raw[: len(raw) // 2], "empty file": b"",
           "random bytes": np.random.default_rng(0).bytes(len(raw))}[damage]
    db.write_bytes(bad)
    for cmd in (["search", "status", str(d)], ["search", "analyze", str(d)]):
        assert main(cmd) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert "is not a readable search store" in line and f"rexnet search recover {d}" in line
    assert db.read_bytes() == bad                                   # the failing commands left it alone

    assert main(["search", "recover", str(d)]) == 0
    assert "recovered" in capsys.readouterr().out
    backups = list(d.glob("search.db.bad-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == bad
    assert _snapshot(d) == before                                    # the same trials and results
    assert main(["search", "recover", str(d)]) == 2                  # a readable store is not replaced
    assert "nothing to recover" in _one_line_error(capsys.readouterr().err)


# -- 3. concurrent trial processes unpack Fashion-MNIST safely; the demo fails on a failed trial --
def _idx(path: Path, array: np.ndarray, code: int) -> None:
    header = struct.pack(">I", 0x800 + code) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _unpack_and_open(source: str, roots: list[str], barrier) -> None:
    from rexnet.train.data import _unpack_local_copy, build_dataset

    for root in roots:
        barrier.wait(timeout=60)   # both processes start on the same fresh folder together
        _unpack_local_copy("fashion-mnist", Path(root), sources=[Path(source)])
        assert len(build_dataset("fashion-mnist", "train", root=root)) == 200
        assert len(build_dataset("fashion-mnist", "val", root=root)) == 100


@pytest.mark.slow
@needs_cifar
def test_two_processes_unpack_fashion_mnist_at_once_and_both_read_it(tmp_path):
    """A package folder laid out as Debian's dataset-fashion-mnist (gzipped IDX files) from
    real images (CIFAR-10 in grey at 28x28); two processes unpack it into the same fresh
    data root at once, four times over: both always read every image."""
    pkg = tmp_path / "fashion-mnist"
    pkg.mkdir()
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        jpgs = [n for n in z.namelist() if n.endswith(".jpg")][:300]
        imgs = np.stack([np.asarray(Image.open(z.open(n)).convert("L").resize((28, 28))) for n in jpgs])
    labels = np.arange(300) % 10
    for prefix, sl in (("train", slice(0, 200)), ("t10k", slice(200, 300))):
        _idx(pkg / f"{prefix}-images-idx3-ubyte.gz", imgs[sl], 3)
        _idx(pkg / f"{prefix}-labels-idx1-ubyte.gz", labels[sl], 1)
    roots = [str(tmp_path / f"data{i}") for i in range(4)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_unpack_and_open, args=(str(pkg), roots, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    for root in roots:   # one complete folder each, no temporary copy left behind
        assert sorted(f.name for f in (Path(root) / "FashionMNIST").iterdir()) == ["raw"]
        assert len(list((Path(root) / "FashionMNIST" / "raw").iterdir())) == 4


def test_the_demo_exits_non_zero_when_a_search_trial_failed(tmp_path, monkeypatch, capsys):
    import rexnet.search.report as report
    import rexnet.search.run as runner

    monkeypatch.setattr(runner, "run_search", lambda out, s: {"pending": 0, "running": 0, "done": 19, "failed": 1})
    monkeypatch.setattr(report, "analyze", lambda dirs, out: {"report": str(Path(out) / "report.md")})
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-profile", "--no-rank-study",
                 "--search-data", "cifar10"]) == 1
    assert "1 search trial(s) failed" in capsys.readouterr().err
