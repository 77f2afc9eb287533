"""Accuracy gate: a reduced-precision graph must stay close to float32 on held-out data.

Two things are compared on held-out raw data: the outputs (max / mean abs error of the
reconstruction, in raw and normalised units, of the latent and of the score) and the task
metric, which decides: query MSE in model space against the clean target (lower is better)
and, when anomaly labels are given, ROC-AUC of the score (higher is better). The relative
drop of the worse metric must stay within ``max_quality_drop``.

A reduced graph is evaluated twice on onnxruntime CPU: with graph optimisations off (the
exact Q/DQ semantics, which is what TensorRT computes) and on (the fused int8 / fp16
kernels the ``ort-cpu`` backend runs). The worse of the two is gated, so a graph that is
fine in theory but damaged by a CPU kernel (see ``reduce_range`` in
:mod:`~metaae_edge.calibration.int8`) is not shipped.

Over budget, :func:`run_gate` measures each linear layer's sensitivity (keep that one
layer in float, everything else reduced), then keeps the most damaging layers in float,
one more per attempt, until the budget is met or only one reduced layer would be left;
then it refuses with :class:`~metaae_edge.errors.AccuracyGateError`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AccuracyGateError
from ._graph import OrtGraph

__all__ = ["roc_auc", "quality", "compare_outputs", "evaluate", "run_gate"]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC (Mann-Whitney U with average ranks for ties); NaN with a single class."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks of tied groups
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def quality(outputs: dict[str, np.ndarray], target: np.ndarray, std: np.ndarray,
            labels: np.ndarray | None = None) -> dict[str, float]:
    """Task metrics of one graph's outputs.

    Returns:
        ``query_mse`` (model space, normal samples only when labels are given), ``psnr``
        (dB, peak = the target's range in model space) and ``roc_auc`` with labels.
    """
    err = (outputs["reconstruction"].astype(np.float64) - target) / std
    z = target / std
    rows = np.ones(len(target), bool) if labels is None else ~np.asarray(labels).astype(bool)
    mse = float(np.mean(err[rows] ** 2))
    peak = float(z.max(axis=0).max() - z.min(axis=0).min())
    out = {"query_mse": mse, "psnr": float(10 * np.log10(peak ** 2 / max(mse, 1e-300)))}
    if labels is not None:
        auc = roc_auc(outputs["score"], labels)
        if np.isfinite(auc):  # one class only: no AUC to gate on
            out["roc_auc"] = auc
    return out


def _drop(ref: dict[str, float], got: dict[str, float]) -> float:
    """Relative quality drop: MSE up, or AUC down, whichever is worse (>= 0)."""
    drops = [(got["query_mse"] - ref["query_mse"]) / max(ref["query_mse"], 1e-12)]
    if "roc_auc" in ref:
        drops.append((ref["roc_auc"] - got["roc_auc"]) / max(ref["roc_auc"], 1e-12))
    return max(0.0, *drops)


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray],
                    std: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Max / mean abs error per output (and reconstruction in normalised units)."""
    out = {}
    for name in ref:
        if name not in got:
            continue
        d = np.abs(got[name].astype(np.float64) - ref[name])
        out[name] = {"max_abs": float(d.max()), "mean_abs": float(d.mean())}
        if name == "reconstruction" and std is not None:
            dn = d / std
            out[name].update(max_abs_normalised=float(dn.max()), mean_abs_normalised=float(
                dn.mean()))
    return out


def evaluate(fp32: dict[str, Any], path: str | Path, x: np.ndarray, target: np.ndarray,
             std: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Evaluate a reduced graph against the float32 results ``fp32`` (see :func:`run_gate`)."""
    worst: dict[str, Any] | None = None
    for mode in ("reference", "ort-cpu"):
        outs = OrtGraph(path, optimize=mode == "ort-cpu").run(x)
        q = quality(outs, target, std, labels)
        res = {"mode": mode, "metrics": q, "drop": _drop(fp32["metrics"], q),
               "outputs": outs}
        if worst is None or res["drop"] > worst["drop"]:
            worst = res
    assert worst is not None
    worst["errors"] = compare_outputs(fp32["outputs"], worst["outputs"], std)
    return worst


def run_gate(
    build: Callable[[list[str], Path], dict[str, Any]],
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    x: np.ndarray,
    target: np.ndarray,
    std: np.ndarray,
    labels: np.ndarray | None = None,
    layers: Sequence[str],
    max_quality_drop: float = 0.02,
    what: str = "int8",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build a reduced graph, gate it, rescue it by keeping sensitive layers in float.

    Args:
        build: ``build(exclude, path) -> info`` writes a reduced graph with the named
            layers kept in float.
        fp32_path: the float32 graph (the reference).
        out_path: where the accepted graph is written (nothing is written on refusal).
        x, target: held-out raw inputs and the clean raw targets.
        std: per-feature normalisation std (metrics are in model space).
        labels: anomaly labels of ``x`` (1 = anomaly) or None.
        layers: the layers that may be kept in float, in graph order.
        max_quality_drop: allowed relative drop of the task metric (0.02 = 2 %).
        what: the precision's name, for messages.
        log: called with one line per attempt.

    Returns:
        The report: ``metric_fp32``, ``metric_reduced``, ``relative_drop``,
        ``max_quality_drop``, ``output_errors``, ``excluded``, ``evaluated_with``,
        ``sensitivity`` (when measured), ``attempts`` and the build ``info``.

    Raises:
        AccuracyGateError: no exclusion set within the budget leaves a layer reduced.
    """
    ref = {"outputs": OrtGraph(fp32_path, optimize=True).run(x)}
    ref["metrics"] = quality(ref["outputs"], target, std, labels)
    with tempfile.TemporaryDirectory(prefix=f"metaae-{what}-gate-") as tmp:
        tries = _Attempts(build, ref, Path(tmp), x=x, target=target, std=std, labels=labels,
                          budget=max_quality_drop, what=what, log=log)
        res, path = tries.attempt([], "all layers reduced")
        sensitivity: list[dict[str, Any]] = []
        if res["drop"] > max_quality_drop and len(layers) > 1:
            res, path, sensitivity = _rescue(tries, res, layers)
        attempts = tries.log
        if res["drop"] > max_quality_drop:
            raise AccuracyGateError(
                f"{what} refused: query quality drops {100 * res['drop']:.1f}% vs fp32 "
                f"(budget {100 * max_quality_drop:g}%) even with "
                f"{len(attempts[-1]['excluded'])} of {len(layers)} layers kept in float "
                f"after {len(attempts)} attempts; use more or more representative "
                f"calibration data, another --calib-method, a larger --max-quality-drop, "
                f"or ship fp32/fp16", attempts=attempts)
        shutil.copyfile(path, out_path)
    return {
        "precision": what,
        "metric_fp32": ref["metrics"], "metric_reduced": res["metrics"],
        "relative_drop": res["drop"], "max_quality_drop": max_quality_drop,
        "passed": True, "evaluated_with": res["mode"],
        "output_errors": res["errors"], "excluded": attempts[-1]["excluded"],
        "n_holdout": int(len(x)), "sensitivity": sensitivity, "attempts": attempts,
        "info": res["info"],
    }


class _Attempts:
    """Builds and evaluates candidate graphs, one file each, logging every attempt."""

    def __init__(self, build: Callable[[list[str], Path], dict[str, Any]],
                 ref: dict[str, Any], tmp: Path, *, x: np.ndarray, target: np.ndarray,
                 std: np.ndarray, labels: np.ndarray | None, budget: float, what: str,
                 log: Callable[[str], None] | None):
        self.build, self.ref, self.tmp = build, ref, tmp
        self.x, self.target, self.std, self.labels = x, target, std, labels
        self.budget, self.what = budget, what
        self.say = log or (lambda _msg: None)
        self.log: list[dict[str, Any]] = []

    def attempt(self, exclude: list[str], tag: str) -> tuple[dict[str, Any], Path]:
        """Build with ``exclude`` kept in float, evaluate, log one line."""
        path = self.tmp / f"cand{len(self.log)}.onnx"
        info = self.build(list(exclude), path)
        res = evaluate(self.ref, path, self.x, self.target, self.std, self.labels)
        res["info"] = info
        passed = res["drop"] <= self.budget
        self.log.append({"excluded": list(exclude), "relative_drop": res["drop"],
                         "query_mse": res["metrics"]["query_mse"], "passed": passed,
                         "stage": tag, "evaluated_with": res["mode"]})
        self.say(f"{self.what} {tag}: float layers [{', '.join(exclude) or '-'}] -> "
                 f"query MSE {res['metrics']['query_mse']:.5f} vs fp32 "
                 f"{self.ref['metrics']['query_mse']:.5f}, drop {100 * res['drop']:.2f}% "
                 f"({'ok' if passed else 'over budget'} {100 * self.budget:g}%)")
        return res, path


def _rescue(tries: _Attempts, res: dict[str, Any], layers: Sequence[str]
            ) -> tuple[dict[str, Any], Path, list[dict[str, Any]]]:
    """Measure each layer's sensitivity, then keep the most damaging layers in float, one
    more per attempt, until the budget is met (or one reduced layer would be left)."""
    sensitivity: list[dict[str, Any]] = []
    path = tries.tmp / "cand0.onnx"
    for layer in layers:
        r, _ = tries.attempt([layer], "sensitivity")
        sensitivity.append({"layer": layer, "drop_when_float": r["drop"],
                            "gain": res["drop"] - r["drop"]})
    ranked = [s["layer"] for s in sorted(sensitivity, key=lambda s: s["drop_when_float"])]
    best = min(sensitivity, key=lambda s: s["drop_when_float"])
    if best["drop_when_float"] <= tries.budget:
        res, path = tries.attempt([best["layer"]], "rescue")
    else:
        for k in range(2, len(layers)):
            res, path = tries.attempt(ranked[:k], "rescue")
            if res["drop"] <= tries.budget:
                break
    return res, path, sensitivity
