"""The committed rank-study report re-rendered from the committed data gives the committed figures.

``docs/rank_study/`` holds a finished study (``rank_study.csv.gz``, ``study.json``) and the
files rendered from it (``summary.csv``, ``summary.md``, ``report.md``), and ``centered/``
the same study with centred features, which ``report.md`` sets beside it.  Rendering them
again with today's code (figures left out) must give the same text where it is rounded
for reading, and the same numbers in ``summary.csv`` up to its last digit.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from rexnet.rank.report import measure_slug, write_report, write_summary
from rexnet.rank.results import CONFIG_NAME, load_results
from rexnet.rank.study import command_for

DOCS = Path(__file__).resolve().parents[1] / "docs" / "rank_study"
CENTERED = DOCS / "centered"
# summary.csv has six decimals, and the committed one was written with t quantiles read from a 3-digit
# table: its CIs differ from today's exact quantiles by a few units of the sixth decimal, nothing more.
LAST_DIGITS = 1e-5

pytestmark = pytest.mark.skipif(not (DOCS / "rank_study.csv.gz").is_file(), reason="docs/rank_study not present")


def _render(study: Path, out: Path, compare: tuple[Path, ...] = ()) -> None:
    """summary.csv, summary.md and report.md of the committed ``study``, written to ``out``."""
    out.mkdir()
    for name in (CONFIG_NAME, "benchmark.json"):   # report.md quotes both
        if (study / name).is_file():
            shutil.copy(study / name, out / name)
    res = load_results(study)
    write_summary(res, out)
    figures = {m: out / f"fig1_{measure_slug(m)}.png" for m in res.measures}   # linked, not drawn
    write_report(res, out, figures, command=command_for(res.cfg, study.relative_to(DOCS.parents[1])),
                 compare=compare)


def _same_summary_csv(committed: Path, regenerated: Path) -> None:
    with open(committed, newline="") as fa, open(regenerated, newline="") as fb:
        want, got = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert len(got) == len(want) > 0 and list(got[0]) == list(want[0])
    numeric = ("ratio", "networks", "mean_rank_ratio", "ci95", "min", "max")
    for w, g in zip(want, got):
        assert {k: g[k] for k in g if k not in numeric} == {k: w[k] for k in w if k not in numeric}
        for k in numeric:
            assert float(g[k]) == pytest.approx(float(w[k]), abs=LAST_DIGITS), (w, k, g[k])


@pytest.mark.parametrize("study, compare", [(DOCS, (CENTERED,)), (CENTERED, ())], ids=["default", "centered"])
def test_committed_report_regenerates_from_committed_data(tmp_path, study, compare):
    out = tmp_path / study.name
    _render(study, out, compare)
    _same_summary_csv(study / "summary.csv", out / "summary.csv")
    for name in ("summary.md", "report.md"):
        assert (out / name).read_text() == (study / name).read_text(), name
