"""Paired, resumable, pre-registered experiments on the trial engine: ``rexnet experiment NAME``."""
from ..stats import paired_stats, seeds_needed
from .definitions import EXPERIMENTS, Comparison, Experiment
from .paired import Arm, ExperimentSettings

__all__ = ["EXPERIMENTS", "Experiment", "Comparison", "Arm", "ExperimentSettings", "paired_stats", "seeds_needed",
           "run_experiment", "analyze_experiment"]


def run_experiment(*args, **kwargs):
    """See :func:`rexnet.experiments.run.run_experiment`."""
    from .run import run_experiment as run

    return run(*args, **kwargs)


def analyze_experiment(*args, **kwargs):
    """See :func:`rexnet.experiments.run.analyze_experiment`."""
    from .run import analyze_experiment as analyze

    return analyze(*args, **kwargs)
