"""Detectors over our backbones: the authors' parameter counts, torchvision's builders,
one train and one eval step on real COCO128 images, frozen BN, trainable stages, weights."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d as TvFrozenBN

import rexnet
from rexnet.detection import ARCHS, create_detector, detector_complexity
from train_helpers import SHARED

COCO128 = SHARED / "coco128"
needs_coco = pytest.mark.skipif(not (COCO128 / "annotations" / "instances_train2017.json").is_file(),
                                reason=f"COCO128 not found at {COCO128}")
# fast: images resized to at most 224 px, fewer proposals and detections than COCO's settings
SMALL = dict(min_size=160, max_size=224, rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
             rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, box_batch_size_per_image=64,
             box_detections_per_img=20)
SMALL_ONE_STAGE = dict(topk_candidates=100, detections_per_img=20)
FROZEN_BN = TvFrozenBN  # timm.layers.freeze_batch_norm_2d makes these too


def small(arch: str) -> dict:
    if arch == "ssdlite320":
        return dict(size=(160, 160), **SMALL_ONE_STAGE)
    if arch == "retinanet_fpn":
        return dict(min_size=160, max_size=224, **SMALL_ONE_STAGE)
    return dict(SMALL)


@pytest.fixture(scope="module")
def coco_batch():
    """Two COCO128 images with their non-crowd boxes, labels and masks (read with PIL, json, pycocotools)."""
    from PIL import Image
    from pycocotools import mask as mask_utils
    from torchvision.transforms.v2.functional import pil_to_tensor

    if not COCO128.is_dir():
        pytest.skip(f"COCO128 not found at {COCO128}")
    data = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    anns: dict[int, list] = {}
    for a in data["annotations"]:
        if not a["iscrowd"]:
            anns.setdefault(a["image_id"], []).append(a)
    images, targets = [], []
    for info in sorted(data["images"], key=lambda i: i["file_name"])[:2]:
        img = Image.open(COCO128 / "train2017" / info["file_name"]).convert("RGB")
        h, w = info["height"], info["width"]
        boxes = torch.tensor([[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns[info["id"]])])
        rles = [mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w)) for a in anns[info["id"]]]
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy= notice
            warnings.simplefilter("ignore", DeprecationWarning)
            masks = torch.from_numpy(mask_utils.decode(rles)).permute(2, 0, 1).contiguous()
        images.append(pil_to_tensor(img).float() / 255)
        targets.append(dict(boxes=boxes, labels=torch.tensor([a["category_id"] for a in anns[info["id"]]]),
                            masks=masks))
    return images, targets


def _targets(arch: str, targets: list[dict]) -> list[dict]:
    return [t if arch == "maskrcnn_fpn" else {k: v for k, v in t.items() if k != "masks"} for t in targets]


def _train_step(model: nn.Module, arch: str, images, targets) -> dict:
    model.train()
    losses = model(images, _targets(arch, targets))
    sum(losses.values()).backward()
    return losses


# -- structure: the authors' published figures ------------------------------------------------

# Their README (COCO, 91 classes): params of Faster / Mask R-CNN FPN; ResNet-50 for reference.
# With frozen BN (the fine-tuning setting; BN's affine values become buffers, as in
# torchvision's and detectron2's counts).
PAPER_PARAMS = [
    ("fasterrcnn_fpn", "rexnet_090", 20.1e6), ("fasterrcnn_fpn", "rexnet_100", 20.7e6),
    ("fasterrcnn_fpn", "rexnet_220", 33.0e6), ("maskrcnn_fpn", "rexnet_090", 22.8e6),
    ("maskrcnn_fpn", "rexnet_100", 23.3e6), ("maskrcnn_fpn", "rexnet_220", 35.6e6),
    ("fasterrcnn_fpn", "torchvision:resnet50", 41.8e6), ("maskrcnn_fpn", "torchvision:resnet50", 44.2e6),
]


@pytest.mark.parametrize("arch,backbone,published", PAPER_PARAMS)
def test_params_match_the_authors(arch, backbone, published):
    model = create_detector(arch, backbone, frozen_bn=True)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - published) / published < 0.01, (params, published)


def test_fpn_reads_the_four_block_outputs_not_the_penultimate_conv():
    model = create_detector("fasterrcnn_fpn", "rexnet_100")
    net = rexnet.create_model("rexnet_100")
    lateral = [m.in_channels for m in model.backbone.fpn.inner_blocks.modules() if isinstance(m, nn.Conv2d)]
    assert lateral == [f["num_chs"] for f in net.feature_info if f["reduction"] in (4, 8, 16, 32)]
    assert lateral == [38, 61, 128, 185]
    body = dict(model.backbone.body.named_modules())
    assert "features.15" in body and "features.16" not in body and "head" not in body  # pen conv, classifier gone
    assert model.backbone.out_channels == 256


@pytest.mark.parametrize("arch,backbone,builder", [
    ("fasterrcnn_fpn", "torchvision:resnet50", "fasterrcnn_resnet50_fpn"),
    ("maskrcnn_fpn", "torchvision:resnet50", "maskrcnn_resnet50_fpn"),
    ("retinanet_fpn", "torchvision:resnet50", "retinanet_resnet50_fpn"),
    ("fasterrcnn_fpn", "torchvision:mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_fpn"),
    ("ssdlite320", "torchvision:mobilenet_v3_large", "ssdlite320_mobilenet_v3_large"),
])
def test_torchvision_backbones_build_torchvisions_models(arch, backbone, builder):
    import torchvision.models.detection as tvd

    ours = create_detector(arch, backbone).state_dict()
    theirs = getattr(tvd, builder)(weights=None, weights_backbone=None).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_timm_rexnet_backbone_equals_ours():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(create_detector("fasterrcnn_fpn", "timm:rexnet_100")) == count(
        create_detector("fasterrcnn_fpn", "rexnet_100"))


# -- feature maps -------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["rexnet_100", "rexnet_lite_100"])
def test_maps_fed_to_the_fpn_have_the_feature_info_strides_and_channels(backbone):
    info = rexnet.create_model(backbone).feature_info
    x = torch.zeros(2, 3, 128, 192)
    for arch, reductions in (("fasterrcnn_fpn", (4, 8, 16, 32)), ("retinanet_fpn", (8, 16, 32))):
        model = create_detector(arch, backbone).eval()
        maps = model.backbone.body(x)
        want = [f for f in info if f["reduction"] in reductions]
        assert [m.shape[1] for m in maps.values()] == [f["num_chs"] for f in want]
        assert [(128 // m.shape[2], 192 // m.shape[3]) for m in maps.values()] == [(r, r) for r in reductions]
        levels = model.backbone(x)
        assert all(v.shape[1] == 256 for v in levels.values())
        assert len(levels) == 5  # P2-P5 + pool, or P3-P5 + P6, P7


def test_ssdlite_taps_the_expansion_conv_and_the_last_conv():
    model = create_detector("ssdlite320", "rexnet_100").eval()
    maps = model.backbone(torch.zeros(1, 3, 320, 320))
    # x1.0: the first stride-32 block expands 128 -> 768 at stride 16; the last conv is 1280 wide
    assert [tuple(m.shape[1:]) for m in maps.values()] == [
        (768, 20, 20), (1280, 10, 10), (512, 5, 5), (256, 3, 3), (256, 2, 2), (128, 1, 1)]
    assert model.transform.fixed_size == (320, 320)
    assert model.transform.image_mean == list(rexnet.create_model("rexnet_100").pretrained_cfg["mean"])


# -- one train step and one eval step on real images --------------------------------------------

@needs_coco
@pytest.mark.parametrize("backbone", ["rexnet_100", "rexnet_lite_100"])
@pytest.mark.parametrize("arch", ARCHS)
def test_train_and_eval_step(arch, backbone, coco_batch):
    images, targets = coco_batch
    model = create_detector(arch, backbone, **small(arch))
    losses = _train_step(model, arch, images, targets)
    want = {"fasterrcnn_fpn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
            "retinanet_fpn": {"classification", "bbox_regression"},
            "ssdlite320": {"classification", "bbox_regression"}}
    want["maskrcnn_fpn"] = want["fasterrcnn_fpn"] | {"loss_mask"}
    assert set(losses) == want[arch]
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    body = [(n, p) for n, p in model.backbone.body.named_parameters() if p.requires_grad]
    assert body and all(p.grad is not None for _, p in body), [n for n, p in body if p.grad is None][:5]
    assert any(p.grad.abs().sum() > 0 for _, p in body)

    model.eval()
    with torch.no_grad():
        out = model(images)
    keys = {"boxes", "labels", "scores"} | ({"masks"} if arch == "maskrcnn_fpn" else set())
    assert len(out) == len(images)
    for det, img in zip(out, images):
        assert set(det) == keys
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == det["scores"].shape == (n,)
        if "masks" in det:
            assert det["masks"].shape == (n, 1, *img.shape[1:])  # in the original image's size


@needs_coco
@pytest.mark.parametrize("arch,backbone", [("fasterrcnn_fpn", "timm:resnet18"),
                                           ("retinanet_fpn", "torchvision:resnet50")])
def test_train_step_on_comparison_backbones(arch, backbone, coco_batch):
    images, targets = coco_batch
    model = create_detector(arch, backbone, trainable_layers=2, **small(arch))
    losses = _train_step(model, arch, images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    trainable = [p for p in model.backbone.body.parameters() if p.requires_grad]
    frozen = [p for p in model.backbone.body.parameters() if not p.requires_grad]
    assert trainable and frozen
    assert all(p.grad is not None for p in trainable) and all(p.grad is None for p in frozen)


# -- frozen BN, trainable stages, weights -------------------------------------------------------

@needs_coco
def test_frozen_bn_keeps_statistics(coco_batch):
    images, targets = coco_batch
    model = create_detector("fasterrcnn_fpn", "rexnet_100", frozen_bn=True, **SMALL)
    body = model.backbone.body
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in body.modules())
    frozen = [m for m in body.modules() if isinstance(m, FROZEN_BN)]
    assert len(frozen) == 61  # every BN up to block 15: stem 1, blocks 0-2 2+3+3, blocks 3-15 4 each (SE)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _train_step(model, "fasterrcnn_fpn", images, targets)
    opt.step()
    after = body.state_dict()
    bn_keys = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert bn_keys and all(torch.equal(before[k], after[k]) for k in bn_keys)
    affine = [k for k in before if ".bn." in k and k.endswith(("weight", "bias"))]
    assert affine and all(torch.equal(before[k], after[k]) for k in affine)
    assert not torch.equal(before["features.15.conv_pwl.conv.weight"], after["features.15.conv_pwl.conv.weight"])

    # without frozen BN a train step moves the running statistics
    model = create_detector("fasterrcnn_fpn", "rexnet_100", frozen_bn=False, **SMALL)
    stats = model.backbone.body.get_submodule("features.15.conv_pwl.bn").running_mean.clone()
    _train_step(model, "fasterrcnn_fpn", images, targets)
    assert not torch.equal(stats, model.backbone.body.get_submodule("features.15.conv_pwl.bn").running_mean)


def _stage(name: str, stage_ends: list[int]) -> int:
    """Our stage of a backbone parameter: stage i ends with block stage_ends[i]."""
    if name.startswith("stem."):
        return 0
    block = int(name.split(".")[1])
    return next((i for i, end in enumerate(stage_ends) if block <= end), len(stage_ends) - 1)


@pytest.mark.parametrize("arch", ["fasterrcnn_fpn", "ssdlite320"])
@pytest.mark.parametrize("k", [0, 2, 5])
def test_trainable_layers_freezes_the_first_stages(arch, k):
    ends = rexnet.create_model("rexnet_100").stage_ends  # [0, 2, 4, 10, 15]
    model = create_detector(arch, "rexnet_100", trainable_layers=k)
    body = model.backbone.body
    for name, p in body.named_parameters():
        assert p.requires_grad == (_stage(name, ends) >= 5 - k), name
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.body.")]
    assert all(p.requires_grad for p in rest)  # FPN / extra blocks and heads always train


def test_trainable_layers_range():
    with pytest.raises(ValueError, match="0..5"):
        create_detector("fasterrcnn_fpn", "rexnet_100", trainable_layers=6)


def test_backbone_weights_land_in_the_backbone(tmp_path):
    torch.manual_seed(123)
    net = rexnet.create_model("rexnet_100", num_classes=10)  # another classifier: dropped
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # statistics that differ from a fresh BN's
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    path = rexnet.save_weights(net, tmp_path / "r100.safetensors")
    own = net.state_dict()
    for backbone, weights in (("rexnet_100", path), (path, None)):
        model = create_detector("fasterrcnn_fpn", backbone, backbone_weights=weights)
        body = model.backbone.body.state_dict()
        assert len(body) > 200 and all(torch.equal(v, own[k]) for k, v in body.items())
        # detection defaults with weights: frozen BN, the last three stages train
        assert any(isinstance(m, FROZEN_BN) for m in model.backbone.body.modules())
        assert not model.backbone.body.get_submodule("stem.conv").weight.requires_grad
        assert model.backbone.body.get_submodule("features.5.conv_dw.conv").weight.requires_grad


@pytest.mark.parametrize("backbone", ["torchvision:resnet18", "timm:resnet18"])
def test_comparison_backbone_weights(tmp_path, backbone):
    import timm
    import torchvision

    kind, name = backbone.split(":")
    torch.manual_seed(7)
    net = torchvision.models.resnet18() if kind == "torchvision" else timm.create_model(name)
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    body = create_detector("fasterrcnn_fpn", backbone, backbone_weights=path).backbone.body
    own = net.state_dict()
    got = {k.removeprefix("extractor."): v for k, v in body.state_dict().items()}
    assert len(got) > 60 and all(torch.equal(v, own[k]) for k, v in got.items())
    assert any(isinstance(m, FROZEN_BN) for m in body.modules())


@pytest.mark.parametrize("arch,backbone,match", [
    ("yolo", "rexnet_100", "fasterrcnn_fpn"),
    ("fasterrcnn_fpn", "rexnet_999", "unknown model"),
    ("fasterrcnn_fpn", "timm:not_a_model", "unknown timm model"),
    ("fasterrcnn_fpn", "torchvision:vgg16", "unknown torchvision backbone"),
    ("fasterrcnn_fpn", "timm:", "names no model"),
    ("ssdlite320", "torchvision:resnet50", "mobile backbone"),
    ("fasterrcnn_fpn", "rexnet_100_cifar", "no feature map at reduction"),
])
def test_bad_names(arch, backbone, match):
    with pytest.raises(ValueError, match=match):
        create_detector(arch, backbone)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="background"):
        create_detector("fasterrcnn_fpn", num_classes=1)


def test_detector_complexity_small():
    model = create_detector("fasterrcnn_fpn", "rexnet_100", **SMALL)
    c = detector_complexity(model, size=(160, 224))
    assert c["params"] == sum(p.numel() for p in model.parameters())
    assert c["input"] == (160, 224)
    assert set(c["parts"]) == {"backbone", "rpn", "roi_heads"} and sum(c["parts"].values()) == c["macs"]
    assert model.training  # the mode is restored


def test_anchor_scale_shrinks_the_fpn_anchors_and_is_checked():
    from rexnet.detection.recipe import load_detection_recipe

    frcnn = create_detector("fasterrcnn_fpn", "rexnet_100", num_classes=5, anchor_scale=0.25)
    assert frcnn.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    default = create_detector("fasterrcnn_fpn", "rexnet_100", num_classes=5)
    assert default.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    retina = create_detector("retinanet_fpn", "rexnet_100", num_classes=5, anchor_scale=0.25)
    assert retina.anchor_generator.sizes[0] == (8, 10, 13) and retina.anchor_generator.sizes[-1] == (128, 161, 203)
    with pytest.raises(ValueError, match="relative to the image"):
        create_detector("ssdlite320", "rexnet_100", num_classes=5, anchor_scale=0.5)
    with pytest.raises(ValueError, match="anchor_scale must be a positive"):
        create_detector("fasterrcnn_fpn", "rexnet_100", num_classes=5, anchor_scale=0)
    with pytest.raises(ValueError, match="anchor_scale"):
        load_detection_recipe("coco128", dict(arch="ssdlite320", anchor_scale=0.5))
