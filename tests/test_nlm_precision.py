"""FP16 and INT8 of the NLM helper graph (the default joint bundle: NLM d1 +
the shipped 21,321-parameter refiner with a half-resolution stage, session 30) on real
photo patches: both pass the accuracy gate
judged on noisy -> clean held-out patches, keep the spliced NLM (4 ``Exp`` nodes), and
denoise within 0.2 dB of FP32 through the runtime."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

RES, SIGMA = 24, 0.1


def _camera_task():
    from skimage import data

    from metaae_edge.tasks.base import Noise, Task

    img = data.camera().astype(np.float32) / 255.0
    step = (img.shape[0] - RES) // 7
    patches = np.stack([img[i * step:i * step + RES, j * step:j * step + RES]
                        for i in range(8) for j in range(8)]).reshape(64, -1)
    return Task("camera", "test", patches[:40], patches[40:], objective="denoise",
                normalization="global", noise=Noise("gaussian", SIGMA),
                image_shape=(1, RES, RES))


def _psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory):
    from test_nlm_preset import _untrained

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.pipeline.image_candidates import denoiser_compete

    task = _camera_task()
    comp = denoiser_compete(_untrained, task, 0.2, 0, hybrid=False, preset=None)
    joint = comp.pool["ours-nlm-joint"]
    assert joint.spec.param_count() == 21_321 and joint.spec.nlm[1] == 1
    root = write_bundle(tmp_path_factory.mktemp("nlmp") / "b", model=joint.model,
                        spec=joint.spec, normalizer=joint.normalizer,
                        task_summary={"name": "camera"}, objective="denoise",
                        reference=task.query, threshold=None,
                        reports={"adaptation": joint.report}, seed=0)
    rng = np.random.default_rng(5)
    noisy = np.clip(task.query + rng.normal(0, SIGMA, task.query.shape), 0, 1)
    return root, task, noisy.astype(np.float32)


@pytest.mark.parametrize("precision", ["fp16", "int8", "int8-uint8"])
def test_reduced_nlm_graph_passes_the_gate_and_keeps_quality(default_bundle, precision):
    import onnx
    from onnx import numpy_helper

    from metaae_edge.exporters.precision import add_precision
    from metaae_edge.runtime import Runtime

    root, task, noisy = default_bundle
    calib = np.clip(task.support + np.random.default_rng(6).normal(0, SIGMA, task.support.shape),
                    0, 1).astype(np.float32)
    precision, _, acts = precision.partition("-")
    rep = add_precision(root, precision, calib, noisy, holdout_target=task.query,
                        calib_samples=32, max_quality_drop=0.02,
                        int8_activations=acts or "int8")
    assert rep["relative_drop"] < 0.02
    graph = onnx.load(str(root / f"autoencoder.{precision}.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Exp") == 4  # the spliced NLM at distance 1 survives the conversion
    if precision == "int8":
        assert "QuantizeLinear" in ops
        assert rep["info"]["activations"] == (acts or "int8")
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        zero_points = {inits[n.input[2]].dtype.name for n in graph.node
                       if n.op_type == "QuantizeLinear"}
        assert zero_points == {acts or "int8"}
        # the tail (a ConvTranspose since session 31) stays float
        assert "ConvTranspose" in ops
    imgs = noisy.reshape(-1, 1, RES, RES)
    clean = task.query.reshape(-1, 1, RES, RES)
    full = Runtime.load(root, threads=1).denoise(imgs)
    reduced = Runtime.load(root, precision=precision, threads=1).denoise(imgs)
    assert _psnr(full, clean) > _psnr(imgs, clean) + 5  # the bundle denoises
    assert abs(_psnr(reduced, clean) - _psnr(full, clean)) < 0.2
