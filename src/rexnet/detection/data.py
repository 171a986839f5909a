"""COCO-format detection data: an image folder plus an ``instances`` JSON, served as
``(image, target)`` pairs in the form torchvision's detection models take.

The JSON is checked once, when the dataset is built: every image file must exist and
be a readable picture of the size the JSON gives, every annotation must have a box of
positive size inside its image and a known category.  A problem is a
:class:`~rexnet.train.data.DataError` naming the image or annotation id and the file,
or, with ``skip_bad=True``, the image or annotation is left out and recorded in
``bad`` (``{"image:9": reason, "annotation:1774": reason}``).  A JSON that is not
JSON, or lacks ``images``/``annotations``/``categories``, is always an error.

The COCO object for evaluation (:attr:`CocoDetection.coco`) is built from the checked
JSON, so ground truth and served targets agree.  Crowd annotations stay in it (COCO
evaluation ignores detections that fall on crowd regions) but never reach a target.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from ..train.data import DataError, SeededTransform, decode_error_reason

__all__ = ["CocoDetection", "collate", "load_coco_json", "detection_transforms"]

REQUIRED_KEYS = ("images", "annotations", "categories")
# torchvision's detection references cap the longer side at 1333 for a shorter side of 800
MAX_SIZE_RATIO = 1333 / 800


def collate(batch: Sequence[tuple[Any, Any]]) -> tuple[tuple[Any, ...], ...]:
    """Images differ in size, so a batch stays a tuple of images and a tuple of targets."""
    return tuple(zip(*batch))


def load_coco_json(ann_file: str | os.PathLike) -> dict[str, Any]:
    """The instances JSON as a dict, or a DataError saying what is wrong with the file."""
    path = Path(ann_file)
    if not path.is_file():
        raise DataError(f"annotation file {path} not found: pass the COCO instances JSON "
                        "(e.g. annotations/instances_val2017.json)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {path} is not JSON ({e}); expected a COCO instances file") from None
    if not isinstance(data, dict):
        raise DataError(f"annotation file {path} holds a {type(data).__name__}, not a COCO dict "
                        f"with keys {', '.join(REQUIRED_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"annotation file {path} lacks the list(s) {', '.join(map(repr, missing))}: "
                        "a COCO instances file has 'images', 'annotations' and 'categories'")
    return data


def _coco_from_dict(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):   # "creating index..." on every build
        coco.createIndex()
    return coco


def _decode_masks(rles: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    if not rles:
        return np.zeros((0, height, width), np.uint8)
    with warnings.catch_warnings():
        # pycocotools' Cython __array__ predates NumPy 2's copy keyword: a warning per call, nothing wrong
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword")
        masks = mask_utils.decode(rles)   # (H, W, N), one call for all instances
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


def _sanitize_labels(inputs: Any) -> tuple[torch.Tensor, ...]:
    # labels, area and iscrowd are per-box: SanitizeBoundingBoxes must drop them with their box
    # (masks it drops by itself). A module-level function so the dataset pickles into workers.
    target = inputs[1]
    return target["labels"], target["area"], target["iscrowd"]


def detection_transforms(train: bool, size: int | Sequence[int] | None = None) -> v2.Transform:
    """torchvision's detection reference presets: for training an optional resize of the
    shorter side (one size, or a random choice among several: the multi-scale preset) and a
    horizontal flip; for evaluation only the conversion to float (the detector's own
    GeneralizedRCNNTransform resizes, and predictions must stay in image coordinates)."""
    steps: list[v2.Transform] = []
    if train:
        if size is not None:
            sizes = [size] if isinstance(size, int) else list(size)
            if not sizes or any(not isinstance(s, int) or s <= 0 for s in sizes):
                raise ValueError(f"size={size!r}: give a positive int (shorter side) or a tuple of them")
            steps.append(v2.RandomShortestSize(min_size=sizes, max_size=round(max(sizes) * MAX_SIZE_RATIO)))
        steps.append(v2.RandomHorizontalFlip(0.5))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train:
        steps.append(v2.SanitizeBoundingBoxes(labels_getter=_sanitize_labels))
    return v2.Compose(steps)


class CocoDetection(Dataset):
    """A COCO-format detection dataset: ``root/<file_name>`` images and an instances JSON.

    Items are ``(image, target)``: ``image`` a float ``tv_tensors.Image`` (3, H, W) in
    [0, 1]; ``target`` a dict with ``boxes`` (``BoundingBoxes``, XYXY, float32),
    ``labels`` (int64, the raw COCO category ids, so ``num_classes=91`` matches
    torchvision's COCO models), ``masks`` (``Mask`` uint8 (N, H, W), with
    ``with_masks``), ``image_id`` (int), ``area`` (float32, COCO's, in original image
    pixels) and ``iscrowd`` (int64, all zero: crowd regions are left to evaluation).

    ``keep_empty`` keeps images with no usable annotation; by default they are kept for
    evaluation (false positives on them count) and dropped for training, as torchvision's
    references do. Training augmentation is a function of ``(seed, epoch, index)``
    (:meth:`set_epoch`), so a sample looks the same in every process and after a resume.
    ``check_images=False`` skips reading each image's header when the dataset is built
    (about 0.25 ms an image); missing files are still found, undecodable ones only when read.
    """

    def __init__(self, root: str | os.PathLike, ann_file: str | os.PathLike, *, train: bool,
                 size: int | Sequence[int] | None = None, with_masks: bool = False,
                 keep_empty: bool | None = None, skip_bad: bool = False, seed: int = 0,
                 check_images: bool = True) -> None:
        self.root, self.ann_file = Path(root), Path(ann_file)
        self.train, self.with_masks, self.skip_bad = bool(train), bool(with_masks), bool(skip_bad)
        self.keep_empty = (not self.train) if keep_empty is None else bool(keep_empty)
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} not found (annotations: {self.ann_file})")
        self.bad: dict[str, str] = {}
        data = load_coco_json(self.ann_file)
        self.categories: dict[int, str] = {}
        for c in data["categories"]:
            if not isinstance(c, dict) or not isinstance(c.get("id"), int):
                raise DataError(f"annotation file {self.ann_file}: category {c!r} has no integer 'id'")
            self.categories[c["id"]] = str(c.get("name", c["id"]))

        images = self._check_images(data["images"], check_images)
        annotations = self._check_annotations(data["annotations"], images)
        clean = {k: v for k, v in data.items() if k not in ("images", "annotations")}
        clean["images"], clean["annotations"] = list(images.values()), annotations
        self.coco = _coco_from_dict(clean)

        self._anns: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
        self.crowd = 0
        for a in annotations:
            if a.get("iscrowd", 0):
                self.crowd += 1
            else:
                self._anns[a["image_id"]].append(a)
        self.ids = sorted(i for i in images if self.keep_empty or self._anns[i])
        self.dropped_empty = len(images) - len(self.ids)
        self.transforms = detection_transforms(self.train, size)
        self._seeded = SeededTransform(self.transforms, seed) if self.train else None

    # ------------------------------------------------------------------ checks
    def _problem(self, key: str, message: str) -> None:
        if not self.skip_bad:
            raise DataError(f"{message} (pass skip_bad=True to leave it out and count it)")
        self.bad[key] = message

    def _check_images(self, entries: list[Any], read_header: bool) -> dict[int, dict[str, Any]]:
        images: dict[int, dict[str, Any]] = {}
        for img in entries:
            if not isinstance(img, dict) or not isinstance(img.get("id"), int) or "file_name" not in img:
                raise DataError(f"annotation file {self.ann_file}: image entry {img!r} needs an integer "
                                "'id' and a 'file_name'")
            iid, path = img["id"], self.root / img["file_name"]
            where = f"image {iid} ({path}, listed in {self.ann_file})"
            if iid in images:
                raise DataError(f"{where}: image id {iid} appears twice")
            if not path.is_file():
                self._problem(f"image:{iid}", f"{where}: file not found")
                continue
            if read_header:
                try:
                    with Image.open(path) as im:
                        w, h = im.size
                except Exception as e:   # PIL raises several types for a file that is no picture
                    self._problem(f"image:{iid}", f"{where}: does not decode as an image ({e})")
                    continue
                if (img.get("width"), img.get("height")) != (w, h):
                    self._problem(f"image:{iid}", f"{where}: the JSON says {img.get('width')}x"
                                  f"{img.get('height')} but the file is {w}x{h}")
                    continue
            images[iid] = img
        return images

    def _check_annotations(self, entries: list[Any], images: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        bad_images = {int(k.split(":")[1]) for k in self.bad if k.startswith("image:")}
        kept: list[dict[str, Any]] = []
        for a in entries:
            if not isinstance(a, dict) or not isinstance(a.get("id"), int):
                raise DataError(f"annotation file {self.ann_file}: annotation {a!r} has no integer 'id'")
            aid, iid = a["id"], a.get("image_id")
            where = f"annotation {aid} (image {iid}, in {self.ann_file})"
            if iid in bad_images:
                continue   # its image is already counted as bad
            if iid not in images:
                self._problem(f"annotation:{aid}", f"{where}: no image with id {iid!r}")
                continue
            if a.get("category_id") not in self.categories:
                self._problem(f"annotation:{aid}", f"{where}: category_id {a.get('category_id')!r} is not "
                              f"in the categories list ({len(self.categories)} ids)")
                continue
            box = a.get("bbox")
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
                self._problem(f"annotation:{aid}", f"{where}: bbox {box!r} is not [x, y, width, height]")
                continue
            x, y, w, h = box
            W, H = images[iid]["width"], images[iid]["height"]
            # boxes a little past the border are common in COCO: clip them, as torchvision's references do
            x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
            if not all(math.isfinite(v) for v in box) or w <= 0 or h <= 0:
                self._problem(f"annotation:{aid}", f"{where}: degenerate bbox {box} (width and height must "
                              "be positive)")
                continue
            if x2 <= x1 or y2 <= y1:
                self._problem(f"annotation:{aid}", f"{where}: bbox {box} lies outside its {W}x{H} image")
                continue
            if self.with_masks and not a.get("segmentation"):
                self._problem(f"annotation:{aid}", f"{where}: no segmentation, but with_masks=True")
                continue
            kept.append(a)
        return kept

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        if self._seeded is not None:
            self._seeded.epoch = int(epoch)

    def load_image(self, image_id: int) -> torch.Tensor:
        info = self.coco.imgs[image_id]
        path = self.root / info["file_name"]
        # PIL, not torchvision.io, whose decoders are deprecated since torchvision 0.29
        try:
            with Image.open(path) as im:
                img = pil_to_tensor(im.convert("RGB"))
        except Exception as e:   # OSError for a truncated file, others from PIL's plugins
            raise DataError(f"image {image_id} ({path}, listed in {self.ann_file}) does not decode: "
                            f"{decode_error_reason(e)}") from None
        if tuple(img.shape[1:]) != (info["height"], info["width"]):
            raise DataError(f"image {image_id} ({path}): the JSON says {info['width']}x{info['height']} "
                            f"but the file is {img.shape[2]}x{img.shape[1]}")
        return img

    def target(self, image_id: int) -> dict[str, Any]:
        """The untransformed target of one image, in original pixel coordinates."""
        info, anns = self.coco.imgs[image_id], self._anns[image_id]
        H, W = info["height"], info["width"]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(H, W)),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "image_id": int(image_id),
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        if self.with_masks:
            masks = _decode_masks([self.coco.annToRLE(a) for a in anns], H, W)
            target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        return target

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_id = self.ids[index]
        pair = (tv_tensors.Image(self.load_image(image_id)), self.target(image_id))
        if self._seeded is not None:
            return self._seeded(pair, index)
        return self.transforms(pair)

    def summary(self) -> dict[str, Any]:
        """Counts a run log can report: what was served, what was left out and why."""
        reasons = Counter(k.split(":")[0] for k in self.bad)
        return {"images": len(self.ids), "instances": sum(len(self._anns[i]) for i in self.ids),
                "categories": len(self.categories), "crowd_regions": self.crowd,
                "dropped_empty_images": self.dropped_empty, "bad_images": reasons.get("image", 0),
                "bad_annotations": reasons.get("annotation", 0), "bad": dict(self.bad)}

    def __repr__(self) -> str:
        return (f"CocoDetection({self.root}, {self.ann_file.name}, train={self.train}, images={len(self)}, "
                f"bad={len(self.bad)})")
