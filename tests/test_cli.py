import json
import subprocess
import sys

import pytest

from rexnet.cli import main
from rexnet.models.zoo import model_spec


def test_models_table_and_json(tmp_path, capsys):
    assert main(["models", "rexnet_lite_*", "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "rexnet_lite_100" in out and "76.2" in out and "rexnet_100 " not in out
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [r["model"] for r in rows] == ["rexnet_lite_100", "rexnet_lite_130", "rexnet_lite_150", "rexnet_lite_200"]
    assert rows[0]["params_m"] == 4.74 and rows[0]["gmacs"] == 0.4068


def test_models_profile_measures_latency(capsys):
    assert main(["models", "mobilenetv1_100", "--profile", "--runs", "2", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "cpu_ms_b1" in out and "median of 2 runs" in out


def test_info_table_plot_and_spec_file(tmp_path, capsys):
    png = tmp_path / "w.png"
    spec_file = tmp_path / "spec.yaml"
    assert main(["info", "rexnet_100", "--plot", str(png), "--compare", "mobilenetv2_100",
                 "rexnet_lite_100", "--save-spec", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "4,796,873 params" in out and "block15" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert main(["info", str(spec_file)]) == 0
    assert model_spec("rexnet_100").hash() in capsys.readouterr().out


def test_user_errors_are_one_clear_line(capsys):
    assert main(["info", "rexnet_999"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'rexnet_999'" in err and "Traceback" not in err
    assert main(["models", "nothing*"]) == 2
    assert main(["info", "missing.yaml"]) == 2


def test_console_script_demo(tmp_path):
    exe = [sys.executable, "-m", "rexnet.cli"]
    r = subprocess.run(exe + ["demo", "--out", str(tmp_path), "--no-profile", "--no-search"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "schedules.png").is_file()
    rows = json.loads((tmp_path / "models.json").read_text())
    assert {r["model"] for r in rows} >= {"rexnet_100", "mobilenetv2_100", "rexnet_lite_100"}


def test_demo_picks_the_best_real_dataset(tmp_path, monkeypatch):
    import rexnet.train.data as data
    from rexnet.train.data import best_real_dataset

    assert best_real_dataset("some/cifar.zip") == "some/cifar.zip"
    monkeypatch.setenv("REXNET_DATA", str(tmp_path))
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert best_real_dataset("auto") == "cifar10"                      # present
    (tmp_path / "cifar-10-batches-py").rmdir()

    def offline(*a, **k):
        raise data.DataError("could not download cifar10 (no network)")
    monkeypatch.setattr(data, "build_dataset", offline)
    debian = tmp_path / "debian-fashion-mnist"
    monkeypatch.setitem(data.LOCAL_SOURCES, "fashion-mnist", [debian])
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):    # nothing real: say how to get it
        best_real_dataset("auto")
    debian.mkdir()
    assert best_real_dataset("auto") == "fashion-mnist"                # offline fallback
