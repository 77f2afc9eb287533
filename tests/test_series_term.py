"""The shift-tolerant nearest-neighbour term (pipeline/series_term.py): its Conv1d graph
equals the numpy reference (in torch and served by onnxruntime without torch), and a
query that is a copy of a support series shifted by at most ``w`` samples is at distance
0 (scores the floor)."""

import numpy as np
import pytest
import torch
from vector_helpers import SCORE_TORCH_FREE, bump_series

from metaae_edge.exporters.bundle import write_bundle
from metaae_edge.pipeline.detector_candidates import detector_result
from metaae_edge.pipeline.series_term import (
    ShiftKnnTerm,
    fit_series,
    series_rows,
    series_term,
    shift_knn_reference,
)
from metaae_edge.tasks.base import Normalizer


def _shift(x, c, s):
    """Every channel moved by ``s`` samples, the freed samples filled with the channel's
    mean (equal to the padding of ``_series``)."""
    n = len(x)
    w = x.reshape(n, c, -1).astype(np.float64)
    m = w.mean(axis=2, keepdims=True)
    out = np.roll(w, s, axis=2)
    if s > 0:
        out[:, :, :s] = m
    elif s < 0:
        out[:, :, s:] = m
    return out.reshape(n, -1).astype(np.float32)


@pytest.mark.parametrize("znorm", [True, False])
def test_graph_equals_numpy_reference(znorm):
    x = bump_series(50)
    norm = Normalizer.fit(x[:40])
    z, zq = norm.transform(x[:40]).astype(np.float64), norm.transform(x[40:]).astype(np.float64)
    cfg = fit_series(z, norm, 2, znorm)
    bank = series_rows(z, cfg)
    for w, k in ((0, 1), (4, 1), (8, 5)):
        ref = shift_knn_reference(zq, bank, cfg, w, k)
        with torch.no_grad():
            got = ShiftKnnTerm(bank, cfg, w, k)(torch.as_tensor(zq, dtype=torch.float32))
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-3, atol=1e-3)
        assert ref.min() > 0.1  # not a trivially zero score


def test_a_shifted_support_series_scores_zero_up_to_w(tmp_path, python_without):
    pad, c = 6, 2
    x = bump_series(30, c=c, pad=pad)
    norm = Normalizer.fit(x)
    z = norm.transform(x).astype(np.float64)
    term = series_term(z, norm, c, True, 0.1, 1)  # w = round(0.1 * 52) = 5
    assert term.w == 5
    base = x[:6]
    queries = [_shift(base, c, s) for s in (0, 3, -5, 5)]
    far = _shift(base, c, 6) + 0.0
    with torch.no_grad():
        def score(q):
            return term(torch.as_tensor(norm.transform(q), dtype=torch.float32)).numpy()

        typical = score(bump_series(6, c=c, seed=9, pad=pad))
        floor = term.floor  # the squared score of a distance of 0
        for q in queries:  # distance 0 up to float32
            assert (score(q) ** 2 - floor).max() < 1e-3 * (typical ** 2).min()
        assert (score(far) ** 2 - floor).min() > 0.02 * (typical ** 2).min()  # beyond w
    # served by onnxruntime (torch blocked): the same scores
    res = detector_result("shift-knn", term, norm, x.shape[1])
    bundle = write_bundle(tmp_path / "b", model=res.model, spec=res.spec,
                          normalizer=res.normalizer, task_summary={"name": "s"},
                          objective="anomaly", reference=x[:16], threshold=None,
                          reports={"adaptation": res.report}, seed=0)
    q = np.concatenate([*queries, bump_series(6, c=c, seed=9, pad=pad)])
    np.save(tmp_path / "q.npy", q)
    run = python_without(SCORE_TORCH_FREE, bundle, tmp_path / "q.npy", tmp_path / "s.npy")
    assert run.returncode == 0, run.stderr
    served = np.load(tmp_path / "s.npy")
    ref = shift_knn_reference(norm.transform(q).astype(np.float64), term.bank.double().numpy(),
                              fit_series(z, norm, c, True), 5, 1)
    np.testing.assert_allclose(served, ref, rtol=2e-3, atol=2e-3)
    assert (served[:24] ** 2 - term.floor).max() < 1e-3 * (served[24:] ** 2).min()


def _csv(tmp_path, n=40, seed=0):
    path = tmp_path / "s.csv"
    np.savetxt(path, bump_series(n, c=1, t=48, seed=seed), delimiter=",")  # 48 features
    return path


def test_series_declaration_adds_the_shift_knn_and_rocket_candidates(cli, tmp_path):
    from metaae_edge.pipeline.detector_candidates import SHIFT_KNN, detector_candidates

    x = bump_series(40, c=1, t=48)
    norm = Normalizer.fit(x[:32])
    z, zh = norm.transform(x[:32]).astype(np.float64), norm.transform(x[32:]).astype(np.float64)
    plain = {c.name for c in detector_candidates(z, zh, norm)}
    cands = {c.name: c for c in detector_candidates(z, zh, norm, series=1)}
    assert set(cands) == plain | {"shift-knn", "rocket"}
    term = cands["shift-knn"].result.model.term
    assert (term.znorm, term.w, term.k) == (SHIFT_KNN[0], round(SHIFT_KNN[1] * 48), 1)
    # the ensemble is unchanged by the declaration (shift-knn is scored, never summed)
    assert len(cands["ensemble"].result.model.term.terms) == 3
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", _csv(tmp_path),
                         "--series", 1, "--objective", "anomaly", "--candidates", "all",
                         "--out", tmp_path / "b", "--finetune-steps", 2, "--steps", 2)
    log = " ".join((out + err).split())
    assert code == 0, log
    assert "selected ensemble+ours" in log and "parity vs torch: passed=True" in log
    import json

    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    rows = {c["name"]: c for c in manifest["reports"]["candidates"]}
    assert {"shift-knn", "rocket"} <= set(rows)
    # the exported ensemble+ours holds the rocket term at its weight (r27 rule)
    assert rows["ensemble+ours"]["terms"] == [
        {"name": n, "weight": 1.0} for n in ("knn-white", "mahalanobis", "pca", "ours")
    ] + [{"name": "rocket", "weight": 4.0}]
    assert manifest["reports"]["selected"]["name"] == "ensemble+ours"


@pytest.mark.parametrize("args, message", [
    (("--series", 5), "--series 5 does not split the 48 features into equal series"),
    (("--series", 0), "--series 0 does not split the 48"),
    (("--series", 13), "--series 13 does not split the 48"),
    (("--series", 1, "--channels", 3), "either as windows (--channels) or as whole series"),
])
def test_bad_series_declaration_is_one_line_exit_2(cli, tmp_path, args, message):
    code, out, err = cli("adapt-and-export", "builtin:manifold", "--data", _csv(tmp_path),
                         *args, "--objective", "anomaly", "--out", tmp_path / "b")
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "b").exists()


def test_real_series_declarations():
    from metaae_edge.tasks.realdata import REAL_DATASETS

    series = {n for n, d in REAL_DATASETS.items() if d.series is not None}
    assert series == {"italy_power", "gunpoint", "arrowhead", "osuleaf"}
    assert not any(d.series and d.channels for d in REAL_DATASETS.values())
