"""Rank analysis of the paper's Section 3: the random-network study, its report, and an audit of real models.

``measures`` (rank measures from one spectrum), ``study`` (the study and its
resumable runner), ``report`` (summary tables and ``report.md``), ``plots``
(Fig. 1-style panels), ``audit`` (design-guide audit of any model), ``cli``
(the ``rank-study`` / ``rank-audit`` subcommands).
"""
from __future__ import annotations

from .measures import (Measure, effective_rank, f32_default_tol, nuclear_ratio, numerical_rank,
                       parse_measures, singular_values, stable_rank)
from .study import ACTIVATIONS, BLOCK_TYPES, StudyConfig, run_study

__all__ = ["Measure", "effective_rank", "f32_default_tol", "nuclear_ratio", "numerical_rank",
           "parse_measures", "singular_values", "stable_rank", "ACTIVATIONS", "BLOCK_TYPES",
           "StudyConfig", "run_study"]
