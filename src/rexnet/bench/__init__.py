"""Inference: deploy form (BN folded), export (ONNX / TorchScript) and the latency benchmark."""
from __future__ import annotations

from .deploy import deploy_model, fold_bn, fold_conv_bn
from .export import ExportError, export_model, load_exported
from .runner import PEERS, build_entries, latency_stats, run_bench, time_interleaved, write_results

__all__ = ["deploy_model", "fold_bn", "fold_conv_bn", "export_model", "load_exported", "ExportError", "PEERS",
           "build_entries", "run_bench", "latency_stats", "time_interleaved", "write_results"]
