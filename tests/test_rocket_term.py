"""The MiniRocket feature term (pipeline/rocket_term.py): its graph equals the numpy
reference (in torch and served by onnxruntime without torch), the kernel bank is a
function of the seed and the fit rows' set (not their order), and an anomaly of another
shape scores above the normal series."""

import numpy as np
import pytest
import torch
from vector_helpers import SCORE_TORCH_FREE, bump_series

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.pipeline.detector_candidates import detector_result
from metaae_edge.pipeline.rocket_term import (
    dilations,
    fit_rocket,
    kernel_weights,
    rocket_features_reference,
    rocket_term,
)
from metaae_edge.pipeline.series_term import SeriesPrep, fit_series, series_rows
from metaae_edge.tasks.base import Normalizer


def _fit_rows(n=40, c=2, t=40):
    x = bump_series(n + 10, c=c, t=t)
    norm = Normalizer.fit(x[:n])
    return (x, norm, norm.transform(x[:n]).astype(np.float64),
            norm.transform(x[n:]).astype(np.float64))


def test_kernel_bank_and_dilations():
    w = kernel_weights()
    assert w.shape == (84, 9) and np.all(w.sum(axis=1) == 0)
    assert len({tuple(r) for r in w}) == 84
    assert dilations(7) == [1] and dilations(24) == [1, 2]
    assert dilations(150) == [1, 2, 4, 8, 18]  # 2^log2(18) floors to 17 without care


@pytest.mark.parametrize("znorm, diff", [(False, False), (True, True)])
def test_graph_equals_numpy_reference(znorm, diff):
    _, norm, z, zq = _fit_rows()
    fit = fit_rocket(z, norm, 2, znorm, diff)
    ref = rocket_features_reference(zq, fit)
    term = rocket_term(z, norm, 2, znorm, diff)
    with torch.no_grad():
        got = term.front(torch.as_tensor(zq, dtype=torch.float32)).double().numpy()
    assert got.shape == (10, 84 * len(dilations(40)))
    np.testing.assert_allclose(got, ref, atol=5e-3)
    assert np.abs(ref).max() > 1.0  # not trivially constant features
    # the first-difference channels: dx_0 = 0, then the scaled difference
    cfg = fit_series(z, norm, 2, znorm, True)
    with torch.no_grad():
        prep = SeriesPrep(cfg, 40)(torch.as_tensor(zq, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(prep, series_rows(zq, cfg), atol=1e-4)
    assert prep.shape[1] == 4 and np.all(prep[:, 2:, 0] == 0)


def test_bank_is_seeded_and_order_free():
    _, norm, z, zq = _fit_rows()
    a = fit_rocket(z, norm, 2, False, True, seed=0)
    b = fit_rocket(z[::-1].copy(), norm, 2, False, True, seed=0)  # fit rows permuted
    c = fit_rocket(z, norm, 2, False, True, seed=1)
    for wa, wb in zip(a["weights"], b["weights"]):
        assert np.array_equal(wa, wb)
    np.testing.assert_allclose(np.concatenate(a["bias"]), np.concatenate(b["bias"]),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rocket_features_reference(zq, a),
                               rocket_features_reference(zq, b), atol=1e-9)
    assert not all(np.array_equal(wa, wc) for wa, wc in zip(a["weights"], c["weights"]))
    # the weights only: each kernel's channels carry the base kernel, others 0
    w = a["weights"][0]
    assert set(np.unique(w)) <= {-1.0, 0.0, 2.0} and np.all(np.abs(w).sum(axis=(1, 2)) > 0)


@pytest.mark.parametrize("score", ["maha", "knn"])
def test_an_anomaly_of_another_shape_scores_higher(score):
    x = bump_series(60, c=1, t=64, seed=3)
    odd = bump_series(20, c=1, t=64, seed=4, width=12.0)  # a wide bump, same energy range
    norm = Normalizer.fit(x[:40])
    z = norm.transform(x[:40]).astype(np.float64)
    q = norm.transform(np.concatenate([x[40:], odd])).astype(np.float32)
    term = rocket_term(z, norm, 1, False, True, score)
    with torch.no_grad():
        s = term(torch.as_tensor(q)).numpy()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(np.r_[np.zeros(20), np.ones(20)], s) > 0.95


def test_series_ensemble_holds_the_rocket_term_and_serves_its_score(tmp_path,
                                                                    python_without):
    """On a series-declared task the exported ensemble+ours is the r27 rule: its rocket
    part equals the numpy reference, and the served bundle equals the torch model."""
    from metaae_edge.pipeline.candidates import pca_result
    from metaae_edge.pipeline.detector_candidates import (
        ROCKET,
        ROCKET_WEIGHT,
        detector_candidates,
    )

    x = bump_series(60, c=1, t=48, seed=5)
    norm = Normalizer.fit(x[:40])
    z, zh = (norm.transform(a).astype(np.float64) for a in (x[:40], x[40:50]))
    ours = pca_result(z, 4, norm, "pca-4")  # a vector autoencoder standing in for ours
    cands = {c.name: c.result for c in detector_candidates(z, zh, norm, ours=ours, series=1)}
    res = cands["ensemble+ours"]
    ens = res.model.term
    assert [t["name"] for t in res.report["terms"]][-1] == "rocket"
    assert res.report["terms"][-1]["weight"] == ROCKET_WEIGHT
    rocket = ens.terms[-1]
    assert rocket is cands["rocket"].model.term  # one fitted term, scored and summed
    q = x[50:]
    zq = norm.transform(q).astype(np.float64)
    fit = fit_rocket(z, norm, 1, ROCKET[0], ROCKET[1])
    f = rocket_features_reference(zq, fit)
    y = (f - rocket.term.mean.double().numpy()) @ rocket.term.w.double().numpy()
    with torch.no_grad():
        zt = torch.as_tensor(zq, dtype=torch.float32)
        parts = [t(zt).double().numpy() * c for t, c in zip(ens.terms, ens.coef)]
        total = ens(zt).double().numpy()
    np.testing.assert_allclose(parts[-1], (y * y).sum(axis=1) * ens.coef[-1], rtol=2e-3)
    np.testing.assert_allclose(total, np.sum(parts, axis=0), rtol=1e-5)
    bundle = write_bundle(tmp_path / "b", model=res.model, spec=res.spec,
                          normalizer=res.normalizer, task_summary={"name": "r"},
                          objective="anomaly", reference=x[40:50], threshold=None,
                          reports={"adaptation": res.report}, seed=0)
    np.save(tmp_path / "q.npy", q)
    run = python_without(SCORE_TORCH_FREE, bundle, tmp_path / "q.npy", tmp_path / "s.npy")
    assert run.returncode == 0, run.stderr
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), total, rtol=2e-3)


def test_runtime_chunks_a_rocket_bundle_by_its_convolutions(tmp_path):
    """The graph declares its widest activation (84 x T per sample); the runtime sizes
    its chunks by it, and chunked scores equal one call."""
    from metaae_edge.runtime import Runtime
    from metaae_edge.runtime.api import AUTO_CHUNK_ELEMENTS

    x = bump_series(50, c=1, t=40)
    norm = Normalizer.fit(x[:40])
    z = norm.transform(x[:40]).astype(np.float64)
    res = detector_result("rocket", rocket_term(z, norm, 1, True, True), norm, 40)
    bundle = write_bundle(tmp_path / "b", model=res.model, spec=res.spec,
                          normalizer=res.normalizer, task_summary={"name": "r"},
                          objective="anomaly", reference=x[40:], threshold=None,
                          reports={"adaptation": res.report}, seed=0)
    rt = Runtime.load(bundle)
    assert rt._widen == pytest.approx(84.0)
    q = bump_series(3000, c=1, t=40, seed=8)
    assert rt._chunk(q) == AUTO_CHUNK_ELEMENTS // (84 * 40) < len(q)
    np.testing.assert_allclose(rt.score(q)[:500], Runtime.load(bundle, max_batch=500).score(
        q[:500]), rtol=1e-6)
