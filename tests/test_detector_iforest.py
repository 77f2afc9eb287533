"""The exported IsolationForest term (pipeline/detector_iforest.py): the torch term, the
ONNX graph and the torch-free runtime compute scikit-learn's ``-score_samples``; float32
rows reach scikit-learn's leaves exactly, float64-standardised rows flip a tree rarely;
``--candidates all`` lists, scores and (when selected) writes it."""

import numpy as np
import pytest
import torch

from metaae_edge.pipeline.detector_candidates import detector_result
from metaae_edge.pipeline.detector_iforest import IforestTerm, average_path_length, fit_iforest
from metaae_edge.tasks.base import Normalizer

SCORE = """
import sys, numpy as np
from metaae_edge.runtime import Runtime
assert not loaded("torch")
np.save(sys.argv[3], Runtime.load(sys.argv[1]).score(np.load(sys.argv[2])))
assert not loaded("torch")
"""


def _rows(seed=0, n=300, d=7, spread=1.0):
    """Mixed columns at fixed scales and offsets (the same for every seed): Gaussian noise
    times ``spread``, one column of integers 0-16 (ties at the split points), one constant
    (floored std)."""
    fixed = np.random.default_rng(100 + d)
    scale, offset = fixed.uniform(0.1, 40.0, d), fixed.uniform(-50, 50, d)
    rng = np.random.default_rng(seed)
    x = spread * rng.standard_normal((n, d)) * scale + offset
    x[:, 1] = rng.integers(0, 17, n)
    x[:, 2] = 3.0
    return x


def _term(x, seed=0, method="walk"):
    norm = Normalizer.fit(x.astype(np.float32))
    forest = fit_iforest(norm.transform(x.astype(np.float32)).astype(np.float64), seed)
    return norm, forest, IforestTerm(forest, method).eval()


def _torch(term, z):
    with torch.no_grad():
        return term(torch.as_tensor(np.asarray(z, np.float32))).double().numpy()


def test_average_path_length_is_sklearns():
    from sklearn.ensemble._iforest import _average_path_length

    n = np.array([0, 1, 2, 3, 5, 17, 256, 1000])
    np.testing.assert_allclose(average_path_length(n), _average_path_length(n), rtol=1e-12)


@pytest.mark.parametrize("method", ["walk", "path"])
def test_term_equals_minus_score_samples_on_the_same_float32_rows(method):
    x = _rows()
    norm, forest, term = _term(x[:200], 0, method)
    q = np.r_[_rows(1, 2000), _rows(2, 500, spread=4.0)]
    z = norm.transform(q.astype(np.float32))  # the graph's float32 model-space rows
    ref = -forest.score_samples(z)
    got = _torch(term, z)
    assert term.trees == 200 and term.max_samples == 200 and term.depth == 8
    assert np.abs(got - ref).max() < 1e-6  # same leaves; only the float32 sum differs
    assert (got > 0).all() and (got <= 1).all() and ref[2000:].mean() > ref[:2000].mean()


def test_float64_rows_flip_a_tree_rarely():
    """scikit-learn on float64-standardised rows (cast to float32 by it) against the graph's
    float32 standardisation: the rows differ in the last bit, so a row next to a split
    threshold can take the other branch of one tree (measured: 2 of 100,000 rows,
    docs/real_data.md); every other row agrees to float32 rounding."""
    x = _rows(3, 400, 10)
    norm, forest, term = _term(x, 0)
    q = _rows(4, 20000, 10)
    q[:, 2] += np.random.default_rng(5).standard_normal(len(q))
    got = _torch(term, (q.astype(np.float32) - norm.mean) / norm.std)
    ref = -forest.score_samples((q - norm.mean.astype(np.float64)) / norm.std)
    err = np.abs(got - ref)
    flipped = err > 1e-5
    assert flipped.mean() <= 1e-3, int(flipped.sum())
    assert err[~flipped].max() < 1e-6
    # a flip moves one tree's depth by a few levels: (0.69 / (T c)) * s * dh, small
    assert err.max() < 0.01


def test_fit_is_the_iforest_detector():
    """Same forest as the ``iforest`` detector of evaluate/detectors.py (200 trees,
    max_samples auto, seed mod 2**32, on rows standardised on the support)."""
    from metaae_edge.evaluate.detectors import DETECTORS

    x, seed = _rows(6, 150), 2**40 + 3
    q = np.r_[_rows(7, 300), _rows(8, 100, spread=3.0)]
    ref = DETECTORS["iforest"].fit(x, seed)(q)
    norm = Normalizer.fit(x)
    term = IforestTerm(fit_iforest(norm.transform(x).astype(np.float64), seed))
    got = _torch(term, norm.transform(q))
    assert term.max_samples == 150 and np.abs(got - ref).max() < 1e-6


def test_served_bundle_equals_sklearn(tmp_path, python_without):
    """The bundle's graph, run by the torch-free runtime: sklearn's -score_samples, from
    plain opset-17 ops (no ai.onnx.ml, no Loop)."""
    import onnx

    from metaae_edge.adapt import query_scores
    from metaae_edge.exporters.bundle import write_bundle

    x = _rows(9, 260).astype(np.float32)
    norm, forest, term = _term(x, 1)
    res = detector_result("iforest", term, norm, x.shape[1])
    query = np.r_[_rows(10, 400), _rows(11, 100, spread=5.0)].astype(np.float32)
    bundle = write_bundle(tmp_path / "b", model=res.model, spec=res.spec, normalizer=norm,
                          task_summary={"name": "iforest"}, objective="anomaly",
                          reference=query[:16], threshold=None,
                          reports={"adaptation": res.report}, seed=0)
    np.save(tmp_path / "q.npy", query)
    out = python_without(SCORE, bundle, tmp_path / "q.npy", tmp_path / "s.npy")
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "s.npy").astype(np.float64)
    ref = -forest.score_samples(norm.transform(query))
    assert np.abs(got - ref).max() < 1e-5
    assert np.abs(got - query_scores(res, query)).max() < 1e-6  # ONNX vs torch
    model = onnx.load(str(bundle / "autoencoder.onnx"))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import} == {"ai.onnx": 17}
    ops = {n.op_type for n in model.graph.node}
    assert {"Gather", "GatherElements", "Greater"} <= ops and not ops & {"Loop", "If", "Scan"}


def test_listed_scored_and_written_when_selected(cli, tmp_path, monkeypatch):
    """``--candidates all``: iforest is a scored candidate; made the incumbent (the exported
    rule picks ensemble+ours otherwise), it is the bundle, and ``run --mode score``
    returns sklearn's -score_samples of the forest fitted on the fit split."""
    import json

    import metaae_edge.pipeline.candidates as candidates
    from metaae_edge.pipeline.export import split_holdout
    from metaae_edge.tasks import load_task

    monkeypatch.setitem(candidates.INCUMBENT, "anomaly", ("iforest",))
    monkeypatch.setattr("metaae_edge.pipeline.detector_selector.load_selector", lambda: None)
    x = _rows(12, 120, 6)
    np.savetxt(tmp_path / "d.csv", x, delimiter=",")
    code, _, err = cli("adapt-and-export", "builtin:manifold", "--data", tmp_path / "d.csv",
                       "--objective", "anomaly", "--candidates", "all", "--out", tmp_path / "b")
    assert code == 0, err
    reports = json.loads((tmp_path / "b" / "manifest.json").read_text())["reports"]
    scored = {c["name"]: c["score"] for c in reports["candidates"]}
    assert 0.5 < scored["iforest"] <= 1.0 and reports["selected"]["name"] == "iforest"
    query = np.r_[_rows(13, 50, 6), _rows(14, 50, 6, spread=4.0)].astype(np.float32)
    np.save(tmp_path / "q.npy", query)
    code, _, err = cli("run", tmp_path / "b", "--input", tmp_path / "q.npy", "--mode", "score",
                       "--out", tmp_path / "s.npy")
    assert code == 0, err
    task = load_task(tmp_path / "d.csv", objective="anomaly", seed=0, max_input_dim=None)
    fit, _ = split_holdout(task, 0.2, 0)
    norm = fit.normalizer()
    forest = fit_iforest(norm.transform(fit.support).astype(np.float64), 0)
    ref = -forest.score_samples(norm.transform(query))
    assert np.abs(np.load(tmp_path / "s.npy") - ref).max() < 1e-5


@pytest.mark.parametrize("method", ["walk", "path"])
def test_identical_fit_rows_root_leaves(method):
    """Rows that cannot be split: every tree is one leaf (no walk step), as scikit-learn."""
    z = np.ones((20, 3))
    forest = fit_iforest(z, 0)
    term = IforestTerm(forest, method)
    q = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    assert term.depth == 0
    assert np.abs(_torch(term, q) - (-forest.score_samples(q))).max() < 1e-6


def test_a_forest_on_feature_subsets_maps_its_columns():
    """``max_features < 1`` (not the detector's setting): each tree's split features index
    its own column subset; the tables map them back to input columns."""
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(16)
    z = rng.standard_normal((200, 9)) * np.arange(1, 10)
    forest = IsolationForest(n_estimators=30, max_features=0.5, random_state=0).fit(z)
    q = (3 * rng.standard_normal((400, 9)) * np.arange(1, 10)).astype(np.float32)
    assert np.abs(_torch(IforestTerm(forest), q) - (-forest.score_samples(q))).max() < 1e-6
