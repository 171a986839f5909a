"""Audit any model against the paper's design guides for channel dimensions (Section 3.3).

The guides, read from the rank study: (1) expand at most 6x at the first 1x1
conv of a block; (2) a higher dimension ratio (block input / output channels)
per inverted bottleneck is better; (3) put complex nonlinearities (SiLU/Swish,
ELU, GELU, Hard Swish, ...) after 1x1 / full kxk convs, not after depthwise ones.

The model is only run, never read: forward hooks on every ``nn.Conv2d`` and
every activation module record, on one dummy input, the order of execution
and the tensor shapes.  That works for our zoo, timm and torchvision models
alike.  Heuristics, stated so their limits are clear:

* An activation belongs to the most recent conv (in execution order) whose
  output channels match its input channels; convs and activations that run
  on a 1x1 map (squeeze-excitation, pooled heads) are left out as "pooled".
  Activations applied as functions (``F.silu`` in a forward) are invisible.
* A block is the smallest module (below the root) holding at least two
  non-pooled convs, at most one depthwise conv and at most two full kxk
  convs; a conv with no such module is its own block (stems, heads).
* The input size must leave spatial maps larger than 1x1 before global
  pooling (default 224).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import write_csv, write_json

__all__ = ["COMPLEX_ACTS", "SIMPLE_ACTS", "GATE_ACTS", "MAX_EXPANSION", "LayerAudit", "BlockAudit",
           "AuditResult", "load_model", "audit_model", "audit", "format_audit", "write_audit"]

MAX_EXPANSION = 6.0
# Canonical names by lower-case class name (torch, timm's *Me / *Auto variants).
_ACT_NAMES = {
    "relu": "relu", "relu6": "relu6", "leakyrelu": "leaky_relu", "prelu": "prelu", "hardtanh": "hardtanh",
    "silu": "silu", "swish": "silu", "swishme": "silu", "swishauto": "silu",
    "hardswish": "hard_swish", "hardswishme": "hard_swish", "hardswishauto": "hard_swish",
    "elu": "elu", "celu": "celu", "selu": "selu", "gelu": "gelu", "gelutanh": "gelu", "quickgelu": "gelu",
    "softplus": "softplus", "mish": "mish", "mishme": "mish", "mishauto": "mish", "tanh": "tanh",
    "sigmoid": "sigmoid", "hardsigmoid": "hard_sigmoid", "hardsigmoidme": "hard_sigmoid",
    "hardsigmoidauto": "hard_sigmoid", "gatesigmoid": "sigmoid",
}
COMPLEX_ACTS = frozenset({"silu", "hard_swish", "elu", "celu", "selu", "gelu", "softplus", "mish", "tanh"})
SIMPLE_ACTS = frozenset({"relu", "relu6", "leaky_relu", "prelu", "hardtanh"})
GATE_ACTS = frozenset({"sigmoid", "hard_sigmoid"})


@dataclass
class LayerAudit:
    block: str
    layer: str
    kind: str  # "1x1", "3x3" (any full kxk), "dw3x3" (depthwise), "grouped3x3"
    in_chs: int
    out_chs: int
    dim_ratio: float  # in / out channels of this conv
    stride: int
    act: str  # canonical name of the activation after it, or "none"
    act_class: str  # complex | simple | gate | none
    expansion_guide: str  # "ok" / "exceeds 6" at the first 1x1 conv of a multi-conv block, else ""
    act_guide: str  # "ok" (complex after 1x1/kxk) / "complex after depthwise", else ""


@dataclass
class BlockAudit:
    block: str
    is_ib: bool  # holds a depthwise conv
    layers: int
    in_chs: int
    out_chs: int
    dim_ratio: float  # block input / output channels (guide 2: higher is better)
    expansion: float | None  # out / in of the first 1x1 conv (None when the block starts otherwise)
    expansion_ok: bool | None
    complex_after_conv: int  # complex nonlinearities after 1x1 / full kxk convs (meets guide 3)
    complex_after_dw: int  # complex nonlinearities after depthwise convs (against guide 3)


@dataclass
class AuditResult:
    model: str
    source: str
    input_size: int
    layers: list[LayerAudit]
    blocks: list[BlockAudit]
    pooled_convs: int  # SE / pooled-head convs left out

    def summary(self) -> dict[str, Any]:
        ibs = [b for b in self.blocks if b.is_ib]
        with_exp = [b for b in self.blocks if b.expansion is not None and b.layers > 1]
        return dict(
            blocks=len(self.blocks), ibs=len(ibs),
            expansion_ok=sum(bool(b.expansion_ok) for b in with_exp), expansion_checked=len(with_exp),
            max_expansion=max((b.expansion for b in with_exp), default=None),
            mean_ib_dim_ratio=(round(sum(b.dim_ratio for b in ibs) / len(ibs), 4) if ibs else None),
            complex_after_conv=sum(b.complex_after_conv for b in self.blocks),
            complex_after_dw=sum(b.complex_after_dw for b in self.blocks),
            pooled_convs_skipped=self.pooled_convs)


def load_model(name: str) -> tuple[nn.Module, str]:
    """A randomly initialised model by name: ours, then timm, then torchvision (never pretrained).

    Prefix ``rexnet:``, ``timm:`` or ``torchvision:`` (``tv:``) to choose the
    source when a name exists in several (e.g. ``timm:mobilenetv2_100``).
    """
    source, _, bare = name.partition(":") if ":" in name else ("", "", name)
    source = {"tv": "torchvision"}.get(source, source)
    if source not in ("", "rexnet", "timm", "torchvision"):
        raise ValueError(f"unknown model source {source!r} in {name!r}; use rexnet:, timm: or torchvision:")
    import rexnet

    if source in ("", "rexnet") and bare in rexnet.list_models():
        return rexnet.create_model(bare), "rexnet"
    if source in ("", "timm"):
        import timm
        if timm.is_model(bare):
            return timm.create_model(bare, pretrained=False), "timm"
    if source in ("", "torchvision"):
        import torchvision
        if bare in torchvision.models.list_models():
            return torchvision.models.get_model(bare, weights=None), "torchvision"
    where = {"": "our zoo, timm or torchvision", "rexnet": "our zoo"}.get(source, source)
    raise ValueError(f"unknown model {bare!r} in {where}; see `rexnet models`, timm.list_models() or "
                     f"torchvision.models.list_models()")


def _act_name(m: nn.Module) -> str | None:
    return _ACT_NAMES.get(type(m).__name__.lower())


def _act_class(name: str) -> str:
    if name in COMPLEX_ACTS:
        return "complex"
    if name in SIMPLE_ACTS:
        return "simple"
    if name in GATE_ACTS:
        return "gate"
    return "none"


def _conv_kind(c: nn.Conv2d) -> str:
    k = "x".join(str(v) for v in c.kernel_size)
    if c.groups == 1:
        return "1x1" if c.kernel_size == (1, 1) else k
    if c.groups == c.in_channels and c.out_channels % c.in_channels == 0:
        return f"dw{k}"
    return f"grouped{k}"


@torch.no_grad()
def audit_model(model: nn.Module, name: str = "model", source: str = "module",
                input_size: int = 224, in_chans: int = 3) -> AuditResult:
    """Run ``model`` once on a dummy input with hooks and audit every conv layer and activation."""
    if input_size < 32:
        raise ValueError(f"input size {input_size} is too small: maps would shrink to 1x1 before pooling")
    events: list[tuple[str, str, nn.Module, tuple[int, ...]]] = []  # (kind, name, module, input shape)
    handles = []
    for mod_name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) or _act_name(m) is not None:
            kind = "conv" if isinstance(m, nn.Conv2d) else "act"
            handles.append(m.register_forward_pre_hook(
                lambda mod, inp, _k=kind, _n=mod_name: events.append((_k, _n, mod, tuple(inp[0].shape)))))
    was_training = model.training
    model.eval()
    try:
        model(torch.randn(1, in_chans, input_size, input_size, generator=torch.Generator().manual_seed(0)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    pooled = lambda shape: len(shape) == 4 and shape[2] * shape[3] == 1  # noqa: E731
    convs: list[tuple[str, nn.Conv2d]] = []
    act_of: dict[str, str] = {}
    seen: set[str] = set()
    n_pooled = 0
    for kind, mod_name, m, shape in events:
        if kind == "conv":
            if mod_name in seen:  # a conv reused in one forward: audit it once
                continue
            seen.add(mod_name)
            if pooled(shape):
                n_pooled += 1
                continue
            convs.append((mod_name, m))
        elif not pooled(shape) and len(shape) == 4:
            act = _act_name(m)
            for cname, c in reversed(convs):
                if c.out_channels == shape[1]:
                    act_of.setdefault(cname, act)
                    break
    if not convs:
        raise ValueError(f"{name}: no Conv2d layer ran on the dummy input; rank-audit needs a conv network")

    block_of = _assign_blocks([n for n, _ in convs], {n: _conv_kind(c) for n, c in convs})
    layers: list[LayerAudit] = []
    first_in_block: dict[str, str] = {}
    for cname, c in convs:
        first_in_block.setdefault(block_of[cname], cname)
    members: dict[str, list[str]] = {}
    for cname, _ in convs:
        members.setdefault(block_of[cname], []).append(cname)
    for cname, c in convs:
        kind = _conv_kind(c)
        act = act_of.get(cname, "none")
        cls = _act_class(act)
        block = block_of[cname]
        exp_guide = ""
        if first_in_block[block] == cname and kind == "1x1" and len(members[block]) > 1:
            exp_guide = "ok" if c.out_channels <= MAX_EXPANSION * c.in_channels + 1e-9 else "exceeds 6"
        act_guide = ""
        if cls == "complex":
            act_guide = "complex after depthwise" if kind.startswith("dw") else "ok"
        layers.append(LayerAudit(block, cname, kind, c.in_channels, c.out_channels,
                                 round(c.in_channels / c.out_channels, 4), c.stride[0], act, cls,
                                 exp_guide, act_guide))
    blocks: list[BlockAudit] = []
    by_name = dict(convs)
    for block, names in members.items():
        rows = [r for r in layers if r.block == block]
        first = by_name[names[0]]
        expansion = (round(first.out_channels / first.in_channels, 4)
                     if _conv_kind(first) == "1x1" and len(names) > 1 else None)
        b_in, b_out = first.in_channels, by_name[names[-1]].out_channels
        blocks.append(BlockAudit(block, any(r.kind.startswith("dw") for r in rows), len(rows), b_in, b_out,
                                 round(b_in / b_out, 4), expansion,
                                 None if expansion is None else expansion <= MAX_EXPANSION + 1e-9,
                                 sum(r.act_guide == "ok" for r in rows),
                                 sum(r.act_guide == "complex after depthwise" for r in rows)))
    return AuditResult(name, source, input_size, layers, blocks, n_pooled)


def _assign_blocks(names: list[str], kinds: dict[str, str]) -> dict[str, str]:
    """Block name of each conv (see the module docstring for the rule)."""
    def inside(prefix: str) -> list[str]:
        return [n for n in names if n.startswith(prefix + ".")]

    out = {}
    for n in names:
        parts = n.split(".")
        chosen = None
        for k in range(len(parts) - 1, 0, -1):  # smallest ancestor first, root excluded
            anc = ".".join(parts[:k])
            members = inside(anc)
            n_dw = sum(kinds[m].startswith("dw") for m in members)
            n_full = sum(kinds[m] not in ("1x1",) and not kinds[m].startswith("dw") for m in members)
            if len(members) >= 2:
                if n_dw <= 1 and n_full <= 2:
                    chosen = anc
                break
        if chosen is None:  # its own block: the largest ancestor holding only this conv
            chosen = n
            for k in range(len(parts) - 1, 0, -1):
                anc = ".".join(parts[:k])
                if inside(anc) == [n]:
                    chosen = anc
                else:
                    break
        out[n] = chosen
    return out


def audit(name: str, input_size: int = 224) -> AuditResult:
    """Load ``name`` (see :func:`load_model`) and audit it."""
    model, source = load_model(name)
    return audit_model(model, name.split(":")[-1], source, input_size)


def format_audit(res: AuditResult) -> str:
    """The per-layer table and a summary, as text."""
    from ..tables import format_table

    exp = {b.block: b.expansion for b in res.blocks}
    rows = [dict(block=r.block, layer=r.layer, kind=r.kind, in_chs=r.in_chs, out_chs=r.out_chs,
                 dim_ratio=f"{r.dim_ratio:.3f}", block_exp=("" if exp[r.block] is None else f"{exp[r.block]:g}"),
                 act=r.act, act_class=r.act_class,
                 guides="; ".join(x for x in (f"expansion {r.expansion_guide}" if r.expansion_guide else "",
                                              f"act {r.act_guide}" if r.act_guide else "") if x))
            for r in res.layers]
    s = res.summary()
    lines = [f"{res.model} ({res.source}), dummy input {res.input_size}x{res.input_size}: {len(res.layers)} conv "
             f"layers in {s['blocks']} blocks ({s['ibs']} with a depthwise conv); {s['pooled_convs_skipped']} "
             f"pooled (SE/head) convs left out", "", format_table(rows), "",
             f"guide 1, expansion <= {MAX_EXPANSION:g} at a block's first 1x1 conv: {s['expansion_ok']}/"
             f"{s['expansion_checked']} blocks (largest {s['max_expansion']})",
             f"guide 2, dimension ratio in/out per IB (higher is better): mean {s['mean_ib_dim_ratio']}",
             f"guide 3, complex nonlinearities after 1x1/kxk convs: {s['complex_after_conv']}; after depthwise "
             f"convs (against the guide): {s['complex_after_dw']}"]
    return "\n".join(lines)


def write_audit(res: AuditResult, csv_path: str | os.PathLike | None = None,
                json_path: str | os.PathLike | None = None) -> list[Path]:
    """Layers as CSV; layers, blocks and summary as JSON (both written atomically)."""
    written = []
    if csv_path:
        written.append(write_csv([asdict(r) for r in res.layers], csv_path))
    if json_path:
        written.append(write_json(dict(model=res.model, source=res.source, input_size=res.input_size,
                                       summary=res.summary(), blocks=[asdict(b) for b in res.blocks],
                                       layers=[asdict(r) for r in res.layers]), json_path))
    return written
