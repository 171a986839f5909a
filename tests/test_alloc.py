"""tcmalloc for the commands that train: the decision, the environment, and the re-exec."""
import os
import subprocess
import sys

import pytest

from rexnet.alloc import ENV, MARKER, decide, find_tcmalloc, preload_children, trains, with_preload

LIB = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
FOUND = find_tcmalloc({})
needs_tcmalloc = pytest.mark.skipif(FOUND is None or not sys.platform.startswith("linux"),
                                    reason="libtcmalloc not installed (apt-get install libtcmalloc-minimal4)")


def test_decision_preloads_a_found_library_by_default():
    d = decide({}, LIB, "linux")
    assert d.preload and d.library == LIB
    assert LIB in d.reason and f"{ENV}=0" in d.reason                       # says how to turn it off
    assert decide({ENV: "1"}, LIB, "linux").preload


@pytest.mark.parametrize("env, library, platform, why", [
    ({}, None, "linux", "apt-get install libtcmalloc-minimal4"),           # missing
    ({ENV: "0"}, LIB, "linux", "turned off"),                                # disabled
    ({ENV: "off"}, LIB, "linux", "turned off"),
    ({ENV: "OFF"}, LIB, "linux", "turned off"),
    ({"LD_PRELOAD": LIB}, LIB, "linux", "already names an allocator"),      # already preloaded
    ({"LD_PRELOAD": "/opt/libjemalloc.so.2"}, LIB, "linux", "already names an allocator"),  # user's choice
    ({MARKER: "1"}, LIB, "linux", "already re-executed"),                  # never loops
    ({}, LIB, "darwin", "Linux only"),
    ({}, LIB, "win32", "Linux only"),
])
def test_decision_leaves_the_allocator_alone(env, library, platform, why):
    d = decide(env, library, platform)
    assert not d.preload and d.library is None
    assert why in d.reason


def test_preload_environment_keeps_other_preloads_and_sets_the_marker():
    env = with_preload({"LD_PRELOAD": "/x/libfoo.so", "PATH": "/bin"}, LIB)
    assert env["LD_PRELOAD"] == f"{LIB}:/x/libfoo.so" and env[MARKER] == "1" and env["PATH"] == "/bin"
    assert with_preload({}, LIB)["LD_PRELOAD"] == LIB


def test_library_named_by_path(tmp_path):
    lib = tmp_path / "libtcmalloc_custom.so"
    lib.write_bytes(b"")
    assert find_tcmalloc({ENV: str(lib)}) == str(lib)
    assert find_tcmalloc({ENV: str(tmp_path / "missing.so")}) is None
    assert "is not a file" in decide({ENV: str(tmp_path / "missing.so")}, None, "linux").reason
    assert find_tcmalloc({ENV: "0"}) == FOUND                                # a switch, not a path


@needs_tcmalloc
def test_children_environment_is_set_inside_and_restored_after():
    env = {"LD_PRELOAD": "", "HOME": "/h"}
    with preload_children(env) as d:
        assert d.preload and env["LD_PRELOAD"] == FOUND and env[MARKER] == "1"
    assert env == {"LD_PRELOAD": "", "HOME": "/h"}
    off = {ENV: "0"}
    with preload_children(off) as d:
        assert not d.preload and "LD_PRELOAD" not in off


PROBE = ("import os, sys; from rexnet.alloc import loaded, reexec_if_wanted; "
         "reexec_if_wanted(sys.argv[1:]); print(os.environ.get('LD_PRELOAD'), loaded())")


def _clean_env(**env):
    full = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", MARKER, ENV)}
    full.update(env)
    return full


def _probe(*command, **env):
    res = subprocess.run([sys.executable, "-c", PROBE, *command], env=_clean_env(**env), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.split(), res.stderr


@needs_tcmalloc
def test_training_command_reexecs_once_with_tcmalloc_and_the_switch_turns_it_off():
    (preload, mapped), err = _probe("train", "--model", "m")
    assert preload == FOUND and "tcmalloc" in mapped                        # really in the process
    assert err.count("rexnet: using tcmalloc") == 1
    assert _probe("train", "--model", "m", **{ENV: "0"}) == (["None", "None"], "")
    assert _probe("search", "status") == (["None", "None"], "")             # not a training command


def test_training_commands_are_read_from_the_first_two_words():
    for args in (["train", "--model", "m"], ["search", "run", "--preset", "smoke"], ["rank-verify"]):
        assert trains(args), args
    for args in ([], ["--version"], ["search", "status", "out"], ["search", "--help"], ["detect", "eval"],
                 ["detect", "train", "--data", "d"],   # variable image sizes: tcmalloc bloated it (alloc.py)
                 ["models", "train"], ["eval", "--weights", "w"]):
        assert not trains(args), args


@needs_tcmalloc
def test_cli_hook_keeps_the_command_line(tmp_path):
    """``python -m rexnet.cli search run`` comes back as a module run with the same arguments."""
    cmd = [sys.executable, "-m", "rexnet.cli", "search", "run", "--preset", "no_such_preset",
           "--out", str(tmp_path / "s")]
    res = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr                                  # the re-executed run's own error
    assert res.stderr.count("rexnet: using tcmalloc") == 1 and "no_such_preset" in res.stderr


def _report_allocator(q):
    from rexnet.alloc import loaded

    q.put((os.environ.get("LD_PRELOAD"), loaded()))


@needs_tcmalloc
def test_spawned_trial_processes_start_with_tcmalloc_and_the_environment_is_restored(monkeypatch):
    """What the search's local runner does: trial processes started inside preload_children."""
    import multiprocessing as mp

    for k in ("LD_PRELOAD", MARKER, ENV):
        monkeypatch.delenv(k, raising=False)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with preload_children():
        proc = ctx.Process(target=_report_allocator, args=(q,))
        proc.start()
        preload, mapped = q.get(timeout=60)
        proc.join(timeout=60)
    assert preload == FOUND and mapped is not None and "tcmalloc" in mapped
    assert "LD_PRELOAD" not in os.environ and MARKER not in os.environ           # restored
