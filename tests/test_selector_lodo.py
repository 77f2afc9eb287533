"""The leave-one-dataset-out selector study (scripts/study_detector_selector.py)."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import study_detector_selector as ss  # noqa: E402

INC = ss.OPTIONS.index("current")


def _toy(n=60, seed=0):
    """Option ``knn`` gains 0.1 over current when feature 0 > 0, loses 0.1 otherwise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.full((n, len(ss.OPTIONS)), -0.05)
    y[:, INC] = 0.0
    y[:, ss.OPTIONS.index("knn")] = np.where(x[:, 0] > 0, 0.1, -0.1)
    y[:, ss.OPTIONS.index("spec:knn")] = np.nan  # absent on these units
    return x, y


def test_pick_follows_a_predictable_gain_and_keeps_the_incumbent_otherwise():
    x, y = _toy()
    c = ss.pick(ss.fit(x, y, 1.0), x, y, 0.0)
    knn = ss.OPTIONS.index("knn")
    assert np.mean(c[x[:, 0] > 0.5] == knn) == 1.0
    assert np.mean(c[x[:, 0] < -0.5] == INC) == 1.0
    assert not np.any(c == ss.OPTIONS.index("spec:knn"))  # absent options never chosen
    assert np.all(ss.pick(ss.fit(x, y, 1.0), x, y, 1.0) == INC)  # tau above every gain


def test_lodo_never_trains_on_the_scored_dataset_nor_on_test_units(monkeypatch):
    x, _ = _toy(40)
    groups = ["a"] * 10 + ["b"] * 10 + ["t (train)"] * 10 + ["t (test)"] * 10
    splits = ["real"] * 20 + ["train"] * 10 + ["test"] * 10
    units = [SimpleNamespace(group=g, split=s) for g, s in zip(groups, splits)]
    auc = 0.8 + 0.01 * np.random.default_rng(1).random((40, len(ss.OPTIONS)))
    seen = []
    real_fit = ss.fit_with_tau

    def spy(xx, yy, gg):
        seen.append(set(gg))
        return real_fit(xx, yy, gg)

    monkeypatch.setattr(ss, "fit_with_tau", spy)
    out = ss.lodo(units, x, auc, lambda *_: None)
    assert seen[0] == {"a", "b", "t (train)"}  # the selector for the test rows
    assert seen[1:] == [{"b", "t (train)"}, {"a", "t (train)"}]
    assert all("t (test)" not in s for s in seen)
    # every scored (real / test) unit gets the AUC of one of its own options
    assert all(np.any(np.isclose(auc[i], out[i])) for i in [*range(20), *range(30, 40)])
