"""Deploy form: BN folded into convolutions gives the training-form logits (fp32, 1e-4)."""
import os

import pytest
import torch
from torch import nn

from rexnet import create_model
from rexnet.bench.deploy import deploy_model, fold_bn
from rexnet.models.layers import ConvBNAct, SqueezeExcite

# one model per zoo family; rexnet / rexnetr / lite / mobilenetv2 have partial or full shortcuts, rexnet SE
FAMILIES = ["rexnet_100", "rexnetr_100", "rexnet_lite_100", "rexnet_plain_100", "mobilenetv1_100",
            "mobilenetv2_100", "mobilenetv2_linear"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running stats and affine terms, so that folding them is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
    return model.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_folded_model_equals_training_form(name):
    model = randomize_bn(create_model(name, num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fresh = create_model(name, num_classes=10).eval()
        fresh.load_state_dict({k: v for k, v in model.state_dict().items() if "running" not in k}, strict=False)
        assert (fresh(x) - ref).abs().max() > 1e-2  # the random running stats matter
        for channels_last in (False, True):
            out = deploy_model(model, channels_last=channels_last)(x)
            torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_fold_removes_every_bn_and_keeps_the_original():
    model = randomize_bn(create_model("rexnet_100", num_classes=10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    se = [m for m in folded.modules() if isinstance(m, SqueezeExcite)]
    assert se and all(isinstance(m.bn, nn.Identity) and m.fc1.bias is not None for m in se)
    assert all(list(dict(m.named_children())) == ["conv", "act"] for m in folded.modules() if isinstance(m, ConvBNAct))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the partial shortcut is still there: block inputs join the first in_chs output channels
    partial = [b for b in folded.features if getattr(b, "use_shortcut", False) and b.in_channels != b.out_channels]
    assert partial


def test_deploy_is_inference_only_and_casts_after_folding():
    model = randomize_bn(create_model("rexnet_lite_100", num_classes=10))
    net = deploy_model(model, dtype=torch.float64)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x).float(), model(x.float()), atol=1e-4, rtol=0)


def test_fold_rejects_modules_that_are_not_ours():
    with pytest.raises(ValueError, match="BN layer"):
        fold_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def test_deploy_compile_traces_the_partial_shortcut():
    # aot_eager runs dynamo and AOTAutograd (functionalisation of the in-place partial add) in seconds;
    # REXNET_TEST_INDUCTOR=1 also checks the real inductor backend (tens of seconds on a CPU)
    model = randomize_bn(create_model("rexnet_100", num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    backends = ["aot_eager"] + (["inductor"] if os.environ.get("REXNET_TEST_INDUCTOR") else [])
    with torch.no_grad():
        ref = model(x)
        for backend in backends:
            net = deploy_model(model, channels_last=True, compile=dict(backend=backend))
            torch.testing.assert_close(net(x), ref, atol=1e-4, rtol=0)
