"""The r28 kernel-term study (scripts/cache_kernel_terms.py, scripts/study_kernel_terms.py):
the Parzen score equals its direct formula, the whitened terms ignore a linear change of
coordinates, the cached PCA term is the classical detector's scorer, and the rule grid and its
LODO never let a fold see its held-out dataset."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import cache_kernel_terms as kern  # noqa: E402
import study_kernel_terms as study  # noqa: E402


def test_parzen_equals_direct_formula_and_is_non_negative():
    rng = np.random.default_rng(0)
    bank, x = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) * 3
    g = kern.median_gamma(bank)
    d2 = ((x[:, None, :] - bank[None]) ** 2).sum(-1)
    want = -np.log(np.exp(-g * d2).mean(1))
    got = kern.parzen_score(bank, g, x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert (got >= -1e-12).all()
    # far rows (where exp underflows without the log-sum-exp shift) stay finite, ordered
    far = kern.parzen_score(bank, g, np.full((2, 5), [[50.0], [80.0]]))
    assert np.isfinite(far).all() and far[1] > far[0]


def test_whitened_terms_follow_the_whitening():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 4))
    q = rng.normal(size=(50, 4)) * 2
    rot = np.linalg.qr(rng.normal(size=(4, 4)))[0] * 3.0  # Ledoit-Wolf's target is c * I
    t1, t2 = kern.kernel_terms(z), kern.kernel_terms(z @ rot)
    for name in ("parzen", "parzen-white", "ocsvm-white"):  # invariant to rotation + scale
        np.testing.assert_allclose(t2[name](q @ rot), t1[name](q), rtol=1e-5, atol=1e-6)
    # one column blown up 30x: the whitened Parzen score barely moves, the raw one does
    scale = np.array([30.0, 1.0, 1.0, 1.0])
    t3 = kern.kernel_terms(z * scale)
    white = spearmanr(t3["parzen-white"](q * scale), t1["parzen-white"](q))[0]
    raw = spearmanr(t3["parzen"](q * scale), t1["parzen"](q))[0]
    assert white > 0.9 and raw < 0.6, (white, raw)  # Ledoit-Wolf shrinks: not exact


def test_pca_ppca_is_the_classical_pca_detector():
    from metaae_edge.evaluate.detectors import _pca

    rng = np.random.default_rng(2)
    z = rng.normal(size=(120, 3)) @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(120, 8))
    q = rng.normal(size=(20, 8))
    z = (z - z.mean(0)) / z.std(0)  # model space, as the cache's fit rows
    pca = _pca(z, 0)  # the ``pca`` detector's scorer on standardised rows
    np.testing.assert_allclose(kern.kernel_terms(z)["pca-ppca"](q), pca(q), rtol=1e-6)


def test_rule_grid_starts_with_the_base_and_counts_154():
    grid = study.rules()
    assert grid[0] == {} and len(grid) == 1 + 6 * 3 + 15 * 9
    assert all(1 <= len(r) <= 2 for r in grid[1:])
    assert [sum(r.values()) for r in grid] == sorted(sum(r.values()) for r in grid)


def test_lodo_never_shows_a_fold_its_held_out_dataset(monkeypatch):
    """The shared LODO of the studies (study_series_term.lodo, which this study calls)."""
    import study_series_term as series

    seen = []

    def fake_choose(units):
        seen.append({u["group"] for u in units})
        return 0

    monkeypatch.setattr(series, "choose", fake_choose)
    units = [{"group": g, "row": (g, 32), "split": s, "auc": np.array([0.5])}
             for g, s in (("a", "real"), ("b", "real"), ("t (train)", "train"),
                          ("t (test)", "test"))]
    study.lodo(units, lambda _: None, lambda i, _held: study.fmt(study.rules()[i]))
    assert seen[0] == {"a", "b", "t (train)"}  # all meta-training groups, no test split
    assert seen[1:] == [{"b", "t (train)"}, {"a", "t (train)"}]


def test_pseudo_criterion_is_the_mean_auc_and_pick_respects_tau():
    import study_pseudo_select as sel
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    normal = rng.normal(size=20)
    pseudo = {k: rng.normal(loc=m, size=40) for k, m in zip(sel.KINDS, (0.5, 1.0, 2.0))}
    want = np.mean([roc_auc_score(np.r_[np.zeros(20), np.ones(40)], np.r_[normal, a])
                    for a in pseudo.values()])
    assert abs(sel.pseudo_auc(normal, pseudo) - want) < 1e-12
    crit = {"base": 0.90, **{t: 0.80 for t in sel.OPTIONS}, "iforest": 0.93}
    assert sel.pick(crit, np.inf) == "base" and sel.pick(crit, 0.05) == "base"
    assert sel.pick(crit, 0.02) == "iforest" and sel.pick(crit, 0.0) == "iforest"
    # the window term only on windows, rocket on series and windows, at the shipped weights
    assert "spec:mahalanobis" not in sel.base_parts("series")
    assert sel.base_parts("window")["rocket"] == 4.0 == sel.base_parts("window")["spec:mahalanobis"]
    assert "rocket" not in sel.base_parts("table")
