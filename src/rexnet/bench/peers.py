"""Latency and throughput of our models against published peers, timed in turns.

Peers are created untrained through timm or torchvision at their native
resolution; their ImageNet top-1 is the figure their papers publish (never
measured here), and ours is the zoo's ``top1`` (the ReXNet paper / the authors).

Timing is :func:`rexnet.bench.timing.time_interleaved` (inputs per model, so peers
run at their own resolutions; a synchronise around each call on CUDA; an
injectable timer for the tests) and :func:`rexnet.bench.timing.latency_stats`.
"""
from __future__ import annotations

import os
import platform
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

# oneDNN keeps 1,024 compiled convolution primitives by default.  ReXNet's linear
# widths give almost every conv its own shape, so timing many models in turns evicts
# them and rebuilds them on every call (measured here: rexnet_100 at batch 1 went
# from 22 to 61 ms median among 11 interleaved models).  Read when the first primitive
# is built, so setting it before any model runs is enough; a user's own value wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from .. import io  # noqa: E402
from .timing import latency_stats, time_interleaved  # noqa: E402

__all__ = ["Peer", "PEERS", "DEVICES", "DTYPES", "Entry", "check_device", "parse_dtype", "parse_compare",
           "get_peer", "build_entries", "run_bench", "write_results",
           "plot_latency_accuracy", "machine_info", "TABLE_COLUMNS"]

DEVICES = ("cpu", "cuda")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
OURS_TOP1_SOURCE = "Han et al., ReXNet, CVPR 2021 / authors' repository"
TABLE_COLUMNS = ("model", "form", "batch", "input_size", "params_m", "gmacs", "median_ms", "p10_ms", "p90_ms",
                 "images_per_s", "top1_published")


@dataclass(frozen=True)
class Peer:
    name: str
    library: str     # "timm" or "torchvision"
    arch: str        # the model's name in that library
    input_size: int  # native resolution
    top1: float      # published ImageNet top-1 (%)
    source: str      # where it is published
    family: str

    def create(self) -> nn.Module:
        """The architecture with random weights (nothing is downloaded)."""
        if self.library == "timm":
            import timm
            return timm.create_model(self.arch, pretrained=False)
        import torchvision
        return torchvision.models.get_model(self.arch, weights=None)


_EFFNET = "Tan & Le, EfficientNet, ICML 2019, Table 2"
PEERS: dict[str, Peer] = {p.name: p for p in (
    Peer("efficientnet_b0", "timm", "efficientnet_b0", 224, 77.1, _EFFNET, "efficientnet"),
    Peer("efficientnet_b1", "timm", "efficientnet_b1", 240, 79.1, _EFFNET, "efficientnet"),
    Peer("efficientnet_b2", "timm", "efficientnet_b2", 260, 80.1, _EFFNET, "efficientnet"),
    Peer("efficientnet_b3", "timm", "efficientnet_b3", 300, 81.6, _EFFNET, "efficientnet"),
    Peer("mobilenet_v2", "torchvision", "mobilenet_v2", 224, 72.0,
         "Sandler et al., MobileNetV2, CVPR 2018, Table 4", "mobilenet_v2"),
    Peer("mobilenet_v3_large", "torchvision", "mobilenet_v3_large", 224, 75.2,
         "Howard et al., Searching for MobileNetV3, ICCV 2019, Table 3", "mobilenet_v3"),
)}


@dataclass
class Entry:
    """One model ready to time, with what the table prints beside it."""
    name: str
    module: Callable[[torch.Tensor], torch.Tensor]
    input_size: int
    source: str                     # rexnet, timm, torchvision, onnxruntime, torchscript
    form: str                       # eager, deployed, +channels_last, +compile, or the runtime
    family: str
    params: int | None = None
    macs: int | None = None         # at input_size
    top1: float | None = None
    top1_source: str | None = None


# -- argument checks -----------------------------------------------------------
def check_device(device: str | torch.device) -> torch.device:
    """``cpu`` or ``cuda[:N]``; ``ValueError`` naming the choices, or saying CUDA is unavailable."""
    kind = str(device).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"unknown device {str(device)!r}; choose one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but torch.cuda.is_available() is False here "
                         f"(no GPU, or a CPU-only torch build); use --device cpu")
    return torch.device(device)


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}") from None


def get_peer(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)} (or 'all')") from None


def parse_compare(text: str | Sequence[str] | None) -> list[str]:
    """Peer names from a comma list (``all`` = every peer); unknown names raise ``ValueError``."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text or [])
    names = [n for n in names if n]
    if "all" in names:
        return list(PEERS)
    return [get_peer(n).name for n in names]


# -- models ---------------------------------------------------------------------
def _prepare(module: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool,
             compile: bool) -> nn.Module:
    module = module.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return torch.compile(module) if compile else module


def _form(base: str, channels_last: bool, compile: bool) -> str:
    return base + ("+channels_last" if channels_last else "") + ("+compile" if compile else "")


def _exported_entry(path: Path, device: torch.device, dtype: torch.dtype, input_size: int | None,
                    threads: int | None) -> Entry:
    from .export import exported_format, load_exported

    fmt = exported_format(path)
    if fmt == "onnx" and dtype != torch.float32:
        raise ValueError(f"{path.name}: ONNX files are timed in fp32 only; drop --dtype or time the zoo model")
    module = load_exported(path, device, threads)
    if fmt == "torchscript":
        module = module.to(dtype=dtype)
    native = getattr(module, "input_size", None)  # an ONNX file fixes its spatial size
    if native and input_size and input_size != native:
        raise ValueError(f"{path.name} was exported for {native}px inputs, not {input_size}px: leave "
                         f"--input-size native or re-export with `rexnet export ... --input-size {input_size}`")
    native = native or 224
    return Entry(path.name, module, input_size or native, "onnxruntime" if fmt == "onnx" else "torchscript",
                 "onnxruntime" if fmt == "onnx" else "torchscript", "exported")


def build_entries(models: Sequence[str], compare: Sequence[str] = (), *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32, channels_last: bool = False, deploy: bool = False,
                  compile: bool = False, input_size: int | None = None,
                  threads: int | None = None) -> list[Entry]:
    """Entries for zoo names (shell patterns allowed), peer names and exported files (.onnx / .pt).

    ``input_size=None`` times each model at its native resolution.  ``deploy``
    folds BN in our models only; peers run as their library builds them.
    """
    from .. import create_model
    from ..complexity import complexity, count_module
    from ..models.zoo import REGISTRY, list_models, model_info
    from .deploy import deploy_model
    from .export import TORCHSCRIPT_SUFFIXES

    device = check_device(device)
    names: list[str] = []
    for name in list(models) + list(compare):
        if any(c in name for c in "*?["):
            if not list_models(name):
                raise ValueError(f"no model of ours matches {name!r}; see `rexnet models` for the names")
            names += list_models(name)
        else:
            names.append(name)
    entries = []
    for name in dict.fromkeys(names):
        path = Path(name)
        if path.suffix in (".onnx", *TORCHSCRIPT_SUFFIXES) or path.is_file():
            entries.append(_exported_entry(path, device, dtype, input_size, threads))
        elif name in REGISTRY:
            model, info = create_model(name), model_info(name)
            size = input_size or model.spec.input_size
            c = complexity(model.spec, size)
            module = (deploy_model(model, channels_last, compile, device=device, dtype=dtype) if deploy
                      else _prepare(model, device, dtype, channels_last, compile))
            form = _form("deployed" if deploy else "eager", channels_last, compile)
            entries.append(Entry(name, module, size, "rexnet", form, info.family, c.params, c.macs, info.top1,
                                 OURS_TOP1_SOURCE if info.top1 else None))
        elif name in PEERS:
            peer = PEERS[name]
            module = peer.create()
            size = input_size or peer.input_size
            params, macs = count_module(module, size)  # the convention our analytic counts follow
            entries.append(Entry(name, _prepare(module, device, dtype, channels_last, compile), size,
                                 peer.library, _form("eager", channels_last, compile), peer.family,
                                 params, macs, peer.top1, peer.source))
        else:
            raise ValueError(f"unknown model {name!r}: give one of ours ({', '.join(list_models()[:8])}, ...; "
                             f"see `rexnet models`), a peer ({', '.join(PEERS)}), or an exported "
                             f".onnx / .pt file from `rexnet export`")
    if not entries:
        raise ValueError("no models to time: name at least one model or peer")
    seen = [e.name for e in entries]
    if len(set(seen)) < len(seen):
        raise ValueError(f"two models share a name in {seen}; rename one of the exported files")
    return entries


# -- timing ---------------------------------------------------------------------
def run_bench(entries: Sequence[Entry], batches: Sequence[int] = (1, 32), *, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, channels_last: bool = False, runs: int = 30, warmup: int = 5,
              timer: Callable[[], float] = time.perf_counter,
              progress: Callable[[str], Any] | None = print) -> list[dict[str, Any]]:
    """One row per model and batch size: latency statistics, throughput, params, MACs, published top-1."""
    device = check_device(device)
    if not batches or any(int(b) < 1 for b in batches):
        raise ValueError(f"batch sizes must be positive integers, got {list(batches)}")
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    dname = [k for k, v in DTYPES.items() if v == dtype][0]
    rows = []
    for batch in batches:
        if progress:
            progress(f"batch {batch}: {len(entries)} models x ({warmup} warm-up + {runs} timed) runs, interleaved")
        inputs = {}
        for e in entries:
            x = torch.randn(batch, 3, e.input_size, e.input_size, device=device, dtype=dtype)
            inputs[e.name] = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        times = time_interleaved({e.name: e.module for e in entries}, inputs, runs, warmup, timer, sync)
        for e in entries:
            s = latency_stats(times[e.name], batch)
            rows.append(dict(model=e.name, source=e.source, form=e.form, family=e.family, device=str(device),
                             dtype=dname, batch=batch, input_size=e.input_size,
                             params_m=None if e.params is None else round(e.params / 1e6, 3),
                             gmacs=None if e.macs is None else round(e.macs / 1e9, 4),
                             # 4 significant digits: a tiny model's 0.02 ms must not round to 1 digit
                             median_ms=_sig(s["median_ms"]), p10_ms=_sig(s["p10_ms"]),
                             p90_ms=_sig(s["p90_ms"]), mean_ms=_sig(s["mean_ms"]),
                             images_per_s=round(s["images_per_s"], 1), runs=s["runs"],
                             top1_published=e.top1, top1_source=e.top1_source))
        del inputs
    return rows


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What the numbers were measured on."""
    import torchvision

    try:
        import timm
        timm_version = timm.__version__
    except ImportError:
        timm_version = None
    device = torch.device(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    return dict(device=str(device), device_name=name, threads=torch.get_num_threads(), torch=torch.__version__,
                torchvision=torchvision.__version__, timm=timm_version, python=platform.python_version(),
                date=time.strftime("%Y-%m-%d %H:%M"))


# -- outputs --------------------------------------------------------------------
def write_results(rows: Sequence[dict[str, Any]], out: str | os.PathLike, meta: dict[str, Any] | None = None,
                  stem: str = "bench") -> dict[str, Path]:
    """``<stem>.csv``, ``<stem>.json`` (rows + meta) and, when any row has a published top-1, ``<stem>.png``."""
    if not rows:
        raise ValueError("no rows to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(csv=io.write_csv(rows, out / f"{stem}.csv", columns=list(rows[0])),
                 json=io.write_json(dict(meta=meta or {}, rows=list(rows)), out / f"{stem}.json"))
    plot = plot_latency_accuracy(rows, out / f"{stem}.png", meta)
    if plot is not None:
        paths["png"] = plot
    return paths


def plot_latency_accuracy(rows: Sequence[dict[str, Any]], path: str | os.PathLike,
                          meta: dict[str, Any] | None = None) -> Path | None:
    """Published top-1 against measured median latency, one panel per batch size (the paper's Fig. 3 view).

    Models of one family are joined by a line.  Rows without a published top-1
    are left out; returns ``None`` when none has one.
    """
    rows = [r for r in rows if r.get("top1_published") is not None]
    if not rows:
        return None
    plt = io.pyplot()
    batches = sorted({r["batch"] for r in rows})
    one_size = len({r["input_size"] for r in rows}) == 1
    fig, axes = plt.subplots(1, len(batches), figsize=(5.6 * len(batches), 4.6), dpi=120, squeeze=False)
    families = sorted({r["family"] for r in rows}, key=lambda f: (not f.startswith("rexnet"), f))
    colors = dict(zip(families, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, batch in zip(axes[0], batches):
        for fam in families:
            pts = sorted((r for r in rows if r["batch"] == batch and r["family"] == fam),
                         key=lambda r: r["median_ms"])
            if not pts:
                continue
            ours = pts[0]["source"] == "rexnet"
            forms = "/".join(dict.fromkeys(r["form"] for r in pts))
            ax.plot([r["median_ms"] for r in pts], [r["top1_published"] for r in pts], marker="o",
                    ms=6 if ours else 5, lw=2 if ours else 1.2, color=colors[fam], label=f"{fam} ({forms})",
                    linestyle="-" if ours else "--")
            for r in pts:
                label = r["model"] if one_size else f"{r['model']} @{r['input_size']}"
                ax.annotate(label, (r["median_ms"], r["top1_published"]), fontsize=7,
                            xytext=(4, -9), textcoords="offset points")
        r0 = next(r for r in rows if r["batch"] == batch)
        size = f"all at {r0['input_size']}px" if one_size else "native resolutions"
        ax.set_title(f"batch {batch}, {r0['device']}, {r0['dtype']}, {size}", fontsize=10)
        ax.margins(x=0.18, y=0.08)  # room for the labels
        ax.set_xlabel("median latency per batch (ms), measured here")
        ax.set_ylabel("ImageNet top-1 (%), published figures")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    where = f" on {meta['device_name']}" if meta and meta.get("device_name") else ""
    fig.suptitle(f"Latency (measured{where}) vs accuracy (published, not measured here)", fontsize=10)
    sources = sorted({r["top1_source"] for r in rows if r.get("top1_source")})
    note = textwrap.fill("top-1 sources: " + "; ".join(sources), width=110 * len(batches))
    fig.text(0.01, 0.01, note, fontsize=6, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03 + 0.02 * note.count("\n"), 1, 1))
    return io.save_figure(fig, path)
