"""The rank study of Section 3: random one-block networks, rank of the output vs the channel ratio.

Each network is one block applied to a random input ``X`` (``d_in`` channels,
``N = batch x spatial^2`` positions): ``conv1x1`` / ``conv3x3`` give
``f(BN(W X))``; ``ib3x3`` / ``ibdw`` are inverted bottlenecks (1x1 expand + BN + f,
3x3 full or depthwise conv + BN + f, 1x1 project + BN, then the shortcut), and
the output is taken after the shortcut addition, as the paper says.  The rank
measures of :mod:`rexnet.rank.measures` are taken of the ``d_out x N`` output.

Design choices, all recorded in ``study.json``:

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
* **Determinism.**  Each network runs single-threaded from its own seeds, so
  the numbers do not depend on ``--workers`` or on the order of completion;
  the final CSV is sorted.
* **Resumable.**  Each finished network's rows are appended (one write, then
  flush) to ``rank_study.partial.csv``; a rerun keeps every complete network,
  drops a torn last write, and computes only the rest.  At the end the rows
  are sorted into ``rank_study.csv`` (or ``.csv.gz`` when large), atomically.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
import multiprocessing as mp
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import ConvBNAct, create_act
from ..spec import SHORTCUTS
from .measures import (DEFAULT_MEASURES, DEFAULT_TOLS, Measure, check_names, compute_measures, parse_measures,
                       singular_values)

__all__ = ["BLOCK_TYPES", "ACTIVATIONS", "NONLINEAR", "COLUMNS", "QUICK_NETWORKS", "StudyConfig",
           "NetworkDims", "network_dims", "block_outputs", "compute_network", "run_study", "StudyRun",
           "results_path", "read_rows", "load_config", "quick_config", "rank_cap"]

BLOCK_TYPES = ("conv1x1", "conv3x3", "ib3x3", "ibdw")
# identity first: the linear baseline every nonlinearity is compared against.
ACTIVATIONS = ("identity", "relu", "relu6", "leaky_relu", "elu", "softplus", "hard_swish", "silu")
NONLINEAR = tuple(a for a in ACTIVATIONS if a != "identity")
INPUTS = ("normal", "blur")
BN_MODES = ("train", "eval")
COLUMNS = ("block", "index", "seed", "act", "d_in", "d_mid", "d_out", "ratio", "n", "measure", "tol",
           "rank", "rank_ratio")
QUICK_NETWORKS = 30
CSV_NAME, GZ_NAME, PARTIAL_NAME, CONFIG_NAME = ("rank_study.csv", "rank_study.csv.gz",
                                                "rank_study.partial.csv", "study.json")
GZIP_ABOVE_BYTES = 5_000_000  # --compress auto: gzip a final CSV larger than this
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


def _cost(cfg: StudyConfig, block: str, index: int) -> float:
    """Rough MACs of one network, to start the slowest first (a better-balanced pool)."""
    d = network_dims(cfg, index)
    mid = cfg.mid(d.d_in)
    per_act = {"conv1x1": d.d_in * d.d_out, "conv3x3": 9 * d.d_in * d.d_out,
               "ib3x3": 9 * mid * mid + mid * d.d_out, "ibdw": 9 * mid + mid * d.d_out}[block]
    return per_act * cfg.n + d.d_out ** 3


# -- files -------------------------------------------------------------------------
def results_path(out: str | os.PathLike) -> Path | None:
    """The final results file of a study directory (``rank_study.csv`` or ``.csv.gz``), if any."""
    out = Path(out)
    for name in (CSV_NAME, GZ_NAME):
        if (out / name).is_file():
            return out / name
    return None


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a results CSV (plain or gzip) as dicts of strings."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def load_config(out: str | os.PathLike) -> StudyConfig:
    """The :class:`StudyConfig` recorded in ``OUT/study.json``."""
    path = Path(out) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a rank-study output directory")
    return StudyConfig.from_dict(json.loads(path.read_text())["config"])


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _csv_bytes(rows: Iterable[Sequence[str]], header: bool = True) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(COLUMNS)
    w.writerows(rows)
    return buf.getvalue().encode()


def _read_raw(path: Path) -> tuple[list[list[str]], int]:
    """Rows of a results file as lists of strings, and how many lines were unreadable (a torn write)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        text = fh.read()
    lines = text.split("\n")
    if not lines or lines[0].split(",") != list(COLUMNS):
        raise ValueError(f"{path} does not start with the expected header {','.join(COLUMNS)}; "
                         f"move it away or pass --fresh")
    rows, bad = [], 0
    complete = text.endswith("\n")
    body = lines[1:-1] if complete else lines[1:]
    for k, line in enumerate(body):
        if not line:
            continue
        fields_ = line.split(",")
        last_unterminated = not complete and k == len(body) - 1
        if len(fields_) != len(COLUMNS) or last_unterminated:
            bad += 1
            continue
        rows.append(fields_)
    return rows, bad


def _group_complete(rows: Iterable[list[str]], cfg: StudyConfig) -> tuple[dict[tuple[str, int], list[list[str]]], int]:
    """Rows grouped by network, keeping only networks of this study with all their rows."""
    groups: dict[tuple[str, int], list[list[str]]] = {}
    for r in rows:
        groups.setdefault((r[0], int(r[1])), []).append(r)
    want = cfg.rows_per_network
    keep = {k: v for k, v in groups.items()
            if len(v) == want and k[0] in cfg.blocks and k[1] < cfg.networks}
    dropped = sum(len(v) for k, v in groups.items() if len(v) != want)
    return keep, dropped


def _sort_key(cfg: StudyConfig):
    blocks = {b: i for i, b in enumerate(cfg.blocks)}
    acts = {a: i for i, a in enumerate(cfg.acts)}
    measures = {m.name: i for i, m in enumerate(cfg.measure_list)}
    return lambda r: (blocks[r[0]], int(r[1]), acts[r[3]], measures[r[9]])


# -- the run -------------------------------------------------------------------------
@dataclass
class StudyRun:
    out: Path
    config: StudyConfig
    computed: int  # networks computed by this call
    reused: int  # finished networks found on disk
    complete: bool
    csv_path: Path | None
    seconds: float


_WORKER_CFG: StudyConfig | None = None


def _init_worker(cfg_dict: dict[str, Any]) -> None:
    global _WORKER_CFG
    torch.set_num_threads(1)
    _WORKER_CFG = StudyConfig.from_dict(cfg_dict)


def _work(task: tuple[str, int]) -> tuple[tuple[str, int], list[list[str]]]:
    assert _WORKER_CFG is not None
    return task, compute_network(_WORKER_CFG, *task)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _meta(cfg: StudyConfig, status: str, **extra: Any) -> dict[str, Any]:
    """The content of ``study.json``: the config, what it implies, the definitions and the software."""
    m = cfg.measure_list
    return dict(
        config=cfg.to_dict(), status=status,
        derived=dict(n=cfg.n, batch=cfg.batch, spatial=cfg.spatial, rows_per_network=cfg.rows_per_network,
                     measures=[x.name for x in m],
                     f32_tol_at_d_out_max=m[0].tol(cfg.d_out_max, cfg.n) if m[0].kind == "rank" else None,
                     networks_total=cfg.networks * len(cfg.blocks)),
        definitions=dict(
            output="f(BN(W X)) for conv1x1/conv3x3; for ib3x3/ibdw: 1x1 expand+BN+f, 3x3 (full or depthwise)"
                   "+BN+f, 1x1 project+BN, then the shortcut; output taken after the shortcut addition",
            shortcut={"partial": "input added to the first d_in output channels (ReXNet)",
                      "full": "input added only when d_in == d_out (MobileNetV2)",
                      "none": "no shortcut"}[cfg.shortcut],
            d_in="round(ratio * d_out), ratio = ratios[index % len(ratios)]",
            d_out="uniform integer in [d_out_min, d_out_max], drawn from SeedSequence([seed, index])",
            d_mid="round(expansion * d_in) (IBs only; 0 for single convs)",
            weights="N(0, 1/fan_in); BN gamma=1, beta=0; eval-mode BN uses running stats 0/1",
            input={"normal": "i.i.d. N(0, 1)",
                   "blur": f"N(0, 1) field blurred by a Gaussian of sigma {cfg.blur_sigma} px, unit variance"}[cfg.input],
            spectrum="singular values via eigvalsh of the float64 Gram matrix of the d_out x N output"
                     + (", rows centred" if cfg.center else ""),
            rank_ratio="measure / d_out"),
        versions=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__),
        machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                     cpus=os.cpu_count()),
        **extra)


def run_study(cfg: StudyConfig, out: str | os.PathLike, *, workers: int | None = None,
              progress: bool = True, fresh: bool = False, compress: str = "auto",
              stop_after: int | None = None) -> StudyRun:
    """Compute every network of ``cfg`` not yet finished in ``out``; sort them into the final CSV when all are.

    ``stop_after=k`` computes at most ``k`` new networks and returns as if
    interrupted (a budget, and how the tests interrupt a study).  ``fresh``
    discards earlier results in ``out``; otherwise a directory holding a study
    with different settings is refused.  ``compress``: ``auto`` (gzip above
    5 MB), ``yes`` or ``no``.  ``workers > 1`` starts a pool of *spawned*
    processes (forking a process that holds torch's thread pools is unsafe),
    so a script calling this needs the usual ``if __name__ == "__main__":`` guard.
    """
    if compress not in ("auto", "yes", "no"):
        raise ValueError(f"compress must be auto, yes or no, got {compress!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path, partial = out / CONFIG_NAME, out / PARTIAL_NAME
    if fresh:
        for name in (CSV_NAME, GZ_NAME, PARTIAL_NAME, CONFIG_NAME):
            (out / name).unlink(missing_ok=True)
    elif meta_path.is_file():
        old = json.loads(meta_path.read_text()).get("config", {})
        new = cfg.identity()
        diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"{out} holds a study with other settings ({shown}); "
                             f"use another --out, or --fresh to discard it")

    # Finished networks: the last final CSV, then the appended partial file (which may repeat some).
    done: dict[tuple[str, int], list[list[str]]] = {}
    torn = dropped = 0
    for p in (results_path(out), partial if partial.is_file() else None):
        if p is not None:
            rows, bad = _read_raw(p)
            complete_, short = _group_complete(rows, cfg)
            done.update(complete_)
            torn, dropped = torn + bad, dropped + short
            del rows
    tasks = [(b, i) for b in cfg.blocks for i in range(cfg.networks) if (b, i) not in done]
    tasks.sort(key=lambda t: -_cost(cfg, *t))
    if stop_after is not None:
        tasks = tasks[:max(0, stop_after)]

    from ..report import write_json
    write_json(_meta(cfg, "running"), meta_path)
    computed = 0
    if tasks:
        # Start the partial file from exactly the finished networks (drops a torn write).
        _atomic_write(partial, _csv_bytes(r for v in done.values() for r in v))
        from tqdm import tqdm
        total = cfg.networks * len(cfg.blocks)
        with open(partial, "a", newline="") as fh, \
                tqdm(total=total, initial=len(done), desc="rank study", unit="net",
                     disable=not progress, dynamic_ncols=True) as bar:
            def record(key: tuple[str, int], net_rows: list[list[str]]) -> None:
                nonlocal computed
                fh.write(_csv_bytes(net_rows, header=False).decode())  # one write per network
                fh.flush()
                done[key] = net_rows
                computed += 1
                bar.update(1)

            if workers == 1:
                with _single_thread():
                    for task in tasks:
                        record(task, compute_network(cfg, *task))
            else:
                ctx = mp.get_context("spawn")  # no fork of a process that holds torch's thread pools
                with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker,
                              initargs=(cfg.to_dict(),)) as pool:
                    for key, net_rows in pool.imap_unordered(_work, tasks, chunksize=1):
                        record(key, net_rows)
            os.fsync(fh.fileno())

    expected = cfg.networks * len(cfg.blocks)
    complete = len(done) == expected
    csv_path = results_path(out)
    if complete:
        key = _sort_key(cfg)
        ordered = sorted((r for v in done.values() for r in v), key=key)
        data = _csv_bytes(ordered)
        gz = compress == "yes" or (compress == "auto" and len(data) > GZIP_ABOVE_BYTES)
        csv_path = out / (GZ_NAME if gz else CSV_NAME)
        if gz:
            data = gzip.compress(data, mtime=0)  # mtime 0: the same study gives the same bytes
        _atomic_write(csv_path, data)
        (out / (CSV_NAME if gz else GZ_NAME)).unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    write_json(_meta(cfg, "complete" if complete else "partial",
                     run=dict(networks_done=len(done), networks_expected=expected, computed_this_run=computed,
                              reused=len(done) - computed, dropped_rows=dropped, torn_lines=torn,
                              workers=workers, seconds_this_run=round(seconds, 2),
                              results=csv_path.name if csv_path else None)), meta_path)
    return StudyRun(out, cfg, computed, len(done) - computed, complete, csv_path, seconds)


def quick_config(**overrides: Any) -> StudyConfig:
    """The ``--quick`` study: the default design with :data:`QUICK_NETWORKS` networks per block type."""
    return StudyConfig(**{"networks": QUICK_NETWORKS, **overrides})
