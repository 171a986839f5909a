"""COCO detection metrics through pycocotools' COCOeval, and the merge of per-rank
detections so evaluation can be split over processes.

Every number is pycocotools' own, as a fraction in [0, 1]; ``-1.0`` is pycocotools'
mark for "no ground truth in this category/area range" and is kept as it is.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["evaluate_detections", "gather_detections", "to_coco_results", "STAT_NAMES", "IOU_TYPES"]

log = logging.getLogger("rexnet.detection")

IOU_TYPES = ("bbox", "segm")
# the order of COCOeval.stats for bbox and segm
STAT_NAMES = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _binary_masks(masks: Any, image_id: int, n: int) -> np.ndarray:
    """(N, 1, H, W) probabilities as Mask R-CNN returns them, or (N, H, W) bool/0-1, as
    (N, H, W) uint8, thresholded at 0.5 as torchvision's references do."""
    m = _numpy(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != n:
        raise ValueError(f"detections for image {image_id}: masks of shape {m.shape} for {n} boxes; "
                         "expected (N, 1, H, W) probabilities or (N, H, W) binary masks")
    return (m > 0.5).astype(np.uint8) if m.dtype != np.bool_ else m.astype(np.uint8)


def encode_masks(masks: Any) -> list[dict[str, Any]]:
    """Mask R-CNN's (N, 1, H, W) probabilities (or (N, H, W) binary masks) as N COCO RLEs,
    thresholded at 0.5: a few hundred bytes per detection instead of H x W floats, so an
    evaluation keeps every image's masks (100 full-size float masks per image would be
    ~120 MB for a 640x480 COCO image)."""
    m = _numpy(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"masks of shape {m.shape}: expected (N, 1, H, W) probabilities or (N, H, W) binary masks")
    binary = (m > 0.5) if m.dtype != np.bool_ else m
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")   # JSON-safe, and what loadRes expects too
    return rles


def _is_rle_list(masks: Any) -> bool:
    return isinstance(masks, (list, tuple)) and all(isinstance(r, dict) and "counts" in r for r in masks)


def to_coco_results(detections: Iterable[Mapping[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """Per-image detection dicts (``image_id``, ``boxes`` XYXY, ``scores``, ``labels``, and
    ``masks`` for ``segm``) as COCO's results list for one IoU type."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type {iou_type!r}: choose from {IOU_TYPES}")
    results: list[dict[str, Any]] = []
    for det in detections:
        missing = [k for k in ("image_id", "boxes", "scores", "labels") if k not in det]
        if missing:
            raise ValueError(f"a detection dict lacks {missing}: each needs image_id, boxes (xyxy), scores, labels")
        image_id = int(det["image_id"])
        scores, labels = _numpy(det["scores"]).reshape(-1).tolist(), _numpy(det["labels"]).reshape(-1).tolist()
        boxes = _numpy(det["boxes"]).reshape(-1, 4).astype(np.float64)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(f"detections for image {image_id}: {len(boxes)} boxes, {len(scores)} scores, "
                             f"{len(labels)} labels; they must match")
        if not len(boxes):
            continue
        if iou_type == "bbox":
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
            results += [{"image_id": image_id, "category_id": int(c), "bbox": b, "score": float(s)}
                        for b, c, s in zip(xywh, labels, scores)]
        else:
            if det.get("masks") is None:
                raise ValueError(f"detections for image {image_id} have no 'masks', needed for segm evaluation")
            if _is_rle_list(det["masks"]):       # already encoded (encode_masks)
                rles = list(det["masks"])
                if len(rles) != len(boxes):
                    raise ValueError(f"detections for image {image_id}: {len(rles)} RLE masks for "
                                     f"{len(boxes)} boxes; they must match")
            else:
                rles = encode_masks(_binary_masks(det["masks"], image_id, len(boxes)))
            results += [{"image_id": image_id, "category_id": int(c), "segmentation": r, "score": float(s)}
                        for r, c, s in zip(rles, labels, scores)]
    return results


def _empty_results(coco_gt: COCO) -> COCO:
    # loadRes cannot take an empty list; an empty result set scores 0 wherever there is ground truth
    res = COCO()
    res.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                   "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def evaluate_detections(coco_gt: COCO, detections: Sequence[Mapping[str, Any]],
                        iou_types: Sequence[str] = ("bbox",), *,
                        img_ids: Iterable[int] | None = None) -> dict[str, float]:
    """COCO AP/AR per IoU type as fractions, keyed ``{iou_type}_{stat}``: ``bbox_mAP`` (AP at
    IoU .50:.95), ``bbox_AP50``, ``bbox_AP75``, ``bbox_AP_small/medium/large``, ``bbox_AR1/10/100``,
    ``bbox_AR_small/medium/large``, and the same with ``segm_``.

    Scored over ``img_ids`` (default: every image of ``coco_gt``), so an image the model
    produced nothing for counts its missed objects; a dataset that left images out (bad
    files) passes its own ids."""
    iou_types = tuple(iou_types)
    if not iou_types or any(t not in IOU_TYPES for t in iou_types):
        raise ValueError(f"iou_types={iou_types!r}: choose from {IOU_TYPES}")
    known = set(coco_gt.getImgIds())
    unknown = sorted({int(d["image_id"]) for d in detections} - known)
    if unknown:
        raise ValueError(f"detections for image ids {unknown[:10]}{' ...' if len(unknown) > 10 else ''} that the "
                         "ground truth does not have: evaluate against the dataset the images came from")
    ids = sorted(known if img_ids is None else {int(i) for i in img_ids})
    if not set(ids) <= known:
        raise ValueError(f"img_ids {sorted(set(ids) - known)[:10]} are not images of the ground truth")
    out: dict[str, float] = {}
    for iou_type in iou_types:
        results = to_coco_results(detections, iou_type)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            ev.params.imgIds = ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        log.debug("COCOeval %s:\n%s", iou_type, printed.getvalue())
        out.update({f"{iou_type}_{name}": float(v) for name, v in zip(STAT_NAMES, ev.stats)})
    return out


def gather_detections(detections: list[dict[str, Any]], world: int) -> list[dict[str, Any]]:
    """Every rank's detections on every rank (``all_gather_object``; tensors moved to the CPU
    first), one entry per image in image-id order: DistributedSampler pads the last batch by
    repeating images, and a repeated image must not count twice. Identity when ``world`` is 1."""
    import torch.distributed as dist

    local = [{k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in d.items()} for d in detections]
    if world > 1:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(f"world={world} but torch.distributed is not initialised: call "
                             "init_process_group first, or pass world=1 for one process")
        if dist.get_world_size() != world:
            raise ValueError(f"world={world} but the process group has {dist.get_world_size()} ranks")
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, local)
        local = [d for part in parts for d in part]
    elif world < 1:
        raise ValueError(f"world={world}: the number of processes is at least 1")
    merged: dict[int, dict[str, Any]] = {}
    for d in local:
        merged.setdefault(int(d["image_id"]), d)
    return [merged[i] for i in sorted(merged)]
