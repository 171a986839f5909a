"""The networks of the Section 3 rank study: random one-block networks and the rank of their output.

Each network is one block applied to a random input ``X`` (``d_in`` channels,
``N = batch x spatial^2`` positions): ``conv1x1`` / ``conv3x3`` give
``f(BN(W X))``; ``ib3x3`` / ``ibdw`` are inverted bottlenecks (1x1 expand + BN + f,
3x3 full or depthwise conv + BN + f, 1x1 project + BN, then the shortcut), and
the output is taken after the shortcut addition, as the paper says.  The rank
measures of :mod:`rexnet.rank.measures` are taken of the ``d_out x N`` output.

Design choices, all in :class:`StudyConfig` (and recorded in ``study.json``):

* **Paired design.**  Network ``i`` draws ``d_out``, its ratio and its input
  from ``(seed, i)`` only, and its weights from ``(that seed, block)``; every
  activation then reuses the same weights and input.  Differences between
  activations (and between block types) are therefore paired per network,
  which is what makes their confidence intervals tight.
* **Balanced ratios.**  Network ``i`` gets ``ratios[i % len(ratios)]``, so
  every grid point has the same number of networks; ``d_out`` is uniform in
  the range and ``d_in = round(ratio * d_out)``.
* **Weights** are N(0, 1/fan_in) (pre-activations of unit variance, so the
  eval-mode BN with identity statistics sees the same scale as train mode);
  BN has gamma = 1, beta = 0.

:mod:`rexnet.rank.study` runs every network of a config, resumably.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import ConvBNAct, create_act
from ..spec import SHORTCUTS
from .measures import (DEFAULT_MEASURES, DEFAULT_TOLS, Measure, check_names, compute_measures, parse_measures,
                       singular_values)

__all__ = ["BLOCK_TYPES", "ACTIVATIONS", "NONLINEAR", "COLUMNS", "QUICK_NETWORKS", "StudyConfig",
           "NetworkDims", "network_dims", "make_input", "block_outputs", "rank_cap", "compute_network"]

BLOCK_TYPES = ("conv1x1", "conv3x3", "ib3x3", "ibdw")
# identity first: the linear baseline every nonlinearity is compared against.
ACTIVATIONS = ("identity", "relu", "relu6", "leaky_relu", "elu", "softplus", "hard_swish", "silu")
NONLINEAR = tuple(a for a in ACTIVATIONS if a != "identity")
INPUTS = ("normal", "blur")
BN_MODES = ("train", "eval")
COLUMNS = ("block", "index", "seed", "act", "d_in", "d_mid", "d_out", "ratio", "n", "measure", "tol",
           "rank", "rank_ratio")
QUICK_NETWORKS = 30  # networks per block type of the --quick study
_BLOCK_CODE = {b: i + 1 for i, b in enumerate(BLOCK_TYPES)}  # part of the weight seed; never reorder


def _default_ratios() -> tuple[float, ...]:
    return tuple(round(0.1 * k, 10) for k in range(1, 11))


@dataclass(frozen=True)
class StudyConfig:
    """Every choice of the study.  ``networks`` counts networks *per block type*."""
    blocks: tuple[str, ...] = BLOCK_TYPES
    acts: tuple[str, ...] = ACTIVATIONS
    networks: int = 1000
    d_out_min: int = 32
    d_out_max: int = 256
    ratios: tuple[float, ...] = field(default_factory=_default_ratios)
    spatial: int = 8
    batch: int | None = None  # None: the smallest batch with N >= 4 * d_out_max
    input: str = "normal"
    blur_sigma: float = 1.0
    bn: str = "train"
    expansion: float = 6.0
    shortcut: str = "partial"
    measures: tuple[str, ...] = DEFAULT_MEASURES
    tols: tuple[str, ...] = DEFAULT_TOLS
    center: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        for key in ("blocks", "acts", "ratios", "measures", "tols"):
            set_(key, tuple(getattr(self, key)))
        check_names("block type", self.blocks, BLOCK_TYPES)
        check_names("activation", self.acts, ACTIVATIONS)
        for key, value in (("networks", self.networks), ("d_out_min", self.d_out_min),
                           ("d_out_max", self.d_out_max), ("spatial", self.spatial)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.d_out_min > self.d_out_max:
            raise ValueError(f"d_out range is empty: min {self.d_out_min} > max {self.d_out_max}")
        if self.spatial < 3:
            raise ValueError(f"spatial size {self.spatial} is too small for a 3x3 conv; use >= 3 (default 8)")
        if not self.ratios:
            raise ValueError("the ratio grid is empty; give ratios in (0, 1], e.g. 0.1,0.2,...,1.0")
        ratios = tuple(float(r) for r in self.ratios)
        bad = [r for r in ratios if not (0.0 < r <= 1.0) or math.isnan(r)]
        if bad:
            raise ValueError(f"ratios d_in/d_out must lie in (0, 1] (the paper's range is [0.1, 1.0]); "
                             f"got {bad}")
        if len(set(ratios)) != len(ratios):
            raise ValueError(f"the ratio grid has duplicates: {ratios}")
        set_("ratios", tuple(sorted(ratios)))
        if round(self.ratios[0] * self.d_out_min) < 1:
            raise ValueError(f"ratio {self.ratios[0]} of the smallest d_out {self.d_out_min} rounds to "
                             f"d_in = 0; raise the smallest ratio to >= {0.5 / self.d_out_min:.3g} "
                             f"or the d_out minimum")
        if self.batch is None:
            set_("batch", math.ceil(4 * self.d_out_max / self.spatial ** 2))
        elif not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer, got {self.batch!r}")
        if self.n <= self.d_out_max:
            raise ValueError(f"N = batch x spatial^2 = {self.n} must exceed the largest d_out "
                             f"({self.d_out_max}), or the rank is capped by N; the default is >= 4x")
        if self.input not in INPUTS:
            raise ValueError(f"unknown input distribution {self.input!r}; choose from {INPUTS}")
        if not self.blur_sigma > 0:
            raise ValueError(f"blur_sigma must be > 0, got {self.blur_sigma}")
        if self.bn not in BN_MODES:
            raise ValueError(f"unknown BN mode {self.bn!r}; choose from {BN_MODES}")
        if not self.expansion > 0:
            raise ValueError(f"IB expansion must be > 0, got {self.expansion}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut rule {self.shortcut!r}; choose from {SHORTCUTS}")
        parse_measures(self.measures, self.tols)

    # -- derived values --------------------------------------------------------
    @property
    def n(self) -> int:
        """Samples per output channel: batch x spatial positions."""
        return int(self.batch) * self.spatial ** 2

    @property
    def measure_list(self) -> tuple[Measure, ...]:
        return parse_measures(self.measures, self.tols)

    @property
    def rows_per_network(self) -> int:
        return len(self.acts) * len(self.measure_list)

    def mid(self, d_in: int) -> int:
        """IB inner width: ``round(expansion * d_in)``."""
        return max(1, round(self.expansion * d_in))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def identity(self) -> dict[str, Any]:
        """Everything that changes a network's numbers (``networks`` only adds or drops networks)."""
        d = self.to_dict()
        d.pop("networks")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# -- one network -----------------------------------------------------------------
@dataclass(frozen=True)
class NetworkDims:
    index: int
    seed: int  # input and (with the block) weights derive from it
    d_out: int
    ratio: float
    d_in: int


def network_dims(cfg: StudyConfig, index: int) -> NetworkDims:
    """Dimensions and seed of network ``index``; the same for every block type (paired design)."""
    ss = np.random.SeedSequence([cfg.seed, index])
    seed = int(ss.generate_state(1, dtype=np.uint32)[0])
    d_out = int(np.random.default_rng(ss).integers(cfg.d_out_min, cfg.d_out_max + 1))
    ratio = cfg.ratios[index % len(cfg.ratios)]
    return NetworkDims(index, seed, d_out, ratio, max(1, round(ratio * d_out)))


def _weight_seed(net_seed: int, block: str) -> int:
    return int(np.random.SeedSequence([net_seed, _BLOCK_CODE[block]]).generate_state(1, dtype=np.uint32)[0])


def make_input(cfg: StudyConfig, dims: NetworkDims) -> torch.Tensor:
    """The input ``(batch, d_in, s, s)``: i.i.d. N(0, 1), or a Gaussian-blurred N(0, 1) field of unit variance.

    The blurred field is cut from a larger canvas, so no padding rule shapes its
    border; it is divided by the kernel's L2 norm to keep unit variance.
    """
    g = torch.Generator().manual_seed(dims.seed)
    b, c, s = int(cfg.batch), dims.d_in, cfg.spatial
    if cfg.input == "normal":
        return torch.randn(b, c, s, s, generator=g)
    r = max(1, math.ceil(3 * cfg.blur_sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (t / cfg.blur_sigma) ** 2)
    k2 = torch.outer(k1, k1)
    k2 = k2 / k2.norm()
    field_ = torch.randn(b, c, s + 2 * r, s + 2 * r, generator=g)
    return F.conv2d(field_, k2.expand(c, 1, -1, -1).contiguous(), groups=c)


def _conv_bn(cin: int, cout: int, kernel: int, groups: int, g: torch.Generator) -> ConvBNAct:
    """The project's conv + BN (no act), weights N(0, 1/fan_in) drawn from ``g``.

    Built on the meta device and then materialised, so torch's own (discarded)
    initialisation of large 3x3 kernels costs nothing.
    """
    with torch.device("meta"):
        m = ConvBNAct(cin, cout, kernel, groups=groups, act=None)
    m = m.to_empty(device="cpu")
    fan_in = (cin // groups) * kernel * kernel
    with torch.no_grad():
        m.conv.weight.copy_(torch.randn(m.conv.weight.shape, generator=g) / math.sqrt(fan_in))
    m.bn.reset_parameters()  # gamma 1, beta 0, running stats 0 / 1 (the eval-mode identity)
    return m


def _act(name: str) -> nn.Module:
    m = create_act(name)
    if hasattr(m, "inplace"):
        m.inplace = False  # the shared pre-activation is reused by every activation
    return m


def _shortcut(p: torch.Tensor, x: torch.Tensor, rule: str) -> torch.Tensor:
    d_in, d_out = x.shape[1], p.shape[1]
    if rule == "none" or (rule == "full" and d_in != d_out):
        return p
    if d_in == d_out:
        return p + x
    out = p.clone()  # partial (ReXNet): the input joins the first d_in output channels
    out[:, :d_in] += x
    return out


@torch.inference_mode()
def block_outputs(cfg: StudyConfig, block: str, dims: NetworkDims,
                  acts: Sequence[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """``(act, output)`` for each activation of one network of one block type; output ``(B, d_out, s, s)``.

    The weights and input are drawn once and shared by all activations; the
    pre-activation of the first conv is shared too.
    """
    acts = cfg.acts if acts is None else acts
    g = torch.Generator().manual_seed(_weight_seed(dims.seed, block))
    x = make_input(cfg, dims)
    d_in, d_out = dims.d_in, dims.d_out
    train = cfg.bn == "train"
    if block in ("conv1x1", "conv3x3"):
        conv = _conv_bn(d_in, d_out, 1 if block == "conv1x1" else 3, 1, g).train(train)
        pre = conv(x)
        for a in acts:
            yield a, _act(a)(pre)
        return
    mid = cfg.mid(d_in)
    expand = _conv_bn(d_in, mid, 1, 1, g).train(train)
    inner = _conv_bn(mid, mid, 3, mid if block == "ibdw" else 1, g).train(train)
    project = _conv_bn(mid, d_out, 1, 1, g).train(train)
    pre = expand(x)
    for a in acts:
        f = _act(a)
        h = f(inner(f(pre)))
        yield a, _shortcut(project(h), x, cfg.shortcut)


def rank_cap(block: str, act: str, d_in: int, d_mid: int, d_out: int, shortcut: str = "partial",
             n: int | None = None) -> int:
    """The largest rank the linear algebra allows the output of one network (the study's invariants).

    Random weights attain it in the default setting (tested), with one
    exception the study itself found: smooth activations of a 1x1 conv with a
    very small ``d_in`` fall short numerically (see the report).

    * conv1x1: ``f(BN(W X))`` with ``f`` = identity is ``W X`` up to a row scaling
      and centring, so ``min(d_out, d_in)``.  A nonlinearity can reach ``d_out``
      (but smooth ones at very small ``d_in`` fall short numerically: see the report).
    * conv3x3: the identity output is ``W`` times the ``9 d_in x N`` patch matrix:
      ``min(d_out, 9 d_in)``.
    * IBs: the projection sees only ``d_mid`` channels, so before the shortcut
      the rank is at most ``d_mid`` (at most ``min(d_mid, 9 d_in)`` when
      everything is linear, since the inner 3x3 sees shifted copies of a
      rank-``d_in`` signal); the shortcut adds a rank-``d_in`` matrix when the
      rule adds the input.  With expansion 6 and the partial shortcut:
      ``min(d_out, 7 d_in)``, whatever ``f`` is.  (With expansion >= 8 a
      linear IB stays below this bound: all its rows then lie in the span of
      the 9 shifted copies of the input, plus zero-padding border terms.)

    BN's centring cannot raise a rank (it multiplies by a projector on the
    right); ``n`` (samples) caps everything when given.
    """
    linear = act == "identity"
    if block == "conv1x1":
        cap = min(d_out, d_in) if linear else d_out
    elif block == "conv3x3":
        cap = min(d_out, 9 * d_in) if linear else d_out
    elif block in ("ib3x3", "ibdw"):
        inner = min(d_mid, 9 * d_in) if linear else d_mid
        adds = shortcut == "partial" or (shortcut == "full" and d_in == d_out)
        cap = min(d_out, inner + (d_in if adds else 0))
    else:
        raise ValueError(f"unknown block type {block!r}; choose from {list(BLOCK_TYPES)}")
    return cap if n is None else min(cap, n)


def _fmt(v: float) -> str:
    return f"{v:.6f}"


def compute_network(cfg: StudyConfig, block: str, index: int) -> list[list[str]]:
    """The CSV rows (as strings) of one network: one per activation x measure."""
    dims = network_dims(cfg, index)
    measures = cfg.measure_list
    d_mid = cfg.mid(dims.d_in) if block.startswith("ib") else 0
    rows: list[list[str]] = []
    for act, out in block_outputs(cfg, block, dims):
        feats = out.transpose(0, 1).reshape(dims.d_out, -1)
        sigma = singular_values(feats, center=cfg.center)
        for m, tol, value in compute_measures(sigma, *feats.shape, measures):
            rows.append([block, str(index), str(dims.seed), act, str(dims.d_in), str(d_mid), str(dims.d_out),
                         repr(dims.ratio), str(cfg.n), m.name, "" if tol is None else f"{tol:.6g}",
                         str(int(value)) if m.kind == "rank" else _fmt(value), _fmt(value / dims.d_out)])
    return rows
