"""Classical detectors: label-free tuning that finds what it should."""

import numpy as np
import pytest

from metaae_edge.evaluate.detectors import DETECTORS, detector_aucs, pca_latent_size


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_detector_separates_shifted_gaussian_anomalies(name):
    rng = np.random.default_rng(0)
    d = 10
    cov = np.linalg.qr(rng.standard_normal((d, d)))[0] * np.linspace(0.3, 2.0, d)
    support = rng.standard_normal((200, d)) @ cov.T
    normal = rng.standard_normal((150, d)) @ cov.T
    anom = rng.standard_normal((30, d)) @ cov.T + 3.0 * rng.choice([-1, 1], (30, d))
    query = np.concatenate([normal, anom])
    labels = np.r_[np.zeros(150), np.ones(30)]
    auc = detector_aucs(support, query, labels, names=[name])[name]
    assert auc > 0.9, auc
    # Higher score = more anomalous, and scoring does not depend on the call.
    scorer = DETECTORS[name].fit(support)
    np.testing.assert_allclose(scorer(query), scorer(query))


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_pca_latent_size_is_the_true_rank_of_low_rank_data(rank):
    rng = np.random.default_rng(rank)
    d = 24
    load = rng.standard_normal((rank, d))
    load /= np.linalg.norm(load, axis=0)  # every column carries the same signal variance
    x = rng.standard_normal((120, rank)) @ load + 1e-3 * rng.standard_normal((120, d))
    assert pca_latent_size((x - x.mean(0)) / x.std(0)) == rank


def test_pca_detector_beats_iforest_off_a_linear_subspace():
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((3, 20))
    support = rng.standard_normal((100, 3)) @ basis + 0.01 * rng.standard_normal((100, 20))
    normal = rng.standard_normal((80, 3)) @ basis + 0.01 * rng.standard_normal((80, 20))
    off = rng.standard_normal((20, 3)) @ basis + 0.3 * rng.standard_normal((20, 20))
    aucs = detector_aucs(support, np.concatenate([normal, off]), np.r_[np.zeros(80),
                         np.ones(20)], names=["pca", "iforest"])
    assert aucs["pca"] > 0.99 and aucs["pca"] > aucs["iforest"]
