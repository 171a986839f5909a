"""Fault injection for bad input (issue 14, items 8, 9, 11, 12): each fault ends in one clear
line naming the problem, never a traceback, a worker's wrapper text, an object repr or
terminal escape codes."""
import argparse
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rexnet.cli import build_parser, main
from rexnet.flags import add_bool_flag, add_dataclass_flags, dataclass_overrides, field_comments
from rexnet.models.weights import CheckpointError, read_state_dict
from rexnet.cores import available_cores
from rexnet.train.data import (DataError, ImageTree, IndexedDataset, balanced_subset,
                               build_dataset, build_transforms, resolve_workers)
from rexnet.train.recipe import Recipe
from train_helpers import HYMENOPTERA, needs_hymenoptera, tiny_spec_file

SRC = Path(__file__).resolve().parents[1] / "src"


def assert_one_clean_line(text: str) -> str:
    """``text`` is a single line with no traceback, worker wrapper, object repr or ANSI code."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    for bad in ("Traceback", "Caught ", "BytesIO", " object at 0x", "\x1b["):
        assert bad not in text, text
    return lines[0]


@pytest.fixture
def corrupt_tree(tmp_path):
    """Six real ants/bees photos per class and split, one JPEG with its header overwritten."""
    root = tmp_path / "tree"
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((HYMENOPTERA / split / cls).glob("*.jpg"))[:6]:
                shutil.copy(f, root / split / cls / f.name)
    victim = sorted((root / "train" / "bees").glob("*.jpg"))[2]
    data = victim.read_bytes()
    victim.write_bytes(b"\0" * 64 + data[64:])
    return root, victim


# ----------------------------------------------------------------------------- item 8
@needs_hymenoptera
def test_bad_image_in_loader_workers_is_one_line_data_error(corrupt_tree, tmp_path):
    root, victim = corrupt_tree
    ds = IndexedDataset(ImageTree(root, "train"), build_transforms("cifar", 32, False))
    with pytest.raises(DataError) as info:  # torch re-raises the worker's error as the same class
        for _ in DataLoader(ds, batch_size=4, num_workers=2):
            pass
    line = assert_one_clean_line(str(info.value))
    assert line.startswith(f"cannot decode image {victim}: not a recognised image") and "--skip-bad-images" in line

    # the same through `rexnet train --workers 2`: exit 2 and one line on stderr
    cmd = [sys.executable, "-m", "rexnet.cli", "train", "--model", tiny_spec_file(tmp_path, 2), "--data",
           str(root), "--epochs", "1", "--batch-size", "4", "--workers", "2", "--cache-images", "false",
           "--progress", "false", "--out", str(tmp_path / "run")]
    env = dict(os.environ, REXNET_TCMALLOC="0", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if not ln.startswith(("loading", "rexnet: using"))]
    line = assert_one_clean_line("\n".join(err))
    assert line.startswith(f"rexnet train: error: cannot decode image {victim}: "), line


@needs_hymenoptera
def test_bad_validation_image_with_loader_workers_ends_the_run_in_one_line(corrupt_tree, tmp_path):
    """The same fault in the validation split, met by the evaluation's loader workers after the
    first epoch: one line and exit 2 within seconds (the process once hung at exit, joining
    workers that ignore SIGTERM)."""
    root, train_victim = corrupt_tree
    train_victim.unlink()  # the training split is clean
    victim = sorted((root / "val" / "ants").glob("*.jpg"))[1]
    victim.write_bytes(b"not a jpeg")
    cmd = [sys.executable, "-m", "rexnet.cli", "train", "--model", tiny_spec_file(tmp_path, 2), "--data",
           str(root), "--epochs", "1", "--batch-size", "4", "--workers", "1", "--cache-images", "false",
           "--progress", "false", "--out", str(tmp_path / "run")]
    env = dict(os.environ, REXNET_TCMALLOC="0", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if not ln.startswith(("loading", "rexnet: using"))]
    line = assert_one_clean_line("\n".join(err))
    assert line.startswith(f"rexnet train: error: cannot decode image {victim}: "), line


def test_workers_auto_leaves_a_core_and_keeps_explicit_counts():
    cores = available_cores()
    assert resolve_workers("auto") == resolve_workers(None) == max(0, min(8, cores - 1))
    assert resolve_workers("auto", cap=1) == min(1, cores - 1)
    assert resolve_workers(8) == 8 and resolve_workers("3") == 3 and resolve_workers(0) == 0
    with pytest.raises(DataError, match="workers must be >= 0 or auto, got -1"):
        resolve_workers(-1)


# ----------------------------------------------------------------------------- item 9
def test_unsafe_and_garbage_checkpoints_are_one_line_refusals(tmp_path, capsys):
    marker = tmp_path / "PAYLOAD_RAN"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    (tmp_path / "random.pth").write_bytes(b"-" + random.Random(0).randbytes(4095))  # '-' is operand 45
    (tmp_path / "empty.pth").write_bytes(b"")
    for split in ("train", "val"):  # real (tiny) data, so the only fault is the checkpoint
        for cls, colour in (("a", "red"), ("b", "blue")):
            (tmp_path / "d" / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8), colour).save(tmp_path / "d" / split / cls / "0.png")
    cases = {"evil.pth": r"refused: .*evil\.pth contains Python objects \((posix|nt)\.system\), not a "
                         r"weights-only checkpoint.*torch\.save\(sd, 'weights\.pth'\)",
             "random.pth": r".*random\.pth is not a checkpoint \(neither safetensors nor a torch zip/pickle\)$",
             "empty.pth": r"cannot read checkpoint .*empty\.pth: the file is empty"}
    for name, pattern in cases.items():
        with pytest.raises(CheckpointError, match=pattern) as info:
            read_state_dict(tmp_path / name)
        assert_one_clean_line(str(info.value))
        assert "add_safe_globals" not in str(info.value) and "operand" not in str(info.value)
        # and what `rexnet eval` prints: exit 2, one line
        code = main(["eval", "--model", "rexnet_lite_100", "--weights", str(tmp_path / name), "--data",
                     str(tmp_path / "d"), "--out", str(tmp_path / "e.json")])
        err = capsys.readouterr().err
        assert code == 2 and assert_one_clean_line(err).startswith("rexnet eval: error: ")
    assert not marker.exists()  # the payload never ran
    assert not (tmp_path / "e.json").exists()


# ----------------------------------------------------------------------------- item 11
@dataclass
class _Settings:
    fast: bool = False                  # skip the slow part
    slow: bool = True
    ratio: float = 0.5                  # share of images (a 100% share is all of them)
    count: int | None = None            # how many; auto = from the data


def _parse(*argv):
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, _Settings)
    return dataclass_overrides(p.parse_args(list(argv)), _Settings)


def test_boolean_flags_take_every_form_and_subsets_are_exact(capsys):
    assert _parse() == {}
    assert _parse("--fast") == {"fast": True}
    assert _parse("--fast", "false", "--slow", "yes") == {"fast": False, "slow": True}
    assert _parse("--no-fast", "--no-slow") == {"fast": False, "slow": False}
    assert _parse("--count", "auto", "--ratio", "0.25") == {"count": None, "ratio": 0.25}
    with pytest.raises(SystemExit) as info:
        _parse("--fast", "maybe")
    assert info.value.code == 2 and "expected true or false, got 'maybe'" in capsys.readouterr().err
    # a stand-alone boolean (what `eval --skip-bad-images` should use) parses the same way
    p = argparse.ArgumentParser()
    add_bool_flag(p, "--skip-bad-images", help="skip unreadable files")
    assert [p.parse_args(a).skip_bad_images for a in ([], ["--skip-bad-images"], ["--skip-bad-images", "0"],
                                                      ["--no-skip-bad-images"])] == [False, True, False, False]
    # `rexnet train`: the recipe's booleans in all three forms
    args = build_parser().parse_args(["train", "--model", "m", "--data", "d", "--out", "o", "--skip-bad-images",
                                      "--ema", "false", "--no-progress"])
    assert dataclass_overrides(args, Recipe, skip=("recipe",)) == dict(
        model="m", data="d", skip_bad_images=True, ema=False, progress=False)
    assert Recipe(workers=None).validate().workers is None  # `--workers auto`
    with pytest.raises(ValueError, match="workers must be >= 0 or auto, got -2"):
        Recipe(workers=-2).validate()


@pytest.mark.parametrize("argv, flag, expected", [
    ([], "skip_bad_images", False), (["--skip-bad-images"], "skip_bad_images", True),
    (["--skip-bad-images", "false"], "skip_bad_images", False), (["--no-skip-bad-images"], "skip_bad_images", False),
    (["--ema"], "ema", True), (["--ema", "yes"], "ema", True), (["--no-ema"], "ema", False),
    (["--download"], "download", True), (["--no-download"], "download", False)])
def test_eval_booleans_take_flag_value_and_no_forms(argv, flag, expected):
    args = build_parser().parse_args(["eval", "--weights", "w.pt", "--data", "d", *argv])
    assert getattr(args, flag) is expected


def test_rank_and_detect_booleans_take_the_same_forms():
    parse = build_parser().parse_args
    study = ["rank-study", "--quick"]
    from rexnet.rank.cli import config_from_args
    assert config_from_args(parse(study)).center is False
    assert config_from_args(parse(study + ["--center"])).center is True
    assert config_from_args(parse(study + ["--center", "false"])).center is False
    assert parse(study + ["--no-progress"]).progress is False and parse(study).progress is True
    analyze = ["rank-analyze", "--model", "m", "--data", "d", "--out", "o"]
    assert (parse(analyze).center, parse(analyze).skip_bad_images) == (False, False)
    a = parse(analyze + ["--center", "--skip-bad-images", "true"])
    assert (a.center, a.skip_bad_images) == (True, True)
    verify = ["rank-verify", "--out", "o"]
    assert (parse(verify).overwrite, parse(verify).progress) == (False, True)
    assert (parse(verify + ["--overwrite", "--no-progress"]).overwrite, parse(verify + ["--no-progress"]).progress) \
        == (True, False)
    det = ["detect", "eval", "--weights", "w.pt", "--data", "d"]
    assert [parse(det + a).skip_bad_images for a in ([], ["--skip-bad-images"], ["--no-skip-bad-images"])] \
        == [False, True, False]


@needs_hymenoptera
def test_subsets_give_exactly_n_balanced_and_refuse_negative_sizes():
    ds = build_dataset(str(HYMENOPTERA), "val")  # 70 ants, 83 bees
    for n in (1, 7, 32, 140):
        sub = balanced_subset(ds, n)
        labels = [ds.targets[i] for i in sub.indices]
        assert len(sub) == n and abs(labels.count(0) - labels.count(1)) <= 1
    labels = [ds.targets[i] for i in balanced_subset(ds, 152).indices]  # ants run out: bees take their turns
    assert labels.count(0) == 70 and labels.count(1) == 82
    assert balanced_subset(ds, 0) is ds and balanced_subset(ds, None) is ds
    with pytest.raises(DataError) as info:
        balanced_subset(ds, -5)
    assert assert_one_clean_line(str(info.value)).startswith("a subset of -5 samples: the number of samples "
                                                             "must be positive")


# ----------------------------------------------------------------------------- item 12
def test_help_shows_each_field_comment_and_default():
    assert field_comments(_Settings) == {"fast": "skip the slow part",
                                         "ratio": "share of images (a 100% share is all of them)",
                                         "count": "how many; auto = from the data"}
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, _Settings)
    text = " ".join(p.format_help().split())
    assert "--fast [BOOL] skip the slow part (default: false)" in text
    assert "--slow [BOOL] default: true" in text and "--no-fast" not in text  # the negative form is not listed
    assert "share of images (a 100% share is all of them) (default: 0.5)" in text
    assert "how many; auto = from the data" in text
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())
    assert "--batch-size BATCH_SIZE global, over all processes (default: 128)" in text
    assert "--amp AMP auto (bf16 on GPU, off on CPU) | off | fp16 | bf16 (default: auto)" in text
    # every recipe field has its comment as help, and its default where it has one
    assert "--epochs EPOCHS training epochs (default: 30)" in text
    assert "--nesterov [BOOL] Nesterov momentum (default: true)" in text
    assert "--workers WORKERS DataLoader processes per process; auto = min(8, cores - 1) (default: 0)" in text
    recipe_flags = [a for g in train._action_groups if g.title and g.title.startswith("recipe fields")
                    for a in g._group_actions]
    assert len(recipe_flags) > 45 and all(a.help for a in recipe_flags), [a.dest for a in recipe_flags if not a.help]


def test_commands_describe_themselves():
    parser = build_parser()
    top = " ".join(parser.format_help().split())
    assert "Rethinking Channel Dimensions" in top and "thin argument parsing" not in top
    choices = parser._subparsers._group_actions[0].choices
    for name, words in (("train", "--resume (continues OUT/last.pt exactly)"), ("eval", "Top-1, top-5 and loss"),
                        ("demo", "rank study (Section 3)")):
        text = " ".join(choices[name].format_help().split())
        assert words in text, (name, text)
    demo = " ".join(choices["demo"].format_help().split())
    assert "channel search" in demo and "--runs RUNS timed runs per model" in demo
