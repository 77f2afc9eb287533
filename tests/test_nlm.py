"""Non-local means as an exported graph: numpy's reflect padding, scikit-image's
``denoise_nl_means(fast_mode=True)`` on a real photo (stated PSNR tolerance), the ONNX
graph vs its torch module, the spec field, and the NLM candidate chosen when the data
make it best."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_helpers import edge_task

from metaae_edge.errors import SpecError
from metaae_edge.space.nlm import (
    NLMParams,
    nl_means,
    nl_means_full,
    nl_means_rows,
    nlm_export_placeholder,
    reflect_pad,
)
from metaae_edge.spec import ArchSpec


def _psnr(a, b) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


@pytest.mark.parametrize("n", [2, 3, 7])
def test_reflect_pad_is_numpys_reflect_also_beyond_the_image(n):
    a = np.arange(n * 5, dtype=np.float32).reshape(1, 1, n, 5)
    for pad in (1, 4, 11):
        want = np.pad(a, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
        assert np.array_equal(reflect_pad(torch.as_tensor(a), pad).numpy(), want)


@pytest.mark.parametrize("params", [NLMParams(5, 6, 0.08, 0.1), NLMParams(7, 3, 0.06, 0.1)])
def test_matches_scikit_image_fast_mode_on_a_real_photo(params):
    import skimage.data
    from skimage.restoration import denoise_nl_means

    clean = (skimage.data.camera()[200:264, 220:284] / 255.0).astype(np.float32)
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape)
    sk = denoise_nl_means(noisy, patch_size=params.patch_size,
                          patch_distance=params.patch_distance, h=params.h,
                          sigma=params.sigma, fast_mode=True)
    with torch.no_grad():
        ours = nl_means(torch.as_tensor(noisy, dtype=torch.float32)[None, None],
                        params)[0, 0].numpy()
    # the only difference: scikit-image's approximate exp (measured 0.00-0.03 dB apart,
    # 66-70 dB PSNR between the two outputs on camera / astronaut / coffee crops)
    assert abs(_psnr(ours, clean) - _psnr(sk, clean)) < 0.05
    assert _psnr(ours, np.clip(sk, 0, 1)) > 60
    assert np.abs(ours - sk).max() < 0.01


@pytest.mark.parametrize("shape", [(1, 1, 37, 23), (2, 1, 3, 5), (1, 1, 1, 1), (1, 1, 2, 9),
                                   (1, 3, 17, 12), (1, 1, 67, 101)])
@pytest.mark.parametrize("params", [NLMParams(5, 6, 0.3, 0.2), NLMParams(7, 3, 0.5, 0.3),
                                    NLMParams(3, 2, 0.15, 0.1), NLMParams(5, 1, 1.0, 0.0),
                                    NLMParams(7, 1, 0.37, 0.1)])  # the last: the default
def test_symmetric_window_equals_every_shift_computed(shape, params):
    # the half window plus mirrored crops is the full window's filter, at every pixel
    # (the border included: images smaller than the search window, odd sizes, RGB)
    x = torch.as_tensor(np.random.default_rng(sum(shape)).uniform(0, 1, shape),
                        dtype=torch.float32)
    with torch.no_grad():
        got, want = nl_means(x, params), nl_means_full(x, params)
    assert got.shape == want.shape == x.shape
    assert (got - want).abs().max() < 1e-5
    # and the filter does something here: not the identity
    assert (got - x).abs().max() > 1e-2 or shape == (1, 1, 1, 1)
    # the graph the bundles ship (onnx.helper, per shift of the half window): the same
    import onnxruntime as ort

    from metaae_edge.exporters.nlm_graph import nlm_model

    sess = ort.InferenceSession(nlm_model(params, shape[1]).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"x": x.numpy()})[0]
    assert np.abs(onnx_out - want.numpy()).max() < 1e-5


def test_helper_graph_is_valid_onnx_at_each_opset_the_exporter_allows():
    import onnx

    from metaae_edge.exporters.nlm_graph import nlm_model

    for opset in (13, 17, 20):
        model = nlm_model(NLMParams(5, 6, 0.3, 0.2), 1, opset)
        onnx.checker.check_model(model, full_check=True)
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("Exp") == 84  # half of the 13 x 13 window, the shift 0 excluded


def test_helper_graph_gathers_on_the_row_axis_only():
    # the reflect pad's column Gather runs on the row axis between two Transposes (a Gather
    # on the last axis copies one value at a time: ~3.5 ms at 512x512, session 31)
    from onnx import helper

    from metaae_edge.exporters.nlm_graph import nlm_model

    graph = nlm_model(NLMParams(7, 1, 0.37, 0.1), 1).graph
    shapes = {n.output[0] for n in graph.node if n.op_type == "Shape"}
    axes = [next((helper.get_attribute_value(a) for a in n.attribute if a.name == "axis"), 0)
            for n in graph.node if n.op_type == "Gather" and n.input[0] not in shapes]
    assert axes == [2, 2]
    assert [n.op_type for n in graph.node].count("Transpose") == 2


def test_placeholder_is_one_op_with_the_settings_and_the_torch_values():
    x = torch.as_tensor(np.random.default_rng(3).uniform(0, 1, (1, 1, 19, 14)),
                        dtype=torch.float32)
    p = NLMParams(5, 2, 0.3, 0.2)
    with nlm_export_placeholder():
        graph = torch.export.export(_NLM(p), (x,)).graph
        inside = nl_means(x, p)
    calls = [n for n in graph.nodes if n.op == "call_function"]
    assert [str(n.target) for n in calls] == ["metaae_edge.nlm.default"]
    assert calls[0].args[1:] == p.as_tuple()
    assert torch.equal(inside, nl_means_rows(x, p)) and torch.equal(nl_means(x, p), inside)



def test_placeholder_is_per_thread_and_off_after_an_error():
    """An export in one thread leaves another thread's NLM differentiable (the op has no
    autograd formula), and the switch is off again after the block raises."""
    import threading

    x = torch.rand(1, 1, 9, 8, requires_grad=True)
    p = NLMParams(3, 1, 0.3, 0.2)
    grads = []
    with nlm_export_placeholder():
        t = threading.Thread(target=lambda: grads.append(
            torch.autograd.grad(nl_means(x, p).sum(), x)[0]))
        t.start()
        t.join()
    assert len(grads) == 1 and grads[0].abs().sum() > 0
    with pytest.raises(RuntimeError, match="trace failed"), nlm_export_placeholder():
        raise RuntimeError("trace failed")
    torch.autograd.grad(nl_means(x, p).sum(), x)  # the plain graph again

class _NLM(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        self.params = params

    def forward(self, x):
        return nl_means(x, self.params)


def test_colour_channels_share_the_weights_like_scikit_image():
    import skimage.data
    from skimage.restoration import denoise_nl_means

    clean = (skimage.data.astronaut()[100:140, 100:136] / 255.0).astype(np.float32)
    noisy = clean + 0.1 * np.random.default_rng(1).standard_normal(clean.shape)
    p = NLMParams(5, 3, 0.08, 0.1)
    sk = denoise_nl_means(noisy, patch_size=5, patch_distance=3, h=0.08, sigma=0.1,
                          fast_mode=True, channel_axis=-1)
    x = torch.as_tensor(noisy.transpose(2, 0, 1), dtype=torch.float32)[None]
    with torch.no_grad():
        ours = nl_means(x, p)[0].numpy().transpose(1, 2, 0)
    assert abs(_psnr(ours, clean) - _psnr(sk, clean)) < 0.05


def test_graph_equals_its_torch_module_at_any_size():
    import io

    import onnxruntime as ort

    class M(torch.nn.Module):
        def forward(self, x):
            return nl_means(x, NLMParams(5, 2, 0.8, 1.0))

    buf = io.BytesIO()  # the fast exporter here; the bundle's (dynamo) one: the slow test
    torch.onnx.export(M(), (torch.randn(2, 1, 13, 10),), buf, dynamo=False,
                      input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in ((1, 1, 37, 23), (2, 1, 3, 5), (1, 1, 64, 64)):
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            want = M()(torch.as_tensor(x)).numpy()
        assert np.abs(sess.run(None, {"x": x})[0] - want).max() < 1e-5


def test_spec_field_round_trips_and_is_validated():
    spec = ArchSpec((1, 16, 16), (), 1, (), backbone="denoiser",
                    nlm=(5, 6, 0.3, 0.4)).validate()
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec and again.nlm == (5, 6, 0.3, 0.4)
    assert "nlm p5 d6" in spec.describe()
    assert NLMParams(5, 6, 0.3, 0.4).shift_macs_per_pixel() == 169 + 2197
    assert "nlm" not in ArchSpec((1, 16, 16), (), 1, (), backbone="denoiser").to_dict()
    with pytest.raises(SpecError, match="nlm must be"):
        ArchSpec((1, 8, 8), (), 1, (), backbone="denoiser", nlm=(5, 6, -1.0, 0.1)).validate()
    with pytest.raises(SpecError, match="only defined for the denoiser"):
        ArchSpec((4,), (), 2, (), nlm=(5, 6, 0.1, 0.1)).validate()


def test_nlm_candidate_is_chosen_when_the_data_make_it_best():
    from metaae_edge.adapt import AdaptResult, _arch_report
    from metaae_edge.pipeline.image_candidates import denoiser_compete
    from metaae_edge.space import CompactDenoiser
    from metaae_edge.spec import LayerSpec

    def untrained(t):  # a nearly-untrained "ours"
        torch.manual_seed(0)
        spec = ArchSpec(t.sample_shape, (LayerSpec(8, "relu", 3),), 1, (),
                        backbone="denoiser")
        return AdaptResult(CompactDenoiser(spec).eval(), spec, t.normalizer(),
                           _arch_report(spec), {})

    task = edge_task(res=32, margin=8, max_side=20)
    comp = denoiser_compete(untrained, task, 0.2, 0, hybrid=False, joint=False)
    sel = comp.selection["selected"]
    assert sel["name"].startswith("nlm-"), comp.selection
    assert comp.winner.spec.nlm and not comp.winner.spec.encoder
    scores = {c["name"]: c["score"] for c in comp.selection["candidates"]}
    best_gauss = max(v for k, v in scores.items() if k.startswith("gaussian-"))
    assert scores[sel["name"]] > best_gauss and scores[sel["name"]] > scores["median3"]
    # its settings are the pixel-unit ones scaled to model units by the normaliser's std
    std = float(comp.winner.normalizer.std[0])
    px = comp.winner.report["nlm_pixel"]
    assert np.allclose(comp.winner.spec.nlm[2:], np.array(px[2:]) / std, rtol=1e-5)


@pytest.mark.slow
def test_nlm_bundle_runs_any_size_and_equals_torch(tmp_path):
    import onnx

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.runtime import Runtime
    from metaae_edge.space import CompactDenoiser
    from metaae_edge.spec import LayerSpec
    from metaae_edge.tasks.base import Normalizer

    torch.manual_seed(0)
    spec = ArchSpec((1, 16, 16), (LayerSpec(8, "relu", 3),), 1, (), backbone="denoiser",
                    nlm=(5, 6, 0.3, 0.4)).validate()
    model = CompactDenoiser(spec).eval()
    norm = Normalizer(np.array([0.45], np.float32), np.array([0.25], np.float32))
    ref = np.random.default_rng(0).uniform(0, 1, (6, 1, 16, 16)).astype(np.float32)
    x = np.random.default_rng(1).uniform(0, 1, (1, 1, 67, 101)).astype(np.float32)
    with torch.no_grad():
        want = (model((torch.as_tensor(x) - 0.45) / 0.25)[0] * 0.25 + 0.45).numpy()
    for exporter in ("dynamo", "torchscript"):
        bundle = write_bundle(tmp_path / exporter, model=model, spec=spec, normalizer=norm,
                              task_summary={"name": "nlm"}, objective="denoise",
                              reference=ref.reshape(6, -1), threshold=None, reports={},
                              seed=0, exporter=exporter)
        got = Runtime.load(bundle, threads=1).denoise(x)
        assert got.shape == (1, 1, 67, 101)
        assert np.abs(got - want).max() < 1e-4  # stated tolerance: 1e-4 raw units
        # the placeholder was replaced by the helper graph: no custom domain is left
        enc = onnx.load(str(tmp_path / exporter / "encoder.onnx"))
        assert {o.domain for o in enc.opset_import} == {""}
        assert [n.op_type for n in enc.graph.node].count("Exp") == 84
