import shutil
import zipfile

import pytest
import timm
import torch

from rexnet import create_model, save_weights
from rexnet.cli import main
from rexnet.models.weights import _original_key_map
from rexnet.train.checkpoint import load_checkpoint
from rexnet.train.data import DataError, ImageTree, build_dataset, check_tree
from rexnet.train.evaluate import evaluate_checkpoint
from rexnet.train.loop import train
from rexnet.train.recipe import load_recipe
from train_helpers import HYMENOPTERA, needs_hymenoptera

BROKEN = "ants/imageNotFound.gif"


@pytest.fixture
def small_tree(tmp_path):
    """A copy of a few real ants/bees photos, with one truncated JPEG in it."""
    root = tmp_path / "tree"
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            files = sorted((HYMENOPTERA / split / cls).glob("*.jpg"))[:6]
            (root / split / cls).mkdir(parents=True)
            for f in files:
                shutil.copy(f, root / split / cls / f.name)
    victim = sorted((root / "train" / "bees").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:400])
    return root, victim


@needs_hymenoptera
def test_the_broken_placeholder_both_ways():
    with pytest.raises(DataError, match=r"bad file .*train/ants/imageNotFound\.gif: not a supported image.*--skip-bad-images"):
        build_dataset(str(HYMENOPTERA), "train")
    ds = build_dataset(str(HYMENOPTERA), "train", skip_bad=True)
    assert ds.bad_files == [BROKEN] and len(ds) == 244 and ds.classes == ["ants", "bees"]


@needs_hymenoptera
def test_truncated_image_both_ways_and_zip_equals_folder(small_tree, tmp_path):
    root, victim = small_tree
    strict = ImageTree(root, "train")
    bad_index = [rel for rel, _ in strict.samples].index(f"bees/{victim.name}")
    with pytest.raises(DataError, match=rf"cannot decode image .*{victim.name}.*--skip-bad-images"):
        strict[bad_index]
    lenient = ImageTree(root, "train", skip_bad=True)
    img, label = lenient[bad_index]  # the next readable image stands in
    assert label == 1 and lenient.bad_files == [f"bees/{victim.name}"]
    # the same tree zipped (under a top folder) reads the same, without extracting
    zpath = tmp_path / "tree.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, "mydata/" + str(f.relative_to(root)))
    zipped = ImageTree(zpath, "val")
    folder = ImageTree(root, "val")
    assert zipped.samples == folder.samples and zipped.classes == folder.classes
    assert zipped[3][0].tobytes() == folder[3][0].tobytes()
    report = check_tree(zpath)
    assert report["bad_total"] == 1 and report["splits"]["train"]["classes"] == {"ants": 6, "bees": 5}


@needs_hymenoptera
def test_data_check_cli(capsys, tmp_path):
    assert main(["data", "check", str(HYMENOPTERA), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "train: 244 readable images in 2 classes" in out and "imageNotFound.gif" in out
    assert "val: 153 readable images" in out


@needs_hymenoptera
def test_finetune_on_ants_and_bees_from_a_timm_checkpoint(tmp_path):
    src = timm.create_model("rexnet_100")  # 1000 classes, timm's layout
    torch.save(src.state_dict(), tmp_path / "timm_rexnet_100.pth")
    with pytest.raises(DataError, match="imageNotFound.gif"):
        train(load_recipe("imagenet", dict(model="rexnet_100", data=str(HYMENOPTERA), input_size=64, epochs=1,
                                           batch_size=16, progress=False)), tmp_path / "strict")
    cfg = load_recipe("imagenet", dict(
        model="rexnet_100", data=str(HYMENOPTERA), weights=str(tmp_path / "timm_rexnet_100.pth"),
        freeze_backbone=True, skip_bad_images=True, input_size=64, epochs=3, batch_size=32, lr=0.5,
        lr_base_batch=32, warmup_epochs=0, workers=0, progress=False, val_subset=60))
    summary = train(cfg, tmp_path / "ft")
    assert summary["bad_images_skipped"] == 1 and summary["train_images"] == 244
    ck = load_checkpoint(tmp_path / "ft" / "last.pt")
    assert ck["model"]["head.fc.weight"].shape == (2, 1280)
    assert torch.equal(ck["model"]["features.5.conv_dw.conv.weight"], src.state_dict()["features.5.conv_dw.conv.weight"])
    assert torch.equal(ck["model"]["stem.bn.running_mean"], src.state_dict()["stem.bn.running_mean"])  # frozen BN too
    rows = [__import__("json").loads(l) for l in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@needs_hymenoptera
def test_eval_gives_the_same_result_for_every_checkpoint_format(tmp_path, capsys):
    model = create_model("rexnet_100", num_classes=2).eval()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    sd = model.state_dict()
    save_weights(model, tmp_path / "ours.safetensors")
    save_weights(model, tmp_path / "ours.pth")
    ref = timm.create_model("rexnet_100", num_classes=2)
    ref.load_state_dict(sd)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    inverse = {v: k for k, v in _original_key_map(model.spec).items()}
    orig = {inverse[k]: (v[:, :, None, None] if k == "head.fc.weight" else v) for k, v in sd.items()}
    torch.save(orig, tmp_path / "original.pth")
    results = {}
    for name in ("ours.safetensors", "ours.pth", "timm.pth", "original.pth"):
        r = evaluate_checkpoint("rexnet_100", str(tmp_path / name), str(HYMENOPTERA), input_size=64, limit=24)
        results[name] = (r["top1"], round(r["loss"], 5), r["n"])
    assert len(set(results.values())) == 1 and results["timm.pth"][2] == 24, results
    assert main(["eval", "--model", "rexnet_100", "--weights", str(tmp_path / "original.pth"), "--data",
                 str(HYMENOPTERA), "--input-size", "64", "--limit", "24", "--out", str(tmp_path / "e.json")]) == 0
    assert "24 images" in capsys.readouterr().out
    assert main(["eval", "--model", "rexnet_130", "--weights", str(tmp_path / "timm.pth"), "--data",
                 str(HYMENOPTERA), "--limit", "4"]) == 2
    assert "does not fit rexnet_130" in capsys.readouterr().err
