"""Small ONNX graph helpers shared by the FP16 / INT8 converters and the gate (no torch)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LINEAR_OPS", "core_nodes", "linear_nodes", "name_nodes", "OrtGraph"]

#: The layers whose precision is worth choosing one at a time (weights live here).
LINEAR_OPS: frozenset[str] = frozenset({"Gemm", "MatMul", "Conv", "ConvTranspose"})


def name_nodes(graph: Any) -> None:
    """Give every unnamed node a unique name (exclusion lists refer to nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def linear_nodes(graph: Any) -> list[str]:
    """Names of the Gemm / MatMul / Conv nodes, in graph order."""
    return [n.name for n in graph.node if n.op_type in LINEAR_OPS]


def core_nodes(graph: Any) -> set[str]:
    """Nodes on a path from a linear layer to a linear layer (both inclusive).

    That is the network proper. What lies outside it is the boundary the exporter adds
    around the network: the input normalisation ``(x - mean) / std``, the output
    de-normalisation ``r * std + mean`` and the score ``sum((r - z)^2) / D``. Those are
    kept in float32 by default: raw-unit inputs can overflow float16 (65504), and the
    score's subtraction of two nearly equal tensors and its reduction lose most of their
    digits in 8 or 11 bits of mantissa.
    """
    producers = {out: n.name for n in graph.node for out in n.output}
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in graph.node:
        for inp in n.input:
            if inp in producers:
                consumers[producers[inp]].append(n.name)
    parents: dict[str, list[str]] = defaultdict(list)
    for src, dsts in consumers.items():
        for d in dsts:
            parents[d].append(src)
    linear = set(linear_nodes(graph))

    def reach(start: set[str], edges: dict[str, list[str]]) -> set[str]:
        seen, stack = set(start), list(start)
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    return reach(linear, consumers) & reach(linear, parents)


class OrtGraph:
    """An onnxruntime CPU session on a graph file; ``run(x)`` returns every output by name.

    ``optimize=False`` turns graph optimisations off: Q/DQ pairs then run as written
    (the reference semantics TensorRT implements) instead of ORT's fused int8 kernels.
    """

    def __init__(self, path: str | Path, threads: int | None = None, optimize: bool = True):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if not optimize:  # exact operator semantics (no fused int8 / fp16 kernels)
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})
        return dict(zip(self.output_names, outs))
