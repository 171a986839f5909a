"""timm's model contract, held for every zoo model and against timm's own rexnet_100.

What detection necks, timm's data pipeline and deployment rely on: gradients reach
every parameter; TorchScript, torch.fx (torchvision's feature extractor) and
torch.export all take the model; ``forward_intermediates`` / ``prune_intermediate_layers``
/ ``features_only`` / ``pretrained_cfg`` behave as timm's do.
"""
from __future__ import annotations

import re
import warnings

import pytest
import timm
import torch
from torchvision.models.feature_extraction import create_feature_extractor

import rexnet
from rexnet.models.build import Net

SIZE = 64  # small inputs keep 20 models x 5 checks fast; every stage still has a spatial map


def _x(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("name", rexnet.list_models())
def test_every_zoo_model_keeps_the_contract(name):
    torch.manual_seed(0)
    model = rexnet.create_model(name, num_classes=10)
    x = _x()

    # backward reaches every parameter (train mode: BN, dropout and the partial shortcut in place)
    model.train()
    model(x).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"

    model = _randomise_bn(model).eval()
    with torch.no_grad():
        ref = model(x)
        # TorchScript gives the eager output
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), ref, rtol=1e-5, atol=1e-5)

        # torch.fx: torchvision's feature extractor on the feature_info modules equals forward_intermediates
        nodes = {f["module"]: str(i) for i, f in enumerate(model.feature_info)}
        fx_maps = create_feature_extractor(model, return_nodes=nodes)(x)
        maps = model.forward_intermediates(x, indices=len(model.feature_info), intermediates_only=True)
        assert len(maps) == len(model.feature_info) == len(fx_maps)
        for i, (m, info) in enumerate(zip(maps, model.feature_info)):
            torch.testing.assert_close(fx_maps[str(i)], m, rtol=0, atol=0)
            assert m.shape[1] == info["num_chs"]
            assert m.shape[-1] == -(-SIZE // info["reduction"])

        # torch.export traces the model and gives the eager output
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), ref, rtol=1e-5, atol=1e-5)

    # features_only with out_indices gives the listed maps with feature_info's channels
    feats = rexnet.create_model(name, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    wanted = [model.feature_info[i] for i in (1, 2, 3, 4)]
    assert feats.feature_info.channels() == [f["num_chs"] for f in wanted]
    assert feats.feature_info.reduction() == [f["reduction"] for f in wanted]
    with torch.no_grad():
        outs = feats(x)
    assert [o.shape[1] for o in outs] == feats.feature_info.channels()

    # timm's data config resolves from the model's pretrained_cfg
    cfg = timm.data.resolve_model_data_config(model)
    assert cfg["input_size"] == (3, model.spec.input_size, model.spec.input_size)
    assert cfg["interpolation"] == "bicubic" and len(cfg["mean"]) == len(cfg["std"]) == 3


def _pair():
    """timm's rexnet_100 and ours with the same weights and random BN statistics."""
    theirs = _randomise_bn(timm.create_model("rexnet_100", pretrained=False)).eval()
    ours = rexnet.create_model("rexnet_100", weights=theirs.state_dict()).eval()
    return ours, theirs


def test_forward_intermediates_matches_timms_rexnet():
    ours, theirs = _pair()
    x = _x(seed=1)
    assert ours.feature_info == theirs.feature_info
    assert (ours.num_features, ours.head_hidden_size) == (theirs.num_features, theirs.head_hidden_size)
    with torch.no_grad():
        for kw in (dict(), dict(indices=2), dict(indices=[0, -1]), dict(indices=(1, 3), stop_early=True),
                   dict(indices=3, intermediates_only=True), dict(indices=[2], stop_early=True, norm=True)):
            a, b = ours.forward_intermediates(x, **kw), theirs.forward_intermediates(x, **kw)
            if not kw.get("intermediates_only"):
                torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
                a, b = a[1], b[1]
            assert len(a) == len(b), kw
            for u, v in zip(a, b):
                torch.testing.assert_close(u, v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature levels"):
        ours.forward_intermediates(x, indices=[7])
    with pytest.raises(ValueError, match="output_fmt"):
        ours.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("indices", [1, 3, (0, 2)])
def test_prune_intermediate_layers_matches_timms_rexnet(indices):
    ours, theirs = _pair()
    assert ours.prune_intermediate_layers(indices) == theirs.prune_intermediate_layers(indices)
    assert len(ours.features) == len(theirs.features)
    assert (ours.num_features, ours.head_hidden_size) == (theirs.num_features, theirs.head_hidden_size)
    x = _x(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)  # both: the last kept feature map
        a = ours.forward_intermediates(x, indices=indices, intermediates_only=True)
        b = theirs.forward_intermediates(x, indices=indices, intermediates_only=True)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_features_only_matches_timms_rexnet():
    theirs = _randomise_bn(timm.create_model("rexnet_100", features_only=True, out_indices=(1, 2, 3, 4))).eval()
    ours = rexnet.create_model("rexnet_100", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    assert ours.feature_info.module_name() == theirs.feature_info.module_name()
    # timm's FeatureListNet names blocks features_N; ours wraps the Net itself (features.N)
    ours.load_state_dict({"model." + re.sub(r"^features_(\d+)", r"features.\1", k): v
                          for k, v in theirs.state_dict().items()})
    x = _x(seed=3)
    with torch.no_grad():
        for u, v in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_pretrained_cfg_resolves_like_timms_rexnet():
    ours, theirs = _pair()
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    a, b = timm.data.resolve_model_data_config(ours), timm.data.resolve_model_data_config(theirs)
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    for k in ("first_conv", "classifier", "num_classes", "pool_size"):
        assert ours.pretrained_cfg[k] == theirs.pretrained_cfg[k], k
    small = rexnet.create_model("rexnet_100", input_size=32)
    assert timm.data.resolve_model_data_config(small)["input_size"] == (3, 32, 32)
    small.reset_classifier(10)
    assert small.pretrained_cfg["num_classes"] == 10


def test_lite_head_hidden_size_is_the_classifier_input():
    model = rexnet.create_model("rexnet_lite_100")
    assert (model.num_features, model.head_hidden_size) == (1280, 1024)
    assert model.get_classifier().in_features == model.head_hidden_size
    assert model.spec.head.head_hidden_size == 1024
    with torch.no_grad():
        assert model.forward_head(model.forward_features(_x()), pre_logits=True).shape == (2, 1024)


def test_create_model_takes_all_four_ways_to_name_a_model(tmp_path):
    spec = rexnet.model_spec("rexnet_lite_100").with_head(num_classes=3)
    src = _randomise_bn(rexnet.create_model(spec)).eval()
    spec.save(tmp_path / "s.yaml")
    rexnet.save_weights(src, tmp_path / "w.safetensors")
    x = _x()
    with torch.no_grad():
        ref = src(x)
        for model in (rexnet.create_model(tmp_path / "w.safetensors"),          # our checkpoint: spec + weights
                      rexnet.create_model(str(tmp_path / "s.yaml"), weights=tmp_path / "w.safetensors"),
                      rexnet.create_model(spec, weights=tmp_path / "w.safetensors"),
                      rexnet.create_model("rexnet_lite_100", num_classes=3, weights=tmp_path / "w.safetensors")):
            assert isinstance(model, Net)
            torch.testing.assert_close(model.eval()(x), ref, rtol=0, atol=0)
    torch.save({"model": src.state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="carries no network description.*--model"):
        rexnet.create_model(tmp_path / "bare.pth")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        rexnet.create_model(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="stride_plan"):
        rexnet.create_model("rexnet_100", stride_plan="tiny")
