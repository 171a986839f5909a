"""Paired, resumable experiments that answer the paper's claims (issue 13): ``rexnet experiment NAME``."""
from .definitions import DEFAULTS, EXPERIMENTS
from .paired import ExperimentSettings, paired_stats, seeds_needed

__all__ = ["DEFAULTS", "EXPERIMENTS", "ExperimentSettings", "paired_stats", "seeds_needed", "run_experiment"]


def run_experiment(*args, **kwargs):
    """See :func:`rexnet.experiments.run.run_experiment`."""
    from .run import run_experiment as run

    return run(*args, **kwargs)
