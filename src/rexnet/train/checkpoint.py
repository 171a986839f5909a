"""Training checkpoints: atomic writes (through rexnet.io), safe reads, and the RNG states that make a resume exact;
and the checks every writing command makes of its output location before any work."""
from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "check_writable",
           "check_writable_file", "refuse_existing"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (``rexnet.io.atomic_path``):
    a kill at any moment leaves either the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    from ..models.weights import read_checkpoint

    return read_checkpoint(path)  # one-line CheckpointError (a ValueError) for unsafe, cut or foreign files


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(s: dict[str, Any]) -> None:
    p = s["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.random.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


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
