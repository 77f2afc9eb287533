"""Real one-class tasks: disjoint splits, requested contamination, reproducible seeds."""

import numpy as np
import pytest

from metaae_edge.errors import DataError
from metaae_edge.tasks.realdata import REAL_DATASETS, available_datasets, real_task

NAMES = list(REAL_DATASETS)


@pytest.mark.parametrize("name", NAMES)
def test_split_is_disjoint_one_class_and_at_the_requested_contamination(name):
    ds = REAL_DATASETS[name]
    if not ds.available():
        pytest.skip(f"{ds.package} not installed")
    data = ds.load()
    assert data.x.shape[1] == ds.n_features and np.isfinite(data.x).all()
    for cls in reversed(ds.normal_classes):  # the last class with rows for S = 32
        try:
            task = real_task(name, cls, seed=1, n_support=32, contamination=0.15)
            break
        except DataError:
            continue
    cls = task.info["normal_class"]
    sup, qry = np.array(task.info["support_rows"]), np.array(task.info["query_rows"])
    assert not set(sup) & set(qry)
    # Windows of one recording never sit on both sides of the split.
    assert not set(data.groups[sup]) & set(data.groups[qry[task.query_labels == 0]])
    assert np.all(data.y[sup] == cls)
    np.testing.assert_array_equal(data.y[qry] != cls, task.query_labels.astype(bool))
    np.testing.assert_array_equal(task.query, data.x[qry])
    assert task.info["contamination"] == pytest.approx(0.15, abs=0.02)
    assert task.support.shape == (32, ds.n_features)
    # windows cut at arbitrary starts declare their channels (the window front-end)
    assert task.info.get("channels") == {"basicmotions": 6, "japanese_vowels": 12,
                                         "acsf1": 1, "pickup_gesture": 1}.get(name)


def test_same_seed_same_task_other_seed_other_split():
    a, b = real_task("wine", 1, seed=2), real_task("wine", 1, seed=2)
    c = real_task("wine", 1, seed=3)
    np.testing.assert_array_equal(a.query, b.query)
    np.testing.assert_array_equal(a.query_labels, b.query_labels)
    assert not np.array_equal(a.support, c.support)
    r = real_task("wine", "1", seed=2, objective="reconstruct")
    assert r.query_labels is None and len(r.query) == int((a.query_labels == 0).sum())


def test_breast_cancer_benign_normal_malignant_anomaly():
    task = real_task("breast_cancer", 0, seed=0, n_support=256, contamination=0.1)
    data = REAL_DATASETS["breast_cancer"].load()
    qry = np.array(task.info["query_rows"])
    assert set(data.y[qry[task.query_labels == 1]]) == {"0"}  # malignant
    assert task.info["normal_class"] == "1" and len(task.support) == 256


def test_bad_requests_raise():
    with pytest.raises(DataError):
        real_task("wine", 0, n_support=60)  # class 0 has 59 rows
    with pytest.raises(DataError):
        real_task("wine", 7)
    with pytest.raises(DataError):
        real_task("nope")
    assert {"wine", "breast_cancer", "digits", "iris"} <= set(available_datasets())


def test_read_ts_parses_multichannel_variable_length_cases(tmp_path):
    from metaae_edge.tasks.realdata import read_ts

    path = tmp_path / "X_TRAIN.ts"
    path.write_text("# comment\n@problemName X\n@dimensions 2\n@data\n"
                    "1,2,3:4,5,6:a\n7,8:9,10:b\n")
    cases, labels = read_ts(path)
    assert labels == ["a", "b"]
    np.testing.assert_array_equal(cases[0], [[1, 2, 3], [4, 5, 6]])
    assert cases[1].shape == (2, 2)


def test_fresh_aeon_datasets_rows_and_windows():
    """The r23 datasets: whole series as rows (tables) or windows cut from recordings."""
    if not REAL_DATASETS["gunpoint"].available():
        pytest.skip("aeon not installed")
    sizes = {"gunpoint": (200, 150, 200), "arrowhead": (211, 251, 211),
             "osuleaf": (442, 427, 442), "acsf1": (200 * 21, 128, 200),
             "pickup_gesture": (None, 32, 100)}
    for name, (rows, width, groups) in sizes.items():
        data = REAL_DATASETS[name].load()
        assert data.x.shape[1] == width and len(np.unique(data.groups)) <= groups
        if rows is not None:
            assert len(data.x) == rows
    acs = REAL_DATASETS["acsf1"].load()
    # consecutive windows of one recording overlap by half (stride 64 of 128)
    np.testing.assert_array_equal(acs.x[0, 64:], acs.x[1, :64])
    assert (np.bincount(acs.groups) == 21).all()
