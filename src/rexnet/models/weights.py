"""Checkpoint formats and safe loading.

Formats, auto-detected from the keys:

- ``rexnet``: ours (a state dict of :class:`~rexnet.models.build.Net`, optionally
  wrapped as ``{"model": ..., "spec": ...}`` by our training code);
- ``timm``: timm's ``RexNet`` state dicts (the same layout as ours);
- ``original``: the authors' ``ReXNetV1`` / ``ReXNetV1_lite`` (``features.N.out.M.*``,
  ``output.*``), mapped key by key from the spec.

Files are safetensors or torch files (``.pth``/``.pt``/``.bin``), told apart by their
first bytes; torch files are scanned for Python objects and read with
``torch.load(weights_only=True)``: nothing is ever unpickled (:func:`read_checkpoint`).
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

__all__ = ["CheckpointError", "read_checkpoint", "sniff_checkpoint", "read_state_dict", "detect_format",
           "convert_state_dict", "load_weights", "save_weights", "resolve_pretrained", "cache_dir"]

FORMATS = ("rexnet", "timm", "original")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model."""


_CONVERT_HINT = ("convert it in a Python session you trust: sd = torch.load(FILE, weights_only=False) "
                 "(its state dict of tensors), then torch.save(sd, 'weights.pth') or "
                 "safetensors.torch.save_file(sd, 'weights.safetensors')")


def sniff_checkpoint(path: str | os.PathLike) -> str | None:
    """What a file holds, from its first bytes: ``safetensors``, ``zip`` (torch.save's
    format), ``pickle`` (torch's legacy format or a plain pickle), ``empty``, or None."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= 100_000_000:
        return "safetensors"  # an 8-byte header length, then the JSON header (maybe cut short)
    return None


def _pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every class or function a pickle imports (GLOBAL, STACK_GLOBAL),
    read statically with pickletools over the consecutive pickles at the start of ``data``."""
    import io
    import pickletools

    names: list[str] = []
    f = io.BytesIO(data)
    while f.tell() < len(data):
        strings: list[str] = []         # strings pushed so far (STACK_GLOBAL takes the last two)
        memo: dict[int, str | None] = {}
        last: str | None = None         # the string on top of the stack, if the top is one
        try:
            for op, arg, _ in pickletools.genops(f):
                top = None
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif "UNICODE" in op.name or "STRING" in op.name:
                    top = str(arg)
                    strings.append(top)
                elif op.name == "MEMOIZE":  # memo ops leave the stack as it is
                    memo[len(memo)], top = last, last
                elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)], top = last, last
                elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                    top = memo.get(int(arg))
                    if top is not None:
                        strings.append(top)
                last = top
        except Exception:  # the raw storage bytes after a legacy file's pickles, or a cut file
            break
    return names


def _unsafe_globals(path: Path, kind: str) -> list[str]:
    """The globals in a torch file that ``torch.load(weights_only=True)`` does not allow."""
    import zipfile

    if kind == "zip":
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            data = z.read(pkl) if pkl else b""
    else:
        data = path.read_bytes()
    try:
        from torch import _weights_only_unpickler as wo

        allowed = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
        is_safe = allowed.__contains__
    except (ImportError, AttributeError):  # a torch without these helpers: torch's own names only
        is_safe = lambda name: name.startswith("torch.") or name in (  # noqa: E731
            "collections.OrderedDict", "_codecs.encode", "builtins.set")
    return list(dict.fromkeys(n for n in _pickle_globals(data) if not is_safe(n)))


def _one_line(e: BaseException, limit: int = 200) -> str:
    """The telling part of an exception's message in one line, without terminal escape codes:
    for torch's "Weights only load failed" essay, the unpickler's own error; else the first line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    m = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:\n\s*\n|Check the documentation|$)", text, re.S)
    if m and m.group(1).strip():
        text = m.group(1)
    line = " ".join(text.split()) if m else next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line or type(e).__name__
    if re.fullmatch(r"Unsupported operand \d+", line):
        line += ", a pickle opcode torch's safe loader lacks (e.g. pickle protocol 4)"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object in a .safetensors or torch file, or a one-line :class:`CheckpointError`.

    The format is read from the file's first bytes, not its name.  A torch file is
    checked statically for Python objects before anything is loaded and is then read
    with ``torch.load(weights_only=True)``: nothing is ever unpickled.
    """
    import warnings
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    kind = sniff_checkpoint(path)
    if kind == "empty":
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes); re-save or "
                              f"re-download it")
    if kind is None:
        raise CheckpointError(f"{path} is not a checkpoint (neither safetensors nor a torch zip/pickle)")
    if kind == "safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"cannot read checkpoint {path}: a damaged or cut safetensors file "
                                  f"({_one_line(e)}); re-save or re-download it") from None
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path}: a cut or damaged torch zip (no zip directory "
                              f"at its end); re-save or re-download it")
    unsafe = _unsafe_globals(path, kind)
    if unsafe:
        shown = ", ".join(unsafe[:3]) + (f", ... ({len(unsafe)} in all)" if len(unsafe) > 3 else "")
        raise CheckpointError(f"refused: {path} contains Python objects ({shown}), not a weights-only "
                              f"checkpoint (only tensors are read, with torch.load(weights_only=True)); "
                              + _CONVERT_HINT.replace("FILE", repr(str(path))))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # cut legacy files, plain pickles torch cannot read, objects the scan missed
        what = "a torch zip" if kind == "zip" else "a pickle"
        raise CheckpointError(f"cannot read checkpoint {path}: {what} that torch.load(weights_only=True) "
                              f"cannot read ({_one_line(e)}); re-save its state dict with torch.save(sd, "
                              f"'weights.pth') (default protocol) or as .safetensors") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors or torch file, unwrapping common containers."""
    path = Path(path)
    obj: Any = read_checkpoint(path)
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
        obj = read_checkpoint(path)
    except Exception:
        return None
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return NetSpec.from_dict(spec) if isinstance(spec, dict) else None
