"""An experiment's protocol: what is fixed before the first run, written to ``OUT/protocol.yaml``.

The protocol states the arms (MACs, params, spec hashes), the paired seeds, the training
budget and recipe, the primary metric, the comparisons with their expected direction,
the smallest effect of interest, the equivalence margin and the analysis.  The first
invocation writes it (``--plan`` writes it without training, with the estimated
core-hours, so it can be committed before any result); every later one refuses to run
when the protocol it would write differs from the one on disk.  What the protocol does
not state (an arm or seeds added later) is analysed as *exploratory*, never as the
headline.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml

from ..io import refuse_other_settings, write_text
from .paired import Arm, ExperimentSettings

__all__ = ["PROTOCOL_FILE", "build_protocol", "load_protocol", "register_protocol", "ANALYSIS",
           "min_seeds_to_reject", "estimate_core_hours", "family_sizes", "correction_of"]

PROTOCOL_FILE = "protocol.yaml"
ALPHA = 0.05
ANALYSIS = ("per stated comparison a - b over the paired seeds: the mean, the paired 95% t-interval and the exact "
            "two-sided sign-flip permutation p-value; Holm's correction of those p-values over the stated "
            "comparisons; TOST at the equivalence margin (paired, alpha 0.05). Verdict: holds / contradicted when "
            "the Holm-adjusted p < alpha and the 95% interval excludes 0 on that side; equivalent when TOST "
            "rejects; inconclusive otherwise. A run that diverged stops the analysis.")
# fields that say when and at what cost, not what is compared, and the number of seeds (more
# seeds extend an experiment and are analysed as exploratory): a protocol may differ in them
NOT_COMPARED = ("registered", "estimate", "seeds.n")


def min_seeds_to_reject(comparisons: int, alpha: float = ALPHA) -> int:
    """Fewest paired seeds at which the exact sign-flip test can reach Holm's strictest level
    ``alpha / comparisons`` at all (its smallest two-sided p is 2 / 2^n)."""
    return max(2, math.ceil(math.log2(2 * max(1, comparisons) / alpha)))


def build_protocol(exp, s: ExperimentSettings, arms: list[Arm]) -> dict[str, Any]:
    """The protocol of ``exp`` under settings ``s`` (defaults resolved) with these arms."""
    from ..train.recipe import recipe_values
    from .report import primary_metric

    stated = [c for c in exp.comparisons if c.a in {a.name for a in arms} and c.b in {a.name for a in arms}]
    return dict(
        experiment=exp.name, description=exp.description,
        arms={a.name: dict(macs=a.macs, params=a.params, spec_hash=a.spec.hash(), note=a.note) for a in arms},
        seeds=dict(n=s.seeds, first=s.seed, pairing="repeat r of every arm trains with seed first + r"),
        budget=dict(data=s.data, epochs=s.epochs, train_subset=s.train_subset or None, holdout=s.holdout or 0,
                    val_subset=s.val_subset or None, test_images=s.test_images or None, batch_size=s.batch_size,
                    recipe="cifar", recipe_values=recipe_values("cifar")),
        primary_metric=primary_metric(s),
        comparisons=[dict(name=c.name, a=c.a, b=c.b, expected=f"{c.a} > {c.b}", main=c.main, what=c.what,
                          **({"family": c.family} if c.family else {})) for c in stated],
        smallest_effect=exp.smallest_effect, equivalence_margin=exp.margin, unit="points of test top-1",
        alpha=ALPHA, correction=correction_of(stated),
        min_seeds_to_reject=min_seeds_to_reject(max(family_sizes(stated).values(), default=1)), analysis=ANALYSIS)


def family_sizes(comparisons) -> dict[str, int]:
    """Stated comparisons per Holm family (a Comparison's ``family``, or a protocol entry's)."""
    sizes: dict[str, int] = {}
    for c in comparisons:
        f = c.get("family", "") if isinstance(c, dict) else c.family
        sizes[f] = sizes.get(f, 0) + 1
    return sizes


def correction_of(comparisons) -> str:
    """The multiplicity correction in words: Holm over all, or within each named family."""
    sizes = family_sizes(comparisons)
    if set(sizes) == {""} or not sizes:
        n = sum(sizes.values())
        return f"Holm over the {n} stated comparisons" if n > 1 else "none: one stated comparison, at alpha"
    return "Holm within each family, each at alpha: " + "; ".join(
        f"{f or 'unnamed'}: {n} comparison{'s' * (n > 1)}" for f, n in sizes.items())


def load_protocol(out: str | Path) -> dict[str, Any] | None:
    """The protocol on disk in ``out``, or None."""
    path = Path(out) / PROTOCOL_FILE
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def register_protocol(out: Path, protocol: dict[str, Any], *, has_results: bool,
                      estimate: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``protocol`` to ``out`` when none is there (marked as written after results when the
    store already holds some), or refuse (ValueError) when it contradicts the one there.  What it
    only adds (an arm and its comparisons, more seeds) is allowed, and analysed as exploratory."""
    old = load_protocol(out)
    if old is not None:
        refuse_other_settings(out, f"{protocol['experiment']} protocol ({PROTOCOL_FILE})",
                              _contradictions(old, _plain(protocol)),
                              to_continue="rerun with the settings it states to continue it")
        return old
    record = dict(protocol, registered=dict(at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                             before_any_result=not has_results))
    if estimate is not None:
        record["estimate"] = estimate
    write_text(out / PROTOCOL_FILE, yaml.safe_dump(_plain(record), sort_keys=False, width=110))
    return record


def _contradictions(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """What ``new`` states otherwise than ``old``: every field ``old`` states (dotted), each of its
    comparisons still stated; additions and the fields derived from their count are not."""
    skip = (*NOT_COMPARED, "comparisons", "correction", "min_seeds_to_reject")
    flat_old, flat_new = _flat(old), _flat(new)
    changes = {k: (v, flat_new.get(k)) for k, v in flat_old.items()
               if k not in skip and k.split(".")[0] not in skip and flat_new.get(k) != v}
    gone = [c["name"] for c in old.get("comparisons", []) if c not in new.get("comparisons", [])]
    if gone:
        changes["comparisons"] = (gone, "changed or removed")
    return changes


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``budget.epochs``), so a refusal names the very field."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _plain(obj: Any) -> Any:
    """``obj`` as YAML would read it back (tuples as lists, keys as strings)."""
    return yaml.safe_load(yaml.safe_dump(obj))


def estimate_core_hours(arms: list[Arm], s: ExperimentSettings, steps: int = 5, warmup: int = 2) -> dict[str, Any]:
    """Core-hours the protocol's runs need at one thread, from a throughput measured now: each
    arm trains ``steps`` batches of random 32x32 images on one thread in channels-last, as the
    trials do (after ``warmup`` steps); validation and the final test are counted at a third of a
    training image's cost.  Without the trials' tcmalloc and data pipeline this is a lower bound
    on the speed (an upper bound on the hours); the arms' ratios are what it measures well."""
    import torch

    from ..models.resolve import create_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rates = {}
    try:
        for arm in arms:
            model = create_model(arm.spec, num_classes=10).to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            batch = s.batch_size or 128
            x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (batch,))
            for i in range(steps + warmup):
                if i == warmup:
                    t0 = time.perf_counter()
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            rates[arm.name] = round(steps * batch / (time.perf_counter() - t0), 1)
    finally:
        torch.set_num_threads(threads)
    train = s.train_subset or (50_000 - (s.holdout or 0))
    val = s.val_subset or (s.holdout or 10_000)
    per_run = {k: (s.epochs * (train + val / 3) + (s.test_images or 10_000) / 3) / r for k, r in rates.items()}
    hours = sum(per_run.values()) * s.seeds / 3600
    return dict(images_per_s_per_core=rates, runs=len(arms) * s.seeds, core_hours=round(hours, 2),
                wall_hours_at_2_workers=round(hours / 2, 2),
                how=f"{steps} training steps of batch {s.batch_size or 128} on random images after {warmup}, one "
                    f"thread, channels-last, per arm")
