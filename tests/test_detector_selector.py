"""The meta-learned detector selector: JSON of numbers, deterministic, never reads the
query, and picks the clearly best candidate when the features say so."""

from __future__ import annotations

import json

import numpy as np

from metaae_edge.pipeline.candidates import Candidate
from metaae_edge.pipeline.detector_selector import (
    POOL,
    SELECTOR_PATH,
    choose,
    load_selector,
    meta_features,
)


class _Res:
    class model:  # noqa: N801 - a stand-in with no ``term``
        pass


def _cands(scores: dict[str, float]) -> list[Candidate]:
    return [Candidate(n, _Res(), s) for n, s in scores.items()]


def _toy_selector(n_feat: int, j: int) -> dict:
    """Predicts knn's gain = feature j (the knn-minus-incumbent pseudo score)."""
    models = {p: {"coef": [0.0] * n_feat, "intercept": -0.01} for p in POOL[1:]}
    models["knn"]["coef"][j] = 1.0
    return {"mean": [0.0] * n_feat, "std": [1.0] * n_feat, "models": models, "tau": 0.0}


def test_shipped_selector_loads_and_is_numbers():
    sel = load_selector()
    if sel is None:
        assert not SELECTOR_PATH.exists()
        return
    text = json.dumps(sel)
    assert json.loads(text) == sel
    for m in sel["models"].values():
        assert all(isinstance(c, float) for c in m["coef"])
        assert len(m["coef"]) == len(sel["mean"])


def test_choice_is_deterministic_and_query_free():
    rng = np.random.default_rng(0)
    fit = rng.normal(size=(40, 6))
    scores = {"ours": 0.8, "ensemble+ours": 0.85, "ensemble": 0.84, "knn": 0.95,
              "gmm": 0.7, "gaussian": 0.8, "pca-2": 0.6}
    feats = meta_features(fit, _cands(scores))
    j = 11 + POOL[1:].index("knn")  # 9 data features, gmm count, incumbent score
    assert abs(feats[j] - 0.10) < 1e-12
    sel = _toy_selector(len(feats), j)
    a = choose(sel, fit, _cands(scores))
    b = choose(sel, fit.copy(), _cands(scores))
    assert a == b and a[0] == "knn"
    # the selector sees no query: nothing but support rows and held-out scores go in
    assert choose(sel, fit, _cands({**scores, "knn": 0.85}))[0] is None  # gain below tau


def test_multi_cluster_data_selects_density_candidate():
    """Multi-cluster normal rows: kNN/GMM beat one Gaussian; the selector built on the
    pseudo-score gap picks kNN there and keeps the incumbent on one Gaussian blob."""
    from metaae_edge.pipeline.candidates import closed_form_candidates, select

    rng = np.random.default_rng(1)
    centers = rng.normal(scale=6.0, size=(4, 5))
    x = centers[rng.integers(0, 4, 200)] + rng.normal(scale=0.3, size=(200, 5))
    fit, hold = x[:160], x[160:]
    norm = _norm(fit)
    cands = closed_form_candidates(fit, norm, "anomaly", 1 << 30, 0, hold)
    cands = [Candidate("ensemble+ours", cands[-1].result), *cands]  # stand-in incumbent
    select(cands, "anomaly", hold, fit, 0, use_selector=False)
    z = norm.transform(fit)
    feats = meta_features(z, cands)
    sel = _toy_selector(len(feats), 11 + POOL[1:].index("knn"))
    sc = {c.name: c.score for c in cands}
    assert sc["knn"] > sc["gaussian"]
    pick, rec = choose(sel, z, cands)
    assert pick == ("knn" if sc["knn"] - sc["ensemble+ours"] > 0.01 else None)
    assert rec["choice"] in ("knn", "ensemble+ours")


def _norm(rows):
    from metaae_edge.tasks.base import Normalizer

    return Normalizer.fit(rows)
