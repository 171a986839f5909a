import json
import os
import pickle

import pytest
import timm
import torch

from original_format import DATA, fixed_input, make_original_state_dict, original_keys
from rexnet import create_model, load_weights, save_weights
from rexnet.models.weights import CheckpointError, _original_key_map, detect_format, resolve_pretrained

TIMM_PARITY = ["rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200", "rexnet_300",
               "rexnetr_100", "rexnetr_200"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _randomise_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("name", TIMM_PARITY)
def test_timm_parity_both_ways(name):
    x = torch.randn(2, 3, 64, 64)
    ref = _randomise_bn(timm.create_model(name)).eval()
    ours = create_model(name).eval()
    load_weights(ours, ref.state_dict())
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() <= 1e-5
    # and ours into timm's
    ours2 = _randomise_bn(create_model(name)).eval()
    ref2 = timm.create_model(name).eval()
    ref2.load_state_dict(ours2.state_dict(), strict=True)
    with torch.no_grad():
        assert (ours2(x) - ref2(x)).abs().max().item() <= 1e-5
    assert ours.feature_info == ref.feature_info


@pytest.mark.parametrize("name", ["rexnet_100", "rexnet_lite_100"])
def test_original_layout_gives_the_authors_logits(name, tmp_path):
    shapes = original_keys()[name]
    model = create_model(name).eval()
    # the key map covers exactly the authors' keys, with the same shapes
    key_map = _original_key_map(model.spec)
    assert set(key_map) == set(shapes)
    own = model.state_dict()
    for k, shape in shapes.items():
        expected = list(own[key_map[k]].shape)
        assert shape == expected or (k.startswith("output.") and shape[:2] == expected)
    sd = make_original_state_dict(shapes)
    assert detect_format(sd) == "original"
    path = tmp_path / "orig.pth"
    torch.save(sd, path)  # the authors publish plain state dicts
    model = create_model(name, weights=path).eval()
    expected = torch.tensor(json.loads((DATA / "original_logits.json").read_text())[name])
    with torch.no_grad():
        assert (model(fixed_input()) - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("ext", [".safetensors", ".pth"])
def test_save_and_load_round_trip(ext, tmp_path):
    model = _randomise_bn(create_model("rexnet_lite_100", num_classes=3)).eval()
    path = save_weights(model, tmp_path / f"m{ext}")
    assert not list(tmp_path.glob("*.tmp"))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left, hidden or not
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()    # not safetensors' 0600
    back = create_model("rexnet_lite_100", num_classes=3, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))


def test_mismatched_checkpoint_lists_the_keys(tmp_path):
    path = save_weights(create_model("rexnet_100"), tmp_path / "r100.safetensors")
    with pytest.raises(CheckpointError) as e:
        create_model("rexnet_130", weights=path)
    msg = str(e.value)
    assert "does not fit rexnet_130" in msg and "wrong shape" in msg and "(350 in all)" in msg
    sd = create_model("rexnet_100").state_dict()
    del sd["features.3.conv_exp.conv.weight"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing: features\.3\.conv_exp\.conv\.weight.*unexpected: extra\.weight"):
        load_weights(create_model("rexnet_100"), sd)


def test_other_num_classes_needs_reset_and_keeps_backbone(tmp_path):
    src = _randomise_bn(create_model("rexnet_100"))
    path = save_weights(src, tmp_path / "r100.pth")
    with pytest.raises(CheckpointError, match="reset_classifier=True"):
        create_model("rexnet_100", num_classes=2, weights=path)
    model = create_model("rexnet_100", num_classes=2, weights=path, reset_classifier=True)
    assert model.head.fc.weight.shape == (2, 1280)
    assert torch.equal(model.stem.conv.weight, src.stem.conv.weight)
    assert torch.equal(model.features[5].conv_dw.bn.running_var, src.features[5].conv_dw.bn.running_var)


def test_truncated_corrupt_and_unsafe_files(tmp_path):
    path = save_weights(create_model("rexnet_lite_100"), tmp_path / "m.pth")
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pth"):
        create_model("rexnet_lite_100", weights=tmp_path / "cut.pth")
    st = save_weights(create_model("rexnet_lite_100"), tmp_path / "m.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        create_model("rexnet_lite_100", weights=tmp_path / "cut.safetensors")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        create_model("rexnet_lite_100", weights=tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not found"):
        create_model("rexnet_lite_100", weights=tmp_path / "missing.pth")
    torch.save({"a": 1}, tmp_path / "nodict.pth")
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        create_model("rexnet_lite_100", weights=tmp_path / "nodict.pth")
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "alien.pth")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        create_model("rexnet_lite_100", weights=tmp_path / "alien.pth")


def test_wrapped_and_prefixed_checkpoints(tmp_path):
    model = create_model("rexnet_lite_100")
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ddp.pth")
    create_model("rexnet_lite_100", weights=tmp_path / "ddp.pth")


def test_pretrained_uses_cache_then_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("REXNET_CACHE", str(tmp_path))
    src = _randomise_bn(create_model("rexnet_100"))
    save_weights(src, tmp_path / "rexnet_100.safetensors")
    model = create_model("rexnet_100", pretrained=True)
    assert torch.equal(model.stem.bn.running_var, src.stem.bn.running_var)

    def offline(url, dst, progress=True):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError, match=r"could not download the weights of rexnet_130 .*place it at"):
        create_model("rexnet_130", pretrained=True)
    assert not list(tmp_path.glob("*.part"))

    def cut(url, dst, progress=True):  # half a file, then the connection drops
        open(dst, "wb").write(b"half")
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(torch.hub, "download_url_to_file", cut)
    with pytest.raises(CheckpointError, match="could not download the weights of rexnet_130"):
        create_model("rexnet_130", pretrained=True)
    assert [p.name for p in tmp_path.iterdir()] == ["rexnet_100.safetensors"]  # nothing half-written left
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda url, dst, progress=True: save_weights(create_model("rexnet_130"), dst))
    got = resolve_pretrained("rexnet_130", {"url": "https://example.org/rexnet_130.safetensors"})
    assert got == tmp_path / "rexnet_130.safetensors" and got.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rexnet_100.safetensors", "rexnet_130.safetensors"]
    with pytest.raises(CheckpointError, match="no published weights for rexnet_lite_100"):
        resolve_pretrained("rexnet_lite_100", None)
