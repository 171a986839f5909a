import json

import pytest

from rexnet import BlockSpec, HeadSpec, NetSpec, StemSpec, list_models, model_spec


@pytest.mark.parametrize("name", list_models())
def test_json_and_yaml_round_trip(name, tmp_path):
    spec = model_spec(name)
    assert NetSpec.from_json(spec.to_json()) == spec
    assert NetSpec.from_yaml(spec.to_yaml()) == spec
    for ext in ("json", "yaml"):
        path = spec.save(tmp_path / f"s.{ext}")
        back = NetSpec.load(path)
        assert back == spec and back.hash() == spec.hash()


def test_hash_is_stable_and_ignores_name():
    a = model_spec("rexnet_100")
    assert a.hash() == model_spec("rexnet_100").hash()
    assert a.replace(name="other").hash() == a.hash()
    assert a.hash() != model_spec("rexnet_130").hash()
    assert a.with_head(num_classes=10).hash() != a.hash()
    assert len(a.hash()) == 16 and int(a.hash(), 16) >= 0


def test_channel_chain_is_checked():
    stem = StemSpec(32)
    with pytest.raises(ValueError, match="block 1 takes 20 channels but the previous layer gives 16"):
        NetSpec("bad", stem, (BlockSpec(32, 16, 32), BlockSpec(20, 24, 120)), HeadSpec(24))
    with pytest.raises(ValueError, match="head takes"):
        NetSpec("bad", stem, (BlockSpec(32, 16, 32),), HeadSpec(24))


@pytest.mark.parametrize("kwargs, msg", [
    (dict(in_chs=0, out_chs=16, mid_chs=16), "in_chs must be a positive integer"),
    (dict(in_chs=16, out_chs=16, mid_chs=16, act_dw="mish"), "unknown activation 'mish'"),
    (dict(in_chs=16, out_chs=16, mid_chs=16, shortcut="half"), "unknown shortcut"),
    (dict(in_chs=16, out_chs=16, mid_chs=16, se_chs=-1), "se_chs"),
])
def test_bad_block_values(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BlockSpec(**kwargs)


def test_bad_files_and_keys(tmp_path):
    d = model_spec("rexnet_100").to_dict()
    d["blocks"][0]["width"] = 3
    with pytest.raises(ValueError, match=r"blocks\[0\]: unknown keys \['width'\]"):
        NetSpec.from_dict(d)
    with pytest.raises(ValueError, match="missing the section"):
        NetSpec.from_dict({"stem": {"out_chs": 8}})
    p = tmp_path / "broken.json"
    p.write_text(json.dumps({"name": "x", "stem": {"out_chs": 8}, "blocks": [], "head": {"in_chs": 8}}))
    with pytest.raises(ValueError, match="broken.json: not a valid NetSpec"):
        NetSpec.load(p)
    with pytest.raises(FileNotFoundError):
        NetSpec.load(tmp_path / "nope.json")


def test_shortcut_rules():
    assert BlockSpec(16, 27, 96).has_shortcut            # partial: in <= out
    assert not BlockSpec(16, 27, 96, shortcut="full").has_shortcut
    assert BlockSpec(24, 24, 144, shortcut="full").has_shortcut
    assert not BlockSpec(16, 27, 96, stride=2).has_shortcut
    assert not BlockSpec(32, 16, 96).has_shortcut         # partial needs in <= out
