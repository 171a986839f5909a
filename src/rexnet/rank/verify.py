"""The paper's Table 2 verification: a network of two inverted bottlenecks, changed one
factor at a time in the direction the rank study recommends, trained on CIFAR-10; the
rank of its final features and its accuracy are reported side by side.

Factors (paper, Section 3.3): the first 1x1 conv's dimension ratio (1/20 -> 1/6, i.e.
expansion 20 -> 6), each IB's dimension ratio (0.22 -> 0.8), and the nonlinearity after
the first 1x1 conv (ReLU6 -> SiLU).  The paper does not give the widths; ours are
recorded in every spec (``widths`` below).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..io import (changed_settings, check_writable, markdown_table, refuse_other_settings, write_csv,
                  write_json, write_text)
from ..spec import BlockSpec, HeadSpec, NetSpec, StemSpec

__all__ = ["VARIANTS", "verification_spec", "run_verification"]

# name -> (expansion of the first 1x1 conv, IB dimension ratio d_in/d_out, activation after it)
VARIANTS = {
    "baseline": (20, 0.22, "relu6"),
    "first_1x1_ratio_1_6": (6, 0.22, "relu6"),
    "ib_ratio_0.8": (20, 0.8, "relu6"),
    "silu": (20, 0.22, "silu"),
}


def verification_spec(name: str, out_chs: int = 128, num_classes: int = 10) -> NetSpec:
    """Stem 3x3 (stride 2) -> IB (stride 2) -> IB (stride 1) -> pool -> classifier.

    The 32x32 input is halved by the stem so the IB-ratio-0.8 variant (expansion 20
    on 82 channels) stays trainable on a CPU."""
    if name not in VARIANTS:
        raise ValueError(f"unknown verification model {name!r}; choose from {list(VARIANTS)}")
    expansion, ratio, act = VARIANTS[name]
    c2 = out_chs
    c1 = max(1, round(ratio * c2))
    c0 = max(1, round(ratio * c1))
    blocks = (BlockSpec(c0, c1, c0 * expansion, stride=2, act_exp=act, act_dw="relu6", shortcut="partial"),
              BlockSpec(c1, c2, c1 * expansion, stride=1, act_exp=act, act_dw="relu6", shortcut="partial"))
    return NetSpec(f"table2_{name}", StemSpec(c0, stride=2, act="relu6"), blocks,
                   HeadSpec(c2, pen_chs=0, act=None, dropout=0.0, num_classes=num_classes), input_size=32,
                   meta={"verification": name, "expansion": expansion, "ib_ratio": ratio, "act": act,
                         "widths": [c0, c1, c2]})


# recipe fields that do not change what a Table 2 run computes (ignored when a rerun is compared)
_NOT_SETTINGS = {"progress", "workers", "tensorboard", "download", "data_root", "cache_images"}
RESULT_FILES = ("table2.csv", "table2.md", "table2.json")


def _changed_settings(run: Path, cfg, spec: NetSpec) -> dict[str, tuple[Any, Any]]:
    """``{setting: (then, now)}`` for how the run in ``run`` (a variant's folder) was trained
    differently from ``cfg``/``spec``; the network counts by its widths (``--out-chs``)."""
    import yaml

    saved_file, spec_file = run / "config.yaml", run / "spec.json"
    if not saved_file.is_file():
        return {}
    saved = yaml.safe_load(saved_file.read_text()) or {}
    now = {k: v for k, v in cfg.to_dict().items() if k in saved and k not in _NOT_SETTINGS}
    changes = changed_settings({k: saved[k] for k in now}, now)
    if spec_file.is_file():
        old = NetSpec.from_json(spec_file.read_text())
        if old.hash() != spec.hash():
            then, wanted = old.meta.get("widths"), spec.meta.get("widths")
            changes["network (--out-chs)"] = (then, wanted) if then != wanted else (old.hash(), spec.hash())
    return changes


def _prepare_out(out: Path, plans: dict[str, tuple], overwrite: bool) -> None:
    """Before any work: a rerun with the same settings continues (each variant resumes); one with
    other settings is refused unless ``overwrite``, which removes the earlier runs and tables."""
    from ..train.loop import RUN_FILES

    if not overwrite:
        for name, (spec, cfg) in plans.items():
            changes = _changed_settings(out / name, cfg, spec)
            refuse_other_settings(out, "Table 2 run", {f"{name}: {k}": v for k, v in changes.items()})
    else:
        for name in plans:
            for f in RUN_FILES:
                path = out / name / f
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        for f in RESULT_FILES:
            (out / f).unlink(missing_ok=True)
    check_writable(out)


def run_verification(data: str, out: str | os.PathLike, *, epochs: int = 5, train_subset: int | None = 10000,
                     val_subset: int | None = 2000, out_chs: int = 128, seed: int = 0, batch_size: int = 128,
                     rank_images: int = 256, progress: bool = True, overwrite: bool = False) -> list[dict[str, Any]]:
    """Train the four models with the CIFAR recipe and measure their final-feature rank.

    Each model trains in ``out/<name>`` (resumable: rerunning with the same settings
    continues); a rerun with other settings is refused before any work unless
    ``overwrite`` (which replaces the earlier runs).  Rank is the effective rank and the
    numerical rank at 1e-2 (relative) of the last block's output on ``rank_images``
    test images, centred.
    """
    from ..models.resolve import create_model
    from ..train.data import eval_images
    from ..train.loop import train
    from ..train.recipe import load_recipe
    from .analyze import final_spectrum
    from .measures import effective_rank, numerical_rank

    out = Path(out)
    plans = {}
    for name in VARIANTS:
        spec = verification_spec(name, out_chs)
        plans[name] = (spec, load_recipe("cifar", dict(
            model=spec.name, data=data, epochs=epochs, train_subset=train_subset, val_subset=val_subset, seed=seed,
            progress=progress, dropout=0.0, batch_size=batch_size)))
    _prepare_out(out, plans, overwrite)
    images = eval_images(data, rank_images, 32)
    rows = []
    for name, (spec, cfg) in plans.items():
        summary = train(cfg, out / name, spec=spec, resume=True)
        model = create_model(out / name / "last.pt")  # the network as trained, spec and weights
        sigma, channels = final_spectrum(model, images, seed)
        rows.append(dict(model=name, widths="/".join(map(str, spec.meta["widths"])),
                         expansion=spec.meta["expansion"], ib_ratio=spec.meta["ib_ratio"], act=spec.meta["act"],
                         params=sum(p.numel() for p in model.parameters()),
                         effective_rank=round(effective_rank(sigma), 2),
                         rank_1e2=numerical_rank(sigma, 1e-2), channels=channels,
                         val_top1=summary["final"]["val_top1"], best_val_top1=summary["best_val_top1"]))
    _write(rows, out)
    return rows


def _write(rows: list[dict[str, Any]], out: Path) -> None:
    write_csv(rows, out / "table2.csv")
    write_text(out / "table2.md", markdown_table(list(rows[0]), [list(r.values()) for r in rows]) + "\n")
    write_json(rows, out / "table2.json")
