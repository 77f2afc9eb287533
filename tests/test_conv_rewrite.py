"""A denoiser's narrow "same" convs written as ConvTranspose (session 31): the same values
at odd sizes, and only the convs it applies to are rewritten."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from metaae_edge.exporters.conv_rewrite import narrow_convs_as_transposed


def _model(convs) -> onnx.ModelProto:
    """x (1, 8, H, W) -> each conv (weights, attrs) on x -> outputs y0, y1, ..."""
    rng = np.random.default_rng(0)
    nodes, inits, outs = [], [], []
    for i, (shape, attrs) in enumerate(convs):
        w, b = (rng.normal(0, 0.3, s).astype(np.float32) for s in (shape, shape[:1]))
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", ["x", f"w{i}", f"b{i}"], [f"y{i}"], name=f"c{i}",
                                      **attrs))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, list("nchw")))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"])
    graph = helper.make_graph(nodes, "g", [x], outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


NARROW = [((1, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
          ((3, 8, 5, 3), {"pads": [2, 1, 2, 1], "kernel_shape": [5, 3]})]
KEPT = [((8, 8, 3, 3), {"pads": [1, 1, 1, 1]}),  # wide
        ((1, 8, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
        ((1, 8, 3, 3), {"pads": [0, 0, 0, 0]}),  # not "same"
        ((2, 4, 3, 3), {"pads": [1, 1, 1, 1], "group": 2})]


@pytest.mark.parametrize("hw", [(67, 101), (3, 5), (3, 3)])
def test_rewritten_graph_gives_the_same_values(hw):
    import onnxruntime as ort

    model = _model(NARROW + KEPT)
    new = _model(NARROW + KEPT)
    assert narrow_convs_as_transposed(new) == 2
    onnx.checker.check_model(new, full_check=True)
    assert [n.op_type for n in new.graph.node] == ["ConvTranspose"] * 2 + ["Conv"] * 4
    assert {i.name for i in new.graph.initializer} >= {"w2", "w3", "w4", "w5"}
    assert not {"w0", "w1"} & {i.name for i in new.graph.initializer}
    x = np.random.default_rng(1).uniform(-1, 1, (1, 8, *hw)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
           for m in (model, new)]
    for want, got in zip(*(s.run(None, {"x": x}) for s in run)):
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5
