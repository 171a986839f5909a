import csv

import pytest
import torch

from rexnet import create_model
from rexnet.cli import main
from rexnet.rank.analyze import analyze_model, layer_features
from rexnet.rank.measures import numerical_rank, singular_values
from train_helpers import HYMENOPTERA, needs_hymenoptera


def test_a_layer_with_k_live_channels_has_rank_k():
    model = create_model("rexnet_lite_100").eval()
    k = 5
    with torch.no_grad():
        model.stem.conv.weight[k:] = 0  # channels k.. see nothing
        bn = model.stem.bn
        bn.running_mean.zero_(); bn.running_var.fill_(1.0); bn.weight.fill_(1.0); bn.bias.zero_()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = layer_features(model, images, max_columns=2048)
    assert feats["stem"].shape == (32, 2048)
    sigma = singular_values(feats["stem"])
    assert numerical_rank(sigma, 1e-6) == k
    assert set(feats) == {"stem", *(f"features.{i}" for i in range(len(model.features)))}


@needs_hymenoptera
def test_rank_analyze_on_real_images(tmp_path, capsys):
    out = tmp_path / "ra"
    args = ["rank-analyze", "--model", "rexnet_100", "--compare", "mobilenetv2_100", "--data", str(HYMENOPTERA),
            "--images", "16", "--input-size", "96", "--columns", "512", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "rexnet_100: 18 layers" in text and "mobilenetv2_100: 19 layers" in text
    rows = list(csv.DictReader(open(out / "rank_analysis.csv")))
    assert len(rows) == 18 + 19
    for r in rows:
        c, n = int(r["channels"]), int(r["columns"])
        assert 1.0 <= float(r["effective_rank"]) <= min(c, n) + 1e-6
        assert 1.0 <= float(r["nuclear_norm"]) <= min(c, n) + 1e-6
    assert (out / "rank_analysis.png").stat().st_size > 10_000
    first = (out / "rank_analysis.csv").read_text()
    assert main(args) == 0  # seeded: the same numbers again
    assert (out / "rank_analysis.csv").read_text() == first


def test_bad_image_tensor():
    with pytest.raises(ValueError, match="expected images of shape"):
        layer_features(create_model("rexnet_lite_100"), torch.zeros(3, 32, 32))


def test_table2_specs_change_one_factor_each():
    from rexnet.rank.verify import verification_spec

    base = verification_spec("baseline")
    assert base.meta["widths"] == [6, 28, 128] and base.blocks[0].mid_chs == 6 * 20
    assert base.blocks[0].act_exp == "relu6" and base.depth == 2
    exp6 = verification_spec("first_1x1_ratio_1_6")
    assert exp6.blocks[0].mid_chs == 6 * 6 and exp6.widths == base.widths
    wide = verification_spec("ib_ratio_0.8")
    assert wide.meta["widths"] == [82, 102, 128]
    silu = verification_spec("silu")
    assert [b.act_exp for b in silu.blocks] == ["silu", "silu"] and silu.widths == base.widths
    with pytest.raises(ValueError, match="unknown verification model"):
        verification_spec("wide")


@pytest.mark.skipif(not (HYMENOPTERA.parent / "cifar10-jpeg.zip").is_file(), reason="real CIFAR-10 not found")
def test_rank_verify_runs_end_to_end_on_cifar(tmp_path):
    from rexnet.rank.verify import run_verification

    data = str(HYMENOPTERA.parent / "cifar10-jpeg.zip")
    rows = run_verification(data, tmp_path, epochs=1, train_subset=100, val_subset=50, out_chs=32,
                            rank_images=64, progress=False, batch_size=50)
    assert [r["model"] for r in rows] == ["baseline", "first_1x1_ratio_1_6", "ib_ratio_0.8", "silu"]
    for r in rows:
        assert 1 <= r["effective_rank"] <= r["channels"] == 32 and 0 <= r["rank_1e2"] <= 32
        assert 0 <= r["val_top1"] <= 100
    assert (tmp_path / "table2.md").read_text().count("\n") == 6
    assert (tmp_path / "baseline" / "metrics.jsonl").is_file()
