"""The shape panel (Sections 4.2-4.3, Fig. 2): fixed channel configurations of the search's
network, every one solved to the linear reference's MACs (1%), trained over paired seeds.

The shapes, each ``c_i = a * f(i) + b`` over the preset's blocks (params are whatever the
shape costs at those MACs, reported with it, except where stated):

* ``linear``: the search's linear reference, ``a`` and ``b`` solved to the MACs and the
  params target (ReXNet's rule);
* ``stagewise``: the stage-wise convention as practised: MobileNetV2's stage widths
  16-24-32-64-96-160 over the preset's stages, all times one multiplier solved to the MACs,
  the last stage taking the rounding residual (what a user would otherwise build; the
  paper's comparison);
* ``stagewise_matched``: the search's stage-wise reference, its first width and multiplier
  solved to the MACs *and* the params (at both it is nearly a line: an equivalence check);
* ``input_starved``: convex ``f = t ** 3`` from the narrowest width, so most channels sit
  at the output side (the paper's bottom-10% models, green in Fig. 2);
* ``early_saturating``: concave ``f = t ** (1/3)`` from the narrowest width (the widths
  rise within the first blocks and flatten);
* ``constant``: every block equally wide.

The practised staircase moves in steps of ~3% of the MACs (one multiplier rounds every stage
at once), so its last stage takes the rounding residual; the constant width rounds up its
last blocks one at a time.

Fig. 2's colours: the linear models red, the conventional (stage-wise) ones blue, the
input-starved ones green (:data:`COLOURS`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .. import schedule as sch
from ..budget import bisect
from ..experiments.definitions import COMMON, Comparison, Experiment
from ..experiments.paired import Arm, check_budget_match
from ..stats import t975
from .analysis import _fit as line_fit
from .space import MOBILENETV2_STAGE_WIDTHS, SearchSpace, get_preset, stage_repeats

__all__ = ["SHAPE_PANEL", "SHAPES", "COLOURS", "panel_arms", "shape_regression"]

SHAPES = ("linear", "stagewise", "stagewise_matched", "input_starved", "early_saturating", "constant")
CURVE_POWER = 3.0     # input-starved t**3, early-saturating t**(1/3) (inside the search's CURVE_POWERS)
COLOURS = dict(linear="tab:red", stagewise="tab:blue", stagewise_matched="tab:cyan", input_starved="tab:green",
               early_saturating="tab:orange", constant="tab:gray")


def _at_macs(space: SearchSpace, widths_of: Callable[[float], list[float]], macs: float) -> list[float]:
    """``widths_of(x)`` for the ``x >= 0`` whose rounded widths come closest to ``macs``
    (their MACs must be non-decreasing in ``x``)."""
    cost = lambda x: space.cost(widths_of(x))[0]  # noqa: E731
    lo, hi = bisect(lambda x: cost(x) < macs, 0.0, 64.0 * space.pen_chs, 80,
                    lambda lo, hi: cost(lo) == cost(hi) or hi - lo < 1e-6)
    return widths_of(min((lo, hi), key=lambda x: abs(cost(x) - macs)))


def _arm(space: SearchSpace, name: str, widths: Sequence[float], note: str) -> Arm:
    c = space.candidate(name, list(widths), name)
    shown = "/".join(map(str, c.widths))
    return Arm(name, c.spec, c.macs, c.params, f"{note}: widths {shown}")


def _below_then_residual(space: SearchSpace, widths_of: Callable[[float], list[float]], macs: float):
    """For a shape that one parameter rounds all at once (steps of 3% in the smoke network): the
    largest ``x`` whose ``widths_of(x)`` stay at or below ``macs``, then the last stage (4x4, the
    cheapest place for a channel) widened by the rounding residual.  (x, widths, residual)."""
    x = bisect(lambda v: space.cost(widths_of(v))[0] <= macs, 0.0, 64.0 * space.pen_chs, 80,
               lambda lo, hi: hi - lo < 1e-6)[0]
    base, last = widths_of(x), stage_repeats(space.depth)[-1]
    head, tail = base[:-last], round(base[-1])
    widths = _at_macs(space, lambda e: head + [tail + e] * last, macs)
    return x, widths, round(widths[-1]) - tail


def _practised(space: SearchSpace, macs: float) -> Arm:
    stairs = sch.staircase_shape(stage_repeats(space.depth), [float(w) for w in MOBILENETV2_STAGE_WIDTHS])
    m, widths, extra = _below_then_residual(space, lambda m: [m * w for w in stairs], macs)
    return _arm(space, "stagewise", widths, f"MobileNetV2's stage widths 16-24-32-64-96-160 x {m:.4f} (params "
                                            f"free), the last stage {extra} channel(s) wider: the rounding residual")


def _constant(space: SearchSpace, macs: float) -> Arm:
    """Every block ``w`` wide; a fractional ``w`` rounds up the last blocks first (its fraction
    of them), so the MACs move one block at a time, not all blocks at once."""
    d = space.depth

    def widths_of(v: float) -> list[float]:
        w, up = int(v), round((v - int(v)) * d)
        return [float(w + (i >= d - up)) for i in range(d)]

    widths = _at_macs(space, widths_of, macs)
    return _arm(space, "constant", widths, "every block equally wide, the last blocks one channel wider where "
                                           "the MACs need it (rounding)")


def panel_arms(preset: str) -> list[Arm]:
    """The panel's six arms in ``preset``'s network (:data:`SHAPES` order), each refused unless
    within 1% of the linear arm's MACs (the matched staircase also within 3% of its params)."""
    from .experiments import reference_arms

    space = get_preset(preset).space
    line, matched = reference_arms(preset)
    d, lo_w = space.depth, float(space.min_width)
    convex, concave = sch.power_shape(d, CURVE_POWER), sch.power_shape(d, 1 / CURVE_POWER)
    arms = [Arm("linear", line.spec, line.macs, line.params, line.note),
            _practised(space, line.macs),
            Arm("stagewise_matched", matched.spec, matched.macs, matched.params, matched.note
                + " (solved to the MACs and params: nearly a line)"),
            _arm(space, "input_starved", _at_macs(space, lambda a: sch.affine(convex, a, lo_w), line.macs),
                 f"convex f = t^{CURVE_POWER:g} from width {space.min_width}: most channels at the output side"),
            _arm(space, "early_saturating", _at_macs(space, lambda a: sch.affine(concave, a, lo_w), line.macs),
                 f"concave f = t^(1/{CURVE_POWER:g}) from width {space.min_width}: the widths saturate early"),
            _constant(space, line.macs)]
    for arm in arms[1:]:
        check_budget_match(arm, line, params_tol=float("inf"))
    return arms


def shape_regression(arm_rec: dict[str, dict[str, Any]], seeds: set[int]) -> dict[str, Any]:
    """Secondary, descriptive: least squares of each arm's mean test top-1 over ``seeds`` on the
    R² of its widths' straight-line fit, with its params (millions) as a covariate; the R²
    coefficient with its 95% t-interval (arms - 3 residual degrees of freedom)."""
    names = [k for k, a in arm_rec.items() if any(sd in a["accuracies"] for sd in seeds)]
    acc = np.array([np.mean([v for sd, v in arm_rec[k]["accuracies"].items() if sd in seeds]) for k in names])
    r2 = np.array([line_fit(arm_rec[k]["widths"])["r2"] for k in names])
    params = np.array([arm_rec[k]["params"] / 1e6 for k in names])
    rows = [[k, f"{r:.4f}", f"{p:.3f}", f"{a:.2f}"] for k, r, p, a in zip(names, r2, params, acc)]
    base = dict(title="Accuracy on the widths' linearity (secondary, descriptive)",
                headers=["arm", "R² of widths vs block index", "params (M)", "mean test top-1"], rows=rows)
    dof = len(names) - 3
    x = np.column_stack([np.ones(len(names)), r2, params])
    if dof < 1 or np.linalg.matrix_rank(x) < 3:
        return dict(base, coefficient_r2=None, text=f"{len(names)} arm(s) with results: too few for the fit")
    coef, *_ = np.linalg.lstsq(x, acc, rcond=None)
    resid = acc - x @ coef
    cov = float(resid @ resid) / dof * np.linalg.inv(x.T @ x)
    se = float(np.sqrt(cov[1, 1]))
    half = t975(dof) * se
    ci = [round(float(coef[1]) - half, 4), round(float(coef[1]) + half, 4)]
    return dict(base, coefficient_r2=round(float(coef[1]), 4), ci95=ci, coefficient_params=round(float(coef[2]), 4),
                dof=dof, text=f"mean test top-1 = c + b1 R² + b2 params(M) over {len(names)} arms: b1 "
                              f"{coef[1]:+.2f} points per unit of R², 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}] ({dof} "
                              f"residual df); b2 {coef[2]:+.2f} points per million params. R² is 1 for a "
                              f"constant width too (a flat line), so the constant arm tests the slope's role")


PANEL_COMPARISONS = (
    Comparison("linear vs stage-wise as practised at equal MACs", "linear", "stagewise",
               "MACs within 1%; params as each shape costs them (the paper's comparison)", main=True,
               family="primary"),
    Comparison("linear vs stage-wise at equal MACs and params", "linear", "stagewise_matched",
               "MACs within 1% and params within 3%; the staircase is then nearly a line: an equivalence check",
               family="secondary"),
    Comparison("linear vs input-starved at equal MACs", "linear", "input_starved",
               "the paper's bottom-10% shape", family="secondary"),
    Comparison("linear vs early-saturating at equal MACs", "linear", "early_saturating",
               "a concave shape", family="secondary"),
    Comparison("linear vs constant width at equal MACs", "linear", "constant", "a flat shape", family="secondary"),
)

SHAPE_PANEL = Experiment(
    "shape_panel",
    "A panel of channel configurations of the search's fixed network at equal MACs (1%): the linear rule, the "
    "stage-wise convention as practised (MobileNetV2's stages x one multiplier), stage-wise at equal MACs and "
    "params, input-starved (convex), early-saturating (concave) and constant width, trained on all of CIFAR-10's "
    "training set but a held-out split that picks the best epoch; the test split is read once; each model's final-feature rank is read on 1,000 held-out images (for trained_rank)",
    dict(COMMON, preset="smoke", seeds=8, epochs=16, train_subset=None, holdout=5000, val_subset=None,
         rank_images=1000),
    lambda s: panel_arms(s.preset), PANEL_COMPARISONS, first_arms=("linear", "stagewise"),
    secondary=shape_regression, colours=COLOURS)
