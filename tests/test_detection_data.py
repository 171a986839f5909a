"""COCO-format detection data on the real COCO128: targets, crowd regions, empty images,
the training transform, and every kind of bad input both ways (error, or skipped and counted)."""
import copy
import json
import pickle

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from rexnet.detection.data import CocoDetection, collate
from rexnet.train.data import DataError
from train_helpers import SHARED

COCO128 = SHARED / "coco128"
IMAGES, ANN = COCO128 / "train2017", COCO128 / "annotations" / "instances_train2017.json"
pytestmark = pytest.mark.skipif(not ANN.is_file(), reason=f"COCO128 not found at {COCO128}")


@pytest.fixture(scope="module")
def raw():
    return json.loads(ANN.read_text())


def coco128(**kw):
    kw.setdefault("train", False)
    return CocoDetection(IMAGES, ANN, **kw)


def test_items_are_what_torchvision_detectors_take(raw):
    ds = coco128(with_masks=True)
    assert len(ds) == len(raw["images"]) == 128
    image, target = ds[0]
    info = ds.coco.imgs[target["image_id"]]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32
    assert image.shape == (3, info["height"], info["width"]) and 0 <= image.min() and image.max() <= 1
    n = len(target["labels"])
    assert n > 0 and isinstance(target["image_id"], int)
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert boxes.dtype == torch.float32 and boxes.shape == (n, 4) and boxes.canvas_size == image.shape[1:]
    assert target["labels"].dtype == torch.int64 and target["area"].dtype == torch.float32
    assert target["iscrowd"].dtype == torch.int64 and target["iscrowd"].shape == (n,)
    masks = target["masks"]
    assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8 and masks.shape == (n, *image.shape[1:])
    # labels are the raw COCO category ids (1..90 with gaps), so num_classes=91 fits
    anns = [a for a in raw["annotations"] if a["image_id"] == target["image_id"] and not a["iscrowd"]]
    assert target["labels"].tolist() == [a["category_id"] for a in anns]
    x, y, w, h = anns[0]["bbox"]
    assert torch.allclose(boxes[0], torch.tensor([x, y, x + w, y + h]).clamp(min=0), atol=1e-3)
    # each mask lies inside its box
    for m, b in zip(masks, boxes):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert xs.min() >= b[0] - 1 and xs.max() <= b[2] + 1 and ys.min() >= b[1] - 1 and ys.max() <= b[3] + 1
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate)))
    assert len(batch) == 2 and len(batch[0]) == 3 and batch[1][0]["image_id"] == target["image_id"]
    assert collate([(1, "a"), (2, "b")]) == ((1, 2), ("a", "b"))
    pickle.dumps(coco128(train=True))   # DataLoader workers get a copy


def test_crowd_regions_stay_in_the_ground_truth_but_never_in_a_target(raw):
    crowd = [a for a in raw["annotations"] if a["iscrowd"]]
    assert len(crowd) == 10
    ds = coco128()
    served = sum(len(ds.target(i)["labels"]) for i in ds.ids)
    assert served == len(raw["annotations"]) - len(crowd) == 929
    assert sum(a["iscrowd"] for a in ds.coco.dataset["annotations"]) == 10
    img = crowd[0]["image_id"]
    assert len(ds.target(img)["labels"]) == sum(1 for a in raw["annotations"] if a["image_id"] == img) - \
        sum(1 for a in crowd if a["image_id"] == img)
    assert all(int(ds.target(i)["iscrowd"].sum()) == 0 for i in ds.ids)
    assert ds.summary()["crowd_regions"] == 10 and ds.summary()["instances"] == 929


def test_images_without_annotations_kept_for_evaluation_dropped_for_training(raw):
    annotated = {a["image_id"] for a in raw["annotations"] if not a["iscrowd"]}
    empty = sorted({i["id"] for i in raw["images"]} - annotated)
    assert len(empty) == 2
    assert len(coco128()) == 128 and len(coco128(train=True)) == 126
    assert coco128(train=True).summary()["dropped_empty_images"] == 2
    kept = coco128(train=True, keep_empty=True, with_masks=True)
    assert len(kept) == 128
    image, target = kept[kept.ids.index(empty[0])]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["masks"].shape == (0, *image.shape[1:])
    dropped = coco128(keep_empty=False)
    assert len(dropped) == 126 and not set(empty) & set(dropped.ids)


def test_train_flip_mirrors_boxes_and_masks_and_is_a_function_of_seed_epoch_index():
    plain, train = coco128(with_masks=True), coco128(train=True, with_masks=True, seed=3)
    index = train.ids.index(plain.ids[0])
    image, target = plain[0]
    W = image.shape[-1]
    seen = set()
    for epoch in range(8):
        train.set_epoch(epoch)
        timg, tt = train[index]
        again = train[index]
        assert torch.equal(timg, again[0]) and torch.equal(tt["boxes"], again[1]["boxes"])
        flipped = not torch.equal(timg, image)
        if flipped:
            assert torch.equal(timg, image.flip(-1))
            mirrored = torch.stack([W - target["boxes"][:, 2], target["boxes"][:, 1],
                                    W - target["boxes"][:, 0], target["boxes"][:, 3]], 1)
            assert torch.allclose(tt["boxes"], mirrored)
            assert torch.equal(tt["masks"], target["masks"].flip(-1))
        else:
            assert torch.equal(tt["boxes"], target["boxes"]) and torch.equal(tt["masks"], target["masks"])
        assert torch.equal(tt["labels"], target["labels"]) and tt["image_id"] == target["image_id"]
        seen.add(flipped)
    assert seen == {True, False}
    # the global RNG neither decides nor is disturbed by augmentation
    state = torch.random.get_rng_state()
    train[index]
    assert torch.equal(state, torch.random.get_rng_state())


def test_train_resize_scales_boxes_with_the_image():
    plain = coco128()
    image, target = plain[0]
    train = coco128(train=True, size=320, with_masks=True)
    timg, tt = train[train.ids.index(target["image_id"])]
    assert min(timg.shape[1:]) == 320 and tt["masks"].shape[1:] == timg.shape[1:]
    sy, sx = timg.shape[1] / image.shape[1], timg.shape[2] / image.shape[2]
    # widths and heights do not change under the flip, only with the scale
    w0 = target["boxes"][:, 2] - target["boxes"][:, 0]
    h0 = target["boxes"][:, 3] - target["boxes"][:, 1]
    w1, h1 = tt["boxes"][:, 2] - tt["boxes"][:, 0], tt["boxes"][:, 3] - tt["boxes"][:, 1]
    assert torch.allclose(w1, w0 * sx, atol=0.5) and torch.allclose(h1, h0 * sy, atol=0.5)
    multi = coco128(train=True, size=(256, 288))
    sizes = set()
    for epoch in range(6):
        multi.set_epoch(epoch)
        sizes.add(min(multi[0][0].shape[1:]))
    assert sizes == {256, 288}
    with pytest.raises(ValueError, match="size"):
        coco128(train=True, size=(0,))


# ---------------------------------------------------------------------------- bad inputs
def small_copy(tmp_path, raw, edit=None, n=4):
    """n annotated COCO128 images (symlinked) and their annotations, edited by ``edit(data, folder)``."""
    folder = tmp_path / "images"
    folder.mkdir()
    annotated = sorted({a["image_id"] for a in raw["annotations"] if not a["iscrowd"]})[:n]
    data = copy.deepcopy({**raw, "images": [i for i in raw["images"] if i["id"] in annotated],
                          "annotations": [a for a in raw["annotations"] if a["image_id"] in annotated]})
    for img in data["images"]:
        (folder / img["file_name"]).symlink_to(IMAGES / img["file_name"])
    if edit:
        edit(data, folder)
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return folder, ann, data


def _missing_file(data, folder):
    (folder / data["images"][0]["file_name"]).unlink()
    return "image", data["images"][0]["id"]


def _not_an_image(data, folder):
    path = folder / data["images"][1]["file_name"]
    path.unlink()
    path.write_bytes(b"this is not a JPEG" * 10)
    return "image", data["images"][1]["id"]


def _zero_width_box(data, folder):
    data["annotations"][2]["bbox"][2] = 0
    return "annotation", data["annotations"][2]["id"]


def _unknown_category(data, folder):
    data["annotations"][3]["category_id"] = 999
    return "annotation", data["annotations"][3]["id"]


@pytest.mark.parametrize("edit", [_missing_file, _not_an_image, _zero_width_box, _unknown_category])
def test_bad_input_is_an_error_naming_it_or_skipped_and_counted(tmp_path, raw, edit):
    box = {}
    folder, ann, data = small_copy(tmp_path, raw, lambda d, f: box.update(kind_id=edit(d, f)))
    kind, bad_id = box["kind_id"]
    with pytest.raises(DataError, match=rf"{kind} {bad_id}\b") as err:
        CocoDetection(folder, ann, train=False)
    assert str(ann) in str(err.value) and "skip_bad=True" in str(err.value)
    ds = CocoDetection(folder, ann, train=False, skip_bad=True, with_masks=True)
    assert list(ds.bad) == [f"{kind}:{bad_id}"]
    summary = ds.summary()
    assert summary[f"bad_{kind}s"] == 1 and summary["bad"] == ds.bad
    good = CocoDetection(folder, ann, train=False, skip_bad=True) if kind == "annotation" else None
    if kind == "image":
        assert len(ds) == 3 and bad_id not in ds.ids and bad_id not in ds.coco.imgs
        assert all(a["image_id"] != bad_id for a in ds.coco.dataset["annotations"])
    else:
        assert len(ds) == 4 and bad_id not in ds.coco.anns
        assert good.summary()["instances"] == sum(1 for a in data["annotations"] if not a["iscrowd"]) - 1
    for i in range(len(ds)):   # everything left loads
        image, target = ds[i]
        assert target["masks"].shape[0] == len(target["boxes"])


def test_malformed_json_is_always_an_error_naming_the_file(tmp_path, raw):
    folder, ann, _ = small_copy(tmp_path, raw)
    ann.write_text("{not json")
    for skip in (False, True):
        with pytest.raises(DataError, match="not JSON") as err:
            CocoDetection(folder, ann, train=False, skip_bad=skip)
        assert str(ann) in str(err.value)
    for key in ("images", "annotations", "categories"):
        ann.write_text(json.dumps({k: v for k, v in raw.items() if k != key}))
        with pytest.raises(DataError, match=f"'{key}'"):
            CocoDetection(folder, ann, train=False, skip_bad=True)
    ann.write_text("[]")
    with pytest.raises(DataError, match="not a COCO dict"):
        CocoDetection(folder, ann, train=False)
    with pytest.raises(DataError, match="not found"):
        CocoDetection(folder, tmp_path / "nope.json", train=False)


def test_a_truncated_image_that_passes_the_header_check_fails_when_read_naming_it(tmp_path, raw):
    def truncate(data, folder):
        path = folder / data["images"][0]["file_name"]
        head = (IMAGES / data["images"][0]["file_name"]).read_bytes()[:2000]
        path.unlink()
        path.write_bytes(head)
    folder, ann, data = small_copy(tmp_path, raw, truncate)
    ds = CocoDetection(folder, ann, train=False)
    with pytest.raises(DataError, match=rf"image {data['images'][0]['id']}\b.*does not decode"):
        ds[ds.ids.index(data["images"][0]["id"])]
