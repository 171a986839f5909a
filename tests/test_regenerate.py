"""Every committed result regenerates from its store with the code as it is now: the four
paired experiments' result.json and the smoke search's report (figures within 0.01, text
identical), so a change to the engine or the statistics cannot silently move a number."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from rexnet.experiments import ExperimentSettings, analyze_experiment
from rexnet.search.experiments import catalogue
from rexnet.search.report import analyze

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = ROOT / "docs" / "experiments"
SEARCH_DIR = ROOT / "docs" / "search" / "smoke"
RUN_FIELDS = ("wall_s", "command", "counts")   # how the runs went, not what they measured


def differences(new, old, path: str = "") -> list[str]:
    """Where ``new`` differs from ``old``: numbers by more than 0.01, anything else at all."""
    if isinstance(new, dict) and isinstance(old, dict):
        out = [f"{path}/{k}: only in {'the new' if k in new else 'the committed'}" for k in set(new) ^ set(old)]
        return out + [d for k in set(new) & set(old) for d in differences(new[k], old[k], f"{path}/{k}")]
    if isinstance(new, list) and isinstance(old, list):
        if len(new) != len(old):
            return [f"{path}: {len(new)} items, committed {len(old)}"]
        return [d for i, (a, b) in enumerate(zip(new, old)) for d in differences(a, b, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(new, numbers) and isinstance(old, numbers) and not isinstance(new, bool):
        same = abs(new - old) <= 0.01 or (math.isnan(new) and math.isnan(old))
        return [] if same else [f"{path}: {new} (committed {old})"]
    return [] if new == old else [f"{path}: {new!r} (committed {old!r})"]


def test_differences_sees_what_moved():
    assert differences({"a": [1.0, "x"], "b": 2}, {"a": [1.004, "x"], "b": 2}) == []
    assert differences({"a": [1.02]}, {"a": [1.0]}) == ["/a[0]: 1.02 (committed 1.0)"]
    assert differences({"a": 1, "c": 0}, {"a": 1}) == ["/c: only in the new"]
    assert differences({"v": "holds"}, {"v": "inconclusive"}) == ["/v: 'holds' (committed 'inconclusive')"]


@pytest.mark.parametrize("name", sorted(p.name for p in EXPERIMENTS_DIR.iterdir()
                                         if (p / "result.json").is_file() and (p / "search.db").is_file()))
def test_committed_experiment_regenerates_from_its_store(name, tmp_path):
    committed = EXPERIMENTS_DIR / name
    shutil.copy(committed / "search.db", tmp_path / "search.db")   # the committed file is never opened
    old = json.loads((committed / "result.json").read_text())
    settings = ExperimentSettings(**old["settings"])
    new = analyze_experiment(catalogue()[old["experiment"]], tmp_path, settings)
    new = json.loads(json.dumps({k: v for k, v in new.items() if k != "runs"}, default=str))
    # a setting added since the result was made, left unset, is not a difference of the result
    new["settings"] = {k: v for k, v in new["settings"].items() if k in old["settings"] or v is not None}
    assert differences(new, {k: v for k, v in old.items() if k not in RUN_FIELDS}) == []
    assert new["verdict"] == old["verdict"] and new["ci95"] == pytest.approx(old["ci95"], abs=0.01)


def test_committed_search_report_regenerates_from_its_store(tmp_path, monkeypatch):
    rel = SEARCH_DIR.relative_to(ROOT)          # the report names the folder as it was given
    (tmp_path / rel).mkdir(parents=True)
    shutil.copy(SEARCH_DIR / "search.db", tmp_path / rel / "search.db")
    monkeypatch.chdir(tmp_path)
    analyze([str(rel)], "report")
    committed = SEARCH_DIR / "report"
    new = json.loads((tmp_path / "report" / "analysis.json").read_text())
    old = json.loads((committed / "analysis.json").read_text())
    assert differences(new, old) == []
    for table in ("report.md", "specs.csv", "trials.csv"):
        assert (tmp_path / "report" / table).read_text() == (committed / table).read_text(), table
