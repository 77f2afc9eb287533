"""Latency and throughput of a bundle across backends and precisions (``metaae-edge bench``).

Imports without torch: torch (and onnx) are imported only when a torch reference row is
built. Usage::

    from metaae_edge.bench import BenchConfig, run_bench, write_json
    report = run_bench("bundle/", BenchConfig(batches=(1, 256), iterations=200))
    write_json(report, "bench.json")

Method: for every (backend, precision) a target is loaded once; for every batch an input
``mean + std * N(0, 1)`` (raw units, from the manifest's normalisation; N(0, 1) for a bare
``.onnx``) is made once; each row is a time-based warm-up, then either ``iterations`` calls
or ``duration_s`` seconds of calls, each timed with ``time.perf_counter_ns`` with the garbage
collector paused. With ``rounds`` > 1 each batch's warm-up and timing are split into turns
the targets take in rotation. Every timed call is host numpy in -> all outputs on the host.

JSON schema, version 1 (``schema_version`` changes only when a key is removed or changes
meaning; new keys may be added)::

    {
      "schema_version": 1,
      "created": "2025-01-01T00:00:00+00:00",          # UTC, ISO 8601
      "environment": {
        "cpu": str, "cores": int, "cores_usable": int,
        "gpu": str | null, "gpu_driver": str | null,   # nvidia-smi; names joined by "; "
        "os": str, "python": str, "numpy": str,
        "onnxruntime": str | null, "torch": str | null, "tensorrt": str | null,
        "metaae_edge": str | null
      },
      "config": {
        "model": str,                 # resolved path of the bundle or .onnx
        "kind": "bundle" | "onnx", "arch": str | null, "objective": str | null,
        "input": str,                 # how inputs were generated
        "backends": [str], "precisions": [str], "batches": [int],
        "warmup_s": float, "duration_s": float | null, "iterations": int | null,
        "threads": int | null, "rounds": int, "seed": int, "cv_warn": float, "call": str
      },
      "roofline": {                   # null when not measured
        "gflops": float,              # best numpy float32 matmul GFLOP/s over matmul_sizes
        "gbps": float,                # np.copyto GB/s, (bytes read + written) / time
        "matmul_sizes": [int], "copy_bytes": int, "blas_threads": int | null
      } | null,
      "rows": [{
        "backend": str,               # tensorrt | ort-trt | ort-cuda | ort-cpu | ort-bare |
                                      # torch-eager | torch-cudagraph
        "precision": "fp32" | "fp16" | "int8",
        "batch": int,
        "p50_ms": float, "p90_ms": float, "p99_ms": float,   # linear-interpolated percentiles
        "mean_ms": float, "std_ms": float,                   # std: ddof=1
        "cv": float,                  # std / mean
        "throughput": float,          # samples/s = batch / mean
        "iterations": int,            # timed calls
        "model_bytes": int,           # graph file (torch: parameter bytes)
        "params": int | null, "macs": int | null,            # per sample, from the ArchSpec
        "h2d_ms": float | null, "d2h_ms": float | null,      # GPU rows: median copy of the
                                                             # call's input / outputs
        "floor_ms": float | null,     # max(2*macs*batch/gflops, bytes/gbps); bytes = weights
                                      # (params x bytes/weight) + batch x (input + outputs)
        "roofline_ratio": float | null  # mean_ms / floor_ms (1 = at the roofline)
      }],
      "ratios": [{                    # runtime backends vs baselines, same batch
        "backend": str, "precision": str, "batch": int,
        "baseline": "ort-bare" | "torch-eager",   # ort-bare: same precision; torch: fp32
        "p50_ratio": float,           # backend p50 / baseline p50 (< 1: faster)
        "throughput_ratio": float     # backend / baseline throughput
      }],
      "notes": [str]                  # skipped backends / precisions, noisy rows (CV), ...
    }
"""

from __future__ import annotations

from .core import SCHEMA_VERSION, BenchConfig, available_bench_backends, parse_batches, run_bench
from .report import (
    compare_reports,
    load_report,
    require_matplotlib,
    to_markdown,
    write_json,
    write_markdown,
    write_plot,
)
from .stats import Roofline, environment, floor_ms, latency_stats, measure_roofline, time_calls
from .targets import BENCH_BACKENDS

__all__ = [
    "BENCH_BACKENDS",
    "SCHEMA_VERSION",
    "BenchConfig",
    "Roofline",
    "available_bench_backends",
    "compare_reports",
    "environment",
    "floor_ms",
    "latency_stats",
    "load_report",
    "measure_roofline",
    "parse_batches",
    "require_matplotlib",
    "run_bench",
    "time_calls",
    "to_markdown",
    "write_json",
    "write_markdown",
    "write_plot",
]
