import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rexnet.budget import BudgetError
from rexnet.complexity import complexity
from rexnet.search.run import SearchSettings, run_search
from rexnet.search.space import PRESETS, SearchSpace, get_preset, stage_repeats
from rexnet.trials import Store, StoreError, status
from train_helpers import CIFAR_ZIP, needs_cifar

SMOKE = PRESETS["smoke"].space


def test_stage_plan_for_every_preset_depth():
    for d in (6, 12, 18, 30):
        reps = stage_repeats(d)
        assert sum(reps) == d and reps[0] == 1 and min(reps) >= 1
    assert stage_repeats(18) == [1, 2, 2, 4, 3, 6]
    assert SMOKE.strides().count(2) == 3          # 32 -> 16 -> 8 -> 4
    with pytest.raises(ValueError, match="depth"):
        stage_repeats(4)


@pytest.mark.parametrize("name", ["smoke", "d18_30m_cifar10", "d30_200m_cifar100"])
def test_sampler_meets_every_constraint_and_is_deterministic(name):
    space = get_preset(name).space.replace(params_max=get_preset(name).space.macs_max / 60)
    cands = space.samples(12, seed=3)
    assert [c.hash for c in cands] == [c.hash for c in space.samples(12, seed=3)]
    assert [c.hash for c in space.samples(5, seed=3)] == [c.hash for c in cands[:5]]   # a longer run extends
    assert len({c.hash for c in cands}) == 12                                           # deduplicated
    assert [c.hash for c in space.samples(12, seed=4)] != [c.hash for c in cands]
    for c in cands:
        w = c.widths
        assert all(b >= a for a, b in zip(w, w[1:])), w                                # c_1 <= ... <= c_d
        real = complexity(c.spec)                                                      # analytic = recorded
        assert (real.macs, real.params) == (c.macs, c.params)
        assert space.lower_macs <= c.macs <= space.macs_max
        assert c.params <= space.params_max
        assert c.spec.input_size == 32 and c.spec.stem.out_chs == 16
        assert {b.mid_chs // b.in_chs for b in c.spec.blocks} == {6}


def test_references_are_the_two_schedules_at_the_same_budget():
    lin, stage = SMOKE.references()
    assert (lin.kind, stage.kind) == ("linear", "stagewise")
    diffs = [b - a for a, b in zip(lin.widths, lin.widths[1:])]
    assert max(diffs) - min(diffs) <= 1                                             # a straight line (rounded)
    assert len(set(stage.widths)) <= 6                                              # constant inside stages
    assert abs(lin.macs - stage.macs) / lin.macs < 0.06
    for c in (lin, stage):
        assert not SMOKE.violations(c.macs, c.params)


def test_impossible_budgets_say_why():
    with pytest.raises(ValueError, match="exceeds macs_max"):
        SearchSpace("bad", macs_min=2e6, macs_max=1e6)
    tiny = SearchSpace("tiny", depth=12, macs_max=2e6, pen_chs=64)                   # below the smallest net
    with pytest.raises(BudgetError, match="no candidate met the budget"):
        tiny.sample(__import__("random").Random(0), max_tries=20)
    with pytest.raises(ValueError, match="unknown search preset"):
        get_preset("nope")


def _rows(n):
    return [dict(key=f"t{i}", spec_hash=f"h{i}", repeat=0, seed=0, kind="sample", spec="{}", widths=[i],
                 macs=1, params=1) for i in range(n)]


def _claimer(path, out_q):
    store = Store(path)
    me = f"{os.uname().nodename}:{os.getpid()}"
    got = []
    while (t := store.claim(me)) is not None:
        got.append(t["key"])
        store.finish(t["key"], me, {"by": me})
    out_q.put(got)


def test_two_concurrent_workers_never_run_the_same_trial(tmp_path):
    path = tmp_path / "search.db"
    Store(path).add(_rows(60))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(path, q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(got[0] + got[1]) == sorted(f"t{i}" for i in range(60))            # each exactly once
    assert not set(got[0]) & set(got[1])
    store = Store(path)
    assert {t["attempts"] for t in store.trials()} == {1}
    assert store.counts()["done"] == 60


def test_store_reclaims_dead_workers_and_never_overwrites_results(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.add(_rows(3)) == 3 and store.add(_rows(3)) == 0                      # idempotent
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t0 = store.claim(f"{os.uname().nodename}:{dead.pid}")                            # its worker is gone
    assert t0["key"] == "t0"
    me = f"{os.uname().nodename}:{os.getpid()}"
    assert store.claim(me)["key"] == "t1"
    assert store.claim(me)["key"] == "t2"
    again = store.claim(me)                                                         # t0's worker died
    assert again["key"] == "t0" and again["attempts"] == 2
    assert store.claim(me) is None                                                  # all in flight, alive
    store.finish("t0", me, {"acc": 1})
    assert not store.finish("t0", me, {"acc": 2})
    assert store.trials("done")[0]["result"] == {"acc": 1}
    store.init_protocol({"epochs": 2})
    store.init_protocol({"epochs": 2})
    with pytest.raises(StoreError, match="epochs"):
        store.init_protocol({"epochs": 3})
    # work added without changing a finished trial is recorded: more repeats, arms added
    fresh = Store(tmp_path / "ext.db")
    fresh.init_protocol({"epochs": 2, "repeats": 1, "arms": {"a": "h1"}})
    fresh.init_protocol({"epochs": 2, "repeats": 3, "arms": {"a": "h1", "b": "h2"}})
    assert fresh.get_meta("protocol") == {"epochs": 2, "repeats": 3, "arms": {"a": "h1", "b": "h2"}}
    for bad, what in (({"epochs": 2, "repeats": 2, "arms": {"a": "h1", "b": "h2"}}, "repeats"),       # fewer
                      ({"epochs": 2, "repeats": 3, "arms": {"a": "h9", "b": "h2"}}, "arms"),          # changed
                      ({"epochs": 2, "repeats": 3, "arms": {"b": "h2"}}, "arms"),                     # removed
                      ({"epochs": 3, "repeats": 4, "arms": {"a": "h1", "b": "h2"}}, "epochs")):       # other
        with pytest.raises(StoreError, match=what):
            fresh.init_protocol(bad)
    fresh.close()


def _smoke(**kw):
    base = dict(preset="smoke", data=str(CIFAR_ZIP), trials=1, epochs=1, repeats=1, train_subset=120,
                val_subset=100, batch_size=40, rank_images=32, progress=False)
    base.update(kw)
    return SearchSettings(**base)


@needs_cifar
def test_killed_search_resumes_without_recomputing_and_analyzes(tmp_path):
    out = tmp_path / "search"
    cmd = [sys.executable, "-m", "rexnet.cli", "search", "run", "--preset", "smoke", "--data", str(CIFAR_ZIP),
           "--trials", "1", "--epochs", "2", "--repeats", "1", "--train-subset", "120", "--val-subset", "100",
           "--batch-size", "40", "--rank-images", "32", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:   # kill once one trial is done and the next has finished an epoch (its checkpoint exists)
        while time.time() < deadline and proc.poll() is None:
            if (out / "search.db").exists():
                with Store(out / "search.db") as s:
                    done, running = s.trials("done"), s.trials("running")
                if done and running and (out / "trials" / running[0]["key"] / "last.pt").exists():
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with Store(out / "search.db") as s:
        first = {t["key"]: t["finished"] for t in s.trials("done")}
        killed = s.trials("running")[0]["key"]
    assert subprocess.run(cmd, capture_output=True, timeout=240).returncode == 0
    with Store(out / "search.db") as s:
        trials = {t["key"]: t for t in s.trials()}
    assert all(t["status"] == "done" for t in trials.values()) and len(trials) == 3
    assert all(trials[k]["finished"] == f for k, f in first.items())                 # never recomputed
    assert trials[killed]["attempts"] == 2
    metrics = (out / "trials" / killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [0, 1]                        # resumed, not restarted
    for t in trials.values():
        r = t["result"]
        assert r["epochs_done"] == 2 and len(r["val_top1"]) == 2 and 0 <= r["best_val_top1"] <= 100
        assert r["train_images"] == 120 and r["nuclear_norm"] > 0 and r["effective_rank"] > 1
    st = status(out)
    assert st["done"] == 3 and st["best"]["mean_val_top1"] == max(t["result"]["best_val_top1"]
                                                                  for t in trials.values())
    res = subprocess.run([sys.executable, "-m", "rexnet.cli", "search", "analyze", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = (out / "report" / "report.md").read_text()
    assert "linear" in report and "stagewise" in report and (out / "report" / "trials.csv").exists()


@needs_cifar
def test_ray_path_with_two_local_workers(tmp_path):
    pytest.importorskip("ray")
    counts = run_search(tmp_path, _smoke(trials=1, ray=True, workers=2, cpus_per_trial=1))
    assert counts == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    with Store(tmp_path / "search.db") as s:
        trials = s.trials()
    assert all(t["worker"].endswith(":ray") and t["attempts"] == 1 for t in trials)
    # the two trials in flight overlapped in time: Ray ran them side by side
    spans = sorted((t["started"], t["finished"]) for t in trials)
    assert spans[1][0] < spans[0][1]


@needs_cifar
def test_trial_scores_its_best_weights_on_the_whole_test_set(tmp_path):
    """Whatever the validation subset, a trial ends with top-1 over all 10,000 CIFAR-10 test
    images and the raw and width-normalised nuclear norms of its final features."""
    from rexnet.alloc import loaded
    from rexnet.models.zoo import cifar_stride_plan, rexnet_spec
    from rexnet.trials import run_trial

    s = _smoke(train_subset=40, val_subset=20, batch_size=20, rank_images=16)
    spec = cifar_stride_plan(rexnet_spec("smoke_tiny", multiplier=0.1, depth_multiplier=0.2, num_classes=10))
    trial = dict(key="tiny-r0", seed=0, spec=spec.to_json())
    threads = torch.get_num_threads()
    try:
        r = run_trial(trial, str(tmp_path), s.plan(), threads=1)   # as a trial process runs it
    finally:
        torch.set_num_threads(threads)
    assert (r["train_images"], r["val_images"], r["test_images"]) == (40, 20, 10000)
    assert 0 <= r["test_top1"] <= 100 and r["test_top1"] * 100 == pytest.approx(round(r["test_top1"] * 100))
    assert r["nuclear_norm_raw"] == pytest.approx(r["nuclear_norm"] * r["feature_channels"], rel=1e-3)
    assert 1 <= r["nuclear_norm_raw"] <= r["feature_channels"]
    assert r["tcmalloc"] == (loaded() is not None) and r["threads"] == 1 and 0 < r["cpu_s"]
    assert (tmp_path / "trials" / "tiny-r0" / "best.safetensors").exists()
