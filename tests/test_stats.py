"""The one statistics module against scipy and textbook values, the one cores policy, and the
structural rules of the source tree (one room per job, no function over 80 lines)."""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sp

from rexnet import stats
from rexnet.cores import available_cores

SRC = Path(__file__).resolve().parents[1] / "src" / "rexnet"
MAX_FUNCTION_LINES = 80


def test_t_quantiles_are_scipys_and_match_the_tables():
    assert [stats.t975(df) for df in (1, 2, 5, 30)] == pytest.approx([12.7062, 4.3027, 2.5706, 2.0423], abs=1e-4)
    assert stats.t975(1.471) == pytest.approx(sp.t.ppf(0.975, 1.471))           # Welch's fractional df
    assert stats.t975(math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert stats.t_quantile(10, 0.95) == pytest.approx(1.8125, abs=1e-4)
    with pytest.raises(ValueError, match="df > 0"):
        stats.t975(0)


def test_mean_ci_is_the_t_interval_of_the_finite_values():
    x = np.array([1.0, 2.0, 4.0, math.nan])
    mean, half, n = stats.mean_ci(x)
    assert (mean, n) == (pytest.approx(7 / 3), 3)
    assert half == pytest.approx(sp.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    assert math.isnan(stats.mean_ci([5.0])[1]) and stats.mean_ci([])[2] == 0


def test_correlations_agree_with_scipy_and_refuse_the_undefined():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    y[:5] = y[5]                                                     # ties
    assert stats.pearson(x, y) == pytest.approx(sp.pearsonr(x, y).statistic, abs=1e-12)
    assert stats.spearman(x, y) == pytest.approx(sp.spearmanr(x, y).statistic, abs=1e-12)
    assert stats.ranks([3.0, 1.0, 3.0]).tolist() == [1.5, 0.0, 1.5]
    assert stats.pearson([1, 2], [2, 1]) is None and stats.pearson([1, 1, 1], [1, 2, 3]) is None


def test_paired_stats_is_scipys_paired_t_interval():
    a, b = {0: 61.0, 1: 63.5, 2: 60.0, 3: 62.0}, {0: 60.0, 1: 62.0, 2: 60.5, 3: 60.0}
    st = stats.paired_stats(a, b)
    ci = sp.ttest_rel(list(a.values()), list(b.values())).confidence_interval(0.95)
    assert st["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-4) and st["verdict"] == "inconclusive"
    assert stats.interval_verdict([0.1, 2.0]) == "holds" and stats.interval_verdict([-2.0, -0.1]) == "contradicted"


def test_available_cores_honours_affinity_and_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    every = available_cores()
    assert every >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(every + 7))           # a cap above the mask changes nothing
    assert available_cores() == every
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert available_cores() == every


# -- the tree's rules -------------------------------------------------------------------------
def _sources() -> list[tuple[Path, str, ast.Module]]:
    return [(p, p.read_text(), ast.parse(p.read_text())) for p in sorted(SRC.rglob("*.py"))]


def test_no_function_is_longer_than_80_lines():
    long = [f"{p.relative_to(SRC)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, _, tree in _sources()
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_one_room_per_job():
    defined = {}
    for p, text, tree in _sources():
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
                defined.setdefault(n.name, []).append(str(p.relative_to(SRC)))
        assert not re.search(r"\bissue \d+", text, re.I), f"{p}: an issue number (they belong in docs/ and commits)"
        assert "../shared" not in text, f"{p}: a path relative to the working directory"
    assert defined["check_writable"] == ["io.py"] and defined["refuse_existing"] == ["io.py"]
    assert defined["t_quantile"] == ["stats.py"] and "_t975" not in defined and "_betai" not in defined
    assert defined["available_cores"] == ["cores.py"] and "_cores" not in defined
    assert not (SRC / "design.py").exists() and (SRC / "design" / "__init__.py").is_file()
    assert (SRC / "trials" / "__init__.py").is_file()


def test_experiments_never_import_the_search():
    for p in sorted((SRC / "experiments").rglob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom):
                target = "." * n.level + (n.module or "")
                assert not re.match(r"(rexnet\.|\.\.)search\b", target), f"{p.name} imports {target}"


def test_one_run_folder_rule_names_what_changed_and_the_remedies(tmp_path):
    from rexnet.io import changed_settings, refuse_other_settings

    refuse_other_settings(tmp_path, "run", {})                         # nothing changed: the work continues
    changes = changed_settings({"epochs": 1, "data": "a", "gone": 0}, {"epochs": 2, "data": "a", "new": [1]})
    assert changes == {"epochs": (1, 2), "gone": (0, None), "new": (None, [1])}
    with pytest.raises(ValueError) as e:
        refuse_other_settings(tmp_path, "table2 experiment", changes)
    assert str(e.value) == (f"{tmp_path} holds a table2 experiment made with other settings (epochs: 1 -> 2, "
                            f"gone: 0 -> null, new: null -> [1]): rerun with its settings to continue it, pass "
                            f"--overwrite to replace it, or choose another --out")
    with pytest.raises(KeyError, match=r"holds a search .*\(epochs: 1 -> 2\): resume, or choose another --out"):
        refuse_other_settings(tmp_path, "search", {"epochs": (1, 2)}, to_continue="resume", replace_flag=None,
                              error=KeyError)
