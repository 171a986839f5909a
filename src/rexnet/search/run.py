"""A search: sample the space, record the trials in a store, and run them on :mod:`rexnet.trials`.

:class:`SearchSettings` is what ``rexnet search run`` may change on top of a preset; it
resolves into the :class:`~rexnet.trials.TrialPlan` every trial trains with and the
:class:`~rexnet.trials.RunOptions` that say how they run.  The protocol recorded in the
store (:func:`protocol_of`) is what changes a trial's result, so a rerun with other
settings is refused and one with more repeats extends the search.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

from ..io import write_json
from ..train.recipe import recipe_values
from ..trials import (STORE_NAME, RunOptions, Store, TrialPlan, check_data, check_rebuildable, execute,
                      rebuild_store, result_files)
from .space import Preset, get_preset

__all__ = ["SearchSettings", "protocol_of", "prepare", "run_search", "recover", "SIDECAR"]

SIDECAR = "search.json"   # the protocol and preset beside the store, for `rexnet search recover`


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What a search run may change on top of its preset."""
    preset: str = "smoke"
    data: str | None = None
    data_root: str | None = None
    download: bool = False
    trials: int | None = None
    epochs: int | None = None
    repeats: int | None = None
    train_subset: int | None = None     # 0 = all images
    val_subset: int | None = None
    holdout: int = 0                    # validate on N held-out training images, never on the test split (0 = off)
    batch_size: int | None = None
    early_stop_patience: int | None = None
    seed: int | None = None
    rank_images: int = 256              # images for the final-feature rank (0 = skip)
    test_images: int | None = None      # final test top-1 on the first N class-balanced test images (none or 0 = all)
    device: str = "auto"
    channels_last: bool = True
    amp: str = "auto"
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    progress: bool = True
    # not part of the protocol: on the same data a trial either reads no bad image (the same
    # result with or without it) or fails without it
    skip_bad_images: bool = False
    retry: bool = True
    max_attempts: int = 3
    stop_after_failures: int = 3
    in_process: bool = False            # run the trials here, one after another (no child process per trial)

    def plan(self) -> TrialPlan:
        """What every trial of this search trains with."""
        preset = self.resolved()
        return TrialPlan(data=preset.data, data_root=self.data_root, download=self.download, epochs=preset.epochs,
                         batch_size=preset.batch_size, train_subset=preset.train_subset, val_subset=preset.val_subset,
                         holdout=self.holdout,
                         early_stop_patience=preset.early_stop_patience, test_images=self.test_images or None,
                         rank_images=self.rank_images, device=self.device, channels_last=self.channels_last,
                         amp=self.amp, skip_bad_images=self.skip_bad_images)

    def run_options(self) -> RunOptions:
        return RunOptions(workers=self.workers, ray=self.ray, ray_address=self.ray_address,
                          cpus_per_trial=self.cpus_per_trial, gpus_per_trial=self.gpus_per_trial,
                          progress=self.progress, retry=self.retry, max_attempts=self.max_attempts,
                          stop_after_failures=self.stop_after_failures, in_process=self.in_process)

    def resolved(self) -> Preset:
        preset = get_preset(self.preset)
        changes = {k: getattr(self, k) for k in ("data", "trials", "epochs", "repeats", "train_subset",
                                                 "val_subset", "batch_size", "early_stop_patience", "seed")
                   if getattr(self, k) is not None}
        for k in ("train_subset", "val_subset"):
            if changes.get(k) == 0:
                changes[k] = None
        preset = dataclasses.replace(preset, **changes)
        if preset.trials < 0 or preset.epochs < 1 or preset.repeats < 1:
            raise ValueError(f"need trials >= 0, epochs >= 1, repeats >= 1; got {preset.trials}, {preset.epochs}, "
                             f"{preset.repeats}")
        return preset


def protocol_of(preset: Preset, settings: SearchSettings, with_recipe: bool = True) -> dict[str, Any]:
    """Everything that changes a trial's result (the number of trials does not), the recipe's
    values included, so runs under two versions of it are never mixed (``with_recipe`` False:
    the protocol as searches made before that recorded it)."""
    d = preset.to_dict()
    d.pop("trials")
    d.update(rank_images=settings.rank_images, channels_last=settings.channels_last, amp=settings.amp)
    if with_recipe:
        d["recipe"] = recipe_values("cifar")
    for knob in ("test_images", "holdout"):   # only when set, so stores made before the knob keep their protocol
        if getattr(settings, knob):
            d[knob] = getattr(settings, knob)
    return d


def _trial_rows(preset: Preset) -> list[dict[str, Any]]:
    """The store rows of a preset's trials: the two references and ``trials`` samples, each
    ``repeats`` times, in that order."""
    rows = []
    for cand in preset.space.iter_all(preset.trials, preset.seed):
        spec = cand.spec.replace(name=f"{preset.space.name}_{cand.kind}_{cand.hash[:8]}")
        for r in range(preset.repeats):
            rows.append(dict(key=f"{cand.hash}-r{r}", spec_hash=cand.hash, repeat=r, seed=preset.seed + r,
                             kind=cand.kind, spec=spec.to_json(), widths=list(cand.widths), macs=cand.macs,
                             params=cand.params, params_of_f=cand.params_of_f))
    return rows


def prepare(out: str | os.PathLike, settings: SearchSettings) -> tuple[Store, Preset]:
    """Open (or create) ``out/search.db`` and add this run's trials: the two references
    and ``trials`` samples, each ``repeats`` times.  Idempotent."""
    preset = settings.resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / STORE_NAME)
    protocol = protocol_of(preset, settings)
    store.init_protocol(protocol)
    store.add(_trial_rows(preset))
    store.set_meta("preset", preset.to_dict())
    write_json(dict(protocol=protocol, preset=preset.to_dict()), out / SIDECAR)
    return store, preset


def run_search(out: str | os.PathLike, settings: SearchSettings, log: Callable[[str], None] = print) -> dict[str, int]:
    """Run every unfinished trial of the search in ``out``; returns the store's counts.
    The data is checked once first (:func:`check_data`)."""
    if not settings.ray_address:   # a Ray cluster's workers may see data that this machine does not
        check_data(settings.plan(), log)
    store, preset = prepare(out, settings)
    return execute(store, out, settings.plan(), settings.run_options(), f"search {preset.space.name}", log)


# -- recovery ----------------------------------------------------------------------------
def _preset_from_dict(d: dict[str, Any]) -> Preset:
    """The preset a stored ``Preset.to_dict()`` describes (its space by name)."""
    base = get_preset(d["space"]["name"])
    return dataclasses.replace(base, **{f.name: d[f.name] for f in dataclasses.fields(Preset)
                                        if f.name != "space" and f.name in d})


def _infer_search(out: Path, results: list[Path]) -> tuple[dict[str, Any], Preset]:
    """Protocol and preset of a search without its sidecar (made before there was one), from
    its trials' folders: the space from the networks' names, the training settings from a
    trial's config.yaml, the repeats and sampled models from the trial keys."""
    import yaml

    configs = [r.parent / "config.yaml" for r in results if (r.parent / "config.yaml").is_file()]
    if not configs:
        raise FileNotFoundError(f"cannot recover {out}: no {SIDECAR} and no trial with a config.yaml")
    cfg = yaml.safe_load(configs[0].read_text())
    space = str(cfg.get("network") or cfg["model"]).rsplit("_", 2)[0]   # older trials name it model
    keys = [r.parent.name for r in results]
    preset = dataclasses.replace(get_preset(space), data=cfg["data"], epochs=cfg["epochs"],
                            repeats=1 + max(int(k.rsplit("-r", 1)[1]) for k in keys),
                            train_subset=cfg["train_subset"], val_subset=cfg["val_subset"],
                            batch_size=cfg["batch_size"], early_stop_patience=cfg["early_stop_patience"],
                            seed=cfg["seed"] - int(configs[0].parent.name.rsplit("-r", 1)[1]))
    # the sampled models: the shortest prefix of the sampler's sequence that holds every one seen
    want = {k.rsplit("-r", 1)[0] for k in keys} - {c.hash for c in preset.space.references()}
    n, pos = max(1, len(want)), {}
    while want - pos.keys() and n <= 10_000:
        pos = {c.hash: i for i, c in enumerate(preset.space.samples(n, preset.seed))}
        n *= 2
    preset = dataclasses.replace(preset, trials=1 + max((pos[h] for h in want if h in pos), default=-1))
    ok = [json.loads(r.read_text()).get("ok") or {} for r in results]
    settings = SearchSettings(rank_images=256 if any("nuclear_norm" in r for r in ok) else 0,
                       channels_last=bool(cfg["channels_last"]), amp=cfg["amp"])
    return protocol_of(preset, settings, with_recipe=False), preset   # made before protocols held the recipe


def recover(out: str | os.PathLike, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Rebuild ``out/search.db`` from the trials' ``result.json`` files: the trials of the
    search's preset (from ``out/search.json``, else inferred from the trial folders) as
    pending, then each result as done or failed (:func:`rexnet.trials.rebuild_store`)."""
    out = Path(out)
    results = result_files(out)
    check_rebuildable(out)
    sidecar = out / SIDECAR
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        protocol, preset = meta["protocol"], _preset_from_dict(meta["preset"])
        how = f"protocol from {sidecar}"
    else:
        protocol, preset = _infer_search(out, results)
        how = "protocol inferred from the trials' config.yaml"
    return rebuild_store(out, protocol, _trial_rows(preset), {"preset": preset.to_dict()}, how, log)
