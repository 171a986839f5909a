"""Inference: deploy form (BN folded), export (ONNX / TorchScript), the stopwatch and the latency benchmark."""
from __future__ import annotations

from .deploy import deploy_model, fold_bn, fold_conv_bn
from .export import ExportError, export_model, load_exported
from .peers import PEERS, build_entries, run_bench, write_results
from .timing import interleaved_latency, latency_stats, time_interleaved

__all__ = ["deploy_model", "fold_bn", "fold_conv_bn", "export_model", "load_exported", "ExportError", "PEERS",
           "build_entries", "run_bench", "write_results", "latency_stats", "time_interleaved",
           "interleaved_latency"]
