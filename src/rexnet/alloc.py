"""tcmalloc for the commands that train, visibly and switchably.

CPU training here allocates and frees many short-lived tensors per step; glibc's
malloc returns that memory to the kernel and takes it back again (system time),
tcmalloc keeps it in per-thread caches, which makes a CPU training loop faster
(``benchmarks/tcmalloc_speed.py`` measures ``rexnet train`` side by side; the README
gives the figures).

An allocator has to be in place before the interpreter's first ``malloc``, so it
cannot be switched on from inside a running process: the commands that train
(:data:`TRAINING_COMMANDS`) re-execute themselves once with ``LD_PRELOAD`` set
(:func:`reexec_if_wanted`, called from ``rexnet``'s ``main`` only), and code that
starts training processes of its own (the search's trials and Ray workers) gives
them ``LD_PRELOAD`` in their environment (:func:`preload_children`).  Child
processes inherit it, so torchrun's workers and data-loader workers do too.

``REXNET_TCMALLOC=0`` (or ``off``/``false``/``no``) turns it off; a path there
names the library to use.  Linux only: elsewhere nothing happens.  No torch import.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Mapping, MutableMapping, Sequence

__all__ = ["ENV", "MARKER", "TRAINING_COMMANDS", "Decision", "find_tcmalloc", "decide", "with_preload",
           "loaded", "trains", "reexec_if_wanted", "preload_children"]

ENV = "REXNET_TCMALLOC"             # "0"/"off"/"false"/"no": off; a path: that library; else: found one
MARKER = "REXNET_TCMALLOC_REEXEC"   # set in the re-executed process, so it never re-executes again
OFF_VALUES = ("0", "off", "false", "no")
# (command, subcommand) pairs that train; the subcommand is None for top-level commands
# Not `detect train`: with variable image sizes tcmalloc keeps growing a detector's training
# process (several times the memory glibc's malloc needs, still growing after an epoch).
TRAINING_COMMANDS = frozenset({("train", None), ("rank-verify", None), ("search", "run")})
# Debian/Ubuntu's libtcmalloc-minimal4 first (the one benchmarked), then the full gperftools one
_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so")


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether to preload tcmalloc, which library, and why (shown to the user)."""
    preload: bool
    library: str | None
    reason: str


def _search_dirs() -> list[Path]:
    import sysconfig

    arch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{arch}" if arch else "", "/usr/lib64", "/usr/lib", "/usr/local/lib",
            f"{sys.prefix}/lib"]
    return [Path(d) for d in dirs if d]


def find_tcmalloc(env: Mapping[str, str] | None = None) -> str | None:
    """The tcmalloc shared library to preload: ``$REXNET_TCMALLOC`` when that names a
    file, else the first of the usual names in the usual library folders; None on
    other systems than Linux or when none is installed."""
    env = os.environ if env is None else env
    value = env.get(ENV, "").strip()
    if os.sep in value:
        return value if Path(value).is_file() else None
    if not sys.platform.startswith("linux"):
        return None
    for d in _search_dirs():
        for name in _NAMES:
            if (d / name).is_file():
                return str(d / name)
    return None


def decide(env: Mapping[str, str], library: str | None, platform: str = sys.platform) -> Decision:
    """Whether a process with environment ``env`` should preload ``library`` (pure).

    Off on other systems than Linux, when ``$REXNET_TCMALLOC`` turns it off, when
    ``LD_PRELOAD`` already names an allocator (the user's choice stands), when an
    earlier re-exec already happened (its marker is set), or when no library was found.
    """
    if not platform.startswith("linux"):
        return Decision(False, None, f"LD_PRELOAD is Linux only (this is {platform})")
    if env.get(ENV, "").strip().lower() in OFF_VALUES:
        return Decision(False, None, f"turned off by {ENV}={env[ENV]}")
    preloaded = env.get("LD_PRELOAD", "")
    if "malloc" in preloaded:
        return Decision(False, None, f"LD_PRELOAD already names an allocator ({preloaded})")
    if env.get(MARKER):
        return Decision(False, None, f"already re-executed once ({MARKER} is set) and LD_PRELOAD lost it")
    if library is None:
        why = (f"{ENV}={env[ENV]} is not a file" if os.sep in env.get(ENV, "")
               else "libtcmalloc not found (Debian/Ubuntu: apt-get install libtcmalloc-minimal4)")
        return Decision(False, None, why)
    return Decision(True, library, f"using tcmalloc ({library}); {ENV}=0 turns it off")


def with_preload(env: Mapping[str, str], library: str) -> dict[str, str]:
    """A copy of ``env`` with ``library`` first in ``LD_PRELOAD`` and the re-exec marker set."""
    new = dict(env)
    new["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    new[MARKER] = "1"
    return new


def loaded() -> str | None:
    """The tcmalloc library mapped into this process, or None (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                if "tcmalloc" in line:
                    return line.split()[-1]
    except OSError:
        pass
    return None


def _say(msg: str) -> None:
    """One line on stderr, from the first process of a torchrun job only."""
    if os.environ.get("RANK", "0") == "0":   # torchrun: one line, not one per process
        print(f"rexnet: {msg}", file=sys.stderr, flush=True)


def trains(args: Sequence[str]) -> bool:
    """Whether ``rexnet ARGS`` is a command that trains (read from its first two words,
    before the parser is built: the re-exec then costs one interpreter start, not two)."""
    words = list(args[:2])
    command = words[0] if words else None
    sub = words[1] if len(words) > 1 and not words[1].startswith("-") else None
    return (command, None) in TRAINING_COMMANDS or (command, sub) in TRAINING_COMMANDS


def reexec_if_wanted(args: Sequence[str], argv: Sequence[str] | None = None) -> None:
    """Re-execute this interpreter with tcmalloc preloaded when ``rexnet ARGS`` trains
    and :func:`decide` says so; returns (doing nothing) otherwise.  ``argv`` defaults to
    the interpreter's own command line (``sys.orig_argv``), so ``python -m rexnet.cli``
    and the ``rexnet`` script both come back as they were started."""
    if not trains(args):
        return
    d = decide(os.environ, find_tcmalloc())
    if not d.preload:
        return
    if argv is None:   # the same interpreter path: a bare "python" in orig_argv could be another one
        orig = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
        argv = [sys.executable, *orig[1:]]
    _say(d.reason)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(argv), with_preload(os.environ, d.library))


@contextlib.contextmanager
def preload_children(environ: MutableMapping[str, str] | None = None,
                     say: Callable[[str], None] | None = None) -> Iterator[Decision]:
    """While inside, processes this one starts (spawned trials, a local Ray instance's
    workers) preload tcmalloc when :func:`decide` says so; the environment is restored
    afterwards.  This process itself keeps its allocator.  Yields the decision."""
    environ = os.environ if environ is None else environ
    d = decide(environ, find_tcmalloc(environ))
    if not d.preload:
        yield d
        return
    old = {k: environ.get(k) for k in ("LD_PRELOAD", MARKER)}
    environ.update(with_preload(environ, d.library))
    if say is not None:
        say(f"rexnet: trials {d.reason}")
    try:
        yield d
    finally:
        for k, v in old.items():
            if v is None:
                environ.pop(k, None)
            else:
                environ[k] = v
