import pytest
import torch

from rexnet import create_model, list_models, model_spec
from rexnet.models.build import Net

FAMILIES = ["rexnet_100", "rexnetr_130", "rexnet_lite_100", "rexnet_plain_100",
            "mobilenetv1_100", "mobilenetv2_100", "mobilenetv2_linear"]


def test_registry_lists_the_zoo():
    names = list_models()
    for n in ["rexnet_090", "rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200", "rexnet_220",
              "rexnet_300", "rexnetr_100", "rexnetr_300", "rexnet_lite_100", "rexnet_lite_200",
              "rexnet_plain_100", "mobilenetv1_100", "mobilenetv2_100", "mobilenetv2_linear"]:
        assert n in names
    assert list_models("rexnet_lite_*") == ["rexnet_lite_100", "rexnet_lite_130",
                                           "rexnet_lite_150", "rexnet_lite_200"]
    with pytest.raises(ValueError, match="unknown model 'rexnet_999'"):
        create_model("rexnet_999")


@pytest.mark.parametrize("name", FAMILIES)
def test_interface_and_feature_info(name):
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        final, maps = model.forward_intermediates(x)  # timm's semantics: (final features, maps)
    assert torch.equal(final, feats)
    assert logits.shape == (2, 7)
    assert pre.shape == (2, model.head.num_features) == (2, model.head_hidden_size)
    assert len(maps) == len(model.feature_info)
    for info, fmap in zip(model.feature_info, maps):
        assert fmap.shape[1] == info["num_chs"]
        assert fmap.shape[-1] == 96 // info["reduction"]
        # the named module really produces that map
        module = model.get_submodule(info["module"])
        assert module is not None
    reductions = [f["reduction"] for f in model.feature_info]
    assert reductions == sorted(reductions) and reductions[-1] == 32
    assert [m.shape for m in model.forward_intermediates(x, indices=[-1], intermediates_only=True)] == [maps[-1].shape]
    with pytest.raises(ValueError, match="out of range"):
        model.forward_intermediates(x, indices=[9])


def test_reset_classifier_and_features_only():
    model = create_model("rexnet_100")
    model.reset_classifier(5)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert model.spec.head.num_classes == 5
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1280)


def test_partial_shortcut_adds_input_to_first_channels():
    spec = model_spec("rexnet_100")
    block = Net(spec).features[1].eval()  # 16 -> 27, stride 2: no shortcut
    assert not block.use_shortcut
    block = Net(spec).features[2].eval()  # 27 -> 38, stride 1
    assert block.use_shortcut and block.in_channels == 27 and block.out_channels == 38
    x = torch.randn(1, 27, 8, 8)
    with torch.no_grad():
        residual = block.conv_pwl(block.act_dw(block.se(block.conv_dw(block.conv_exp(x))) if block.se
                                               else block.conv_dw(block.conv_exp(x))))
        out = block(x)
    assert torch.allclose(out[:, :27], residual[:, :27] + x, atol=1e-6)
    assert torch.allclose(out[:, 27:], residual[:, 27:], atol=1e-6)


def test_training_step_with_drop_path_and_dropout():
    model = create_model("rexnet_100", num_classes=3, drop_path_rate=0.2, drop_rate=0.3)
    assert model.head.drop.p == 0.3
    assert model.features[-2].drop_path is not None and model.features[-2].drop_path.drop_prob == pytest.approx(0.2)
    x = torch.randn(4, 3, 64, 64)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_create_from_netspec_and_overrides():
    spec = model_spec("rexnet_100", dropout=0.1)
    assert spec.head.dropout == 0.1
    model = create_model(spec, num_classes=4)
    assert model.spec.head.num_classes == 4
    with pytest.raises(ValueError, match="bad override"):
        model_spec("rexnet_100", width=3)
    with pytest.raises(ValueError, match="zoo names only"):
        create_model(spec, dropout=0.3)
