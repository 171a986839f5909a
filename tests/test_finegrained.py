"""Fine-grained transfer (Section 5.3): the six named sets through torchvision, their offline
errors, and a `finegrained`-recipe fine-tune from an ImageNet-shaped checkpoint on ants/bees."""
import inspect
import json
import re
import shutil
import sys
import urllib.request

import pytest
import torch
import torchvision.datasets as tvd

from rexnet import create_model, save_weights
from rexnet.train.checkpoint import load_checkpoint
from rexnet.train.data import TORCHVISION_DATASETS, DataError, balanced_subset, build_dataset
from rexnet.train.loop import train
from rexnet.train.recipe import RECIPES, load_recipe
from train_helpers import HYMENOPTERA, needs_hymenoptera

# name -> (torchvision class, classes, what our "train" reads, what our "val" reads): the
# transfer protocol trains on train(+val) and reports on the official test split
EXPECTED = {
    "food101": ("Food101", 101, [{"split": "train"}], [{"split": "test"}]),
    "stanford_cars": ("StanfordCars", 196, [{"split": "train"}], [{"split": "test"}]),
    "fgvc_aircraft": ("FGVCAircraft", 100, [{"split": "trainval", "annotation_level": "variant"}],
                      [{"split": "test", "annotation_level": "variant"}]),
    "flowers102": ("Flowers102", 102, [{"split": "train"}, {"split": "val"}], [{"split": "test"}]),
    "oxford_pets": ("OxfordIIITPet", 37, [{"split": "trainval", "target_types": "category"}],
                    [{"split": "test", "target_types": "category"}]),
    "dtd": ("DTD", 47, [{"split": "train", "partition": 1}, {"split": "val", "partition": 1}],
            [{"split": "test", "partition": 1}]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_set_resolves_to_its_torchvision_class_and_splits(name, tmp_path, monkeypatch):
    cls_name, n_classes, train_kw, val_kw = EXPECTED[name]
    entry = TORCHVISION_DATASETS[name]
    assert (entry.cls, entry.num_classes) == (cls_name, n_classes)
    accepted = inspect.signature(getattr(tvd, cls_name)).parameters  # the real class takes these keywords
    assert all(k in accepted for kw in train_kw + val_kw for k in kw) and "download" in accepted
    calls = []

    class Fake(torch.utils.data.Dataset):  # stands in for the download; records how it was asked
        def __init__(self, root, transform=None, download=False, **kw):
            calls.append(kw)
            self.classes = [f"c{i}" for i in range(n_classes)]
            self._labels = [i % n_classes for i in range(2 * n_classes)]
            if name == "stanford_cars":  # StanfordCars keeps (path, label) pairs instead
                self._samples, self._labels = [(f"{i}.jpg", t) for i, t in enumerate(self._labels)], None

        def __len__(self):
            return 2 * n_classes

        def __getitem__(self, i):
            return torch.zeros(3, 4, 4), i % n_classes

    monkeypatch.setattr(tvd, cls_name, Fake)
    train_ds = build_dataset(name, "train", root=str(tmp_path))
    assert calls == train_kw
    calls.clear()
    val_ds = build_dataset(name, "val", root=str(tmp_path))
    assert calls == val_kw
    for ds, parts in ((train_ds, train_kw), (val_ds, val_kw)):
        assert len(ds) == 2 * n_classes * len(parts) and len(ds.classes) == n_classes
        assert ds.targets == [i % n_classes for i in range(2 * n_classes)] * len(parts)
        sub = balanced_subset(ds, n_classes)  # one of each class, from the labels, not by decoding
        assert sorted(sub[i][1] for i in range(len(sub))) == list(range(n_classes))


def _layouts(root, photos):
    """Tiny copies of the on-disk layouts torchvision's Food101, FGVCAircraft, OxfordIIITPet and
    DTD read (two classes, real photos), to construct the real classes from."""
    def put(path, src):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, path)

    food = root / "food-101"
    (food / "meta").mkdir(parents=True)
    for split, ids in (("train", (0, 1)), ("test", (2,))):
        (food / "meta" / f"{split}.json").write_text(json.dumps(
            {c: [f"{c}/{i}" for i in ids] for c in ("apple_pie", "sushi")}))
    for c in ("apple_pie", "sushi"):
        for i in range(3):
            put(food / "images" / c / f"{i}.jpg", photos[i])
    air = root / "fgvc-aircraft-2013b" / "data"
    air.mkdir(parents=True)
    (air / "variants.txt").write_text("707-320\nA300B4\n")
    (air / "images_variant_trainval.txt").write_text("0000001 707-320\n0000002 A300B4\n0000003 A300B4\n")
    (air / "images_variant_test.txt").write_text("0000004 707-320\n")
    for i in range(1, 5):
        put(air / "images" / f"000000{i}.jpg", photos[i])
    pets = root / "oxford-iiit-pet"
    (pets / "annotations").mkdir(parents=True)
    (pets / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\nbeagle_1 2 2 1\nbeagle_2 2 2 1\n")
    (pets / "annotations" / "test.txt").write_text("Abyssinian_2 1 1 1\n")
    for i, stem in enumerate(("Abyssinian_1", "beagle_1", "beagle_2", "Abyssinian_2")):
        put(pets / "images" / f"{stem}.jpg", photos[i])
    dtd = root / "dtd" / "dtd"
    (dtd / "labels").mkdir(parents=True)
    for split, files in (("train", "banded/a.jpg\nzigzagged/b.jpg\n"), ("val", "banded/c.jpg\nzigzagged/d.jpg\n"),
                         ("test", "banded/e.jpg\nzigzagged/f.jpg\n")):
        (dtd / "labels" / f"{split}1.txt").write_text(files)
    for i, rel in enumerate(("banded/a.jpg", "zigzagged/b.jpg", "banded/c.jpg", "zigzagged/d.jpg",
                             "banded/e.jpg", "zigzagged/f.jpg")):
        put(dtd / "images" / rel, photos[i])


@needs_hymenoptera
def test_the_real_classes_read_our_splits(tmp_path):
    photos = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:6]
    _layouts(tmp_path, photos)
    sizes = {"food101": (4, 2), "fgvc_aircraft": (3, 1), "oxford_pets": (3, 1), "dtd": (4, 2)}
    for name, (n_train, n_val) in sizes.items():
        train_ds = build_dataset(name, "train", root=str(tmp_path))
        val_ds = build_dataset(name, "val", root=str(tmp_path))
        assert (len(train_ds), len(val_ds)) == (n_train, n_val), name
        assert len(train_ds.classes) == 2 and sorted(set(train_ds.targets)) == [0, 1], name
        img, label = train_ds[len(train_ds) - 1]  # the last one: from the val part where concatenated
        assert img.mode == "RGB" and label == train_ds.targets[-1], name
    assert build_dataset("dtd", "train", root=str(tmp_path)).targets == [0, 1, 0, 1]  # train1 + val1


def test_missing_sets_say_where_and_how(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise AssertionError("no download was asked for")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for name in ("food101", "fgvc_aircraft", "oxford_pets", "dtd"):
        folder = TORCHVISION_DATASETS[name].folder
        with pytest.raises(DataError, match=rf"{name} not found: expected its files under "
                                            rf"{re.escape(str(tmp_path / folder))}\. Run with --download true"):
            build_dataset(name, "val", root=str(tmp_path))
    # Stanford Cars cannot be downloaded: even with --download it is looked for, and the error says where
    with pytest.raises(DataError, match=r"stanford_cars not found: .*cannot download Stanford Cars.*"
                                        r"pytorch/vision/issues/7545.*stanford_cars/devkit/"):
        build_dataset("stanford_cars", "train", root=str(tmp_path), download=True)
    # the sets whose annotations are MATLAB files say when scipy is missing
    monkeypatch.setitem(sys.modules, "scipy", None)
    (tmp_path / "flowers-102").mkdir()
    with pytest.raises(DataError, match=r"flowers102 needs scipy .*pip install scipy .*rexnet\[finegrained\]"):
        build_dataset("flowers102", "train", root=str(tmp_path))
    with pytest.raises(DataError, match=r"flowers102 needs scipy"):
        build_dataset("flowers102", "train", root=str(tmp_path / "elsewhere"), download=True)


def test_the_recipe_is_the_documented_one():
    assert "finegrained" in RECIPES
    cfg = load_recipe("finegrained")
    assert (cfg.transform, cfg.input_size, cfg.crop_pct, cfg.interpolation) == ("imagenet", 224, 0.875, "bicubic")
    assert (cfg.lr, cfg.lr_base_batch, cfg.batch_size, cfg.weight_decay) == (0.01, 256, 256, 1e-4)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.label_smoothing, cfg.nesterov) == (100, 0.0, 0.1, True)
    assert cfg.reset_classifier and not cfg.freeze_backbone
    assert (cfg.auto_augment, cfg.re_prob, cfg.color_jitter) == (None, 0.0, 0.0)


@needs_hymenoptera
def test_finegrained_finetune_from_an_imagenet_checkpoint(tmp_path):
    """ants/bees stands in offline for the six sets: same loop, same recipe, smaller numbers."""
    imagenet = create_model("rexnet_100")  # random weights in the 1000-class ImageNet shape
    save_weights(imagenet, tmp_path / "in1k.safetensors")
    cfg = load_recipe("finegrained", dict(
        model="rexnet_100", data=str(HYMENOPTERA), weights=str(tmp_path / "in1k.safetensors"),
        skip_bad_images=True, input_size=64, epochs=1, batch_size=16, train_subset=32, val_subset=32,
        workers=0, progress=False, device="cpu"))
    summary = train(cfg, tmp_path / "ft")
    assert json.loads((tmp_path / "ft" / "summary.json").read_text())["steps"] == summary["steps"] == 2
    assert summary["train_images"] == 32 and summary["val_images"] == 32 and summary["epochs_done"] == 1
    row = json.loads((tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= row["val_top1"] <= 100 and row["train_loss"] > 0
    ck = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert ck["model"]["head.fc.weight"].shape == (2, 1280)  # a new 2-class classifier
    before = imagenet.state_dict()["features.5.conv_dw.conv.weight"]
    assert not torch.equal(ck["model"]["features.5.conv_dw.conv.weight"], before)  # the backbone is tuned too
    assert (tmp_path / "ft" / "config.yaml").read_text().count("recipe: finegrained") == 1
