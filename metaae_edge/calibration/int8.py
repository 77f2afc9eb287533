"""Symmetric INT8 quantisation in Q/DQ form with onnxruntime's static quantiser.

The recipe TensorRT 10/11 expects of explicitly quantised (strongly typed) networks:
QuantizeLinear/DequantizeLinear pairs with int8 and zero point 0 on activations and weights,
per-output-channel weight scales, biases left in float (``QuantizeBias: False``: TensorRT
fuses a float bias into the int8 GEMM, while an int32-bias DequantizeLinear is a pattern
it does not accept). Float32 graph inputs and outputs are kept.

By default only the network proper is quantised (the linear layers and what lies between
them, see :func:`~metaae_edge.calibration._graph.core_nodes`); the input normalisation,
output de-normalisation and the score stay float: quantising them adds error to the raw
input before any layer sees it and to the reconstruction after the last one (measured in
the report of the issue that added this module), for no speed gain.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import onnx

from ..errors import DataError, ExportError
from ._graph import core_nodes, linear_nodes, name_nodes
from .reader import CalibrationReader

__all__ = ["ACTIVATIONS", "METHODS", "preprocess", "quantize_int8"]

METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
#: INT8 activation types: ``int8`` symmetric (TensorRT), ``uint8`` asymmetric (CPU)
ACTIVATIONS: tuple[str, ...] = ("int8", "uint8")


def preprocess(src: str | Path, dst: str | Path) -> onnx.ModelProto:
    """``quant_pre_process`` (symbolic shape inference + ORT graph optimisation) -> ``dst``.

    Node names are then made unique and non-empty, as exclusion lists refer to them.
    Image graphs (dynamic height / width besides the batch) skip the symbolic shape
    inference: it cannot resolve the score's element count taken from the input's shape
    ("Incomplete symbolic shape inference"), and with ``auto_merge`` it renames the
    outputs' dims to expressions. ONNX shape inference still runs; quantising Conv needs
    only the weights' shapes. Image graphs of a dense bottleneck (static H / W, marked like
    every image graph by ``metaae_edge.spatial_multiple`` metadata) skip it too: there the
    decoder's Resize turns the batch into ``floor(1.0*batch)``, which the score's
    ``r - z`` cannot match to the input's ``batch`` (the same incomplete inference).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(src), load_external_data=False)
    spatial = any(d.dim_param for vi in model.graph.input
                  for d in vi.type.tensor_type.shape.dim[1:])
    spatial = spatial or any(p.key == "metaae_edge.spatial_multiple"
                             for p in model.metadata_props)
    try:
        quant_pre_process(str(src), str(dst), skip_optimization=False,
                          skip_symbolic_shape=spatial)
    except Exception as exc:  # ORT raises assorted types; one line for the user
        raise ExportError(f"quant_pre_process failed on {Path(src).name}: "
                          f"{exc}".splitlines()[0]) from exc
    model = onnx.load(str(dst))
    name_nodes(model.graph)
    onnx.save_model(model, str(dst))
    return model


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    reader: CalibrationReader,
    *,
    method: str = "minmax",
    nodes_to_exclude: Iterable[str] = (),
    quantize_boundary: bool = False,
    per_channel: bool = True,
    reduce_range: bool = True,
    percentile: float = 99.999,
    activations: str = "int8",
) -> dict[str, Any]:
    """Calibrate on ``reader`` and write a Q/DQ INT8 graph to ``out_path``.

    Args:
        fp32_path: the float32 graph.
        out_path: where to write the INT8 graph.
        reader: raw calibration samples (rewound before use).
        method: ``minmax`` | ``entropy`` | ``percentile`` range calibration.
        nodes_to_exclude: node names (of the pre-processed graph, see ``info["layers"]``)
            kept in float.
        quantize_boundary: also quantise normalisation, de-normalisation and the score.
        per_channel: per-output-channel weight scales.
        reduce_range: 7-bit weights ([-63, 63], still int8 with zero point 0). On x86
            CPUs without VNNI, onnxruntime's int8 GEMM multiplies u8 x s8 pairs with
            VPMADDUBSW, whose int16 sums saturate with full-range weights: measured on
            this project's manifold model, per-channel 8-bit weights gave +84% query MSE
            through the fused kernel but +3.4% with exact Q/DQ semantics; with 7-bit
            weights both agree (+4.6%). So a graph behaves the same on every CPU and on
            TensorRT; turn it off for GPU-only bundles to win back one bit.
        percentile: the percentile for ``method="percentile"``.
        activations: ``int8`` (default): symmetric int8 activations (zero point 0), what
            TensorRT takes; ``uint8``: asymmetric uint8 activations (int8 weights as
            before), for onnxruntime on CPUs: its u8 x s8 conv kernels ran the default
            denoiser's 32-channel convs ~2x faster than the s8 x s8 path (session 31).

    Returns:
        ``{"method", "per_channel", "calib_samples", "layers", "quantized_layers",
        "excluded"}``; ``layers`` lists the linear layers that could be quantised.

    Raises:
        DataError: unknown method.
        ExportError: the quantiser failed.
    """
    if method not in METHODS:
        raise DataError(f"calibration method must be one of {', '.join(METHODS)}, "
                        f"got {method!r}")
    if activations not in ACTIVATIONS:
        raise DataError(f"INT8 activations must be one of {', '.join(ACTIVATIONS)}, "
                        f"got {activations!r}")
    with tempfile.TemporaryDirectory(prefix="metaae-int8-") as tmp:
        pre_path = Path(tmp) / "pre.onnx"
        g = preprocess(fp32_path, pre_path).graph
        layers = linear_nodes(g)
        exclude = _excluded(g, layers, nodes_to_exclude, quantize_boundary)
        reader.rewind()
        _quantize_static(pre_path, Path(out_path), reader, method, exclude,
                         per_channel=per_channel, reduce_range=reduce_range,
                         percentile=percentile, activations=activations)
    quantized = [n for n in layers if n not in exclude]
    return {"method": method, "per_channel": per_channel, "reduce_range": reduce_range,
            "activations": activations, "calib_samples": len(reader),
            "layers": layers, "quantized_layers": quantized,
            "excluded": sorted(set(nodes_to_exclude)), "quantize_boundary": quantize_boundary}


def _excluded(g: onnx.GraphProto, layers: list[str], nodes_to_exclude: Iterable[str],
              quantize_boundary: bool) -> set[str]:
    """The nodes kept in float: those asked for, plus the boundary unless quantised."""
    exclude = set(nodes_to_exclude)
    unknown = exclude - {n.name for n in g.node}
    if unknown:
        raise ExportError(f"nodes_to_exclude names unknown node(s) "
                          f"{', '.join(sorted(unknown))}; known layers: {', '.join(layers)}")
    if not quantize_boundary:
        core = core_nodes(g)
        exclude |= {n.name for n in g.node if n.name not in core}
    return exclude


def _quantize_static(pre_path: Path, out_path: Path, reader: CalibrationReader, method: str,
                     exclude: set[str], *, per_channel: bool, reduce_range: bool,
                     percentile: float, activations: str = "int8") -> None:
    """onnxruntime's ``quantize_static``: Q/DQ, symmetric int8 weights; activations
    symmetric int8 or (``activations="uint8"``) asymmetric uint8."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    sym = activations == "int8"
    extra = {"ActivationSymmetric": sym, "WeightSymmetric": True, "QuantizeBias": False,
             "CalibTensorRangeSymmetric": sym, "CalibPercentile": float(percentile)}
    try:
        quantize_static(
            str(pre_path), str(out_path), reader, quant_format=QuantFormat.QDQ,
            per_channel=per_channel, reduce_range=reduce_range,
            activation_type=QuantType.QInt8 if sym else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=sorted(exclude),
            calibrate_method=calib, extra_options=extra,
        )
    except Exception as exc:
        raise ExportError(f"INT8 quantisation ({method}) failed: "
                          f"{exc}".splitlines()[0]) from exc
