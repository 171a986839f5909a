"""Whether a finished run trained or blew up: the divergence rule every experiment applies."""
from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["DIVERGENCE_RULE", "DIVERGENCE_TOLERANCE", "divergence"]

# A network that has not started to learn sits at chance within a few hundredths (2.307 and 2.347
# against ln 10 = 2.303 in short test runs); every blow-up seen was further above (2.47 to 4.3).
DIVERGENCE_TOLERANCE = 0.05
DIVERGENCE_RULE = ("diverged: an epoch after warm-up with mean training loss more than 5% above ln(classes) (worse "
                   "than chance), or a held-out loss above 3x the first epoch's")


def divergence(curve: Sequence[dict[str, Any]], warmup_epochs: float, num_classes: int,
               tolerance: float = DIVERGENCE_TOLERANCE) -> str | None:
    """Why a run counts as diverged (:data:`DIVERGENCE_RULE`), or None; ``curve`` is its
    metrics.jsonl rows (``epoch`` 0-based, ``train_loss``, ``val_loss``); ``tolerance``: how far
    above chance, as a share of it, the training loss may sit."""
    chance = math.log(num_classes)
    for row in curve:
        if row["epoch"] >= math.ceil(warmup_epochs) and row["train_loss"] > chance * (1 + tolerance):
            return (f"epoch {row['epoch'] + 1}: training loss {row['train_loss']:.3f} > ln {num_classes} = "
                    f"{chance:.3f}" + (f" by more than {tolerance:.0%}" if tolerance else ""))
    first = curve[0].get("val_loss") if curve else None
    for row in curve[1:]:
        if first and row.get("val_loss") is not None and row["val_loss"] > 3 * first:
            return f"epoch {row['epoch'] + 1}: held-out loss {row['val_loss']:.3f} > 3 x the first {first:.3f}"
    return None
