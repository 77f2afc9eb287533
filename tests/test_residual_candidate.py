"""The ``pca+residual`` reconstruct candidate (metaae_edge.pipeline.residual_candidate)."""

import numpy as np
import pytest

from metaae_edge.pipeline.candidates import compete, pca_result
from metaae_edge.pipeline.residual_candidate import fit_residual, residual_gate
from metaae_edge.tasks.base import Normalizer, Task


def _curve(n, d=8, seed=0, noise=0.01, harmonics=3):
    """A closed 1-d curve (harmonics of one angle) in d columns: PCA-2 misses most of it."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, (n, 1))
    feats = np.concatenate([f(h * t) for h in range(1, harmonics + 1)
                            for f in (np.cos, np.sin)], axis=1)
    mix = np.random.default_rng(99).standard_normal((2 * harmonics, d))
    return (feats @ mix + noise * rng.standard_normal((n, d))).astype(np.float32)


def _linear(n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(98).standard_normal((3, d))
    return (rng.standard_normal((n, 3)) @ mix + 0.01 * rng.standard_normal((n, d))
            ).astype(np.float32)


def _mse(model, z):
    import torch

    x = torch.as_tensor(z, dtype=torch.float32)
    with torch.no_grad():
        return float(((model(x)[0] - x) ** 2).mean())


def test_untrained_candidate_is_pca_exactly():
    z = Normalizer.fit(_curve(120)).transform(_curve(120)).astype(np.float64)
    model, info = fit_residual(z, 2, steps=0, val_z=z[:10])
    pca = pca_result(z, 2, None).model
    assert info["best_step"] == 0
    assert abs(_mse(model, z) - _mse(pca, z)) < 1e-6


def test_encoder_correction_starts_at_pca_and_trains():
    z = Normalizer.fit(_curve(200)).transform(_curve(200)).astype(np.float64)
    model, info = fit_residual(z, 2, steps=0, val_z=z[:10], enc_hidden=16)
    assert len(model.encoder.layers) == 2
    assert abs(_mse(model, z) - _mse(pca_result(z, 2, None).model, z)) < 1e-6
    trained, info = fit_residual(z, 2, steps=200, enc_hidden=16)
    assert info["val_mse"] < info["pca_val_mse"]


def test_residual_beats_pca_on_a_curve_and_not_on_linear_data():
    x, q = _curve(400, seed=1), _curve(300, seed=2)
    norm = Normalizer.fit(x)
    z, zq = (norm.transform(a).astype(np.float64) for a in (x, q))
    model, info = fit_residual(z, 2, seed=0)
    pca = pca_result(z, 2, norm).model
    assert info["best_step"] > 0 and info["val_mse"] < info["pca_val_mse"]
    assert _mse(model, zq) < 0.5 * _mse(pca, zq)  # measured ~0.1x
    lin = Normalizer.fit(_linear(200)).transform(_linear(200)).astype(np.float64)
    lin_model, _ = fit_residual(lin, 3, seed=0)
    assert _mse(lin_model, lin) <= _mse(pca_result(lin, 3, None).model, lin) + 1e-6


def test_gate_needs_one_standard_error_over_the_best_pca():
    names = ["ours", "pca-2", "pca-4", "pca+residual-4"]
    rng = np.random.default_rng(0)
    base = -rng.uniform(1, 2, 50)
    rows = [base - 1, base, base + 0.1, base + 0.1 + 0.001 * rng.standard_normal(50)]
    assert residual_gate(names, rows) == {3}  # no gain over pca-4
    rows[3] = base + 0.5 + 0.01 * rng.standard_normal(50)
    assert residual_gate(names, rows) == set()


def _ours_stub(task):
    """A stand-in for the meta-learned model: PCA-3 (its latent size caps the PCA sizes)."""
    norm = task.normalizer()
    return pca_result(norm.transform(task.support).astype(np.float64), 3, norm, "ours")


@pytest.mark.parametrize("rows,residual", [(_curve, True), (_linear, False)])
def test_compete_picks_the_residual_only_where_it_helps(rows, residual):
    task = Task("t", "user", rows(300, seed=3), rows(50, seed=4))
    comp = compete(_ours_stub, task, None, "reconstruct", 0.2, 0)
    names = [c["name"] for c in comp.selection["candidates"]]
    assert "pca+residual-3" in names
    picked = comp.selection["selected"]["name"]
    assert (picked == "pca+residual-3") == residual  # linear rows: ours (= PCA-3 here)
    if residual:  # refitted on every support row
        assert comp.winner.spec.linear_bypass and not comp.ours_on_task
        assert comp.winner.report["residual_fit"]["best_step"] > 0


def test_residual_bundle_is_plain_onnx_with_parity(tmp_path):
    import json

    import onnx

    from metaae_edge.exporters.bundle import write_bundle
    from metaae_edge.pipeline.residual_candidate import refit
    from metaae_edge.runtime import Runtime

    task = Task("curve", "user", _curve(300, seed=5), _curve(60, seed=6))
    res = refit("pca+residual-2", task, 0)
    out = write_bundle(tmp_path / "b", model=res.model, spec=res.spec,
                       normalizer=res.normalizer, task_summary=task.summary(),
                       objective="reconstruct", reference=task.query, threshold=None,
                       reports={"adaptation": res.report}, seed=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["passed"]
    ops = {n.op_type for n in onnx.load(out / "autoencoder.onnx").graph.node}
    assert ops <= {"Gemm", "MatMul", "Add", "Relu", "Sub", "Mul", "Div", "ReduceMean",
                   "ReduceSum", "Pow", "Identity", "Reshape", "Flatten", "Constant"}, ops
    got = Runtime.load(out).reconstruct(task.query)
    norm = res.normalizer
    zq = norm.transform(task.query).astype(np.float64)
    pca = pca_result(norm.transform(task.support).astype(np.float64), 2, norm).model
    assert ((norm.transform(got) - zq) ** 2).mean() < 0.5 * _mse(pca, zq)
