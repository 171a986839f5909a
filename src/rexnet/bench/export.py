"""Export a model to ONNX or TorchScript with a dynamic batch axis, verified before it lands.

The file is written next to ``out`` under a temporary name (``rexnet.io.atomic_path``),
loaded back (ONNX Runtime for ONNX), run at the export batch and at other batch
sizes, and compared with the training-form model's logits; only a file that
passes is renamed onto ``out``, so a failed export never leaves a bad file.
"""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..io import atomic_path
from .deploy import fold_bn

__all__ = ["EXPORT_FORMATS", "TORCHSCRIPT_SUFFIXES", "ExportError", "OnnxModule", "export_model", "load_exported",
           "exported_format"]

EXPORT_FORMATS = ("onnx", "torchscript")
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript", ".jit")  # not .pth: that is a checkpoint

# torch 2.9+ marks both paths deprecated; they are still the ones that need no
# extra packages (the dynamo ONNX exporter needs onnxscript).
_QUIET = (r".*legacy TorchScript-based ONNX export.*", r".*will be removed.*", r".*torch\.jit\..*deprecated.*")


class ExportError(RuntimeError):
    """The exported file does not reproduce the model's logits."""


def exported_format(path: str | os.PathLike) -> str:
    """``onnx`` or ``torchscript`` from a file's suffix (TorchScript files are zip archives)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    raise ValueError(f"cannot tell the format of {path}: use .onnx for ONNX or one of "
                     f"{', '.join(TORCHSCRIPT_SUFFIXES)} for TorchScript")


class OnnxModule(nn.Module):
    """An ONNX Runtime session behind ``nn.Module``'s call interface (tensor in, tensor out)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError("ONNX files need onnxruntime: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads  # same thread count as torch, for fair timing
        # no busy-waiting between runs: spinning ORT threads would steal the cores of
        # whatever runs next (the other models of an interleaved benchmark, the caller's code)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = str(path)
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_size = inp.shape[-1] if isinstance(inp.shape[-1], int) else None  # fixed when exported

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    def extra_repr(self) -> str:
        return self.path


def load_exported(path: str | os.PathLike, device: str | torch.device = "cpu",
                  threads: int | None = None) -> nn.Module:
    """An exported file as a callable module (ONNX Runtime on CPU, or TorchScript on ``device``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if exported_format(path) == "onnx":
        if torch.device(device).type != "cpu":
            raise ValueError(f"{path.name}: ONNX files run on ONNX Runtime's CPU provider here; use --device cpu")
        return OnnxModule(path, threads)
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        return torch.jit.load(str(path), map_location=device).eval()


def _write(model: nn.Module, fmt: str, x: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        if fmt == "onnx":
            try:
                torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"],
                                  output_names=["logits"], opset_version=opset,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            except ModuleNotFoundError as e:  # torch.onnx imports onnx (and onnxscript for dynamo) lazily
                raise ValueError(f"ONNX export needs {e.name}: pip install {e.name}") from None
        else:
            with torch.inference_mode(False), torch.no_grad():
                traced = torch.jit.trace(model, x, check_trace=False)
            torch.jit.save(traced, str(path))


def export_model(model: nn.Module, format: str, out: str | os.PathLike, *, input_size: int | None = None,
                 batch: int = 2, check_batches: Sequence[int] = (1, 3), atol: float = 1e-4,
                 fold: bool = True, opset: int = 17) -> dict:
    """Export ``model`` (BN folded unless ``fold=False``) to ``out`` and verify it.

    The check runs the file at ``batch`` and every size in ``check_batches`` (the
    dynamic axis) and requires max |logit difference| <= ``atol`` against the
    training-form model in eval mode.  Returns what was checked.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if batch < 1 or any(n < 1 for n in check_batches):
        raise ValueError(f"batch sizes must be positive, got batch={batch}, check_batches={list(check_batches)}")
    out = Path(out)
    if exported_format(out) != format:
        raise ValueError(f"--out {out} has the wrong suffix for {format}: use "
                         f"{'.onnx' if format == 'onnx' else ' or '.join(TORCHSCRIPT_SUFFIXES)}")
    size = input_size or getattr(getattr(model, "spec", None), "input_size", 224)
    model = copy.deepcopy(model).float().cpu().eval()  # the caller's model keeps its device and dtype
    exported = fold_bn(model) if fold else model
    with atomic_path(out) as tmp:  # an exception (a failed check) removes tmp; only a verified file lands
        _write(exported, format, torch.randn(batch, 3, size, size), tmp, opset)
        loaded = load_exported(tmp)
        diffs = {}
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n in dict.fromkeys([batch, *check_batches]):
                x = torch.randn(n, 3, size, size, generator=gen)
                got, want = loaded(x), model(x)
                if got.shape != want.shape:
                    raise ExportError(f"{format} file gives shape {tuple(got.shape)} at batch {n}, "
                                      f"the model {tuple(want.shape)}")
                diffs[n] = (got.float() - want).abs().max().item()
        worst = max(diffs.values())
        if not worst <= atol:
            raise ExportError(f"{format} export does not reproduce the model: max |logit difference| "
                              f"{worst:.3g} > {atol:g} (per batch size: {diffs})")
    return dict(path=str(out), format=format, input_size=size, export_batch=batch,
                checked_batches=list(diffs), max_abs_diff=worst, bn_folded=fold,
                opset=opset if format == "onnx" else None, bytes=out.stat().st_size)
