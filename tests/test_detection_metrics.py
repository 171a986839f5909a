"""COCO metrics on the real COCO128: ground truth as predictions scores 1.0, shifted
predictions score what pycocotools computes on its own, and ranks' detections merge."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from rexnet.detection.data import CocoDetection
from rexnet.detection.metrics import (STAT_NAMES, encode_masks, evaluate_detections, gather_detections,
                                      to_coco_results)
from train_helpers import SHARED

COCO128 = SHARED / "coco128"
IMAGES, ANN = COCO128 / "train2017", COCO128 / "annotations" / "instances_train2017.json"
pytestmark = pytest.mark.skipif(not ANN.is_file(), reason=f"COCO128 not found at {COCO128}")


@pytest.fixture(scope="module")
def gt():
    return CocoDetection(IMAGES, ANN, train=False, with_masks=True)


def gt_as_detections(ds, mask_kind="bool"):
    """The non-crowd ground truth of every image as detections of score 1 (crowd regions
    are 'ignore' areas in COCO evaluation, not objects to find)."""
    dets = []
    for i in ds.ids:
        t = ds.target(i)
        masks = t["masks"].bool() if mask_kind == "bool" else (t["masks"].float() * 0.8 + 0.1)[:, None]
        dets.append({"image_id": i, "boxes": t["boxes"], "labels": t["labels"],
                     "scores": torch.ones(len(t["labels"])), "masks": masks})
    return dets


def test_ground_truth_as_predictions_scores_one(gt):
    m = evaluate_detections(gt.coco, gt_as_detections(gt), ("bbox", "segm"))
    assert set(m) == {f"{t}_{s}" for t in ("bbox", "segm") for s in STAT_NAMES}
    for t in ("bbox", "segm"):
        for s in ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR100"):
            assert m[f"{t}_{s}"] == 1.0, (t, s, m[f"{t}_{s}"])
    # Mask R-CNN's (N, 1, H, W) probabilities, thresholded at 0.5, give the same masks
    probs = evaluate_detections(gt.coco, gt_as_detections(gt, "probabilities"), ("segm",))
    assert probs["segm_mAP"] == 1.0
    # masks encoded at once (what evaluation during training keeps) score the same
    encoded = [{**d, "masks": encode_masks(d["masks"])} for d in gt_as_detections(gt, "probabilities")]
    assert evaluate_detections(gt.coco, encoded, ("segm",))["segm_mAP"] == 1.0
    h, w = encoded[0]["masks"][0]["size"]
    assert len(json.dumps(encoded[0]["masks"])) < h * w // 20    # far below H x W bytes
    with pytest.raises(ValueError, match="RLE masks for"):
        evaluate_detections(gt.coco, [{**encoded[0], "masks": encoded[0]["masks"][:-1] or [{"counts": ""}] * 9}],
                            ("segm",))


def test_shifted_predictions_score_what_pycocotools_computes_directly(gt):
    dx, dy = 6.0, -4.0
    gen = torch.Generator().manual_seed(0)
    dets, direct = [], {"bbox": [], "segm": []}
    for i in gt.ids:
        t = gt.target(i)
        n = len(t["labels"])
        boxes = t["boxes"].as_subclass(torch.Tensor) + torch.tensor([dx, dy, dx, dy])
        masks = torch.roll(t["masks"].as_subclass(torch.Tensor).bool(), shifts=(int(dy), int(dx)), dims=(1, 2))
        scores = torch.rand(n, generator=gen)
        dets.append({"image_id": i, "boxes": boxes, "labels": t["labels"], "scores": scores, "masks": masks})
        # the same predictions written as COCO results by hand, for pycocotools alone
        for b, c, s, mk in zip(boxes.tolist(), t["labels"].tolist(), scores.tolist(), masks.numpy()):
            direct["bbox"].append({"image_id": i, "category_id": c, "score": s,
                                   "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
            rle = mask_utils.encode(np.asfortranarray(mk.astype(np.uint8)))
            direct["segm"].append({"image_id": i, "category_id": c, "score": s, "segmentation": rle})
    ours = evaluate_detections(gt.coco, dets, ("bbox", "segm"))
    for iou_type in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt.coco, gt.coco.loadRes(direct[iou_type]), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for name, value in zip(STAT_NAMES, ev.stats):
            assert ours[f"{iou_type}_{name}"] == pytest.approx(float(value), abs=1e-12), (iou_type, name)
        assert 0.2 < ours[f"{iou_type}_mAP"] < 0.95 and ours[f"{iou_type}_AP50"] > ours[f"{iou_type}_AP75"]


def test_no_detections_score_zero_not_a_crash(gt):
    for dets in ([], [{"image_id": gt.ids[0], "boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                       "labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 1, 4, 4)}]):
        m = evaluate_detections(gt.coco, dets, ("bbox", "segm"))
        assert len(m) == 24 and all(v == 0.0 for v in m.values())


def test_evaluation_over_a_subset_of_images_and_bad_detections(gt, capsys):
    dets = gt_as_detections(gt)
    half = gt.ids[:64]
    # an image with no detection counts its objects as missed, unless it is left out of img_ids
    assert evaluate_detections(gt.coco, dets[:64])["bbox_AR100"] < 0.75
    assert evaluate_detections(gt.coco, dets[:64], img_ids=half)["bbox_mAP"] == 1.0
    assert capsys.readouterr().out == ""   # pycocotools' printing is captured
    with pytest.raises(ValueError, match="image ids \\[123456789\\]"):
        evaluate_detections(gt.coco, [{**dets[0], "image_id": 123456789}])
    with pytest.raises(ValueError, match="no 'masks'"):
        evaluate_detections(gt.coco, [{k: v for k, v in dets[0].items() if k != "masks"}], ("segm",))
    with pytest.raises(ValueError, match="iou_types"):
        evaluate_detections(gt.coco, dets, ("keypoints",))
    with pytest.raises(ValueError, match="must match"):
        to_coco_results([{**dets[0], "scores": torch.ones(1000)}], "bbox")
    with pytest.raises(ValueError, match="masks of shape"):
        to_coco_results([{**dets[0], "masks": torch.ones(2, 3, 4, 5)}], "segm")


def test_gather_is_identity_in_one_process_and_drops_repeated_images():
    dets = [{"image_id": 5, "boxes": torch.zeros(1, 4)}, {"image_id": 2, "boxes": torch.ones(1, 4)},
            {"image_id": 5, "boxes": torch.zeros(1, 4)}]
    out = gather_detections(dets, world=1)
    assert [d["image_id"] for d in out] == [2, 5]
    with pytest.raises(ValueError, match="not initialised"):
        gather_detections(dets, world=2)


def _rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    ds = CocoDetection(IMAGES, ANN, train=False, with_masks=True)
    dets = gt_as_detections(ds)
    # every world-th image, as DistributedSampler splits, plus the first image again, as its padding does
    mine = [dets[i % len(dets)] for i in range(rank, len(dets) + 1, world)]
    merged = gather_detections(mine, world)
    metrics = evaluate_detections(ds.coco, merged, ("bbox", "segm"))
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"ids": [d["image_id"] for d in merged], "metrics": metrics}, f)
    dist.destroy_process_group()


def test_two_ranks_merge_into_the_whole_evaluation(tmp_path, gt):
    out = str(tmp_path / "rank")
    mp.spawn(_rank, args=(2, f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    single = evaluate_detections(gt.coco, gt_as_detections(gt), ("bbox", "segm"))
    for rank in range(2):
        got = json.loads(open(f"{out}.{rank}").read())
        assert got["ids"] == sorted(gt.ids)
        assert got["metrics"] == single
