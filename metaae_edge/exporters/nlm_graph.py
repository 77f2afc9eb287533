"""Non-local means written straight as ONNX nodes (``onnx.helper``), spliced into a bundle.

The dynamo exporter took 35-50 s to convert :func:`metaae_edge.space.nlm.nl_means_rows` at
search distance 6 (hundreds of ops with symbolic shapes). Here the same filter is a loop
in Python that emits about 18-19 nodes per shift of the half search window (milliseconds):

* the input is scaled by ``2 o / sqrt(C h^2 s^2)``, so that ``-D_t`` is a constant minus
  the box mean of the squared differences (the output is scaled back at the end);
* the reflect pad by ``P = o + 2 d`` is two Gathers on the row axis (the columns' between
  two Transposes) whose indices come from ``Shape`` (``Range``, ``Mod``, ``Min``: numpy's
  ``reflect``, iterated for images smaller than the pad);
* per shift ``t = (a, b)`` of the half window (``a > 0``, or ``a = 0, b > 0``): one Slice
  of the padded image, Sub, Mul (and ReduceSum over colour channels), one 2-D
  AveragePool (the ``2 o x 2 o`` box), Sub and ``Clip(max=0)``, Exp, the cut-off as
  ``ThresholdedRelu``, then the shift's own term ``w_t(p) x(p + t)`` and its mirror
  ``w_t(p - t) x(p - t)`` (the symmetric window: ``w_{-t}(p) = w_t(p - t)``), four
  static Slices, two Muls and four Adds.

Every Slice is static (ends relative to the axis size), so the graph runs at any height
and width; its ops have the same signatures from opset 13 to 20 (the exporter's range).

During an export the denoiser calls ``torch.ops.metaae_edge.nlm`` (inside
:func:`metaae_edge.space.nlm.nlm_export_placeholder`), which both exporters write as one
``NLM`` node of the domain :data:`DOMAIN` with the settings as attributes;
:func:`splice_nlm` replaces it by this graph. The parity gate then compares the whole
graph with the torch module (whose NLM is :func:`~metaae_edge.space.nlm.nl_means_rows`).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..space.nlm import DISTANCE_CUTOFF, NLMParams

__all__ = ["DOMAIN", "nlm_nodes", "nlm_model", "splice_nlm", "translation_table"]

#: the placeholder node's domain (never left in a written graph)
DOMAIN = "metaae_edge.nlm"
_BIG = 2 ** 62  # a Slice end meaning "to the end of the axis"
#: ThresholdedRelu keeps ``w > alpha``: the float32 below ``exp(-5)``, so ``w >= exp(-5)``
#: (torch: ``D <= 5``; the two can differ only where D rounds to within an ulp of 5)
_CUTOFF = float(np.nextafter(np.float32(math.exp(-DISTANCE_CUTOFF)), np.float32(0)))


class _Graph:
    """Nodes and initialisers with unique names under ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix, self.nodes, self.inits, self.n = prefix, [], [], 0
        self.consts: dict[tuple, str] = {}

    def name(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n}"

    def const(self, value, dtype=np.float32) -> str:
        """An initialiser (one per distinct value)."""
        arr = np.asarray(value, dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self.consts:
            self.consts[key] = self.name()
            self.inits.append(numpy_helper.from_array(arr, self.consts[key]))
        return self.consts[key]

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name()
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def crop(self, x: str, rows: tuple[int, int], cols: tuple[int, int]) -> str:
        """``x`` without its first / last ``rows`` and ``cols`` entries (a static Slice)."""
        if rows == (0, 0) and cols == (0, 0):
            return x
        starts = self.const([rows[0], cols[0]], np.int64)
        ends = self.const([-rows[1] if rows[1] else _BIG, -cols[1] if cols[1] else _BIG],
                          np.int64)
        return self.op("Slice", x, starts, ends, self.const([2, 3], np.int64))


def _reflect_index(g: _Graph, x: str, axis: int, pad: int) -> str:
    """numpy ``reflect`` indices ``-pad .. n + pad - 1`` of ``x``'s ``axis`` (int64)."""
    n = g.op("Gather", g.op("Shape", x), g.const([axis], np.int64))  # Shape(start) is opset 15
    i = g.op("Range", g.const(-pad, np.int64), g.op("Add", n, g.const([pad], np.int64)),
             g.const(1, np.int64))
    one = g.const([1], np.int64)
    period = g.op("Max", g.op("Mul", g.op("Sub", n, one), g.const([2], np.int64)), one)
    m = g.op("Mod", i, period, fmod=0)  # the divisor's sign: 0 <= m < period
    return g.op("Min", m, g.op("Sub", period, m))


def _reflect_pad(g: _Graph, x: str, pad: int) -> str:
    """``x`` reflect-padded by ``pad`` on H and W: the columns by a Gather on the row axis
    between two Transposes (a Gather on the last axis copies one value at a time: 3.5 ms
    of a 512x512 one-thread run, against ~0.5 ms so; session 31), then the rows."""
    perm = [0, 1, 3, 2]
    cols = g.op("Gather", g.op("Transpose", x, perm=perm), _reflect_index(g, x, 3, pad), axis=2)
    return g.op("Gather", g.op("Transpose", cols, perm=perm), _reflect_index(g, x, 2, pad),
                axis=2)


def _shift(g: _Graph, xp: str, xq: str, t: tuple[int, int], s: dict) -> tuple[str, str]:
    """Shift ``t``'s (own + mirrored) numerator and denominator terms at the pixels."""
    a, b, d, o, P = t[0], t[1], s["d"], s["o"], s["P"]
    # E_t(q) = sum_c (x(q) - x(q + t))^2, q: rows -d-o+1 .. H-1+o, cols -d-o+1 .. W-1+d+o
    xs = g.crop(xp, (P - d - o + 1 + a, P - o - a), (P - d - o + 1 + b, P - o - d - b))
    e = g.op("Sub", xq, xs)
    e = g.op("Mul", e, e)
    if s["c"] > 1:
        e = g.op("ReduceSum", e, g.const([1], np.int64), keepdims=1)
    box = g.op("AveragePool", e, kernel_shape=[2 * o, 2 * o])  # rows -d .. H-1, cols -d .. W-1+d
    neg = g.op("Clip", g.op("Sub", s["offset"], box), "", s["zero"])  # -D_t
    w = g.op("ThresholdedRelu", g.op("Exp", neg), alpha=s["cutoff"])  # 0 where D_t > 5
    own = g.crop(w, (d, 0), (d, d))  # w_t(p)
    mirror = g.crop(w, (d - a, a), (d - b, d + b))  # w_{-t}(p) = w_t(p - t)
    x_own = g.crop(xp, (P + a, P - a), (P + b, P - b))  # x(p + t)
    x_mir = g.crop(xp, (P - a, P + a), (P - b, P + b))  # x(p - t)
    num = g.op("Add", g.op("Mul", own, x_own), g.op("Mul", mirror, x_mir))
    return num, g.op("Add", own, mirror)


def nlm_nodes(x: str, out: str, params: NLMParams, channels: int,
              prefix: str = "nlm/") -> tuple[list, list]:
    """(nodes, initialisers) computing ``out = NLM(x)``, ``x`` (N, C, H, W) float32."""
    g = _Graph(prefix)
    so = int(params.patch_size) | 1
    o, d = so // 2, int(params.patch_distance)
    if d == 0:
        g.op("Identity", x, out=out)
        return g.nodes, g.inits
    P = o + 2 * d
    # x scaled so that -D_t = offset - (box mean of the squared differences)
    scale = 2.0 * o / math.sqrt(channels * float(params.h) ** 2 * so * so)
    xs = g.op("Mul", x, g.const(scale))
    s = {"o": o, "d": d, "P": P, "c": channels, "zero": g.const(0.0), "cutoff": _CUTOFF,
         "offset": g.const(channels * 2.0 * float(params.sigma) ** 2 * scale * scale)}
    xp = _reflect_pad(g, xs, P)
    xq = g.crop(xp, (P - d - o + 1, P - o), (P - d - o + 1, P - o - d))
    num, den = xs, None
    for a in range(d + 1):
        for b in range(-d, d + 1):
            if a > 0 or b > 0:
                tn, td = _shift(g, xp, xq, (a, b), s)
                num = g.op("Add", num, tn)
                den = td if den is None else g.op("Add", den, td)
    den = g.op("Add", den, g.const(1.0))  # the shift 0: weight 1
    g.op("Mul", g.op("Div", num, den), g.const(1.0 / scale), out=out)
    return g.nodes, g.inits


def nlm_model(params: NLMParams, channels: int = 1, opset: int = 17) -> onnx.ModelProto:
    """A stand-alone ``x -> y`` NLM model (N, C, H, W dynamic): tests and benchmarks."""
    nodes, inits = nlm_nodes("x", "y", params, channels)
    shape = ["batch", channels, "height", "width"]
    graph = helper.make_graph(nodes, "nlm", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _params(node: onnx.NodeProto) -> NLMParams:
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    return NLMParams(int(a["patch_size"]), int(a["patch_distance"]), float(a["h"]),
                     float(a["sigma"]))


def splice_nlm(proto: onnx.ModelProto, channels: int) -> int:
    """Replace every placeholder ``NLM`` node of :data:`DOMAIN` in ``proto`` (in place) by
    the NLM graph on ``channels`` channels; drop the domain. Returns how many."""
    g, nodes, n = proto.graph, [], 0
    for node in g.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        new, inits = nlm_nodes(node.input[0], node.output[0], _params(node), channels,
                               prefix=f"nlm{n}/")
        nodes.extend(new)
        g.initializer.extend(inits)
        n += 1
    del g.node[:]
    g.node.extend(nodes)
    keep = [o for o in proto.opset_import if o.domain != DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(keep)
    return n


def _register_schema() -> None:
    from onnx.defs import OpSchema

    if onnx.defs.has("NLM", DOMAIN):
        return
    attr = OpSchema.AttrType
    onnx.defs.register_schema(OpSchema(
        "NLM", DOMAIN, 1, doc="placeholder: metaae_edge.exporters.nlm_graph splices NLM here",
        inputs=[OpSchema.FormalParameter("x", "T")],
        outputs=[OpSchema.FormalParameter("y", "T")],
        type_constraints=[("T", ["tensor(float)"], "float32 images")],
        attributes=[OpSchema.Attribute("patch_size", attr.INT, ""),
                    OpSchema.Attribute("patch_distance", attr.INT, ""),
                    OpSchema.Attribute("h", attr.FLOAT, ""),
                    OpSchema.Attribute("sigma", attr.FLOAT, "")]))


def translation_table() -> dict:
    """The dynamo exporter's ``custom_translation_table``: ``torch.ops.metaae_edge.nlm``
    -> one placeholder node (the TorchScript exporter's symbolic is registered too)."""
    import torch
    from onnxscript.values import Opset

    _register_schema()
    dom = Opset(DOMAIN, 1)

    def nlm(x, patch_size: int, patch_distance: int, h: float, sigma: float):
        return dom.NLM(x, patch_size=patch_size, patch_distance=patch_distance, h=h,
                       sigma=sigma)

    def symbolic(g, x, patch_size, patch_distance, h, sigma):
        from torch.onnx import symbolic_helper as sh

        y = g.op(f"{DOMAIN}::NLM", x, patch_size_i=sh._get_const(patch_size, "i", "s"),
                 patch_distance_i=sh._get_const(patch_distance, "i", "d"),
                 h_f=sh._get_const(h, "f", "h"), sigma_f=sh._get_const(sigma, "f", "sigma"))
        y.setType(x.type())
        return y

    for opset in range(13, 21):
        torch.onnx.register_custom_op_symbolic("metaae_edge::nlm", symbolic, opset)
    return {torch.ops.metaae_edge.nlm.default: nlm}
