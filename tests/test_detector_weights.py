"""The score-combination study (scripts/cache_detector_terms.py,
scripts/study_detector_weights.py): the cached terms rebuild the exported ``ensemble+ours``
score, the numpy AUCs equal scikit-learn's, the search finds the one informative term,
and leave-one-dataset-out never shows the chooser a unit of the held-out dataset."""

import os
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import cache_detector_terms as cache  # noqa: E402
import cache_rocket_terms  # noqa: E402
import study_detector_weights as study  # noqa: E402


def _exported_ensemble(task, ckpt):
    """The ``ensemble+ours`` candidate as real_anomaly_table.py fits it, and its scores."""
    from metaae_edge.adapt import adapt, query_scores
    from metaae_edge.pipeline.candidates import closed_form_candidates
    from metaae_edge.pipeline.export import split_holdout

    fit, hold = split_holdout(task, 0.2, 0)
    ours = adapt(ckpt, fit, finetune_steps=30)
    cands = closed_form_candidates(fit.support, fit.normalizer(), "anomaly", 1 << 30, 0,
                                   hold, ours, task.info.get("channels"))
    res = {c.name: c.result for c in cands}["ensemble+ours"]
    return query_scores(res, task.query)


@pytest.mark.parametrize("family", ["tabular", "sensors"])
def test_cached_terms_rebuild_the_exported_ensemble(family):
    from metaae_edge.meta import load_checkpoint
    from metaae_edge.tasks import create_family

    ckpt = load_checkpoint("builtin:manifold")
    task = create_family(family).sample("test", 0, objective="anomaly", n_support=32,
                                        n_query=64)
    terms = cache.unit_terms(task, ckpt)
    windows = task.info.get("channels") is not None
    assert ("spec:mahalanobis@sd" in terms) == windows
    assert "iforest@query" in terms and terms["iforest@hold"].shape == (6,)
    rebuilt = sum(w * terms[f"{t}@query"] / terms[f"{t}@sd"]
                  for t, w in study.CURRENT.items() if f"{t}@query" in terms)
    if windows:  # the r27 rule: + 4 x the rocket variant, from the rocket cache
        from metaae_edge.pipeline.detector_candidates import ROCKET, ROCKET_WEIGHT

        r = cache_rocket_terms.unit_rocket_terms(task)
        name = "rocket:z{:d}:d{:d}:ppv:{}".format(*ROCKET)
        rebuilt = rebuilt + ROCKET_WEIGHT * r[f"{name}@query"] / r[f"{name}@sd"]
    served = _exported_ensemble(task, ckpt)
    np.testing.assert_allclose(rebuilt, served, rtol=2e-4, atol=1e-4)
    assert np.array_equal(terms["_labels"], task.query_labels)


def _units(seed=0, groups=("a", "b", "c"), informative=2, n=40):
    """Units where only term ``informative`` separates the anomalies (label 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for g in groups:
        for _k in range(3):
            y = (np.arange(n) % 4 == 0).astype(int)
            x = rng.standard_normal((n, len(study.TERMS)))
            x[:, informative] += 3.0 * y
            out.append(study.Unit(g, (g, 32), "real", x, y,
                                  np.ones(len(study.TERMS), bool)))
    return out


def test_aucs_equal_scikit_learn_for_sum_max_and_sq():
    u = _units()[0]
    w = np.zeros((len(study.TERMS), 2))
    w[[0, 2], 0] = [1.0, 2.0]
    w[[1, 2], 1] = [0.5, 1.0]
    for agg, score in (("sum", u.x @ w),
                       ("sq", np.maximum(u.x, 0) ** 2 @ w),
                       ("max", np.stack([np.maximum(u.x[:, 0], 2 * u.x[:, 2]),
                                         np.maximum(0.5 * u.x[:, 1], u.x[:, 2])], 1))):
        got = study.aucs(u, w, agg)
        want = [roc_auc_score(u.y, score[:, j]) for j in range(2)]
        np.testing.assert_allclose(got, want, atol=1e-12)
    u.present[2] = False  # max ignores a term the unit lacks, whatever its column holds
    u.x[:, 2] = 1e9
    np.testing.assert_allclose(study.aucs(u, w, "max")[0], roc_auc_score(u.y, u.x[:, 0]))


def test_choose_puts_weight_on_the_one_informative_term():
    units = _units(informative=4)
    agg, rule = study.choose(units, study.EXPORTABLE)
    auc = study.objective(units, study.vec(rule)[:, None])[0]
    assert agg == "sum" and study.TERMS[4] in rule
    assert auc > 0.95 > study.objective(units, study.vec(study.EQUAL)[:, None])[0]


def test_lodo_never_shows_the_chooser_the_held_out_dataset():
    units = _units() + [study.Unit("tab (test)", ("tab test", 32), "test", u.x, u.y,
                                   u.present) for u in _units(1, ("t",))]
    seen = []

    def chooser(us):
        seen.append({u.group for u in us})
        return "sum", {"knn": 1.0}

    rows, rule_all = study.lodo_rows(units, chooser, lambda s: None)
    assert seen[0] == {"a", "b", "c"}  # all meta-training groups, never a test split
    assert seen[1:] == [{"b", "c"}, {"a", "c"}, {"a", "b"}]
    assert set(rows) == {("a", 32), ("b", 32), ("c", 32), ("tab test", 32)}
    assert rule_all == ("sum", {"knn": 1.0})
