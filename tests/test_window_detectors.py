"""The phase-invariant window front-end (pipeline/window_features.py) and the OC-SVM graph
term: the exported graphs equal their numpy / scikit-learn references, the window score
does not move under a circular time shift, and ``adapt-and-export --channels`` exports a
window detector that ``metaae-edge run --mode score`` serves."""

import numpy as np
import pytest
import torch

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.pipeline.candidates import closed_form_candidates
from metaae_edge.pipeline.detector_candidates import (
    WINDOW_PARTS,
    _scales,
    detector_candidates,
    detector_result,
    ensemble_result,
    window_weights,
)
from metaae_edge.pipeline.detector_graphs import OcsvmTerm, whitening
from metaae_edge.pipeline.window_features import WindowFront, fit_front, window_features
from metaae_edge.tasks.base import Normalizer

SCORE = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
rt = Runtime.load(sys.argv[1])
for src, dst in zip(sys.argv[2::2], sys.argv[3::2]):
    np.save(dst, rt.score(np.load(src)))
assert not loaded("torch")
"""


def _windows(n, c=3, t=16, seed=0, scale=1.0):
    """Multichannel windows of two oscillators at random phases (channel-major rows)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((c, 2))
    tt = np.arange(t)
    ph = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    osc = np.sin(2 * np.pi * np.array([[1 / 8], [3 / 16]]) * tt + ph)
    x = scale * np.einsum("cm,nmt->nct", mix, osc) + np.arange(c)[None, :, None]
    return (x + 0.05 * rng.standard_normal(x.shape)).reshape(n, c * t).astype(np.float32)


def _roll(x, c, shift):
    n = len(x)
    return np.roll(x.reshape(n, c, -1), shift, axis=2).reshape(n, -1)


def _serve(tmp_path, python_without, result, queries, name):
    bundle = write_bundle(tmp_path / name, model=result.model, spec=result.spec,
                          normalizer=result.normalizer, task_summary={"name": name},
                          objective="anomaly", reference=queries[0][:16], threshold=None,
                          reports={"adaptation": result.report}, seed=0)
    args = []
    for i, q in enumerate(queries):
        np.save(tmp_path / f"q{i}.npy", q)
        args += [tmp_path / f"q{i}.npy", tmp_path / f"s{i}.npy"]
    res = python_without(SCORE, bundle, *args)
    assert res.returncode == 0, res.stderr
    return [np.load(tmp_path / f"s{i}.npy") for i in range(len(queries))]


def test_window_features_graph_equals_numpy_and_ignores_circular_shifts(tmp_path,
                                                                       python_without):
    x = _windows(80)
    fit, hold = x[:60], x[60:]
    query = np.r_[_windows(20, seed=1), _windows(10, seed=2, scale=2.5)]
    norm = Normalizer.fit(fit)
    z, zh, zq = (norm.transform(a).astype(np.float64) for a in (fit, hold, query))
    front = fit_front(z, norm, 3)
    ref = window_features(zq, front)
    with torch.no_grad():
        got = WindowFront(front)(torch.as_tensor(zq, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)
    rolled = norm.transform(_roll(query, 3, 5)).astype(np.float64)
    np.testing.assert_allclose(window_features(rolled, front), ref, atol=1e-4)  # float32 rows
    assert not np.allclose(rolled, zq, atol=0.5)  # the raw rows did move
    # the exported window detector: Mahalanobis on the features / its held-out std
    res = ensemble_result("window", WINDOW_PARTS, z, zh, norm, front=front)
    served, served_rolled = _serve(tmp_path, python_without, res,
                                   [query, _roll(query, 3, 5)], "window")
    f_fit, f_hold = window_features(z, front), window_features(zh, front)
    mean, w = whitening(f_fit)

    def maha(f):
        return (((f - mean) @ w) ** 2).sum(axis=1)

    expect = maha(ref) / maha(f_hold).std(ddof=1)
    np.testing.assert_allclose(served, expect, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(served_rolled, served, rtol=2e-3, atol=2e-3)
    assert served[20:].min() > np.percentile(served[:20], 90)  # the louder windows score high


def test_ocsvm_graph_equals_scikit_learn(tmp_path, python_without):
    from metaae_edge.evaluate.detectors import fit_ocsvm

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((90, 5)) @ rng.standard_normal((5, 5)) + 2.0).astype(np.float32)
    query = np.r_[x[70:], 4 * rng.standard_normal((10, 5)).astype(np.float32)]
    norm = Normalizer.fit(x[:70])
    z, zq = norm.transform(x[:70]).astype(np.float64), norm.transform(query).astype(np.float64)
    svm = fit_ocsvm(z)
    term = OcsvmTerm(svm)
    expect = float(svm.dual_coef_.sum()) - svm.score_samples(zq)
    with torch.no_grad():
        got = term(torch.as_tensor(zq, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4)
    res = detector_result("ocsvm", term, norm, 5)
    (served,) = _serve(tmp_path, python_without, res, [query], "ocsvm")
    np.testing.assert_allclose(served, expect, rtol=1e-3, atol=1e-4)
    assert (np.argsort(served) == np.argsort(expect)).mean() > 0.9
    assert served.min() >= 0.0


def test_windows_add_the_front_end_to_the_ensembles():
    x = _windows(60)
    norm = Normalizer.fit(x[:48])
    z, zh = norm.transform(x[:48]).astype(np.float64), norm.transform(x[48:]).astype(np.float64)
    plain = {c.name for c in detector_candidates(z, zh, norm)}
    wins = {c.name: c for c in detector_candidates(z, zh, norm, channels=3)}
    assert plain == {"knn", "gmm", "ocsvm", "iforest", "ensemble"}
    assert set(wins) == plain | {"window", "shift-knn", "rocket"}  # time-ordered too
    ens = wins["ensemble"].result.model.term
    assert len(ens.terms) == 4  # 3 raw-space + window
    # the window block weighs as much as the raw-space block (3 terms: window x 3)
    scales = _scales(list(ens.terms), zh)
    np.testing.assert_allclose(np.array(ens.coef) * scales, [1, 1, 1, 3], rtol=1e-9)
    assert window_weights(("a", "b", "c", "ours")) == [1, 1, 1, 1, 4]
    zt = torch.as_tensor(zh, dtype=torch.float32)
    with torch.no_grad():
        parts = [t(zt).double().numpy() / s for t, s in zip(ens.terms, scales)]
        got = ens(zt).double().numpy()
    np.testing.assert_allclose(got, sum(parts[:3]) + 3 * parts[3], rtol=1e-4, atol=1e-5)
    assert type(ens.terms[3]).__name__ == "FrontTerm"
    names = {c.name for c in closed_form_candidates(x[:48], norm, "anomaly", 1 << 30, 0,
                                                    x[48:], channels=3)}
    assert "window" in names


def test_channels_exports_a_window_detector_that_run_serves(cli, tmp_path):
    data, query = tmp_path / "w.csv", tmp_path / "q.npy"
    np.savetxt(data, _windows(40), delimiter=",")
    np.save(query, np.r_[_windows(8, seed=5), _windows(4, seed=6, scale=3.0)])
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", data,
                         "--channels", 3, "--objective", "anomaly", "--candidates", "all",
                         "--out", tmp_path / "b", "--finetune-steps", 2, "--steps", 2)
    log = " ".join((out + err).split())
    assert code == 0, log
    assert "selected ensemble+ours" in log and "parity vs torch: passed=True" in log
    code, out, err = cli("run", tmp_path / "b", "-i", query, "--mode", "score",
                         "-o", tmp_path / "s.npy")
    assert code == 0, out + err
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (12,) and s[8:].min() > s[:8].max()


@pytest.mark.parametrize("channels", [5, 0, 18])
def test_bad_channels_is_one_line_exit_2(cli, tmp_path, channels):
    data = tmp_path / "w.csv"
    np.savetxt(data, _windows(20), delimiter=",")  # 48 features
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", data,
                         "--channels", channels, "--objective", "anomaly",
                         "--out", tmp_path / "b")
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and f"--channels {channels} does not split the 48" in lines[0]
    assert not (tmp_path / "b").exists()
