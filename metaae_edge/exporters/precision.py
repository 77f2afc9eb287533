"""Add gated FP16 / INT8 graphs (and per-precision thresholds) to an existing bundle.

Torch-free: numpy, onnx and onnxruntime (with its quantisation tools) only, so it can run
next to the runtime. The bundle stays loadable at every step: new graphs are written under
temporary names and renamed, then the manifest is replaced with one ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration._graph import OrtGraph, linear_nodes
from ..calibration.gate import compare_outputs, run_gate
from ..calibration.reader import CalibrationReader, check_images, check_raw
from ..calibration.threshold import fit_threshold
from ..errors import BundleError, DataError
from ..runtime.bundle import MANIFEST_NAME, load_bundle, sha256_file

__all__ = ["REDUCED_PRECISIONS", "add_precision", "graph_name"]

REDUCED_PRECISIONS: tuple[str, ...] = ("fp16", "int8")


def graph_name(role: str, precision: str) -> str:
    """File name of a graph: ``autoencoder.onnx``, ``encoder.int8.onnx``..."""
    return f"{role}.onnx" if precision == "fp32" else f"{role}.{precision}.onnx"


def _build_fn(precision: str, fp32: Path, calib: np.ndarray | None, method: str,
              samples: int, seed: int, input_name: str = "x"):
    import onnx

    if precision == "fp16":
        from ..calibration.fp16 import convert_fp16

        def build(exclude: list[str], path: Path) -> dict[str, Any]:
            model, info = convert_fp16(fp32, block_nodes=exclude)
            onnx.save_model(model, str(path))
            return info
        return build
    from ..calibration.int8 import quantize_int8

    reader = CalibrationReader(calib, input_name=input_name, samples=samples, seed=seed)

    def build(exclude: list[str], path: Path) -> dict[str, Any]:
        return quantize_int8(fp32, path, reader, method=method, nodes_to_exclude=exclude)
    return build


def _slim(report: dict[str, Any]) -> dict[str, Any]:
    info = dict(report.get("info") or {})
    for key in ("fp16_nodes", "fp32_nodes"):  # long lists; the graph itself has them
        if key in info:
            info[f"n_{key}"] = len(info.pop(key))
    return {**report, "info": info}


def add_precision(
    bundle_dir: str | Path,
    precision: str,
    calib_data: Any,
    holdout_data: Any,
    labels: Any = None,
    method: str = "minmax",
    calib_samples: int = 256,
    max_quality_drop: float = 0.02,
    seed: int = 0,
    *,
    holdout_target: Any = None,
    threshold_data: Any = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``autoencoder.<precision>.onnx`` (+ encoder / decoder) into a bundle, gated.

    Image (conv) bundles take images wherever samples are named: (N, C, H, W) with H and W
    multiples of the bundle's ``spatial_multiple``, (N, H, W) for one channel, or samples
    flattened at the adapted resolution (N, C*H*W); calibration feeds NCHW batches and the
    gate's query MSE is taken over every pixel. A dense-bottleneck bundle (``fixed_hw``)
    takes images of its adapted H x W only; its decoder is calibrated on the (N, L) codes.

    Args:
        bundle_dir: an existing, verifiable bundle.
        precision: ``fp16`` or ``int8``.
        calib_data: raw calibration samples (N, D) (INT8 ranges; unused for fp16).
        holdout_data: held-out raw inputs (N, D) the gate compares on.
        labels: anomaly labels of ``holdout_data`` (1 = anomaly) or None; with labels the
            gate also checks ROC-AUC and the MSE uses normal samples only.
        method: INT8 range calibration: minmax | entropy | percentile.
        calib_samples: calibration samples drawn (with ``seed``) from ``calib_data``.
        max_quality_drop: allowed relative drop of the task metric (0.02 = 2 %).
        seed: seeds the calibration draw.
        holdout_target: clean raw targets for ``holdout_data`` (denoising), default
            ``holdout_data`` itself.
        threshold_data: held-out *normal* raw samples for the anomaly threshold of this
            precision; default: the normal samples of ``holdout_data``.
        log: called with one line per gate attempt.

    Returns:
        The gate report stored in ``manifest["precision_reports"][precision]``.

    Raises:
        BundleError: the bundle is missing / invalid.
        DataError: bad data or precision.
        AccuracyGateError: the budget cannot be met; the bundle is left unchanged.
    """
    if precision not in REDUCED_PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(REDUCED_PRECISIONS)}, "
                        f"got {precision!r} (fp32 graphs are written by adapt-and-export)")
    if not 0 < max_quality_drop < 1:
        raise DataError(f"max_quality_drop must be in (0, 1), got {max_quality_drop}")
    import onnx

    bundle = load_bundle(bundle_dir, verify=True)
    root, d = bundle.root, bundle.input_dim
    std = bundle.normalization["std"].astype(np.float64)

    def check(data: Any, what: str = "calibration data") -> np.ndarray:
        if bundle.is_image:  # NCHW images, any multiple of the spatial multiple (or fixed)
            return check_images(data, bundle.spec.input_shape, bundle.spatial_multiple, what,
                                bundle.fixed_hw)
        return check_raw(data, d, what)

    x = check(holdout_data, "held-out data")
    target = x if holdout_target is None else check(holdout_target, "held-out target")
    if target.shape != x.shape:
        raise DataError(f"held-out target has shape {target.shape}, the data {x.shape}")
    y = None
    if labels is not None:
        y = np.asarray(labels).ravel().astype(int)
        if y.shape != (len(x),):
            raise DataError(f"labels must have one entry per held-out sample ({len(x)}), "
                            f"got shape {np.shape(labels)}")
    calib = check(calib_data) if precision == "int8" else None
    fp32 = bundle.path_for("autoencoder", "fp32")
    layers = linear_nodes(onnx.load(str(fp32)).graph)
    build = _build_fn(precision, fp32, calib, method, calib_samples, seed)

    staged: dict[str, Path] = {}
    try:
        fd, tmp = tempfile.mkstemp(prefix=".autoencoder.", suffix=".tmp", dir=root)
        os.close(fd)
        staged["autoencoder"] = Path(tmp)
        report = run_gate(build, fp32, staged["autoencoder"], x=x, target=target, std=std,
                          labels=y, layers=layers, max_quality_drop=max_quality_drop,
                          what=precision, log=log)
        report["graphs"] = {}
        # Encoder / decoder: the same recipe, the same layers kept in float.
        for role, name in (("encoder", "x"), ("decoder", "latent")):
            try:
                src = bundle.path_for(role, "fp32")
            except BundleError:
                continue
            g = onnx.load(str(src)).graph
            keep = [n for n in report["excluded"] if n in {m.name for m in g.node}]
            data = calib
            if precision == "int8" and role == "decoder":
                data = OrtGraph(bundle.path_for("encoder", "fp32")).run(calib)["latent"]
            fd, tmp = tempfile.mkstemp(prefix=f".{role}.", suffix=".tmp", dir=root)
            os.close(fd)
            staged[role] = Path(tmp)
            _build_fn(precision, src, data, method, calib_samples, seed, name)(
                keep, staged[role])
            feed = x if role == "encoder" else OrtGraph(
                bundle.path_for("encoder", "fp32")).run(x)["latent"]
            ref = OrtGraph(src).run(feed)
            got = OrtGraph(staged[role]).run(feed)
            report["graphs"][role] = {"excluded": keep,
                                      "output_errors": compare_outputs(ref, got, std)}
        threshold = None
        if bundle.threshold is not None:
            normal = (check(threshold_data, "threshold data") if threshold_data
                      is not None else x if y is None else x[y == 0])
            scores = OrtGraph(staged["autoencoder"]).run(normal)["score"]
            threshold = fit_threshold(scores, float(bundle.threshold.get("fpr", 0.01)))
            threshold["precision"] = precision
            report["threshold"] = threshold
        report = _slim(report)
        _commit(root, bundle.manifest, precision, staged, report, threshold)
    finally:
        for p in staged.values():
            p.unlink(missing_ok=True)
    load_bundle(root, verify=True)  # what a device will read
    return report


def _commit(root: Path, manifest: dict[str, Any], precision: str, staged: dict[str, Path],
            report: dict[str, Any], threshold: dict[str, Any] | None) -> None:
    """Rename the staged graphs into place and replace the manifest in one step."""
    m = json.loads(json.dumps(manifest))
    files = [f for f in m["files"] if not (f.get("precision") == precision
                                           and f.get("role") in staged)]
    for role, tmp in staged.items():
        fname = graph_name(role, precision)
        files.append({"path": fname, "role": role, "precision": precision,
                      "sha256": sha256_file(tmp), "bytes": tmp.stat().st_size})
    m["files"] = files
    m.setdefault("precision_reports", {})[precision] = report
    if threshold is not None:
        thresholds = m.setdefault("thresholds", {})
        if m.get("threshold") is not None:
            thresholds.setdefault("fp32", m["threshold"])
        thresholds[precision] = threshold
    text = json.dumps(m, indent=2, allow_nan=False, default=_plain) + "\n"
    fd, mtmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=root)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    for role, tmp in staged.items():
        os.chmod(tmp, 0o644)
        os.replace(tmp, root / graph_name(role, precision))
    os.chmod(mtmp, 0o644)
    os.replace(mtmp, root / MANIFEST_NAME)


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
