"""Checkpoint formats and safe loading.

Formats, auto-detected from the keys:

- ``rexnet``: ours (a state dict of :class:`~rexnet.models.build.Net`, optionally
  wrapped as ``{"model": ..., "spec": ...}`` by our training code);
- ``timm``: timm's ``RexNet`` state dicts (the same layout as ours);
- ``original``: the authors' ``ReXNetV1`` / ``ReXNetV1_lite`` (``features.N.out.M.*``,
  ``output.*``), mapped key by key from the spec.

Files are ``.safetensors`` or ``.pth``/``.pt``/``.bin`` read with
``torch.load(weights_only=True)``: nothing is ever unpickled.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_path
from ..spec import NetSpec

__all__ = ["CheckpointError", "read_state_dict", "detect_format", "convert_state_dict",
           "load_weights", "save_weights", "resolve_pretrained", "cache_dir"]

FORMATS = ("rexnet", "timm", "original")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or torch file, unwrapping common containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt or a pickle needing arbitrary code
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}. "
                              f"Is the file complete? Only tensors are loaded (weights_only=True).") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict", "state_dict_ema"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    # DataParallel / DDP / torch.compile prefixes
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in obj.items()}


def detect_format(sd: dict[str, torch.Tensor]) -> str:
    keys = list(sd)
    if any(".out." in k for k in keys) or any(k.startswith("output.") for k in keys):
        return "original"
    if any(k.startswith("stem.conv.") for k in keys):
        return "rexnet"  # timm's layout is ours
    raise CheckpointError("unrecognised checkpoint layout: expected keys like 'stem.conv.weight' "
                          f"(ours / timm) or 'features.0.weight' + 'output.*' (original ReXNet); "
                          f"first keys: {keys[:5]}")


def _original_key_map(spec: NetSpec) -> dict[str, str]:
    """Original ReXNetV1 / ReXNetV1_lite key -> our key, derived from the spec."""
    lite = spec.head.hidden_chs > 0
    m: dict[str, str] = {}

    def conv_bn(src_conv: str, src_bn: str, dst: str) -> None:
        m[f"{src_conv}.weight"] = f"{dst}.conv.weight"
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            m[f"{src_bn}.{p}"] = f"{dst}.bn.{p}"

    conv_bn("features.0", "features.1", "stem")
    for i, b in enumerate(spec.blocks):
        src, j = f"features.{3 + i}.out", 0
        if b.has_expand:
            conv_bn(f"{src}.{j}", f"{src}.{j + 1}", f"features.{i}.conv_exp")
            j += 3
        conv_bn(f"{src}.{j}", f"{src}.{j + 1}", f"features.{i}.conv_dw")
        j += 3 if lite else 2
        if b.se_chs:
            for s, d in (("fc.0", "fc1"), ("fc.3", "fc2")):
                m[f"{src}.{j}.{s}.weight"] = f"features.{i}.se.{d}.weight"
                m[f"{src}.{j}.{s}.bias"] = f"features.{i}.se.{d}.bias"
            for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                m[f"{src}.{j}.fc.1.{p}"] = f"features.{i}.se.bn.{p}"
            j += 1
        if not lite:
            j += 1  # the ReLU6 after the depthwise conv / SE
        conv_bn(f"{src}.{j}", f"{src}.{j + 1}", f"features.{i}.conv_pwl")
    n = 3 + len(spec.blocks)
    conv_bn(f"features.{n}", f"features.{n + 1}", f"features.{len(spec.blocks)}")
    if lite:
        m["output.0.weight"], m["output.0.bias"] = "head.hidden.conv.weight", "head.hidden.conv.bias"
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            m[f"output.1.{p}"] = f"head.hidden.bn.{p}"
        m["output.4.weight"], m["output.4.bias"] = "head.fc.weight", "head.fc.bias"
    else:
        m["output.1.weight"], m["output.1.bias"] = "head.fc.weight", "head.fc.bias"
    return m


def convert_state_dict(sd: dict[str, torch.Tensor], spec: NetSpec, fmt: str | None = None) -> dict[str, torch.Tensor]:
    """Any supported layout -> ours."""
    fmt = fmt or detect_format(sd)
    if fmt not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {fmt!r}; use one of {FORMATS}")
    if fmt in ("rexnet", "timm"):
        return dict(sd)
    key_map = _original_key_map(spec)
    out = {}
    for k, v in sd.items():
        new = key_map.get(k, k)  # unmapped keys are reported as unexpected by load_weights
        if new in ("head.fc.weight",) and v.ndim == 4:
            v = v.flatten(1)  # the original classifier is a 1x1 conv
        out[new] = v
    return out


def load_weights(model: nn.Module, path_or_sd: str | os.PathLike | dict, *, fmt: str | None = None,
                 reset_classifier: bool = False, strict: bool = True) -> dict[str, list[str]]:
    """Load a checkpoint into ``model`` (a :class:`Net`), checking every key and shape.

    With ``reset_classifier`` a classifier of a different size is skipped and
    the model keeps its own freshly initialised one (fine-tuning to new classes).
    Returns the keys that were skipped.  Raises :class:`CheckpointError` listing
    missing, unexpected and wrong-shape keys otherwise.
    """
    sd = read_state_dict(path_or_sd) if not isinstance(path_or_sd, dict) else dict(path_or_sd)
    source = str(path_or_sd) if not isinstance(path_or_sd, dict) else "state dict"
    sd = convert_state_dict(sd, model.spec, fmt)
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith("head.fc.")}
    skipped = []
    if reset_classifier:
        for k in list(sd):
            if k.startswith("head.fc.") and (k not in own or sd[k].shape != own[k].shape):
                skipped.append(k)
                del sd[k]
    missing = [k for k in own if k not in sd and not (reset_classifier and k in head_keys)]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
             for k in sd if k in own and sd[k].shape != own[k].shape]
    if strict and (missing or unexpected or wrong):
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{label}: {shown}")
        hint = ""
        if all(k.startswith("head.fc.") for k in missing + unexpected + [w.split(":")[0] for w in wrong]):
            hint = " Only the classifier differs: pass reset_classifier=True (--reset-classifier) to keep the backbone."
        raise CheckpointError(f"{source} does not fit {model.spec.name}: " + "; ".join(parts) + "." + hint)
    with torch.no_grad():
        for k, v in sd.items():
            if k in own and own[k].shape == v.shape:
                own[k].copy_(v)
    return dict(missing=missing, unexpected=unexpected, skipped=skipped)


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the model's state dict atomically (.safetensors or torch format by extension)."""
    path = Path(path)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:  # also gives safetensors' 0600 file the usual permissions
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(sd, str(tmp), metadata={"spec": model.spec.to_json(indent=None)})
        else:
            torch.save({"model": sd, "spec": model.spec.to_dict()}, tmp)
    return path


def cache_dir() -> Path:
    root = os.environ.get("REXNET_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "rexnet")
    return Path(root)


def resolve_pretrained(name: str, weights_info: dict | None, download: bool = True) -> Path:
    """A local file for ``name``'s published weights: the cache first, then a download.

    Looks for ``$REXNET_CACHE/<name>.safetensors`` (or ``.pth``) and downloads the
    published file there when absent.  Offline, fails with the path to place a
    file at instead of a traceback.
    """
    folder = cache_dir()
    for ext in (".safetensors", ".pth"):
        candidate = folder / f"{name}{ext}"
        if candidate.is_file():
            return candidate
    if not weights_info:
        raise CheckpointError(f"no published weights for {name}; train it (rexnet train) or pass "
                              f"weights=PATH, or place a checkpoint at {folder / (name + '.safetensors')}")
    url = weights_info["url"]
    target = folder / (name + (".safetensors" if url.endswith(".safetensors") else ".pth"))
    if not download:
        raise CheckpointError(f"{name}: weights not in the cache; place them at {target}")
    try:
        with atomic_path(target) as tmp:  # a cut download never lands under the cached name
            torch.hub.download_url_to_file(url, str(tmp), progress=True)
    except Exception as e:
        raise CheckpointError(f"could not download the weights of {name} from {url} "
                              f"({type(e).__name__}: {e}). Offline? Download that file by other means "
                              f"and place it at {target}, or set REXNET_CACHE to its folder.") from None
    return target


def read_spec(path: str | os.PathLike) -> NetSpec | None:
    """The NetSpec stored in one of our checkpoints (safetensors metadata or a 'spec' entry), if any."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), "pt") as f:
                text = (f.metadata() or {}).get("spec")
            return NetSpec.from_json(text) if text else None
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return NetSpec.from_dict(spec) if isinstance(spec, dict) else None
