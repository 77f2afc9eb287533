"""The ``activities`` family: its anomaly kinds are what tasks/activities.py claims."""

import numpy as np
import pytest

from metaae_edge.errors import DataError
from metaae_edge.tasks import create_family


def _task(kind: str, index: int, noise=(0.03, 0.15), split: str = "train"):
    fam = create_family("activities", anomaly_kinds=(kind,), noise_frac=noise,
                        anomaly_fraction=0.3)
    return fam.sample(split, index, objective="anomaly", n_support=600, n_query=600)


def _windows(task):
    c = task.info["channels"]
    lab = task.query_labels.astype(bool)
    normal = np.concatenate([task.support, task.query[~lab]])
    return (normal.reshape(len(normal), c, -1),
            task.query[lab].reshape(int(lab.sum()), c, -1))


def _log_energy(w):
    return np.log(w.var(axis=2))  # (N, C): per-channel energy of the centred window


def _shape(w):
    """Mean normalised power spectrum (bins 1..T//2) over windows and channels."""
    p = np.abs(np.fft.rfft(w - w.mean(axis=2, keepdims=True), axis=2))[..., 1:] ** 2
    p = p / p.sum(axis=2, keepdims=True)
    return p.mean(axis=(0, 1))


def _tv(a, b):
    return 0.5 * float(np.abs(a - b).sum())


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_activity_anomalies_differ_in_spectrum_not_in_energy_or_mean(index):
    normal, anom = _windows(_task("activity", index))
    e_n, e_a = _log_energy(normal), _log_energy(anom)
    lo, hi = np.percentile(e_n, 10, axis=0), np.percentile(e_n, 90, axis=0)
    med = np.median(e_a, axis=0)
    assert np.all((med > lo) & (med < hi)), (med, lo, hi)  # energy: normal range
    m_n, m_a = normal.mean(axis=2), anom.mean(axis=2)
    assert np.all(np.abs(np.median(m_a, 0) - np.median(m_n, 0)) < m_n.std(axis=0) + 1e-9)
    half = len(normal) // 2
    base = _tv(_shape(normal[:half]), _shape(normal[half:]))
    assert _tv(_shape(anom), _shape(normal)) > max(5 * base, 0.15)  # spectrum: not


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_intensity_anomalies_differ_in_energy_not_in_spectrum_shape(index):
    normal, anom = _windows(_task("intensity", index, noise=(0.0, 0.0)))
    e_n, e_a = _log_energy(normal), _log_energy(anom)
    lo, hi = np.percentile(e_n, 1, axis=0), np.percentile(e_n, 99, axis=0)
    # every anomaly is out of the normal energy range on most channels, below or above
    out = ((e_a < lo) | (e_a > hi)).mean(axis=1)
    assert np.median(out) >= 0.5 and (e_a.mean(1) < e_n.mean()).mean() > 0.3
    assert (e_a.mean(1) > e_n.mean()).mean() > 0.3
    half = len(normal) // 2
    base = _tv(_shape(normal[:half]), _shape(normal[half:]))
    assert _tv(_shape(anom), _shape(normal)) < 3 * base + 0.02
    np.testing.assert_allclose(np.median(anom.mean(axis=2), 0),
                               np.median(normal.mean(axis=2), 0),
                               atol=0.5 * float(normal.mean(axis=2).std()) + 1e-6)


def test_raw_space_misses_intensity_the_window_features_do_not():
    """The motivation of the family: at random phase a low-energy window sits near the
    centre of the normal windows, where a raw-space Mahalanobis detector scores it normal."""
    from sklearn.metrics import roc_auc_score

    from metaae_edge.evaluate.detectors import DETECTORS
    from metaae_edge.pipeline.window_features import fit_front, window_features

    raw, win = [], []
    for i in range(3):
        t = create_family("activities", anomaly_kinds=("intensity",)).sample(
            "train", i, objective="anomaly", n_support=128, n_query=256)
        norm = t.normalizer()
        front = fit_front(norm.transform(t.support), norm, t.info["channels"])
        fs, fq = (window_features(norm.transform(a), front) for a in (t.support, t.query))
        raw.append(roc_auc_score(t.query_labels, DETECTORS["mahalanobis"].fit(
            t.support, 0)(t.query)))
        win.append(roc_auc_score(t.query_labels, DETECTORS["mahalanobis"].fit(fs, 0)(fq)))
    assert np.mean(raw) < 0.65 and np.mean(win) > np.mean(raw) + 0.15, (raw, win)


def test_spikes_and_shifts_and_layout():
    t = _task("spike", 0)
    normal, anom = _windows(t)
    ch_sd = normal.std(axis=(0, 2))
    dev = np.abs(anom - np.median(normal, axis=(0, 2))[None, :, None]) / ch_sd[None, :, None]
    assert np.median(dev.max(axis=(1, 2))) > 2.5
    for i in range(3):  # a step: first and last quarter's means differ more than normally
        normal, anom = _windows(_task("level_shift", i))
        q = normal.shape[2] // 4

        def gap(w, q=q):
            return np.abs(w[..., :q].mean(2) - w[..., -q:].mean(2)).max(1)

        assert gap(anom).mean() > 1.15 * gap(normal).mean()
    assert t.support.shape[1] == t.info["channels"] * t.info["window"]
    assert set(t.info["anomaly_kind"]) == {"normal", "spike"}
    a, b = _task("spike", 5, split="test"), _task("spike", 5, split="test")
    np.testing.assert_array_equal(a.query, b.query)
    with pytest.raises(DataError):
        create_family("activities", anomaly_kinds=("nope",))
