"""The r31 model-centrality criteria (scripts/centrality.py) and the selection rule of
scripts/study_centrality_select.py."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import centrality  # noqa: E402
from centrality import centralities, pick  # noqa: E402


def _scores(seed=0, n=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, rng


@pytest.mark.parametrize("crit", centrality.CRITERIA)
def test_identical_rankings_have_centrality_one(crit):
    x, _ = _scores()
    # monotone transforms keep the ranking, so every pairwise correlation is 1
    c = centralities({"base": x, "a": 3 * x + 1, "b": np.exp(x), "c": x ** 3}, crit)
    np.testing.assert_allclose(list(c.values()), 1.0)


@pytest.mark.parametrize("crit", centrality.CRITERIA)
def test_reversed_ranking_is_least_central(crit):
    x, rng = _scores()
    s = {"base": x, "a": x + 0.1 * rng.normal(size=x.size),
         "b": x + 0.2 * rng.normal(size=x.size), "c": x + 0.3 * rng.normal(size=x.size),
         "rev": -x}
    c = centralities(s, crit)
    assert min(c, key=c.get) == "rev"
    assert c["rev"] < 0 < min(v for n, v in c.items() if n != "rev")


def test_kendall_matches_scipy_and_mc_uses_the_nearest():
    from scipy.stats import kendalltau

    x, rng = _scores(1)
    s = {"base": x, "a": x + rng.normal(size=x.size), "b": rng.normal(size=x.size),
         "c": -x, "d": x ** 3}
    c = centralities(s, "kendall")
    want = np.mean([kendalltau(x, s[n])[0] for n in ("a", "b", "c", "d")])
    assert c["base"] == pytest.approx(want)
    mc = centralities(s, "mc", k=1)
    assert mc["base"] == pytest.approx(1.0)  # its nearest, d = x^3, ranks as x
    assert mc["b"] < c["base"]


def test_constant_score_counts_as_uncorrelated():
    x, _ = _scores(2)
    c = centralities({"base": x, "a": x, "flat": np.zeros_like(x)}, "kendall")
    assert c["flat"] == 0.0 and c["base"] == pytest.approx(0.5)


def test_unknown_criterion_raises():
    with pytest.raises(ValueError):
        centralities({"base": np.arange(3.0), "a": np.arange(3.0)}, "hits")


def test_pick_respects_tau_and_ties():
    cent = {"base": 0.5, "a": 0.58, "b": 0.58, "c": 0.1}
    assert pick(cent, 0.0) == "a"  # ties: the earlier option
    assert pick(cent, 0.05) == "a"
    assert pick(cent, 0.08) == "base"  # must exceed base by more than tau
    assert pick(cent, 0.1) == "base"
    assert pick({"base": 0.7, "a": 0.6}, 0.0) == "base"
    assert pick(cent, np.inf) == "base"


def test_study_rules_start_with_always_base():
    import study_centrality_select as st

    assert st.RULES[0] == ("-", np.inf)
    picks = st.unit_picks({c: {"base": 0.2, "ocsvm": 0.27, "knn": 0.1}
                           for c in centrality.CRITERIA})
    want = ["base"] + ["ocsvm" if t < 0.07 else "base" for t, _c in
                       ((t, c) for t in st.TAUS for c in centrality.CRITERIA)]
    assert picks == want
