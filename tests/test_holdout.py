"""Selection without the test set: a held-out split of the training images picks the best
epoch, and the test split is read once, for the final score, after training has ended."""
from __future__ import annotations

import collections
import contextlib

import pytest

import rexnet.train.data as data_mod
import rexnet.train.loop as loop_mod
import rexnet.train.task as task_mod
from rexnet.experiments import ExperimentSettings, run_experiment
from rexnet.experiments.paired import collect
from rexnet.search.experiments import catalogue
from rexnet.train.data import DataError, build_dataset, holdout_split
from train_helpers import CIFAR_ZIP, needs_cifar


class _Counted:
    """A dataset that counts its reads, by split and by whether training was running then."""

    def __init__(self, ds, split: str, reads: collections.Counter, phase: list[str]):
        self._ds, self._split, self._reads, self._phase = ds, split, reads, phase

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i):
        self._reads[(self._split, self._phase[0])] += 1
        return self._ds[i]

    def __getattr__(self, name):
        return getattr(self._ds, name)


@needs_cifar
def test_holdout_is_balanced_fixed_by_its_seed_and_disjoint_from_training():
    ds = build_dataset(str(CIFAR_ZIP), "train")
    rest, held = holdout_split(ds, 5000, seed=0)
    assert (len(rest), len(held)) == (45000, 5000) and not set(rest.indices) & set(held.indices)
    assert set(collections.Counter(held.targets).values()) == {500}
    assert holdout_split(ds, 5000, seed=0)[1].indices == held.indices != holdout_split(ds, 5000, seed=1)[1].indices
    with pytest.raises(DataError, match="--holdout 50000"):
        holdout_split(ds, 50000)


@needs_cifar
def test_no_test_image_is_read_before_the_final_score(tmp_path, monkeypatch):
    """Two tiny arms x two seeds trained with --holdout: every validation read is a training
    image; the test split is read only after each run's training has returned."""
    reads: collections.Counter = collections.Counter()
    phase = ["outside"]

    def counted_build(data, split, *args, **kwargs):
        return _Counted(build_dataset(data, split, *args, **kwargs), split, reads, phase)

    real_train = loop_mod.train

    def marked_train(*args, **kwargs):
        phase[0] = "training"
        try:
            return real_train(*args, **kwargs)
        finally:
            phase[0] = "outside"

    monkeypatch.setattr(task_mod, "build_dataset", counted_build)
    monkeypatch.setattr(data_mod, "build_dataset", counted_build)   # the trial's final score opens it here
    monkeypatch.setattr(loop_mod, "train", marked_train)
    settings = ExperimentSettings(data=str(CIFAR_ZIP), seeds=2, epochs=2, train_subset=100, holdout=200,
                                  val_subset=100, test_images=100, batch_size=50, rank_images=20, workers=1,
                                  in_process=True, progress=False)
    with contextlib.chdir(tmp_path):
        r = run_experiment(catalogue()["linear_vs_stagewise"], tmp_path / "exp", settings)
    assert reads[("val", "training")] == 0                       # the test split, while any run trained
    assert reads[("train", "training")] > 0                      # training and held-out images
    assert reads[("val", "outside")] == 4 * 100                  # once per run, for the final score (the rank
    trials, _ = collect(tmp_path / "exp")                        # of the features reads held-out images)
    for t in (x["result"] for x in trials):
        assert t["rank_images_from"] == "held-out training images" and t["rank_images"] == 20
        cum = t["cumulative_singular_values"]
        assert len(cum) == t["feature_channels"] and cum[-1] == pytest.approx(1.0, abs=1e-4)
        assert all(a <= b + 1e-9 for a, b in zip(cum, cum[1:])) and 1 <= t["rank_0.01"] <= t["feature_channels"]
    runs = r["runs"]
    assert {x["status"] for x in runs} == {"done"} and all(x["test_images"] == 100 for x in runs)
    assert "200 training images held out" in r["primary_metric"]
