"""Exported classical detectors and the score ensemble (pipeline/detector_candidates.py):
the bundle's graph, served by the torch-free runtime, computes the numpy / scikit-learn
score; the selection needs no labels and never reads the query; the adapted detector
beats IsolationForest on held-out synthetic tabular tasks."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from vector_helpers import SCORE_TORCH_FREE

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.pipeline.candidates import Candidate, closed_form_candidates, pca_result, select
from metaae_edge.pipeline.detector_candidates import detector_candidates, ensemble_result
from metaae_edge.pipeline.detector_graphs import whitening
from metaae_edge.tasks import create_family
from metaae_edge.tasks.base import Normalizer


def _rows(seed=0, n=120, d=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)) @ rng.standard_normal((3, d)) + 0.3 * rng.standard_normal(
        (n, d))
    return (x * rng.uniform(0.5, 4.0, d) + rng.uniform(-3, 3, d)).astype(np.float32)


def _served(tmp_path, python_without, result, query, name):
    """The bundle's scores of ``query`` through the runtime, torch blocked."""
    bundle = write_bundle(tmp_path / name, model=result.model, spec=result.spec,
                          normalizer=result.normalizer, task_summary={"name": name},
                          objective="anomaly", reference=query[:16], threshold=None,
                          reports={"adaptation": result.report}, seed=0)
    np.save(tmp_path / "q.npy", query)
    res = python_without(SCORE_TORCH_FREE, bundle, tmp_path / "q.npy", tmp_path / f"{name}.npy")
    assert res.returncode == 0, res.stderr
    return np.load(tmp_path / f"{name}.npy")


def test_served_knn_and_ensemble_equal_the_numpy_reference(tmp_path, python_without):
    x = _rows()
    fit, hold, query = x[:80], x[80:100], np.r_[x[100:], 3 * _rows(1, 20)]
    norm = Normalizer.fit(fit)
    z, zh, zq = (norm.transform(a).astype(np.float64) for a in (fit, hold, query))
    cands = {c.name: c.result for c in detector_candidates(z, zh, norm, seed=0)}
    # kNN: distance to the 5th nearest fit row (scikit-learn)
    knn = NearestNeighbors(n_neighbors=5).fit(z)
    ref = knn.kneighbors(zq)[0][:, -1]
    got = _served(tmp_path, python_without, cands["knn"], query, "knn")
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4)
    # ensemble: whitened kNN + Mahalanobis + PCA residual, each / its held-out std
    mean, w = whitening(z)
    wk = NearestNeighbors(n_neighbors=5).fit((z - mean) @ w)
    from metaae_edge.evaluate.detectors import pca_latent_size

    q = pca_latent_size(z, 0)
    basis = np.linalg.svd(z - z.mean(0), full_matrices=False)[2][:q]

    def terms(a):
        y = (a - mean) @ w
        c = a - z.mean(0)
        return [wk.kneighbors(y)[0][:, -1], (y * y).sum(1),
                ((c - c @ basis.T @ basis) ** 2).mean(1)]

    sd = [t.std(ddof=1) for t in terms(zh)]
    ref = sum(t / s for t, s in zip(terms(zq), sd))
    got = _served(tmp_path, python_without, cands["ensemble"], query, "ens")
    np.testing.assert_allclose(got, ref, rtol=5e-4, atol=5e-4)


def test_gmm_term_is_minus_sklearn_log_density_up_to_a_constant():
    from metaae_edge.adapt import query_scores
    from metaae_edge.evaluate.detectors import fit_gmm

    x = _rows(2, 200)
    norm = Normalizer.fit(x[:150])
    z = norm.transform(x[:150]).astype(np.float64)
    gmm = fit_gmm(z, 0)
    res = {c.name: c.result for c in detector_candidates(z, z[:20], norm)}["gmm"]
    got = query_scores(res, x[150:]).astype(np.float64)
    ref = -gmm.score_samples(norm.transform(x[150:]).astype(np.float64))
    assert np.ptp(got - ref) < 1e-3 * max(np.ptp(ref), 1.0) and (got >= 0).all()


def _linear(n, d=10, rank=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    return (x * rng.uniform(0.5, 3.0, d) + rng.uniform(-5, 5, d)).astype(np.float32)


def test_exactly_linear_data_pca_at_the_rank_and_an_exported_exact_detector():
    """On exactly rank-3 rows: PCA at the rank outscores the smaller sizes by far (the
    reconstruct objective's pick of PCA is tests/test_candidates.py), and what is
    exported separates rows off the subspace perfectly. (The anomaly criterion's ``local``
    pseudo-anomalies stay in the subspace, so the Gaussian-type candidates outscore PCA.)"""
    from metaae_edge.adapt import query_scores

    x = _linear(140)
    fit, hold = x[:80], x[80:100]
    norm = Normalizer.fit(fit)
    z = norm.transform(fit).astype(np.float64)
    ours = Candidate("ours", pca_result(z, 1, norm, "ours"))  # a stand-in "ours"
    cands = [ours, *closed_form_candidates(fit, norm, "anomaly", 1 << 30, 0, hold)]
    best, sel = select(cands, "anomaly", hold, fit, 0)
    pcas = {c.name: c.score for c in cands if c.name.startswith("pca-")}
    assert pcas["pca-3"] > max(pcas["pca-2"], pcas["pca-1"]) + 0.05
    off = x[100:] + np.random.default_rng(5).standard_normal(x[100:].shape).astype(
        np.float32) * x.std(0)
    query = np.r_[x[100:], off]
    labels = np.r_[np.zeros(40), np.ones(40)]
    assert roc_auc_score(labels, query_scores(best.result, query)) > 0.99
    assert sel["name"] == best.name and sel["incumbent"] == "ensemble"


def _export_choice(task):
    """What ``--candidates all`` exports for an anomaly task, without the meta-learned
    model (a PCA stand-in for "ours", so the test stays fast)."""
    from metaae_edge.pipeline.export import split_holdout

    fit, hold = split_holdout(task, 0.2, 0)
    norm = fit.normalizer()
    z = norm.transform(fit.support).astype(np.float64)
    ours = Candidate("ours", pca_result(z, 1, norm, "ours"))
    cands = [ours, *closed_form_candidates(fit.support, norm, "anomaly", 1 << 30, 0, hold)]
    return select(cands, "anomaly", hold, fit.support, 0)


def test_selection_never_reads_the_query():
    import dataclasses

    task = create_family("tabular").sample("test", 0, objective="anomaly", n_support=64,
                                           n_query=128)
    garbage = dataclasses.replace(task, query=np.full_like(task.query, np.nan))
    a, b = _export_choice(task), _export_choice(garbage)
    assert a[1] == b[1] and a[0].name == b[0].name


def test_adapted_detector_beats_isolation_forest_on_held_out_tabular_tasks():
    from sklearn.ensemble import IsolationForest

    from metaae_edge.adapt import query_scores

    ours, iforest = [], []
    fam = create_family("tabular")
    for i in range(5):
        t = fam.sample("test", i, objective="anomaly", n_support=64, n_query=256)
        best, _ = _export_choice(t)
        ours.append(roc_auc_score(t.query_labels, query_scores(best.result, t.query)))
        norm = Normalizer.fit(t.support)
        forest = IsolationForest(n_estimators=200, random_state=0).fit(
            norm.transform(t.support))
        iforest.append(roc_auc_score(t.query_labels,
                                     -forest.score_samples(norm.transform(t.query))))
    assert np.mean(ours) > np.mean(iforest) + 0.02, (ours, iforest)


def test_ensemble_scales_come_from_held_out_rows_only():
    x = _rows(3)
    norm = Normalizer.fit(x[:80])
    z = norm.transform(x[:80]).astype(np.float64)
    a = ensemble_result("e", ("knn", "mahalanobis"), z, z[:10] * 1.0, norm)
    b = ensemble_result("e", ("knn", "mahalanobis"), z, z[:10] * 2.0, norm)
    assert a.model.term.coef != b.model.term.coef
    with pytest.raises(ValueError, match="unknown detector term"):
        ensemble_result("e", ("nope",), z, z[:10], norm)
