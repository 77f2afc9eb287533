"""Narrow convolutions written as the equivalent ``ConvTranspose`` (denoiser graphs).

onnxruntime's CPU provider runs a float ``Conv`` with constant weights as an NCHWc conv whose
output channels are padded to the SIMD block (16 floats with AVX-512): the denoiser's tail,
a 3x3 conv to the image's 1 (or 3) channels at full resolution, then computes 16 channels
to keep one; in the default bundle (session 31) it took 7.7 ms of a ~47 ms 512x512
one-thread run. A stride-1 ``Conv`` with ``pads = k // 2`` is the ``ConvTranspose`` with
the weights' two channel axes swapped and the kernel flipped, same pads (the same sums,
another order: within ~1e-7 here), which onnxruntime runs as one GEMM + col2im.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["NARROW_CHANNELS", "narrow_convs_as_transposed"]

#: a Conv with at most this many output channels is rewritten
NARROW_CHANNELS = 3


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(node: onnx.NodeProto, inits: dict) -> np.ndarray | None:
    """The weights (O, I, kh, kw) of a stride-1, undilated, ungrouped, "same"-padded Conv
    with at most :data:`NARROW_CHANNELS` outputs and constant weights, else None."""
    if node.op_type != "Conv" or node.input[1] not in inits:
        return None
    w = numpy_helper.to_array(inits[node.input[1]])
    a = _attrs(node)
    if w.ndim != 4 or w.shape[0] > NARROW_CHANNELS or w.dtype != np.float32:
        return None
    kh, kw = w.shape[2:]
    if kh % 2 == 0 or kw % 2 == 0 or a.get("group", 1) != 1:
        return None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    if any(v != 1 for v in a.get("strides", [1, 1])) or any(
            v != 1 for v in a.get("dilations", [1, 1])):
        return None
    return w if list(a.get("pads", [0] * 4)) == [kh // 2, kw // 2] * 2 else None


def narrow_convs_as_transposed(proto: onnx.ModelProto) -> int:
    """Rewrite (in place) every narrow "same" Conv of ``proto``'s graph as ConvTranspose;
    returns how many. Weights left unused are dropped."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    nodes, done = [], set()
    for node in g.node:
        w = _rewritable(node, inits)
        if w is None:
            nodes.append(node)
            continue
        name = f"{node.input[1]}/transposed"
        wt = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        g.initializer.append(numpy_helper.from_array(wt, name))
        kh, kw = w.shape[2:]
        nodes.append(helper.make_node(
            "ConvTranspose", [node.input[0], name, *node.input[2:]], list(node.output),
            name=node.name or None, kernel_shape=[kh, kw], pads=[kh // 2, kw // 2] * 2))
        done.add(node.input[1])
    del g.node[:]
    g.node.extend(nodes)
    used = {i for node in g.node for i in node.input}
    for init in [i for i in g.initializer if i.name in done and i.name not in used]:
        g.initializer.remove(init)
    return len(done)
