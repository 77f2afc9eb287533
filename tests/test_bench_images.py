"""`metaae-edge bench` on an image (conv) bundle: inputs at the adapted resolution, the
torch reference reproduces all four graph outputs, every backend row is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metaae_edge.bench import BenchConfig, run_bench
from metaae_edge.bench import core as bench_core
from metaae_edge.bench.stats import Roofline


@pytest.fixture(scope="module")
def conv_bundle(tmp_path_factory) -> Path:
    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.space import CompactConvAE
    from metaae_edge.spec import ArchSpec, LayerSpec
    from metaae_edge.tasks.base import Normalizer

    torch.manual_seed(0)
    spec = ArchSpec((1, 16, 16), (LayerSpec(8, "relu", 3), LayerSpec(16, "tanh", 5)), 2,
                    (LayerSpec(8, "relu", 3), LayerSpec(8, "hardswish", 3)), backbone="conv")
    ref = np.random.default_rng(0).uniform(0, 1, (8, 1, 16, 16)).astype(np.float32)
    out = tmp_path_factory.mktemp("bench-img") / "b"
    return write_bundle(out, model=CompactConvAE(spec).eval(), spec=spec,
                        normalizer=Normalizer(np.array([0.4], np.float32),
                                              np.array([0.3], np.float32)),
                        task_summary={"name": "tiny-img"}, objective="denoise",
                        reference=ref.reshape(8, -1), threshold=None, reports={}, seed=0)


def test_conv_torch_reference_matches_the_graph(conv_bundle):
    from metaae_edge.bench.targets import bundle_target
    from metaae_edge.runtime import load_bundle

    b = load_bundle(conv_bundle)
    x = np.random.default_rng(1).uniform(0, 1, (3, 1, 16, 16)).astype(np.float32)
    ort_out = bundle_target(b, "ort-bare", "fp32", 1, 8).bind(x)()
    torch_out = bundle_target(b, "torch-eager", "fp32", 1, 8).bind(x)()
    assert len(ort_out) == len(torch_out) == 4  # reconstruction, latent, score, error_map
    for got, ref in zip(torch_out, ort_out):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_bench_rows_for_an_image_bundle(conv_bundle, monkeypatch):
    roof = Roofline(gflops=50.0, gbps=10.0)
    monkeypatch.setattr(bench_core, "measure_roofline", lambda threads=None: roof)
    rep = run_bench(conv_bundle, BenchConfig(
        backends=("ort-cpu", "ort-bare", "torch-eager"), batches=(1, 4), iterations=3,
        duration_s=None, warmup_s=0.0, threads=1))
    keys = {(r["backend"], r["batch"]) for r in rep["rows"]}
    assert keys == {(b, n) for b in ("ort-cpu", "ort-bare", "torch-eager") for n in (1, 4)}
    assert "1x16x16" in rep["config"]["input"]
    for r in rep["rows"]:
        assert r["macs"] > 0 and r["p50_ms"] > 0
