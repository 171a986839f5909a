import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rexnet.train.checkpoint import load_checkpoint
from rexnet.train.data import DataError, build_dataset
from rexnet.train.distributed import GlobalBatchSampler
from rexnet.train.loop import TrainingDiverged, train
from rexnet.train.recipe import load_recipe
from train_helpers import CIFAR_ZIP, cifar_recipe, needs_cifar

TIMING = {"images_per_s", "epoch_time_s"}


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_global_batch_sampler_splits_like_micro_batches():
    one = list(GlobalBatchSampler(100, 20, world=1, seed=3))
    two = [list(GlobalBatchSampler(100, 20, world=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(one) == 5 and all(len(b) == 20 for b in one)
    for b, r0, r1 in zip(one, *two):
        assert b[:10] == r0 and b[10:] == r1
    s = GlobalBatchSampler(100, 20, seed=3)
    s.set_epoch(1)
    assert list(s) != one  # reshuffled per epoch
    s.set_epoch(1, start=3)
    assert list(s) == _epoch(1)[3:] and len(s) == 2
    with pytest.raises(ValueError, match="fewer than one batch"):
        GlobalBatchSampler(10, 20)
    with pytest.raises(ValueError, match="divide evenly"):
        GlobalBatchSampler(100, 21, world=2)


def _epoch(e):
    s = GlobalBatchSampler(100, 20, seed=3)
    s.set_epoch(e)
    return list(s)


def test_spec_files_keep_their_strides_when_designed_for_32x32(tmp_path):
    from rexnet.models.resolve import resolve_spec
    from rexnet.models.zoo import rexnet_spec

    big = rexnet_spec("big", multiplier=0.25, depth_multiplier=0.34)  # designed for 224
    small = big.replace(name="small", input_size=32)
    big.save(tmp_path / "big.json")
    small.save(tmp_path / "small.json")
    def stem_stride(path, plan):
        return resolve_spec(str(tmp_path / path), num_classes=10, input_size=32, stride_plan=plan).stem.stride

    assert stem_stride("big.json", "auto") == 1
    assert stem_stride("small.json", "auto") == 2
    assert stem_stride("small.json", "cifar") == 1
    assert stem_stride("big.json", "imagenet") == 2
    # the one resolver decides the plan from the input size alone, for every way to name a model
    assert resolve_spec("rexnet_100", input_size=32).stem.stride == 1
    assert resolve_spec("rexnet_100", input_size=64).stem.stride == 2
    assert resolve_spec("rexnet_100_cifar").stem.stride == 1
    cifar = resolve_spec("rexnet_100", input_size=32)
    assert resolve_spec(cifar, stride_plan="cifar") == cifar  # never applied twice


def test_recipes_and_overrides(tmp_path):
    r = load_recipe("imagenet")
    assert (r.lr, r.batch_size, r.warmup_epochs, r.epochs, r.weight_decay) == (0.5, 512, 5, 400, 1e-5)
    assert (r.auto_augment, r.re_prob, r.label_smoothing, r.dropout, r.nesterov) == ("rand-m9-mstd0.5", 0.2, 0.1, 0.2, True)
    assert load_recipe("imagenet", {"batch_size": "256"}).scaled_lr() == pytest.approx(0.25)
    assert load_recipe("cifar", {"ema": "true", "epochs": "3"}).ema is True
    with pytest.raises(ValueError, match="unknown recipe field 'epoch'"):
        load_recipe("cifar", {"epoch": 3})
    with pytest.raises(ValueError, match="epochs takes a int"):
        load_recipe("cifar", {"epochs": "three"})
    with pytest.raises(ValueError, match="multiple of accum_steps"):
        load_recipe("cifar", {"batch_size": 10, "accum_steps": 3})
    with pytest.raises(ValueError, match="unknown recipe"):
        load_recipe("cifar-200")


@needs_cifar
def test_cifar_subset_learns(tmp_path):
    cfg = cifar_recipe(tmp_path, epochs=3, train_subset=1500, val_subset=500, batch_size=50,
                       lr_base_batch=50, lr=0.2, warmup_epochs=1)   # the loop learns; not the recipe's sizing
    summary = train(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.15
    assert summary["best_val_top1"] > 25.0  # chance is 10%
    for name in ("config.yaml", "spec.json", "last.pt", "best.pt", "best.safetensors", "summary.json"):
        assert (tmp_path / "run" / name).is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))


@needs_cifar
def test_resume_after_a_stop_mid_epoch_gives_the_same_metrics(tmp_path):
    kw = dict(epochs=2, train_subset=200, val_subset=100, dropout=0.2, drop_path=0.1)
    train(cifar_recipe(tmp_path, **kw), tmp_path / "full")
    s = train(cifar_recipe(tmp_path, stop_after_steps=9, **kw), tmp_path / "cut")  # 6 steps per epoch
    assert s["stopped"] and load_checkpoint(tmp_path / "cut" / "last.pt")["state"]["step_in_epoch"] == 3
    train(cifar_recipe(tmp_path, **kw), tmp_path / "cut", resume=True)
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "cut")


@needs_cifar
def test_killed_process_resumes_to_the_same_metrics(tmp_path):
    spec = cifar_recipe(tmp_path).model
    args = [sys.executable, "-m", "rexnet.cli", "train", "--model", spec, "--data", str(CIFAR_ZIP),
            "--epochs", "3", "--train-subset", "200", "--val-subset", "100", "--batch-size", "32",
            "--lr-base-batch", "32", "--progress", "false", "--ckpt-every-steps", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run(args + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if last.exists() and load_checkpoint(last)["state"]["global_step"] >= 7:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(last)["state"]
    assert 7 <= state["global_step"] < 18, state
    subprocess.run(args + ["--out", str(tmp_path / "killed"), "--resume"], check=True, env=env, capture_output=True)
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "killed")
    assert len(_metrics(tmp_path / "full")) == 3


@needs_cifar
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(cifar_recipe(tmp_path, train_subset=96, val_subset=50), out)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf).*last good checkpoint .*last.pt is kept"):
        train(cifar_recipe(tmp_path, train_subset=96, val_subset=50, epochs=3, lr=1e30), out, resume=True)
    assert (out / "last.pt").read_bytes() == before
    ck = load_checkpoint(out / "last.pt")
    assert ck["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


@needs_cifar
def test_resume_refuses_changed_settings(tmp_path):
    out = tmp_path / "run"
    train(cifar_recipe(tmp_path, train_subset=140, val_subset=20), out)
    with pytest.raises(ValueError, match=r"holds a run made with other settings \(batch_size: 32 -> 64\).*--overwrite"):
        train(cifar_recipe(tmp_path, train_subset=140, val_subset=20, batch_size=64), out, resume=True)


def test_offline_download_gives_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"cifar10 not found: expected its files under .*cifar-10-batches-py.*--download"):
        build_dataset("cifar10", "train", root=str(tmp_path))
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"could not (download|get) cifar10 .*Offline\?"):
        build_dataset("cifar10", "train", root=str(tmp_path), download=True)
    with pytest.raises(DataError, match="unknown dataset 'imagenet-x'"):
        build_dataset("imagenet-x", "train")


@needs_cifar
def test_ema_is_trained_saved_and_evaluated(tmp_path):
    from rexnet.train.evaluate import evaluate_checkpoint

    out = tmp_path / "run"
    train(cifar_recipe(tmp_path, train_subset=100, val_subset=50, ema=True, ema_decay=0.9), out)
    ck = load_checkpoint(out / "last.pt")
    assert set(ck["ema"]) == set(ck["model"])
    assert not torch.equal(ck["ema"]["stem.conv.weight"], ck["model"]["stem.conv.weight"])
    row = _metrics(out)[0]
    assert "val_top1_raw" in row  # the EMA is what val_top1 scores; the raw model is reported beside it
    r = evaluate_checkpoint(None, str(out / "last.pt"), str(CIFAR_ZIP), ema=True, limit=50)
    assert r["n"] == 50 and abs(r["top1"] - row["val_top1"]) < 1e-9


@needs_cifar
def test_tensorboard_without_the_package_says_how_to_get_it(tmp_path):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="pip install tensorboard"):
        train(cifar_recipe(tmp_path, train_subset=40, val_subset=20, batch_size=20, tensorboard=True), tmp_path / "tb")


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_local_debian_copy(tmp_path):
    ds = build_dataset("fashion-mnist", "train", root=str(tmp_path))
    assert len(ds) == 60000 and len(ds.classes) == 10
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    val = build_dataset("fashion-mnist", "val", root=str(tmp_path))
    assert len(val) == 10000
    from rexnet.train.data import IndexedDataset, build_transforms

    x, y = IndexedDataset(val, build_transforms("cifar", 32, False))[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10


@needs_cifar
def test_clip_grad_norm_bounds_every_update_and_may_change_on_resume(tmp_path):
    def moved(clip: float) -> float:
        out = tmp_path / f"clip{clip}"
        kw = dict(train_subset=96, val_subset=20, weight_decay=0.0, clip_grad_norm=clip)
        train(cifar_recipe(tmp_path, **kw), out)
        w1 = load_checkpoint(out / "last.pt")["model"]
        train(cifar_recipe(tmp_path, epochs=2, **kw), out, resume=True)
        w2 = load_checkpoint(out / "last.pt")["model"]
        params = [k for k in w1 if w1[k].is_floating_point() and "running_" not in k]
        return max(float((w2[k] - w1[k]).abs().max()) for k in params)

    # 3 steps at lr 0.1 with Nesterov momentum 0.9: each update is at most ~19x the clipped norm
    assert moved(1e-9) < 1e-6
    assert moved(0.0) > 1e-3
    with pytest.raises(ValueError, match="clip_grad_norm must be >= 0"):
        cifar_recipe(tmp_path, clip_grad_norm=-1.0)
