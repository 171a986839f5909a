"""Run a command and report the peak memory of its whole process tree (sum of RSS of
the command and every descendant, sampled every 0.5 s from /proc; Linux only).

    python benchmarks/peak_memory.py --json out.json -- rexnet search run ...
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from rexnet.io import write_json


def tree_rss(root: int) -> int:
    """Summed RSS (bytes) of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            rss[int(d.name)] = int((d / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakSampler(threading.Thread):
    """Samples ``tree_rss(root)`` every ``interval`` seconds in the background; ``stop()`` gives the peak."""

    def __init__(self, root: int | None = None, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.peak, self._halt = root or os.getpid(), interval, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write {command, wall_s, peak_tree_rss_mib, returncode} here")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command to run after --")
    t0 = time.time()
    proc = subprocess.Popen(cmd)
    sampler = PeakSampler(proc.pid, interval=0.5)
    sampler.start()
    proc.wait()
    peak = sampler.stop()
    res = dict(command=" ".join(cmd), wall_s=round(time.time() - t0, 1),
               peak_tree_rss_mib=round(peak / 2**20, 1), returncode=proc.returncode)
    print(json.dumps(res))
    if args.json:
        write_json(res, args.json)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
