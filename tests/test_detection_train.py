"""Detection trains through the one training loop: exact resume, DDP equivalence, eval and predict,
on real COCO128 images at a small input size."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rexnet.cli import main
from rexnet.detection.recipe import load_detection_recipe
from rexnet.detection.task import DetectionTask
from rexnet.train.checkpoint import load_checkpoint
from rexnet.train.loop import train
from train_helpers import SHARED

COCO128 = SHARED / "coco128"
needs_coco = pytest.mark.skipif(not (COCO128 / "annotations").is_dir(), reason=f"COCO128 not found at {COCO128}")
TIMING = {"images_per_s", "epoch_time_s"}
SMALL = dict(min_size=96, max_size=128, batch_size=4, lr=0.01, lr_base_batch=4, train_subset=8, val_subset=4,
             progress=False, seed=0)


def _recipe(**kw):
    return load_detection_recipe("coco128", {"data": str(COCO128), "model": "rexnet_lite_100", **SMALL, **kw})


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@needs_coco
def test_detector_trains_and_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    import rexnet.train.loop as loop
    sizes, make = [], loop.make_eval_loader
    monkeypatch.setattr(loop, "make_eval_loader", lambda ds, bs, *a, **k: sizes.append(bs) or make(ds, bs, *a, **k))
    s = train(_recipe(epochs=2), tmp_path / "full", task=DetectionTask())
    assert sizes == [SMALL["batch_size"]]   # evaluation in training micro-batches, not classification's 64
    rows = _metrics(tmp_path / "full")
    assert s["epochs_done"] == 2 and s["metric"] == "val_bbox_mAP" and len(rows) == 2
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    assert {"val_bbox_mAP", "val_bbox_AP50", "val_bbox_AP75", "val_bbox_AP_small"} <= set(rows[0])
    assert "train_top1" not in rows[0]
    cut = train(_recipe(epochs=2, stop_after_steps=3), tmp_path / "cut", task=DetectionTask())  # 2 steps an epoch
    assert cut["stopped"] and load_checkpoint(tmp_path / "cut" / "last.pt")["state"]["step_in_epoch"] == 1
    train(_recipe(epochs=2), tmp_path / "cut", resume=True, task=DetectionTask())
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "cut")
    ck = load_checkpoint(tmp_path / "full" / "best.pt")
    assert ck["spec"]["arch"] == "fasterrcnn_fpn" and ck["spec"]["num_classes"] == 91
    with pytest.raises(ValueError, match="holds a run made with other settings \\(arch: "):
        train(_recipe(epochs=2, arch="retinanet_fpn"), tmp_path / "full", resume=True, task=DetectionTask())


@needs_coco
def test_killed_detection_run_resumes_to_the_same_metrics(tmp_path):
    """SIGKILL mid-epoch (no clean stop): ``--resume`` continues from the last step checkpoint
    and ends with the metrics of the run that was never stopped."""
    args = [sys.executable, "-m", "rexnet.cli", "detect", "train", "--data", str(COCO128), "--model",
            "rexnet_lite_100", "--epochs", "2", "--min-size", "96", "--max-size", "128", "--batch-size", "2",
            "--lr-base-batch", "2", "--lr", "0.01", "--train-subset", "8", "--val-subset", "2", "--progress", "false",
            "--ckpt-every-steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args + ["--out", str(tmp_path / "full")], check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and load_checkpoint(last)["state"]["global_step"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(last)["state"]["global_step"]
    assert 2 <= step < 8, step      # 4 steps an epoch: killed before the end
    subprocess.run(args + ["--out", str(tmp_path / "killed"), "--resume"], check=True, env=env, capture_output=True,
                   timeout=600)
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "killed")
    assert len(_metrics(tmp_path / "full")) == 2


@needs_coco
def test_detect_commands_train_eval_and_predict(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["detect", "train", "--data", str(COCO128), "--model", "rexnet_lite_100", "--arch", "maskrcnn_fpn",
                 "--epochs", "1", "--min-size", "96", "--max-size", "128", "--batch-size", "4", "--train-subset", "4",
                 "--val-subset", "4", "--progress", "false", "--out", str(out)]) == 0
    row = _metrics(out)[0]
    assert "val_segm_mAP" in row and "val_bbox_mAP" in row      # Mask R-CNN is scored on masks too
    assert main(["detect", "eval", "--weights", str(out / "best.pt"), "--data", str(COCO128), "--limit", "4",
                 "--out", str(tmp_path / "eval.json")]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["images"] == 4 and abs(res["val_bbox_mAP"] - row["val_bbox_mAP"]) < 1e-9
    images = sorted((COCO128 / "train2017").glob("*.jpg"))[:2]
    assert main(["detect", "predict", *map(str, images), "--weights", str(out / "best.pt"), "--score", "0",
                 "--out", str(tmp_path / "pred")]) == 0
    records = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert [Path(r["image"]).name for r in records] == [p.name for p in images]
    assert all((tmp_path / "pred" / f"{p.stem}.png").stat().st_size > 0 for p in images)
    assert all(len(r["boxes"]) == len(r["scores"]) == len(r["labels"]) for r in records)
    assert main(["detect", "train", "--data", str(COCO128), "--epochs", "x", "--out", str(tmp_path / "bad")]) == 2
    assert "--epochs" in capsys.readouterr().err and not (tmp_path / "bad").exists()


@needs_coco
def test_two_process_gloo_detection_equals_one_process_with_two_micro_batches(tmp_path):
    common = ["-m", "rexnet.cli", "detect", "train", "--data", str(COCO128), "--model", "rexnet_lite_100",
              "--epochs", "1", "--min-size", "96", "--max-size", "128", "--batch-size", "4", "--lr-base-batch", "4",
              "--train-subset", "8", "--val-subset", "4", "--progress", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *common, "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = subprocess.run([sys.executable, *common, "--accum-steps", "2", "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _metrics(tmp_path / "ddp")[0], _metrics(tmp_path / "one")[0]
    assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
    wa = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    wb = load_checkpoint(tmp_path / "one" / "last.pt")["model"]
    for k in wa:
        if "running_" not in k and "num_batches" not in k:
            assert torch.allclose(wa[k], wb[k], atol=1e-4, rtol=1e-3), k


def test_detect_bench_times_ours_against_torchvisions(tmp_path, capsys):
    assert main(["detect", "bench", "ssdlite320:rexnet_lite_100", "tv:ssdlite320_mobilenet_v3_large", "--runs", "1",
                 "--out", str(tmp_path / "b.json")]) == 0
    rows = {r["detector"]: r for r in json.loads((tmp_path / "b.json").read_text())}
    assert rows["tv:ssdlite320_mobilenet_v3_large"]["params_m"] == pytest.approx(3.44, abs=0.01)  # torchvision's
    assert all(r["median_ms"] > 0 and r["gmacs"] > 0 for r in rows.values())
    assert main(["detect", "bench", "tv:no_such_detector"]) == 2
    assert "no builder" in capsys.readouterr().err


@needs_coco
def test_detection_evaluates_in_training_micro_batches():
    """Mask R-CNN pastes 100 full-size float masks an image; at 64 images a batch (the
    classification loop's evaluation batch) its evaluation passed 12 GB on COCO128."""
    from rexnet.train.distributed import Dist
    assert DetectionTask().build_data(_recipe(batch_size=8), Dist()).eval_batch_size == 8
    assert DetectionTask().build_data(_recipe(batch_size=8), Dist(rank=1, world=2)).eval_batch_size == 4


def test_recipe_sets_rcnn_training_samples_and_refuses_nonsense():
    cfg = load_detection_recipe("coco128", {"data": str(COCO128)})
    task = DetectionTask()
    task.names = ["bg", "a"]
    model = task.build_model(cfg, 2, None)
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == cfg.box_batch_size_per_image == 128
    assert model.rpn._post_nms_top_n["training"] == 500 and model.rpn._pre_nms_top_n["training"] == 1000
    # evaluation scores 300 proposals (torchvision's 1000 pre-NMS per level kept)
    assert model.rpn._post_nms_top_n["testing"] == 300 and model.rpn._pre_nms_top_n["testing"] == 1000
    ident = task.identity(model)   # cost knobs: a checkpoint rebuilds with torchvision's counts
    assert "box_batch_size_per_image" not in ident and "rpn_post_nms_top_n_test" not in ident
    with pytest.raises(ValueError, match="box_batch_size_per_image must be a positive count"):
        load_detection_recipe("coco128", {"box_batch_size_per_image": 0})
    retina = load_detection_recipe("coco128", {"arch": "retinanet_fpn"})
    assert DetectionTask._sampling(retina) == {}
