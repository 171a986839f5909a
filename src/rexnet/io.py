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
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["atomic_path", "write_bytes", "write_text", "write_json", "write_csv", "append_jsonl",
           "read_jsonl", "markdown_table", "pyplot", "save_figure"]


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
