"""Rank measures of a feature matrix, all read off one spectrum.

The paper (Section 3) measures ``rank(f(BN(WX))) / d_out`` but never says at
which tolerance, and the answer depends on it entirely.  So every measure here
is explicit, and each is a function of the singular values alone:

* ``rank@TOL``   numerical rank: ``#{sigma_i > TOL * sigma_max}`` (relative tolerance).
                 ``rank@f32`` uses ``torch.linalg.matrix_rank``'s default for a
                 float32 matrix: ``TOL = max(rows, cols) * eps(float32)``.
* ``effective``  effective rank (Roy & Vetterli, 2007): ``exp(H(p))`` with
                 ``p = sigma / sum(sigma)`` -- a smooth count of the directions in use.
* ``stable``     stable rank: ``||A||_F^2 / ||A||_2^2 = sum(sigma^2) / sigma_max^2``;
                 insensitive to tiny singular values, dominated by the large ones.
* ``nuclear``    normalised nuclear norm: ``sum(sigma) / sigma_max``, in ``[1, rank]``
                 (the paper's Section 6 uses the nuclear norm of trained features).

The singular values come from the Gram matrix ``A A^T`` (d_out x d_out) and
``eigvalsh`` in float64 rather than from ``svdvals`` on the wide d_out x N
matrix: the eigen-decomposition is of a small matrix, which is what makes
thousands of networks affordable.  Squaring the matrix halves the usable
precision: eigenvalues carry an absolute error of about ``eps64 * sigma_max^2``,
so singular values are resolved down to roughly ``1e-8 * sigma_max``.  That is
far below the float32 default tolerance (about ``1e-4`` here), and tolerances
under :data:`MIN_TOL` are refused rather than silently wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from scipy.stats import entropy

__all__ = ["MEASURE_KINDS", "DEFAULT_MEASURES", "DEFAULT_TOLS", "MIN_TOL", "Measure",
           "f32_default_tol", "singular_values", "numerical_rank", "effective_rank",
           "stable_rank", "nuclear_ratio", "parse_measures", "compute_measures"]

MEASURE_KINDS = ("rank", "effective", "stable", "nuclear")
DEFAULT_MEASURES = MEASURE_KINDS
# "f32" is matrix_rank's float32 default; the looser ones show where the paper's curves appear.
DEFAULT_TOLS: tuple[str, ...] = ("f32", "1e-3", "1e-2", "1e-1")
# Below this relative tolerance the Gram route cannot tell a singular value from rounding error.
MIN_TOL = 1e-6
F32_EPS = float(torch.finfo(torch.float32).eps)


def f32_default_tol(rows: int, cols: int) -> float:
    """``torch.linalg.matrix_rank``'s default relative tolerance for a float32 ``rows x cols`` matrix."""
    return max(rows, cols) * F32_EPS


@dataclass(frozen=True)
class Measure:
    """One column of results: a kind and, for ``rank``, its tolerance label ("f32" or a number)."""
    kind: str
    tol_label: str | None = None

    @property
    def name(self) -> str:
        return f"rank@{self.tol_label}" if self.kind == "rank" else self.kind

    def tol(self, rows: int, cols: int) -> float | None:
        """The relative tolerance used for a ``rows x cols`` matrix (None for tolerance-free measures)."""
        if self.kind != "rank":
            return None
        if self.tol_label == "f32":
            return f32_default_tol(rows, cols)
        return float(self.tol_label)


def _check_tol_label(label: str) -> str:
    if label == "f32":
        return label
    try:
        value = float(label)
    except ValueError:
        raise ValueError(f"rank tolerance {label!r} is neither 'f32' nor a number; "
                         "use e.g. --tols f32,1e-3,1e-2,1e-1") from None
    if not (MIN_TOL <= value < 1.0):
        raise ValueError(f"rank tolerance {label!r} must be in [{MIN_TOL:g}, 1): the Gram/eigvalsh route "
                         f"resolves singular values only down to about 1e-8 * sigma_max, and a relative "
                         f"tolerance of 1 or more counts nothing")
    return label


def check_names(what: str, names: Sequence[str], allowed: Sequence[str]) -> None:
    """Each of ``names`` must be one of ``allowed``, listed once, and at least one given."""
    if not names:
        raise ValueError(f"no {what} selected; choose from {list(allowed)}")
    for n in names:
        if n not in allowed:
            raise ValueError(f"unknown {what} {n!r}; choose from {list(allowed)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}s listed twice: {list(names)}")


def parse_measures(kinds: Iterable[str] = DEFAULT_MEASURES,
                   tols: Iterable[str] = DEFAULT_TOLS) -> tuple[Measure, ...]:
    """Validate measure kinds and rank tolerances; one :class:`Measure` per tolerance for ``rank``."""
    kinds = list(kinds)
    tols = [str(t).strip() for t in tols]
    check_names("rank measure", kinds, MEASURE_KINDS)
    if "rank" in kinds and not tols:
        raise ValueError("measure 'rank' needs at least one tolerance (e.g. --tols f32,1e-1)")
    tols = [_check_tol_label(t) for t in tols]
    if len(set(tols)) != len(tols):
        raise ValueError(f"rank tolerances listed twice: {tols}")
    out: list[Measure] = []
    for k in MEASURE_KINDS:  # canonical order, whatever order the user gave
        if k not in kinds:
            continue
        if k == "rank":
            out.extend(Measure("rank", t) for t in tols)
        else:
            out.append(Measure(k))
    return tuple(out)


def singular_values(features: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Singular values (descending, float64) of a ``d x N`` matrix via its ``d x d`` Gram matrix.

    ``center=True`` subtracts each row's (channel's) mean over the N samples
    first, so a constant offset (e.g. ReLU's positive mean) does not count as
    a direction.  Tiny negative eigenvalues from rounding are clamped to 0.
    """
    if features.ndim != 2:
        raise ValueError(f"expected a 2-D d x N feature matrix, got shape {tuple(features.shape)}")
    a = features.to(torch.float64)
    if center:
        a = a - a.mean(dim=1, keepdim=True)
    gram = a @ a.T
    eig = torch.linalg.eigvalsh(gram)
    return eig.clamp_min(0.0).sqrt().flip(0)


def numerical_rank(sigma: torch.Tensor, tol: float) -> int:
    """``#{sigma_i > tol * sigma_max}``, as ``torch.linalg.matrix_rank(A, rtol=tol)`` counts."""
    if sigma.numel() == 0:
        return 0
    smax = float(sigma.max())
    if smax == 0.0:
        return 0
    return int((sigma > tol * smax).sum())


def effective_rank(sigma: torch.Tensor) -> float:
    """``exp`` of the Shannon entropy of ``sigma / sum(sigma)`` (0 log 0 = 0); 0 for a zero matrix."""
    if float(sigma.sum()) == 0.0:
        return 0.0
    return math.exp(float(entropy(sigma.detach().cpu().double().numpy())))  # entropy normalises sigma itself


def stable_rank(sigma: torch.Tensor) -> float:
    """``sum(sigma^2) / sigma_max^2`` = squared Frobenius over squared spectral norm."""
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax == 0.0:
        return 0.0
    return float((sigma / smax).square().sum())


def nuclear_ratio(sigma: torch.Tensor) -> float:
    """``sum(sigma) / sigma_max``: the nuclear norm in units of the spectral norm."""
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax == 0.0:
        return 0.0
    return float(sigma.sum()) / smax


def compute_measures(sigma: torch.Tensor, rows: int, cols: int,
                     measures: Sequence[Measure]) -> list[tuple[Measure, float | None, float]]:
    """``(measure, tolerance or None, value)`` for each measure of one spectrum of a ``rows x cols`` matrix."""
    out: list[tuple[Measure, float | None, float]] = []
    for m in measures:
        tol = m.tol(rows, cols)
        if m.kind == "rank":
            value: float = numerical_rank(sigma, tol)
        elif m.kind == "effective":
            value = effective_rank(sigma)
        elif m.kind == "stable":
            value = stable_rank(sigma)
        else:
            value = nuclear_ratio(sigma)
        out.append((m, tol, value))
    return out
