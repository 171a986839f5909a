"""Design a ReXNet for a budget: MACs, params and/or latency measured on this device -> NetSpec.

The paper's design rule is a schedule, not a size: block widths grow linearly with
the block index, and the whole network is scaled to the budget.  Here the free
variables are the width multiplier, the depth multiplier (on a grid) and, where the
family allows, the final width (the schedule's increment); the figures are the
analytic ones of :mod:`rexnet.complexity`, found with :func:`rexnet.budget.bisect`.

- :mod:`~rexnet.design.targets`: counts (``150M``, ``0.40G``, ``3e6``) and the :class:`Targets`;
- :mod:`~rexnet.design.families`: ReXNet, ReXNet-lite and a search's shape (``--from-search``);
- :mod:`~rexnet.design.solve`: the static solver (upper bounds on MACs / params, ``fill``);
- :mod:`~rexnet.design.latency`: the latency solver (timed here, in turns with a zoo model);
- :mod:`~rexnet.design.solution`: :func:`solve_design`, the :class:`Design` and its comparisons;
- :mod:`~rexnet.design.cli`: ``rexnet design``.
"""
from .cli import add_design_command, cmd_design
from .families import DEPTHS, FAMILIES, Family, get_family, searched_shape
from .latency import FORMS, LatencyDesign, design_latency
from .solution import Design, figure_rows, nearest_zoo, solve_design
from .solve import M_HI, M_LO
from .targets import Targets, format_count, parse_count, parse_latency_ms

__all__ = ["FAMILIES", "DEPTHS", "FORMS", "Targets", "Family", "Design", "LatencyDesign", "parse_count",
           "parse_latency_ms", "get_family", "searched_shape", "solve_design", "design_latency", "nearest_zoo",
           "figure_rows", "format_count", "M_LO", "M_HI", "add_design_command", "cmd_design"]
