"""Add gated FP16 / INT8 graphs (and per-precision thresholds) to an existing bundle.

Torch-free: numpy, onnx and onnxruntime (with its quantisation tools) only, so it can run
next to the runtime. Files go through :class:`~metaae_edge.exporters.writer.BundleWriter`:
the bundle stays loadable at every step, new graphs are staged, hashed and renamed into
place, then the manifest is replaced with one ``os.replace``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration._graph import OrtGraph, linear_nodes
from ..calibration.gate import compare_outputs, run_gate
from ..calibration.reader import CalibrationReader
from ..calibration.threshold import fit_threshold
from ..errors import DataError
from ..runtime.bundle import Bundle, load_bundle
from .writer import BundleWriter

__all__ = ["REDUCED_PRECISIONS", "add_precision", "graph_name"]

REDUCED_PRECISIONS: tuple[str, ...] = ("fp16", "int8")


def graph_name(role: str, precision: str) -> str:
    """File name of a graph: ``autoencoder.onnx``, ``encoder.int8.onnx``..."""
    return f"{role}.onnx" if precision == "fp32" else f"{role}.{precision}.onnx"


def _build_fn(precision: str, fp32: Path, calib: np.ndarray | None, method: str,
              samples: int, seed: int, input_name: str = "x", activations: str = "int8"):
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
        return quantize_int8(fp32, path, reader, method=method, nodes_to_exclude=exclude,
                             activations=activations)
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
    sign_key: Any = None,
    int8_activations: str = "int8",
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
        log: called with one line per gate attempt (and the note of a removed signature).
        sign_key: re-sign with this Ed25519 key (or PEM path); None drops a signature.
        int8_activations: ``int8`` (symmetric; TensorRT takes it) or ``uint8``
            (asymmetric; faster on onnxruntime's CPU kernels, see
            :func:`~metaae_edge.calibration.int8.quantize_int8`); recorded in the report's
            ``info``.

    Returns:
        The gate report stored in ``manifest["precision_reports"][precision]``.

    Raises:
        BundleError: the bundle is missing / invalid.
        DataError: bad data or precision.
        AccuracyGateError: the budget cannot be met; the bundle is left unchanged.
    """
    _check_args(precision, max_quality_drop, int8_activations)
    import onnx

    bundle = load_bundle(bundle_dir, verify=True)
    data = _GateData.read(bundle, precision, calib_data, holdout_data, holdout_target, labels)
    fp32 = bundle.path_for("autoencoder", "fp32")
    layers = linear_nodes(onnx.load(str(fp32)).graph)
    build = _build_fn(precision, fp32, data.calib, method, calib_samples, seed,
                      activations=int8_activations)
    with BundleWriter.update(bundle, sign_key=sign_key, log=log) as writer:
        ae = graph_name("autoencoder", precision)
        report = run_gate(build, fp32, writer.path(ae), x=data.x, target=data.target,
                          std=data.std, labels=data.y, layers=layers,
                          max_quality_drop=max_quality_drop, what=precision, log=log)
        writer.add(ae, "autoencoder", precision)
        # Encoder / decoder: the same recipe, the same layers kept in float.
        report["graphs"] = {}
        for role, name in (("encoder", "x"), ("decoder", "latent")):
            if bundle.parsed.file(role, "fp32") is not None:
                build_role = partial(_build_fn, precision, method=method,
                                     samples=calib_samples, seed=seed, input_name=name,
                                     activations=int8_activations)
                report["graphs"][role] = _reduce_companion(
                    writer, bundle, role, precision, report["excluded"], data, build_role)
        threshold = _refit_threshold(bundle, writer.path(ae), data, threshold_data, precision)
        if threshold is not None:
            report["threshold"] = threshold
        report = _slim(report)
        writer.commit(**_manifest_keys(bundle.manifest, precision, report, threshold))
    return report


def _check_args(precision: str, max_quality_drop: float, activations: str) -> None:
    from ..calibration.int8 import ACTIVATIONS

    if activations not in ACTIVATIONS:
        raise DataError(f"int8_activations must be one of {', '.join(ACTIVATIONS)}, "
                        f"got {activations!r}")
    if precision not in REDUCED_PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(REDUCED_PRECISIONS)}, "
                        f"got {precision!r} (fp32 graphs are written by adapt-and-export)")
    if not 0 < max_quality_drop < 1:
        raise DataError(f"max_quality_drop must be in (0, 1), got {max_quality_drop}")


@dataclass(frozen=True)
class _GateData:
    """The checked arrays one ``add_precision`` run gates and calibrates on."""

    x: np.ndarray
    target: np.ndarray
    y: np.ndarray | None
    calib: np.ndarray | None
    std: np.ndarray
    check: Callable[[Any, str], np.ndarray]

    @classmethod
    def read(cls, bundle: Bundle, precision: str, calib_data: Any, holdout_data: Any,
             holdout_target: Any, labels: Any) -> _GateData:
        # (N, D) vectors, or NCHW images at a multiple of the spatial multiple (or fixed)
        check = bundle.contract.check_data
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
        return cls(x=x, target=target, y=y, calib=calib, check=check,
                   std=bundle.normalization["std"].astype(np.float64))


def _reduce_companion(writer: BundleWriter, bundle: Bundle, role: str, precision: str,
                      excluded: list[str], data: _GateData,
                      build_for: Callable[..., Any]) -> dict[str, Any]:
    """Write the reduced encoder or decoder with the autoencoder's float layers, and
    compare it with its fp32 graph."""
    import onnx

    src = bundle.path_for(role, "fp32")
    g = onnx.load(str(src)).graph
    keep = [n for n in excluded if n in {m.name for m in g.node}]
    calib = data.calib
    encoder = bundle.path_for("encoder", "fp32")
    if precision == "int8" and role == "decoder":
        calib = OrtGraph(encoder).run(data.calib)["latent"]
    fname = graph_name(role, precision)
    build_for(src, calib)(keep, writer.path(fname))
    feed = data.x if role == "encoder" else OrtGraph(encoder).run(data.x)["latent"]
    ref = OrtGraph(src).run(feed)
    got = OrtGraph(writer.path(fname)).run(feed)
    writer.add(fname, role, precision)
    return {"excluded": keep, "output_errors": compare_outputs(ref, got, data.std)}


def _refit_threshold(bundle: Bundle, graph: Path, data: _GateData, threshold_data: Any,
                     precision: str) -> dict[str, Any] | None:
    """The anomaly threshold refitted on the reduced graph's scores (scores shift with
    precision); None for bundles without a threshold."""
    if bundle.threshold is None:
        return None
    x, y = data.x, data.y
    normal = (data.check(threshold_data, "threshold data") if threshold_data
              is not None else x if y is None else x[y == 0])
    scores = OrtGraph(graph).run(normal)["score"]
    threshold = fit_threshold(scores, float(bundle.threshold.get("fpr", 0.01)))
    threshold["precision"] = precision
    return threshold


def _manifest_keys(manifest: dict[str, Any], precision: str, report: dict[str, Any],
                   threshold: dict[str, Any] | None) -> dict[str, Any]:
    """``precision_reports`` (and ``thresholds``) with this precision's entry set, in the
    order the manifest has always listed them."""
    keys: dict[str, Any] = {
        "precision_reports": {**(manifest.get("precision_reports") or {}), precision: report}}
    if threshold is not None:
        thresholds = dict(manifest.get("thresholds") or {})
        if manifest.get("threshold") is not None:
            thresholds.setdefault("fp32", manifest["threshold"])
        thresholds[precision] = threshold
        keys["thresholds"] = thresholds
    return keys
