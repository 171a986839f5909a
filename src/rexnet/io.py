"""The one way a result is written, and the shared output helpers.

Every checkpoint, table, report and figure goes through :func:`atomic_path`: the
bytes land in a temporary name unique to this process and thread, are fsynced, and
are renamed over the target, so a reader (or a run killed mid-write) sees the old
file or the new one, never half of one.  Also here: CSV/JSON/text writers on top of
it, an fsynced JSON-lines append, one Markdown table builder, and the one place
that selects matplotlib's Agg backend.  No torch import.
"""
from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "write_csv", "append_jsonl",
           "read_jsonl", "markdown_table", "pyplot", "save_figure", "check_writable", "check_writable_file",
           "refuse_existing", "changed_settings", "describe_changes", "refuse_other_settings"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    The temporary name keeps the suffix (writers such as matplotlib and ONNX pick
    the format from it) and is unique per process and thread.  On an exception the
    temporary file is removed and ``path`` is left as it was.  ``mode`` sets the
    file's permissions (default: 0o666 less the umask, as ``open`` would give).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer of {path} produced no file")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)  # some writers (safetensors) create 0600 files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(obj: Any, path: str | os.PathLike, indent: int | None = 2) -> Path:
    """``obj`` as JSON (``default=str`` so paths and similar values serialise)."""
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
              columns: Sequence[str] | None = None) -> Path:
    """Rows of dicts as CSV; columns default to the union of keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one JSON line and fsync it (a log that grows; readers skip a torn last line)."""
    with open(path, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a torn final line (a write cut short) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    rows = []
    for i, ln in enumerate(lines):
        try:
            rows.append(json.loads(ln))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON; the file is damaged") from None
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are written with ``str`` (format numbers before)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display)."""
    import matplotlib
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    pyplot().close(fig)
    return Path(path)


# -- output locations ----------------------------------------------------------------------
def _why_unwritable(folder: Path, err: OSError) -> str:
    """The reason in words: a plain file where a folder must be, else the system's own words."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            return f"{parent} is a file, not a folder" if not parent.is_dir() else (err.strerror or str(err))
    return err.strerror or str(err)


def check_writable(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """Create ``folder`` if needed and write (then remove) a temporary file in it.

    Every command that writes calls this before any work, so a read-only folder or a
    path under a plain file fails in one line (a ``ValueError`` naming ``target``,
    default ``folder``) instead of as a traceback after minutes of training or evaluation.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".rexnet-write-check-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ValueError(f"cannot write to {target or folder}: {_why_unwritable(folder, e)}; choose another "
                         f"output location") from None
    return folder


def check_writable_file(path: str | os.PathLike) -> Path:
    """:func:`check_writable` for a file's folder; also refuses a path that is a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write to {path}: it is a folder; give a file path")
    check_writable(path.parent, path)
    return path


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool, hint: str = "") -> None:
    """Refuse to replace files that exist unless ``overwrite`` (the ``--overwrite`` flag) says so.

    ``hint`` is what else the user may do (e.g. "--resume to continue it"); the message
    names the files found and ``--overwrite``.
    """
    found = [Path(p) for p in paths if Path(p).exists()]
    if found and not overwrite:
        names = ", ".join(str(p) for p in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ValueError(f"{names} already exist{'s' if len(found) == 1 else ''}: "
                         f"{hint + ', ' if hint else ''}pass --overwrite to replace "
                         f"{'it' if len(found) == 1 else 'them'}, or choose another --out")


# -- run folders ---------------------------------------------------------------------------
def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for every key whose value differs (a key only one side has counts)."""
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_changes(changes: Mapping[str, tuple[Any, Any]] | Sequence[str]) -> str:
    """``key: old -> new, ...`` (or the names given, when only the names are known)."""
    if isinstance(changes, Mapping):
        return ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items())
    return ", ".join(changes)


def refuse_other_settings(out: str | os.PathLike, what: str,
                          changes: Mapping[str, tuple[Any, Any]] | Sequence[str], *,
                          to_continue: str = "rerun with its settings to continue it",
                          replace_flag: str | None = "--overwrite", error: type[Exception] = ValueError) -> None:
    """The one rule for a folder that holds earlier work: made with other settings, it is
    refused (``ValueError``, one line naming what changed and the remedies) unless the
    caller was told to replace it; with no changes this returns and the work continues.
    ``replace_flag`` None: the command cannot replace it (only another --out can); ``error``
    is the exception raised (a ``ValueError`` subclass where callers catch one)."""
    if changes:
        replace = f"pass {replace_flag} to replace it, or " if replace_flag else "or "
        raise error(f"{out} holds a {what} made with other settings ({describe_changes(changes)}): "
                    f"{to_continue}, {replace}choose another --out")
