"""FP16 graph conversion that keeps float32 inputs and outputs (onnx helpers only).

Why our own converter rather than ``onnxconverter-common``: the graphs are small MLPs and
the rules we need are short; an extra dependency would bring its own op lists and
behaviours (and a history of dropping value_info / names) into a gate we must reason
about. The rules:

* A node runs in float16 if its op type is in :data:`FP16_OPS` (ops whose float inputs and
  outputs all share one type, except Resize, whose ``roi`` / ``scales`` stay float32), it
  is not in ``block_op_types`` / ``block_nodes``, and,
  with ``keep_boundary_fp32`` (default), it lies on the network proper (between two linear
  layers, see :func:`~metaae_edge.calibration._graph.core_nodes`): normalisation,
  de-normalisation and the score stay float32 as they overflow or cancel in float16.
* Float32 constants feeding float16 nodes are stored as float16 (clipped to +-65504);
  other float tensors crossing a precision border get a ``Cast``.
* Graph inputs and outputs stay float32, so callers (and the manifest) see no change.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ExportError
from ._graph import core_nodes, name_nodes

__all__ = ["FP16_OPS", "DEFAULT_BLOCK_OP_TYPES", "convert_fp16", "fp16_nodes"]

#: Ops converted to float16 (every float input and output of the same type).
FP16_OPS: frozenset[str] = frozenset({
    "Gemm", "MatMul", "Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "Neg", "Abs",
    "Relu", "LeakyRelu", "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Gelu",
    "Max", "Min", "Identity", "Reshape", "Flatten", "Transpose", "Concat", "Squeeze",
    "Unsqueeze", "MaxPool", "AveragePool", "Clip", "Where", "Resize",
})
#: Ops of which only the first N inputs are data that follow the node's precision; the
#: rest keep their own type (Resize's roi / scales are float32 whatever X is).
_DATA_INPUTS: dict[str, int] = {"Resize": 1}
#: Kept in float32 wherever they appear: reductions and transcendental ops that
#: overflow (sum of squares, exp) or need the mantissa (log, sqrt, pow).
DEFAULT_BLOCK_OP_TYPES: frozenset[str] = frozenset({
    "ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Pow",
    "Sqrt", "Exp", "Log", "Softmax", "LogSoftmax", "LayerNormalization",
})
_F16_MAX = float(np.finfo(np.float16).max)


def fp16_nodes(graph: Any, *, block_op_types: Iterable[str] = DEFAULT_BLOCK_OP_TYPES,
               block_nodes: Iterable[str] = (), keep_boundary_fp32: bool = True) -> set[str]:
    """Names of the nodes :func:`convert_fp16` would run in float16."""
    name_nodes(graph)
    blocked_ops, blocked = set(block_op_types), set(block_nodes)
    core = core_nodes(graph) if keep_boundary_fp32 else {n.name for n in graph.node}
    return {n.name for n in graph.node if n.op_type in FP16_OPS and n.op_type not in
            blocked_ops and n.name not in blocked and n.name in core}


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


def convert_fp16(
    model: onnx.ModelProto | str | Path,
    *,
    block_op_types: Iterable[str] = DEFAULT_BLOCK_OP_TYPES,
    block_nodes: Iterable[str] = (),
    keep_boundary_fp32: bool = True,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Convert a float32 graph to float16, keeping float32 graph inputs and outputs.

    Args:
        model: the float32 graph (proto or path); not modified.
        block_op_types: op types kept in float32.
        block_nodes: node names kept in float32 (e.g. layers the accuracy gate found
            sensitive).
        keep_boundary_fp32: keep normalisation, de-normalisation and the score in float32.

    Returns:
        ``(fp16 model, info)``; info lists the float16 / float32 nodes, the casts added and
        how many weights were clipped to the float16 range or flushed to zero.

    Raises:
        ExportError: the converted graph fails ``onnx.checker``.
    """
    src = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    m = copy.deepcopy(src)
    g = m.graph
    name_nodes(g)
    half = fp16_nodes(g, block_op_types=block_op_types, block_nodes=block_nodes,
                      keep_boundary_fp32=keep_boundary_fp32)
    conv = _Converter(g, half, _float_types(m))
    nodes = conv.rewrite(g)
    used = {i for n in nodes for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend([*keep, *conv.new_inits])
    del g.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"float16 conversion produced an invalid graph: "
                          f"{exc}".splitlines()[0]) from None
    del m.graph.value_info[:]  # keep the file lean; runtimes infer shapes themselves
    info = {"fp16_nodes": sorted(half),
            "fp32_nodes": sorted(n.name for n in src.graph.node if n.name not in half),
            "casts": sum(1 for n in nodes if n.op_type == "Cast"), **conv.stats}
    return m, info


class _Converter:
    """One float16 rewrite of a graph: which tensor has which type, and the casts /
    float16 weights added so far (each made once)."""

    def __init__(self, g: onnx.GraphProto, half: set[str], types: dict[str, int]):
        self.half, self.types = half, types
        self.consts = {t.name: t for t in g.initializer}
        self.consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                            for a in n.attribute if a.name == "value"})
        producer = {o: n.name for n in g.node for o in n.output}
        # Graph outputs made by float16 nodes: the node writes NAME/fp16, a Cast writes NAME.
        self.rename = {o.name: f"{o.name}/fp16" for o in g.output
                       if producer.get(o.name) in half and types.get(o.name) == TensorProto.FLOAT}
        self.current: dict[str, int] = {}  # tensor -> dtype it has after conversion
        self.casts: dict[tuple[str, int], str] = {}
        self.new_inits: list[TensorProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.stats = {"clipped": 0, "flushed_to_zero": 0}

    def converted(self, name: str, to: int) -> str:
        """``name`` as dtype ``to``: a float16 copy of a constant, or a Cast node."""
        key = (name, to)
        if key in self.casts:
            return self.casts[key]
        suffix = "fp16" if to == TensorProto.FLOAT16 else "fp32"
        if name in self.consts and to == TensorProto.FLOAT16:
            arr = numpy_helper.to_array(self.consts[name]).astype(np.float64)
            self.stats["clipped"] += int(np.sum(np.abs(arr) > _F16_MAX))
            arr = np.clip(arr, -_F16_MAX, _F16_MAX)
            half_arr = arr.astype(np.float16)
            self.stats["flushed_to_zero"] += int(np.sum((half_arr == 0) & (arr != 0)))
            self.new_inits.append(numpy_helper.from_array(half_arr, f"{name}/{suffix}"))
        else:
            self.nodes.append(helper.make_node("Cast", [name], [f"{name}/{suffix}"], to=to,
                                               name=f"{name}/cast_{suffix}"))
        self.casts[key] = f"{name}/{suffix}"
        return self.casts[key]

    def rewrite(self, g: onnx.GraphProto) -> list[onnx.NodeProto]:
        """Every node with its float inputs cast to the type it runs in, in graph order,
        then the Casts back to float32 of renamed graph outputs."""
        for node in g.node:
            self._node(node)
        for out, tmp in self.rename.items():
            self.nodes.append(helper.make_node("Cast", [tmp], [out], to=TensorProto.FLOAT,
                                               name=f"{out}/cast_fp32"))
        return self.nodes

    def _node(self, node: onnx.NodeProto) -> None:
        want = TensorProto.FLOAT16 if node.name in self.half else TensorProto.FLOAT
        n_data = _DATA_INPUTS.get(node.op_type, len(node.input))
        for i, inp in enumerate(node.input):
            inp = self.rename.get(inp, inp)
            node.input[i] = inp
            if i >= n_data:  # a parameter input with its own type (e.g. Resize scales)
                continue
            orig = self.types.get(inp.removesuffix("/fp16") if inp.endswith("/fp16") else inp)
            if orig not in (TensorProto.FLOAT, TensorProto.FLOAT16):
                continue
            have = self.current.get(inp, orig)
            if have != want:
                node.input[i] = self.converted(inp, want)
        for j, out in enumerate(node.output):
            if out in self.rename:
                node.output[j] = self.rename[out]
            if node.name in self.half and self.types.get(out) == TensorProto.FLOAT:
                self.current[node.output[j]] = TensorProto.FLOAT16
        self.nodes.append(node)
