"""The durable record of a body of trials (a search, an experiment): one SQLite file that
travels with the results.

A trial is one (spec, repeat).  Workers *claim* trials in a write transaction
(``BEGIN IMMEDIATE``), so two workers never run the same trial; finished trials are
never overwritten; a trial whose worker died (its process is gone on this host, or
its heartbeat is older than ``stale_after`` seconds) is claimed again, and its own
checkpoint lets it continue from its last finished epoch.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..io import changed_settings, refuse_other_settings

__all__ = ["Store", "StoreError", "STORE_NAME", "corrupt_message", "extends_protocol", "worker_id"]

STORE_NAME = "search.db"   # the file in a results folder (its name predates experiments, which use it too)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
  key TEXT PRIMARY KEY,
  idx INTEGER NOT NULL,
  spec_hash TEXT NOT NULL,
  repeat INTEGER NOT NULL,
  seed INTEGER NOT NULL,
  kind TEXT NOT NULL,
  spec TEXT NOT NULL,
  widths TEXT NOT NULL,
  macs INTEGER NOT NULL,
  params INTEGER NOT NULL,
  params_of_f TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  worker TEXT, heartbeat REAL, started REAL, finished REAL,
  result TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status, idx);
"""
STATUSES = ("pending", "running", "done", "failed")
JSON_COLUMNS = ("widths", "params_of_f", "result")


class StoreError(ValueError):
    """The store cannot be used as asked (another search's file, changed protocol)."""


def corrupt_message(path: Path, what: str) -> str:
    """The one line a damaged store file gets: what is wrong and the way back."""
    return (f"{path} is not a readable search store ({what}); `rexnet search recover {path.parent}` rebuilds it "
            f"from the trials' result.json files, keeping the bad file as {path.name}.bad-<time>")


def worker_id(tag: str = "") -> str:
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{tag}" if tag else "")


def _alive_here(worker: str | None) -> bool | None:
    """True/False for a worker process on this host; None when it is elsewhere."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(rest.split(":")[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def extends_protocol(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``new`` only adds work to a store made with ``old``, changing no finished trial's
    result: more ``repeats`` (repeat r always has seed ``seed + r``), or ``arms`` added with
    every old arm's spec unchanged (an experiment's arms, name -> spec hash)."""
    rest = lambda p: {k: v for k, v in p.items() if k not in ("arms", "repeats")}  # noqa: E731
    if rest(old) != rest(new) or (new.get("repeats") or 0) < (old.get("repeats") or 0):
        return False
    old_arms, new_arms = old.get("arms") or {}, new.get("arms") or {}
    return all(new_arms.get(k) == h for k, h in old_arms.items())


class Store:
    def __init__(self, path: str | os.PathLike, stale_after: float = 300.0):
        self.path = Path(path)
        self.stale_after = stale_after
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.is_file() and self.path.stat().st_size > 0
        if self.path.is_file() and not existed and any((self.path.parent / "trials").glob("*/result.json")):
            # sqlite would take an empty file for a new store and forget the finished trials
            raise StoreError(corrupt_message(self.path, "an empty file"))
        self.lock = threading.RLock()   # one connection shared by a runner's threads
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(corrupt_message(self.path, str(e))) from None
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if existed:   # a truncated or overwritten file fails here, not in the middle of a search
                check = self.db.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self.db.close()
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise StoreError(corrupt_message(self.path, " ".join(str(e).split()))) from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tx(self):
        return _Tx(self.db, self.lock)

    # -- setup --------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def init_protocol(self, protocol: dict[str, Any]) -> None:
        """Record the training protocol; refuse a rerun that would change it (results
        of different protocols must not be mixed in one search).  A protocol that only
        adds work (:func:`extends_protocol`) is recorded in its place."""
        protocol = json.loads(json.dumps(protocol, sort_keys=True))
        with self._tx():
            old = self.get_meta("protocol")
            if old is None or (old != protocol and extends_protocol(old, protocol)):
                self.set_meta("protocol", protocol)
                return
        refuse_other_settings(self.path.parent, "search", changed_settings(old, protocol),
                              to_continue="rerun with the original settings to resume it", replace_flag=None,
                              error=StoreError)

    def add(self, trials: Iterable[dict[str, Any]]) -> int:
        """Insert trials that are not there yet (by key); returns how many were new."""
        n = 0
        with self._tx():
            start = self.db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM trials").fetchone()[0]
            for t in trials:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO trials (key, idx, spec_hash, repeat, seed, kind, spec, widths, macs, "
                    "params, params_of_f) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (t["key"], start + n, t["spec_hash"], t["repeat"], t["seed"], t["kind"], t["spec"],
                     json.dumps(t["widths"]), t["macs"], t["params"], json.dumps(t.get("params_of_f", {}))))
                n += cur.rowcount
        return n

    # -- work ---------------------------------------------------------------------------
    def claim(self, worker: str) -> dict[str, Any] | None:
        """Atomically take the next pending trial, or one whose worker is gone."""
        now = time.time()
        with self._tx():
            row = self.db.execute("SELECT * FROM trials WHERE status='pending' ORDER BY idx LIMIT 1").fetchone()
            if row is None:
                for r in self.db.execute("SELECT * FROM trials WHERE status='running' ORDER BY idx"):
                    alive = _alive_here(r["worker"])
                    if alive is False or (alive is None and now - (r["heartbeat"] or 0) > self.stale_after):
                        row = r
                        break
            if row is None:
                return None
            self.db.execute("UPDATE trials SET status='running', worker=?, heartbeat=?, "
                            "started=COALESCE(started, ?), attempts=attempts+1 WHERE key=?",
                            (worker, now, now, row["key"]))
        return self._decode(self.db.execute("SELECT * FROM trials WHERE key=?", (row["key"],)).fetchone())

    def heartbeat(self, keys: Iterable[str], worker: str) -> None:
        keys = list(keys)
        if keys:
            with self._tx():
                self.db.executemany("UPDATE trials SET heartbeat=? WHERE key=? AND worker=? AND status='running'",
                                    [(time.time(), k, worker) for k in keys])

    def finish(self, key: str, worker: str, result: dict[str, Any]) -> bool:
        """Record a result; a trial that is already done keeps its first result."""
        with self._tx():
            cur = self.db.execute("UPDATE trials SET status='done', result=?, finished=?, worker=?, error=NULL "
                                  "WHERE key=? AND status!='done'", (json.dumps(result), time.time(), worker, key))
        return cur.rowcount == 1

    def fail(self, key: str, worker: str, error: str) -> None:
        with self._tx():
            self.db.execute("UPDATE trials SET status='failed', error=?, finished=?, worker=? "
                            "WHERE key=? AND status!='done'", (error, time.time(), worker, key))

    def release(self, key: str, worker: str) -> None:
        """Give a claimed trial back (an orderly stop)."""
        with self._tx():   # an orderly stop is not an attempt (the trial resumes where it stopped)
            self.db.execute("UPDATE trials SET status='pending', worker=NULL, attempts=MAX(attempts - 1, 0) "
                            "WHERE key=? AND worker=? AND status='running'", (key, worker))

    def restore(self, key: str, result: dict[str, Any] | None, error: str | None, finished: float) -> bool:
        """Set a trial's outcome from its result file (``rexnet search recover``): done with
        ``result``, else failed with ``error``.  False when the store has no such trial."""
        with self._tx():
            return self.db.execute(
                "UPDATE trials SET status=?, result=?, error=?, finished=?, attempts=MAX(attempts, 1), "
                "worker='recovered' WHERE key=?",
                ("done" if result is not None else "failed", None if result is None else json.dumps(result),
                 None if result is not None else (error or "failed (no message)"), finished, key)).rowcount == 1

    def retry_failed(self, max_attempts: int = 0) -> tuple[int, int]:
        """Make failed trials pending again, those with fewer than ``max_attempts`` attempts
        (0: all); returns (retried, left failed at the limit).  A trial's attempts count
        every start that ended in a result, an error or a dead worker."""
        limit = max_attempts if max_attempts > 0 else None
        with self._tx():
            retried = self.db.execute("UPDATE trials SET status='pending', error=NULL WHERE status='failed' "
                                      "AND (? IS NULL OR attempts < ?)", (limit, limit)).rowcount
            left = self.db.execute("SELECT COUNT(*) FROM trials WHERE status='failed'").fetchone()[0]
        return retried, left

    # -- reading ------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.db.execute("SELECT status, COUNT(*) AS n FROM trials GROUP BY status"):
            out[r["status"]] = r["n"]
        return out

    def trials(self, status: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM trials", ()
        if status:
            q, args = q + " WHERE status=?", (status,)
        return [self._decode(r) for r in self.db.execute(q + " ORDER BY idx", args)]

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for k in JSON_COLUMNS:
            if d.get(k) is not None:
                d[k] = json.loads(d[k])
        return d


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, so a read
    followed by an update cannot interleave with another process's claim."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self.db, self.lock = db, lock

    def __enter__(self):
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, *rest) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
