"""Detectors from our checkpoints, predictions drawn onto images, and checkpoint evaluation."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..io import atomic_path, write_json
from ..spec import NetSpec
from ..train.checkpoint import load_checkpoint

__all__ = ["load_detector", "predict_images", "evaluate_detector"]


def load_detector(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The detector a training run saved (``best.pt`` or ``last.pt``) and its description."""
    from .models import create_detector

    ck = load_checkpoint(path)
    ident = ck.get("spec")
    if not isinstance(ident, dict) or "arch" not in ident:
        raise ValueError(f"{path} is not a detection checkpoint (no detector description); "
                         f"train one with `rexnet detect train`")
    backbone = ident["backbone"]
    if isinstance(backbone, dict):
        backbone = NetSpec.from_dict(backbone)
    kw = {k: ident[k] for k in ("min_size", "max_size", "frozen_bn", "anchor_scale") if k in ident}
    model = create_detector(ident["arch"], backbone, num_classes=ident["num_classes"], **kw)
    model.load_state_dict(ck["model"])
    return model.eval(), ident


@torch.no_grad()
def predict_images(model: nn.Module, images: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   classes: Sequence[str] = (), score: float = 0.5) -> list[dict[str, Any]]:
    """Run ``model`` on image files; write each with its boxes, labels, scores (and masks) drawn,
    and ``detections.json``.  Returns the detections (boxes in image pixels, xyxy)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in images:
        path = Path(path)
        try:
            with Image.open(path) as im:
                img = pil_to_tensor(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path}: not a readable image ({e})") from None
        det = model([img.float() / 255])[0]
        keep = det["scores"] >= score
        det = {k: v[keep] for k, v in det.items()}
        names = [classes[i] if i < len(classes) and classes[i] else str(i) for i in det["labels"].tolist()]
        labels = [f"{n} {s:.2f}" for n, s in zip(names, det["scores"].tolist())]
        drawn = img
        if "masks" in det and len(det["masks"]):
            drawn = draw_segmentation_masks(drawn, det["masks"][:, 0] > 0.5, alpha=0.4)
        drawn = draw_bounding_boxes(drawn, det["boxes"], labels=labels, width=2)
        with atomic_path(out / f"{path.stem}.png") as tmp:
            to_pil_image(drawn).save(tmp, format="PNG")
        records.append({"image": str(path), "boxes": [[round(v, 2) for v in b] for b in det["boxes"].tolist()],
                        "labels": det["labels"].tolist(), "names": names,
                        "scores": [round(v, 4) for v in det["scores"].tolist()]})
    write_json(records, out / "detections.json")
    return records


def evaluate_detector(path: str | os.PathLike, data: str, *, images: str | None = None, ann: str | None = None,
                      split: str = "val", limit: int | None = None, skip_bad: bool = False) -> dict[str, Any]:
    """COCO metrics of a saved detector on a COCO-layout root ``data`` (``images`` / ``ann``
    override the image folder and instances JSON); a root without the split (COCO128) uses train."""
    from ..train.distributed import setup_distributed
    from ..train.evaluate import make_eval_loader
    from ..train.recipe import Recipe
    from .data import CocoDetection, collate
    from .recipe import coco_paths
    from .task import DetectionTask

    model, ident = load_detector(path)
    folder, ann_file = coco_paths(data, split, images, ann)
    if ann is None and not ann_file.exists():
        folder, ann_file = coco_paths(data, "train", images)
    ds = CocoDetection(folder, ann_file, train=False, skip_bad=skip_bad)
    dist = setup_distributed("auto")
    task = DetectionTask.scorer(ds, masks=ident["arch"].startswith("maskrcnn"))
    subset = torch.utils.data.Subset(ds, range(min(limit, len(ds)))) if limit else ds
    loader = make_eval_loader(subset, 2, dist, collate=collate)
    model.to(dist.device)
    metrics = task.evaluate(model, loader, dist.device, dist, None, Recipe())
    return {"detector": ident.get("name"), "weights": str(path), "annotations": str(ann_file),
            "images": len(subset), **metrics}
