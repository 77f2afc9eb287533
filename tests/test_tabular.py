"""The ``tabular`` family: its anomaly kinds and column types are what they claim."""

import numpy as np
import pytest
from scipy import stats

from metaae_edge.errors import DataError
from metaae_edge.tasks import create_family


def _task(kind: str, index: int = 0, d: tuple[int, int] = (8, 32), n_query: int = 600,
          n_support: int = 1500):
    fam = create_family("tabular", min_features=d[0], max_features=d[1],
                        anomaly_kinds=(kind,), contamination=(0.3, 0.3))
    return fam.sample("test", index, objective="anomaly", n_support=n_support,
                      n_query=n_query)


def _split(task):
    lab = task.query_labels.astype(bool)
    return np.concatenate([task.support, task.query[~lab]]), task.query[lab]


def _varying(x: np.ndarray) -> np.ndarray:
    return np.flatnonzero(x.std(axis=0) > 1e-9 * (np.abs(x).max(axis=0) + 1e-12))


def _mean_abs_corr(x: np.ndarray, cols: np.ndarray) -> float:
    c = np.corrcoef(x[:, cols], rowvar=False)
    return float(np.abs(c[np.triu_indices(len(cols), 1)]).mean())


@pytest.mark.parametrize("index", [0, 1, 2])
def test_dependency_anomalies_keep_marginals_and_break_correlations(index):
    task = _task("dependency", index)
    normal, anom = _split(task)
    assert task.info["anomaly_type"] == "dependency"
    lo, hi = normal.min(axis=0), normal.max(axis=0)
    outside = (anom < lo) | (anom > hi)
    assert outside.mean() < 0.005, outside.mean()
    cols = _varying(normal)
    pvals = [stats.ks_2samp(normal[:, j], anom[:, j]).pvalue for j in cols]
    # Bonferroni at 1%: no single marginal separates the anomalies from the normals.
    assert min(pvals) > 0.01 / len(cols), min(pvals)
    # The continuous columns of normal rows are strongly dependent; the anomalies' are not.
    cont = np.setdiff1d(cols, task.info["discrete_columns"])
    assert _mean_abs_corr(normal, cont) > 0.3
    assert _mean_abs_corr(anom, cont) < 0.5 * _mean_abs_corr(normal, cont)


def test_global_anomalies_leave_the_normal_bounding_box_more_often():
    task = _task("global", 0, d=(2, 16))
    lab = task.query_labels.astype(bool)
    lo, hi = task.support.min(axis=0), task.support.max(axis=0)
    out = ((task.query < lo) | (task.query > hi)).any(axis=1)
    assert out[lab].mean() > 0.5
    assert out[lab].mean() > out[~lab].mean() + 0.3


@pytest.mark.parametrize("kind", ["local", "clustered"])
def test_local_and_clustered_kinds(kind):
    from sklearn.neighbors import NearestNeighbors

    task = _task(kind, 1)
    lab = task.query_labels.astype(bool)
    cols = _varying(task.support)
    mu, sd = task.support[:, cols].mean(0), task.support[:, cols].std(0)
    sup, q = (task.support[:, cols] - mu) / sd, (task.query[:, cols] - mu) / sd
    dist = NearestNeighbors(n_neighbors=1).fit(sup).kneighbors(q)[0][:, 0]
    if kind == "local":  # inflated within-cluster covariance: off the normal rows
        assert np.median(dist[lab]) > 1.3 * np.median(dist[~lab])
    else:  # a dense cluster: much tighter than the normals
        assert q[lab].std(0).mean() < 0.6 * q[~lab].std(0).mean()


def test_discrete_constant_and_scales():
    fam = create_family("tabular", min_features=40, max_features=64)
    seen_disc = seen_const = 0
    for i in range(6):
        t = fam.sample("train", i, objective="anomaly", n_support=300)
        x = np.concatenate([t.support, t.query])
        for j in t.info["discrete_columns"]:
            normal = np.concatenate([t.support[:, j], t.query[t.query_labels == 0, j]])
            assert 2 <= len(np.unique(normal)) <= 10
            assert np.array_equal(x[:, j], np.round(x[:, j]))
            seen_disc += 1
        for j in t.info["constant_columns"]:
            assert np.all(t.support[:, j] == t.support[0, j])
            assert np.all(t.query[:, j] == t.support[0, j])
            seen_const += 1
        cont = np.setdiff1d(np.arange(t.input_dim),
                            t.info["discrete_columns"] + t.info["constant_columns"])
        spread = t.support[:, cont].std(axis=0)
        assert spread.max() / spread.min() > 100  # mixed scales over orders of magnitude
        assert 0.0 < t.info["contamination"] <= 0.21
    assert seen_disc > 0 and seen_const > 0


@pytest.mark.parametrize("width", [2, 1024])
def test_extreme_widths_and_all_objectives(width):
    fam = create_family("tabular", min_features=width, max_features=width)
    for objective in ("reconstruct", "denoise", "anomaly"):
        t = fam.sample("test", 3, objective=objective, n_support=32, n_query=64)
        assert t.input_dim == width and t.support.shape == (32, width)
        assert np.isfinite(t.support).all() and np.isfinite(t.query).all()
    assert t.query_labels.sum() >= 1 and t.info["anomaly_type"] in (
        "local", "global", "dependency", "clustered")


def test_same_seed_same_task_and_shared_support():
    a = create_family("tabular").sample("val", 5, objective="anomaly")
    b = create_family("tabular").sample("val", 5, objective="anomaly")
    c = create_family("tabular", seed=1).sample("val", 5, objective="anomaly")
    r = create_family("tabular").sample("val", 5, objective="reconstruct")
    np.testing.assert_array_equal(a.query, b.query)
    np.testing.assert_array_equal(a.query_labels, b.query_labels)
    np.testing.assert_array_equal(a.support, r.support)  # objective-independent normals
    assert a.support.shape != c.support.shape or not np.array_equal(a.support, c.support)
    kinds = {create_family("tabular").sample("test", i, objective="anomaly")
             .info["anomaly_type"] for i in range(16)}
    assert kinds == {"local", "global", "dependency", "clustered"}


def test_bad_options_raise():
    with pytest.raises(DataError):
        create_family("tabular", min_features=1)
    with pytest.raises(DataError):
        create_family("tabular", anomaly_kinds=("nope",))
