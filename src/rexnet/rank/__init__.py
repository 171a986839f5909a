"""Rank analysis of the paper's Section 3: the random-network study, its report, and an audit of real models.

``measures`` (rank measures from one spectrum), ``networks`` (the study's
config and its random one-block networks), ``study`` (the resumable runner and
``run_and_report``), ``results`` (a finished study as arrays, its checks and
observations), ``report`` (summary tables and ``report.md``), ``plots``
(Fig. 1-style panels), ``analyze`` / ``verify`` (trained models, Section 6 and
Table 2), ``audit`` (design-guide audit of any model), ``cli`` (the ``rank-*``
subcommands).
"""
from __future__ import annotations

from .measures import (Measure, effective_rank, f32_default_tol, nuclear_ratio, numerical_rank,
                       parse_measures, singular_values, stable_rank)
from .networks import ACTIVATIONS, BLOCK_TYPES, StudyConfig
from .study import run_study

__all__ = ["Measure", "effective_rank", "f32_default_tol", "nuclear_ratio", "numerical_rank",
           "parse_measures", "singular_values", "stable_rank", "ACTIVATIONS", "BLOCK_TYPES",
           "StudyConfig", "run_study"]
