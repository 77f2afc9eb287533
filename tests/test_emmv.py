"""The r30 Excess-Mass / Mass-Volume estimator (scripts/emmv.py) against closed forms for
a 2-D standard Gaussian scored by ``|x|^2`` (a monotone transform of its density), and the
r30 selection rule (scripts/study_emmv_select.py)."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import emmv  # noqa: E402

L = 5.0  # box [-L, L]^2; the level sets used here lie inside it (radius <= 3.1)
BOX = (2 * L) ** 2


def _gaussian_scores(n_hold=40000, n_unif=200000, seed=0):
    rng = np.random.default_rng(seed)
    hold = rng.normal(size=(n_hold, 2))
    unif = rng.uniform(-L, L, size=(n_unif, 2))
    return (hold ** 2).sum(1), (unif ** 2).sum(1)


def test_mv_curve_is_the_gaussian_disc_volume():
    s_hold, s_unif = _gaussian_scores()
    alphas = np.array([0.9, 0.95, 0.99])
    # {|x|^2 <= u} holds mass alpha for u = -2 ln(1 - alpha); its area is pi u
    want = np.pi * -2 * np.log(1 - alphas) / BOX
    np.testing.assert_allclose(emmv.mv_curve(s_hold, s_unif, alphas), want, rtol=0.03)
    area = emmv.mv_area(s_hold, s_unif)
    a = emmv.ALPHAS
    # integral of -2 pi ln(1 - a) da = 2 pi [(1 - a) ln(1 - a) - (1 - a)]
    f = lambda x: 2 * np.pi * ((1 - x) * np.log(1 - x) - (1 - x))  # noqa: E731
    np.testing.assert_allclose(area, (f(a[-1]) - f(a[0])) / BOX, rtol=0.03)


def test_em_curve_is_the_gaussian_excess_mass():
    s_hold, s_unif = _gaussian_scores()
    t = np.array([0.0, 0.5, 1.0, 2.0, 4.0])  # density relative to the uniform one, 1 / BOX
    c = t / BOX * 2 * np.pi  # 2 pi x (absolute level); EM*(c) = 1 - c + c ln c
    want = np.where(c < 1, 1 - c + c * np.log(np.maximum(c, 1e-300)), 0.0)
    np.testing.assert_allclose(emmv.em_curve(s_hold, s_unif, t), want, atol=0.01)


def test_em_area_stops_at_the_level_and_mv_prefers_the_true_density():
    s_hold, s_unif = _gaussian_scores(4000, 20000)
    ts = np.linspace(0, 100, 2001)
    em = emmv.em_curve(s_hold, s_unif, ts)
    stop = int(np.nonzero(em <= emmv.EM_LEVEL)[0][0]) + 1
    assert emmv.em_area(s_hold, s_unif, ts) == np.trapezoid(em[:stop], ts[:stop])
    # the density's own score beats a wrong one (|x_0| only) on both criteria
    rng = np.random.default_rng(1)
    hold, unif = rng.normal(size=(4000, 2)), rng.uniform(-L, L, size=(20000, 2))
    good = ((hold ** 2).sum(1), (unif ** 2).sum(1))
    bad = (np.abs(hold[:, 0]), np.abs(unif[:, 0]))
    assert emmv.mv_area(*good) < emmv.mv_area(*bad)
    assert emmv.em_area(*good) > emmv.em_area(*bad)


def test_feature_draws_and_box():
    draws = emmv.feature_draws(10, 4, 3, 0)
    assert len(draws) == 4 and all(len(d) == 3 and len(set(d)) == 3 for d in draws)
    assert [list(d) for d in emmv.feature_draws(3, 4, 3, 0)] == [[0, 1, 2]]
    rows = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    u = emmv.uniform_box(rows, 100, 0)
    assert (u[:, 0] >= 0).all() and (u[:, 0] <= 2).all() and (u[:, 1] == 1).all()


def test_selection_rule_ratios_and_tau():
    import study_emmv_select as study

    opts = study.OPTIONS
    e = {f"{n}@em": np.array([2.0, 2.0]) for n in ("base",) + opts}
    e.update({f"{n}@mv": np.array([0.04, 0.04]) for n in ("base",) + opts})
    e["knn@em"], e["gmm@mv"] = np.array([4.0, 4.0]), np.array([0.01, 0.01])
    r_em, r_mv = study.ratios(e, "em"), study.ratios(e, "mv")
    assert np.isclose(r_em["knn"], np.log(2)) and np.isclose(r_mv["gmm"], np.log(4))
    assert r_em["gmm"] == 0.0 and r_mv["knn"] == 0.0
    assert study.pick(r_em, 0.5) == "knn" and study.pick(r_em, 1.0) == "base"
    assert study.pick({o: 0.0 for o in opts}, 0.0) == "base"  # must beat base strictly
    picks = study.unit_picks(e)
    assert picks[0] == "base" and len(picks) == len(study.RULES)
    assert picks[study.RULES.index(("mv", 1.0))] == "gmm"  # log 4 = 1.39 > 1
    assert picks[study.RULES.index(("em", 1.0))] == "base"  # log 2 = 0.69 < 1


def test_pooling_a_split_twice_changes_no_area():
    import cache_emmv_terms as cache

    rng = np.random.default_rng(2)
    z, hz = rng.normal(size=(40, 3)), rng.normal(size=(12, 3))
    one = cache.draw_areas([(z, hz)], np.vstack([z, hz]), 0)
    two = cache.draw_areas([(z, hz), (z, hz)], np.vstack([z, hz]), 0)
    assert set(one) == {"base", *cache.OPTIONS}
    for n in one:  # duplicated held-out and uniform scores: the same mass and volume
        np.testing.assert_allclose(two[n], one[n], rtol=1e-12)
    assert all(0 < one[n][1] < 0.09 for n in one)  # MV areas: box fractions over [0.9, 0.99)
