"""The static TensorRT compatibility check of an ONNX graph (runs anywhere: onnx only).

:func:`check_tensorrt_compat` is what ``build-engine --check-only`` prints and what
:func:`~metaae_edge.exporters.tensorrt.build_engine` runs before TensorRT is touched: ops
TensorRT's ONNX parser takes, symmetric int8 Q/DQ, Resize / Squeeze attributes, and I/O
shapes a [min, max] optimisation profile can cover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError, SpecError
from ..spec import ArchSpec

__all__ = ["TRT_ONNX_OPS", "check_tensorrt_compat", "graph_spec"]

#: ONNX ops (default domain) the TensorRT 10/11 ONNX parser supports, restricted to what
#: this project emits (first line) plus common ones (from onnx-tensorrt's
#: docs/operators.md). Anything else is reported by :func:`check_tensorrt_compat`.
TRT_ONNX_OPS: frozenset[str] = frozenset({
    # emitted by metaae-edge graphs (fp32 / fp16 / int8)
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Tanh", "Sigmoid",
    "HardSwish", "HardSigmoid", "ReduceSum", "Constant", "Cast", "QuantizeLinear",
    "DequantizeLinear", "Identity",
    # common
    "Abs", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Clip", "Concat",
    "ConstantOfShape", "Conv", "ConvTranspose", "Elu", "Equal", "Erf", "Exp", "Expand",
    "Flatten", "Gather", "Gelu", "GlobalAveragePool", "GlobalMaxPool", "Greater",
    "InstanceNormalization", "LayerNormalization", "Less", "Log", "Max", "MaxPool", "Min",
    "Neg", "Not", "Pad", "Pow", "Reciprocal", "ReduceL2", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSumSquare", "Reshape", "Resize", "Shape", "Slice",
    "Softmax", "Softplus", "Split", "Sqrt", "Squeeze", "Tile", "TopK", "Transpose",
    "Unsqueeze", "Where",
})
_QDQ_TYPES = {3}  # INT8 (TensorProto.INT8); FP8 / INT4 are not used by this project
# Resize attributes TensorRT's ONNX parser implements (onnx-tensorrt docs/operators.md).
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                  "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


def graph_spec(model: Any) -> ArchSpec | None:
    """The ArchSpec in a graph's ``metaae_edge.arch_spec`` metadata (None if absent)."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return ArchSpec.from_json(props["metaae_edge.arch_spec"])
    except (KeyError, SpecError):
        return None


def _is_image_graph(g: Any, spec: ArchSpec | None) -> bool:
    if spec is not None:
        return spec.backbone == "conv"
    return any(len(vi.type.tensor_type.shape.dim) == 4 for vi in g.input)


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _node_errors(n: Any, consts: dict[str, Any]) -> list[str]:
    """Op-specific restrictions of TensorRT's ONNX parser."""
    errors = []
    if n.op_type == "Resize":
        mode = _attr(n, "mode", "nearest")
        coord = _attr(n, "coordinate_transformation_mode", "half_pixel")
        nearest = _attr(n, "nearest_mode", "round_prefer_floor")
        if mode not in _RESIZE_MODES:
            errors.append(f"node {n.name!r}: Resize mode {mode!r}; TensorRT supports "
                          f"{', '.join(sorted(_RESIZE_MODES))}")
        if coord not in _RESIZE_COORDS:
            errors.append(f"node {n.name!r}: Resize coordinate_transformation_mode {coord!r} "
                          "is not supported by TensorRT")
        if mode == "nearest" and nearest not in _RESIZE_NEAREST:
            errors.append(f"node {n.name!r}: Resize nearest_mode {nearest!r} is not "
                          "supported by TensorRT")
    if n.op_type in ("Squeeze", "Unsqueeze") and len(n.input) > 1 and n.input[1] \
            and n.input[1] not in consts:
        errors.append(f"node {n.name!r}: {n.op_type} axes {n.input[1]!r} are not constant; "
                      "TensorRT needs them as an initializer")
    return errors


def _qdq_errors(n: Any, consts: dict[str, Any]) -> list[str]:
    """TensorRT takes symmetric int8 Q/DQ only: a constant int8 zero point of 0."""
    import onnx
    from onnx import numpy_helper

    if len(n.input) < 3 or not n.input[2]:
        return [f"node {n.name!r}: {n.op_type} has no zero point (uint8 by default); "
                "TensorRT needs an int8 zero point of 0"]
    zp = consts.get(n.input[2])
    if zp is None:
        return [f"node {n.name!r}: zero point {n.input[2]!r} is not constant"]
    errors = []
    if zp.data_type not in _QDQ_TYPES:
        errors.append(f"node {n.name!r}: zero point type "
                      f"{onnx.TensorProto.DataType.Name(zp.data_type)}, TensorRT needs INT8")
    if np.any(numpy_helper.to_array(zp) != 0):
        errors.append(f"node {n.name!r}: zero point is not 0 (asymmetric quantisation); "
                      "TensorRT supports symmetric only")
    return errors


def _io_errors(g: Any, consts: dict[str, Any], *, spatial: bool) -> list[str]:
    """Graph inputs / outputs: rank >= 2, only the batch axis dynamic (and, with
    ``spatial``, height and width of rank-4 tensors)."""
    errors = []
    for vi in (*g.input, *g.output):
        if vi.name in consts:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) < 2 and (vi in g.input or len(dims) == 0):
            errors.append(f"{vi.name!r} has rank {len(dims)}; expected (batch, features...)")
        for i, d in enumerate(dims[1:], start=1):
            if spatial and len(dims) == 4 and i in (2, 3):
                continue  # height / width: covered by the profile over resolution
            if d.dim_param or d.dim_value <= 0:
                only = ("the batch, height and width axes" if spatial and len(dims) == 4
                        else "the batch axis 0")
                errors.append(f"{vi.name!r} axis {i} is dynamic ({d.dim_param or '?'}); only "
                              f"{only} may be, for a [min, max] profile")
    return errors


def check_tensorrt_compat(model: Any, *, raise_on_error: bool = True) -> list[str]:
    """Check statically that TensorRT's ONNX parser can build ``model`` with a batch profile.

    Checks: every node is in the default ONNX domain and in :data:`TRT_ONNX_OPS`;
    every QuantizeLinear / DequantizeLinear has an int8 zero point equal to 0 (TensorRT
    supports symmetric quantisation only); Resize uses a mode, coordinate transformation
    and rounding TensorRT implements, Squeeze / Unsqueeze axes are constant; every graph
    input / output is rank >= 2 with a dynamic (or any) batch axis 0 and static, positive
    other axes, except that image (conv) graphs (see the ``metaae_edge.arch_spec``
    metadata) may also have dynamic height and width (axes 2 and 3 of rank-4 tensors),
    for a [min, max] profile over resolution; those of a fixed-resolution spec (a dense
    bottleneck, ``spec.fixed_hw``) may not, as their profile spans the batch only.

    Args:
        model: an ``onnx.ModelProto`` or a path.
        raise_on_error: raise on the first error (otherwise only return the findings).

    Returns:
        Findings, one line each, prefixed ``error:`` or ``ok:``.

    Raises:
        ExportError: an error was found (with ``raise_on_error``).
    """
    import onnx

    name = str(model) if isinstance(model, (str, Path)) else (model.graph.name or "graph")
    m = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    g = m.graph
    errors, ok = [], []
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            errors.append(f"node {n.name!r}: op {n.domain}.{n.op_type} is a custom-domain op "
                          "TensorRT's ONNX parser does not know")
        elif n.op_type not in TRT_ONNX_OPS:
            errors.append(f"node {n.name!r}: op {n.op_type} is not in the supported list")
        errors.extend(_node_errors(n, consts))
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            errors.extend(_qdq_errors(n, consts))
    n_qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)
    if n_qdq:
        ok.append(f"ok: {n_qdq} Q/DQ nodes, all symmetric int8" if not errors else
                  f"{n_qdq} Q/DQ nodes checked")
    spec = graph_spec(m)
    image = _is_image_graph(g, spec)
    fixed = spec.fixed_hw if spec is not None else None
    errors.extend(_io_errors(g, consts, spatial=image and fixed is None))
    if fixed is not None:
        ok.append(f"ok: image graph at a fixed {fixed[0]}x{fixed[1]} (dense code), dynamic "
                  "batch (profile over the batch only)")
    elif image:
        ok.append("ok: image graph, dynamic batch / height / width (profile over resolution)")
    ok.append(f"ok: {len(g.node)} nodes, ops {', '.join(sorted({n.op_type for n in g.node}))}")
    findings = [f"error: {e}" for e in errors] + ok
    if errors and raise_on_error:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ExportError(f"{name} is not TensorRT-compatible: {errors[0]}{more}")
    return findings
