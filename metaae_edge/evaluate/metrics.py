"""Metrics of the held-out evaluation: errors, PSNR, confidence intervals, FLOPs, latency.

numpy / scipy / scikit-learn only, except :func:`onnx_latency_ms` (torch + onnxruntime,
imported lazily).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "anomaly_scores_auc",
    "mean_ci",
    "mse",
    "onnx_latency_ms",
    "psnr",
    "train_flops",
]


def mse(recon: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over samples and features (model space)."""
    return float(np.mean((np.asarray(recon, np.float64) - np.asarray(target, np.float64)) ** 2))


def psnr(mse_value: float, target: np.ndarray) -> float:
    """``10 * log10(range^2 / MSE)``, range = max - min of the query target (model space)."""
    rng = float(np.max(target) - np.min(target))
    if not (mse_value > 0) or rng <= 0:
        return float("nan")
    return float(10.0 * math.log10(rng * rng / mse_value))


def mean_ci(values: list[float] | np.ndarray) -> dict[str, Any]:
    """Mean and the half-width of a two-sided 95% Student-t interval over units.

    Non-finite values are dropped (and counted in ``n_dropped``); with one unit the
    interval is ``nan``.
    """
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    out: dict[str, Any] = {"mean": float("nan"), "ci95": float("nan"), "n": n,
                           "n_dropped": int(arr.size - n)}
    if n == 0:
        return out
    out["mean"] = float(finite.mean())
    if n > 1:
        from scipy import stats

        sem = float(finite.std(ddof=1)) / math.sqrt(n)
        out["ci95"] = float(stats.t.ppf(0.975, n - 1) * sem)
    return out


def train_flops(macs: float, samples: int, steps: int) -> float:
    """Training FLOPs ~= 3 (forward + backward) * 2 (FLOPs per MAC) * MACs * samples * steps."""
    return float(6.0 * macs * samples * steps)


def anomaly_scores_auc(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision) of anomaly scores (higher = more anomalous)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    if not np.all(np.isfinite(scores)) or len(np.unique(labels)) < 2:
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    return {"roc_auc": float(roc_auc_score(labels, scores)),
            "pr_auc": float(average_precision_score(labels, scores))}


def onnx_latency_ms(model, normalizer, reference: np.ndarray, runs: int = 200,
                    warmup: int = 20) -> float:
    """Median onnxruntime latency (ms, batch 1, one thread) of the exported compact model.

    Exports ``autoencoder.onnx`` with :func:`metaae_edge.exporters.onnx.export_onnx` (the
    TorchScript exporter: ~20x faster to export than dynamo and the same graph ops; the
    parity gate still runs) into a temporary directory.
    """
    import onnxruntime as ort

    from ..exporters.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="metaae-eval-") as tmp:
        export_onnx(model, normalizer, Path(tmp), reference=reference[:16],
                    exporter="torchscript")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(Path(tmp) / "autoencoder.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
        x = {"x": np.ascontiguousarray(reference[:1], dtype=np.float32)}
        for _ in range(warmup):
            sess.run(None, x)
        times = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter_ns()
            sess.run(None, x)
            times[i] = time.perf_counter_ns() - t0
    return float(np.median(times) / 1e6)
