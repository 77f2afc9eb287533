"""Tests for metaae_edge.tasks: built-in families and user-data loading."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from metaae_edge.errors import BackendUnavailableError, DataError
from metaae_edge.tasks import (
    DigitsFamily,
    ManifoldFamily,
    SensorsFamily,
    Task,
    create_family,
    digits_pool,
    list_families,
    load_task,
)
from metaae_edge.tasks import digits as digits_mod

FAMILIES = ("manifold", "sensors", "digits")
OBJECTIVES = ("reconstruct", "denoise", "anomaly")


def _same(a: Task, b: Task) -> bool:
    labels_equal = (a.query_labels is None and b.query_labels is None) or np.array_equal(
        a.query_labels, b.query_labels
    )
    return (
        np.array_equal(a.support, b.support)
        and np.array_equal(a.query, b.query)
        and labels_equal
        and a.noise == b.noise
    )


# ---------------------------------------------------------------- registry and arguments


def test_importing_package_registers_all_families() -> None:
    fams = list_families()
    assert set(FAMILIES) <= set(fams)
    assert all(fams[name] for name in FAMILIES)  # one-line descriptions
    assert isinstance(create_family("manifold", seed=3), ManifoldFamily)
    with pytest.raises(DataError, match="unknown task family"):
        create_family("nope")


@pytest.mark.parametrize("name", FAMILIES)
def test_bad_arguments_raise_data_error(name: str) -> None:
    fam = create_family(name)
    with pytest.raises(DataError, match="split"):
        fam.sample("dev", 0)
    with pytest.raises(DataError, match="objective"):
        fam.sample("train", 0, objective="classify")
    with pytest.raises(DataError, match="index"):
        fam.sample("train", -1)
    with pytest.raises(DataError, match="n_query"):
        fam.sample("train", 0, objective="anomaly", n_query=1)


# ---------------------------------------------------------------- shared family contract


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_deterministic(name: str, objective: str) -> None:
    a = create_family(name, seed=5).sample("val", 2, objective=objective)
    b = create_family(name, seed=5).sample("val", 2, objective=objective)
    assert _same(a, b)
    assert a.name == f"{name}/val/2" and a.family == name and a.objective == objective
    assert a.seed == b.seed
    c = create_family(name, seed=6).sample("val", 2, objective=objective)
    assert not _same(a, c)


@pytest.mark.parametrize("name", FAMILIES)
def test_splits_and_indices_differ(name: str) -> None:
    fam = create_family(name)
    tasks = [fam.sample(s, i) for s in ("train", "val", "test") for i in range(2)]
    for i, a in enumerate(tasks):
        for b in tasks[i + 1 :]:
            assert a.support.shape != b.support.shape or not np.array_equal(a.support, b.support)
    assert len({t.seed for t in tasks}) == len(tasks)


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_dtypes_and_limits(name: str) -> None:
    fam = create_family(name)
    for split in ("train", "test"):
        for i in range(4):
            t = fam.sample(split, i)
            for arr in (t.support, t.query):
                assert arr.dtype == np.float32 and arr.ndim == 2
                assert np.isfinite(arr).all()
            assert 1 <= t.input_dim <= fam.max_input_dim
            assert t.query_labels is None and t.noise is None
            if name != "digits":  # digits caps sizes to its small pools
                assert len(t.support) == 64 and len(t.query) == 256
    t = fam.sample("train", 0, n_support=10, n_query=20)
    assert (len(t.support), len(t.query)) == (10, 20)


@pytest.mark.parametrize("name", FAMILIES)
def test_denoise_stores_clean_data_and_a_per_task_noise(name: str) -> None:
    fam = create_family(name)
    rec = fam.sample("train", 1)
    den = fam.sample("train", 1, objective="denoise")
    # The trainer corrupts later: the task holds the same clean data as reconstruct.
    assert np.array_equal(rec.support, den.support) and np.array_equal(rec.query, den.query)
    assert den.noise is not None and den.noise.kind == "gaussian"
    lo, hi = fam.noise_range
    assert lo <= den.noise.level <= hi
    levels = {fam.sample("train", i, objective="denoise").noise.level for i in range(4)}
    assert len(levels) == 4


@pytest.mark.parametrize("name", FAMILIES)
def test_anomaly_labels_and_normal_support(name: str) -> None:
    fam = create_family(name)
    for i in range(3):
        t = fam.sample("test", i, objective="anomaly")
        y = t.query_labels
        assert y is not None and y.shape == (len(t.query),)
        assert set(np.unique(y).tolist()) == {0, 1}
        assert 0.1 <= y.mean() <= 0.3  # ~20% anomalies
        assert not np.all(y[: y.sum()] == 1)  # shuffled, not stacked at the front
        if name == "digits":
            normal = t.info["classes"]
            assert len(normal) == 1
            q_cls = np.array(t.info["query_classes"])
            assert np.array_equal(y, (q_cls != normal[0]).astype(y.dtype))
        else:
            kinds = np.array(t.info["anomaly_kind"])
            assert np.array_equal(kinds == "normal", y == 0)
    if name != "digits":  # procedural: the support is the reconstruct task's normal data
        rec = fam.sample("test", 0)
        assert np.array_equal(rec.support, fam.sample("test", 0, objective="anomaly").support)


# ---------------------------------------------------------------- manifold


def _top_variance(x: np.ndarray, n: int) -> float:
    """Fraction of variance in the top-n principal components of standardised data."""
    ev = np.linalg.eigvalsh(np.corrcoef(x.astype(np.float64), rowvar=False))[::-1]
    return float(ev[:n].sum() / ev.sum())


def test_manifold_dims_in_range_and_recorded() -> None:
    fam = ManifoldFamily()
    ks, ds = set(), set()
    for i in range(30):
        t = fam.sample("train", i, n_support=8, n_query=8)
        k, d = t.info["intrinsic_dim"], t.info["ambient_dim"]
        assert 1 <= k <= 12 and 32 <= d <= 64 and t.input_dim == d
        ks.add(k)
        ds.add(d)
    assert len(ks) >= 6 and len(ds) >= 10  # both really vary across tasks


def test_manifold_variance_concentrates_according_to_intrinsic_dim() -> None:
    # A family that ignored k would give similar spectra; a k=1 curve puts almost all its
    # variance in a few components, a 10-dim manifold spreads it out.
    low = [ManifoldFamily(min_dim=1, max_dim=1).sample("train", i, n_support=600) for i in range(3)]
    high = [
        ManifoldFamily(min_dim=10, max_dim=10).sample("train", i, n_support=600) for i in range(3)
    ]
    top3_low = np.mean([_top_variance(t.support, 3) for t in low])
    top3_high = np.mean([_top_variance(t.support, 3) for t in high])
    assert top3_low > 0.85 and top3_high < 0.6
    # Nonlinear: even k=1 is not a straight line, and 10 dims need more than 10 components.
    assert np.mean([_top_variance(t.support, 1) for t in low]) < 0.9
    assert np.mean([_top_variance(t.support, 10) for t in high]) < 0.99
    # Reconstruction error keeps falling until ~k components, then flattens (noise floor).
    t = high[0]
    err = [1 - _top_variance(t.support, n) for n in (2, 6, 10, 14, 18)]
    assert err[0] > err[1] > err[2]
    assert err[2] - err[4] < err[0] - err[2]


def _auroc(labels: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (no ties expected)."""
    ranks = np.argsort(np.argsort(score)) + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_manifold_anomalies_are_not_marginal_outliers() -> None:
    fam = ManifoldFamily()
    marg, recon = [], []
    for i in range(4):
        t = fam.sample("test", i, objective="anomaly", n_support=256)
        norm = t.normalizer()
        s, q = norm.transform(t.support).astype(np.float64), norm.transform(t.query)
        marg.append(_auroc(t.query_labels, np.abs(q).max(1)))
        # PCA with a few more components than k: a linear model of the manifold.
        _, vecs = np.linalg.eigh(np.cov(s, rowvar=False))
        basis = vecs[:, ::-1][:, : t.info["intrinsic_dim"] + 3]
        centred = q - s.mean(0)
        resid = centred - centred @ basis @ basis.T
        recon.append(_auroc(t.query_labels, (resid**2).sum(1)))
    # Per-feature outlier scoring is weak; a model of the manifold does much better.
    assert np.mean(marg) < 0.85
    assert np.mean(recon) > np.mean(marg) + 0.1


def test_manifold_rejects_bad_options() -> None:
    with pytest.raises(DataError):
        ManifoldFamily(min_dim=5, max_dim=2)
    with pytest.raises(DataError, match="min_ambient"):
        ManifoldFamily(max_dim=40, min_ambient=32)


# ---------------------------------------------------------------- sensors


def test_sensors_layout_is_channel_major() -> None:
    fam = SensorsFamily()
    seen = set()
    for i in range(12):
        t = fam.sample("train", i)
        c, w = t.info["channels"], t.info["window"]
        assert 1 <= c <= 4 and w in (16, 24, 32) and t.input_dim == c * w <= 128
        assert t.info["intrinsic_dim"] == 2 * t.info["oscillators"]
        seen.add(c)
        # Channel-major: each block of `w` features is one channel's time series, so its
        # spectrum peaks at one of the task's oscillator frequencies (or a 2nd harmonic).
        x = t.support.reshape(len(t.support), c, w)
        ch = int(np.argmax(x.var(axis=(0, 2))))
        block = x[:, ch] - x[:, ch].mean(axis=1, keepdims=True)
        power = (np.abs(np.fft.rfft(block, axis=1)) ** 2).mean(axis=0)
        peak = (1 + int(np.argmax(power[1:]))) / w
        freqs = np.array(t.info["frequencies"])
        assert np.min(np.abs(np.concatenate([freqs, 2 * freqs]) - peak)) <= 1.0 / w
        # Windows differ (per-window phase / amplitude jitter).
        assert np.unique(t.support.round(4), axis=0).shape[0] == len(t.support)
    assert len(seen) >= 3


def test_sensors_anomaly_kinds_recorded() -> None:
    t = SensorsFamily().sample("val", 0, objective="anomaly", n_query=400)
    kinds = set(np.array(t.info["anomaly_kind"])[t.query_labels == 1].tolist())
    assert kinds == {"spike", "level_shift", "frequency"}


# ---------------------------------------------------------------- digits


def test_digits_pools_are_disjoint_and_cover_the_data() -> None:
    pools = {s: set(digits_pool(s).tolist()) for s in ("train", "val", "test")}
    assert not pools["train"] & pools["val"]
    assert not pools["train"] & pools["test"]
    assert not pools["val"] & pools["test"]
    assert sum(len(p) for p in pools.values()) == 1797
    fam = DigitsFamily()
    for split in ("train", "val", "test"):
        for objective in ("reconstruct", "anomaly"):
            t = fam.sample(split, 0, objective=objective)
            s_idx, q_idx = set(t.info["support_indices"]), set(t.info["query_indices"])
            assert s_idx | q_idx <= pools[split]
            assert not s_idx & q_idx  # no image in both sets
            assert len(q_idx) == len(t.query)  # no image twice in the query


def test_digits_data_classes_and_options() -> None:
    fam = DigitsFamily(loss="bce", seed=2)
    assert fam.max_input_dim == 64
    for i in range(5):
        t = fam.sample("train", i)
        assert t.loss == "bce" and t.normalization == "identity" and t.input_dim == 64
        assert t.support.min() >= 0.0 and t.support.max() <= 1.0
        assert 2 <= len(t.info["classes"]) <= 5
        assert set(t.info["query_classes"]) <= set(t.info["classes"])
    # Small pools: sizes are capped rather than images repeated.
    t = DigitsFamily().sample("test", 0)
    assert len(t.support) + len(t.query) <= len(digits_pool("test"))
    assert DigitsFamily().sample("train", 0).loss == "mse"
    with pytest.raises(DataError, match="loss"):
        DigitsFamily(loss="l1")


def test_digits_without_sklearn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    digits_mod._load.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(BackendUnavailableError, match="train"):
            DigitsFamily().sample("train", 0)
    finally:
        digits_mod._load.cache_clear()


# ---------------------------------------------------------------- user data


def _err(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_task(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg  # one line for the CLI
    return msg


def test_load_npy_split_and_determinism(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 5))
    np.save(tmp_path / "sensor_a.npy", x)
    t = load_task(tmp_path / "sensor_a.npy", seed=1)
    assert t.family == "user" and t.name == "sensor_a"
    assert (len(t.support), len(t.query)) == (30, 10)
    assert t.support.dtype == np.float32 and t.input_dim == 5
    rows = np.concatenate([t.support, t.query])
    assert np.allclose(np.sort(rows, axis=0), np.sort(x.astype(np.float32), axis=0))
    again = load_task(str(tmp_path / "sensor_a.npy"), seed=1)
    assert np.array_equal(t.support, again.support)
    other = load_task(tmp_path / "sensor_a.npy", seed=2)
    assert not np.array_equal(t.support, other.support)
    den = load_task(tmp_path / "sensor_a.npy", objective="denoise", noise="gaussian:0.3")
    assert den.noise is not None and den.noise.level == 0.3


def test_load_npz_with_labels_for_anomaly(tmp_path) -> None:
    x = np.arange(60 * 3, dtype=np.float64).reshape(60, 3)
    y = np.zeros(60, np.int64)
    y[::6] = 1  # 10 anomalies
    np.savez(tmp_path / "m.npz", x=x, labels=y)
    t = load_task(tmp_path / "m.npz", objective="anomaly", seed=3)
    anomalous_rows = {tuple(r) for r in x[y == 1].astype(np.float32)}
    assert not {tuple(r) for r in t.support} & anomalous_rows  # support is normal only
    assert t.query_labels is not None and t.query_labels.sum() == 10
    for row, label in zip(t.query, t.query_labels):
        assert (tuple(row) in anomalous_rows) == bool(label)
    assert len(t.support) + len(t.query) == 60
    # Explicit labels win; first array used when no x/data key; labels ignored otherwise.
    np.savez(tmp_path / "plain.npz", samples=x)
    t2 = load_task(tmp_path / "plain.npz", objective="anomaly", labels=y.tolist())
    assert t2.query_labels is not None and t2.query_labels.sum() == 10
    assert load_task(tmp_path / "m.npz").query_labels is None
    assert "0 (normal) or 1" in _err(tmp_path / "m.npz", objective="anomaly", labels=[2] * 60)
    assert "one 0/1 value per sample" in _err(
        tmp_path / "m.npz", objective="anomaly", labels=[0, 1]
    )


def test_load_csv_with_and_without_header(tmp_path) -> None:
    rows = "\n".join(f"{i},{i * 0.5},{-i}" for i in range(12))
    (tmp_path / "plain.csv").write_text(rows + "\n")
    (tmp_path / "head.csv").write_text("temp,pressure,flow\n" + rows + "\n\n")
    (tmp_path / "semi.csv").write_text("a;b;c\n" + rows.replace(",", ";") + "\n")
    a = load_task(tmp_path / "plain.csv")
    b = load_task(tmp_path / "head.csv")
    c = load_task(tmp_path / "semi.csv")
    assert a.input_dim == b.input_dim == c.input_dim == 3
    assert len(a.support) + len(a.query) == 12 == len(b.support) + len(b.query)
    assert np.array_equal(a.support, b.support) and np.array_equal(a.support, c.support)
    assert b.info["columns"] == ["temp", "pressure", "flow"]


def test_loader_errors_are_clear(tmp_path) -> None:
    assert "not found" in _err(tmp_path / "missing.npy")
    (tmp_path / "data.txt").write_text("1,2\n")
    msg = _err(tmp_path / "data.txt")
    assert "'.txt'" in msg and ".npy" in msg and ".csv" in msg

    np.save(tmp_path / "img.npy", np.zeros((10, 8, 8)))
    msg = _err(tmp_path / "img.npy")
    assert "2-D" in msg and "(10, 8, 8)" in msg and "Flatten" in msg and "(10, 64)" in msg
    np.save(tmp_path / "vec.npy", np.zeros(10))
    assert "(10,)" in _err(tmp_path / "vec.npy")

    x = np.zeros((20, 4))
    x[7, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    msg = _err(tmp_path / "nan.npy")
    assert "NaN" in msg and "row 7" in msg and "column 2" in msg
    x[7, 2] = 0
    x[3, 1] = np.inf
    np.save(tmp_path / "inf.npy", x)
    assert "Inf" in _err(tmp_path / "inf.npy")

    lines = ["a,b"] + [f"{i},{i}" for i in range(10)]
    lines[4] = "3,oops"
    (tmp_path / "text.csv").write_text("\n".join(lines))
    msg = _err(tmp_path / "text.csv")
    assert "line 5" in msg and "column 2" in msg and "'oops'" in msg
    lines[4] = "3,nan"
    (tmp_path / "nan.csv").write_text("\n".join(lines))
    msg = _err(tmp_path / "nan.csv")
    assert "NaN" in msg and "file line 5" in msg
    lines[4] = "3,4,5"
    (tmp_path / "ragged.csv").write_text("\n".join(lines))
    assert "expected 2 columns" in _err(tmp_path / "ragged.csv")

    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _err(tmp_path / "empty.csv")
    (tmp_path / "empty.npy").write_bytes(b"")
    assert "empty" in _err(tmp_path / "empty.npy")
    (tmp_path / "comments.csv").write_text("# only a comment\n\n")
    assert "empty" in _err(tmp_path / "comments.csv")
    (tmp_path / "binary.csv").write_bytes(bytes(range(128, 256)))
    assert "UTF-8" in _err(tmp_path / "binary.csv")
    (tmp_path / "header_only.csv").write_text("a,b,c\n")
    assert "no data rows" in _err(tmp_path / "header_only.csv")
    (tmp_path / "garbage.npy").write_bytes(b"not numpy at all")
    assert "could not read" in _err(tmp_path / "garbage.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 10, dtype=object), allow_pickle=True)
    assert "could not read" in _err(tmp_path / "obj.npy")

    np.save(tmp_path / "few.npy", np.zeros((5, 3)))
    msg = _err(tmp_path / "few.npy")
    assert "5 samples" in msg and "at least 8" in msg

    np.save(tmp_path / "wide.npy", np.zeros((20, 200)))
    msg = _err(tmp_path / "wide.npy", max_input_dim=128)
    assert "200 features" in msg and "128" in msg
    assert load_task(tmp_path / "wide.npy").input_dim == 200  # no limit given

    np.save(tmp_path / "ok.npy", np.zeros((20, 2)))
    assert "query_fraction" in _err(tmp_path / "ok.npy", query_fraction=1.5)
    assert "objective" in _err(tmp_path / "ok.npy", objective="cluster")


# ---------------------------------------------------------------- sample kinds


def _kind_task(image_shape=None, **kw) -> Task:
    rng = np.random.default_rng(0)
    return Task("t", "x", rng.random((12, 16), dtype=np.float32),
                rng.random((6, 16), dtype=np.float32), image_shape=image_shape, **kw)


def test_sample_kind_per_task_kind() -> None:
    from metaae_edge.spec import SupernetConfig
    from metaae_edge.tasks import ImageSamples, VectorSamples

    vec, img = _kind_task(), _kind_task([1, 4, 4])
    assert isinstance(vec.sample_kind, VectorSamples) and vec.sample_shape == (16,)
    assert isinstance(img.sample_kind, ImageSamples) and img.sample_shape == (1, 4, 4)
    assert img.image_shape == (1, 4, 4)  # the kind normalised the list to a tuple
    assert vec.sample_kind.default_space() == SupernetConfig()
    assert img.sample_kind.default_space() == SupernetConfig.conv()
    assert vec.sample_kind.basis_always and not img.sample_kind.basis_always
    assert "image_shape" not in vec.summary() and img.summary()["image_shape"] == [1, 4, 4]
    assert create_family("digits-res").sample("val", 0).sample_shape[0] == 1
    with pytest.raises(DataError, match=r"image_shape must be \(C, H, W\) with C\*H\*W = 16 "):
        _kind_task((1, 4, 5))


def test_sample_kinds_corrupt_in_their_own_units() -> None:
    from metaae_edge.tasks import Noise

    noise = Noise("salt-pepper", 1.0)  # every value becomes salt or pepper
    for task in (_kind_task(), _kind_task((1, 4, 4))):
        norm = task.normalizer()
        z = norm.transform(task.support)
        out = task.sample_kind.corrupt(noise, norm, task.support, z,
                                       np.random.default_rng(1))
        bounds = task.sample_kind.noise_bounds
        if bounds is None:  # vectors: the normalised set's own min and max
            lo, hi = np.full_like(z, z.min()), np.full_like(z, z.max())
        else:  # images: raw pixels 0 / 1, then normalised
            lo, hi = (norm.transform(np.full_like(z, v)) for v in bounds)
        assert out.shape == z.shape and np.all((out == lo) | (out == hi))
        assert (out == lo).any() and (out == hi).any()


def test_a_registered_sample_kind_is_asked_first() -> None:
    from metaae_edge.tasks import SAMPLE_KINDS, VectorSamples, kinds

    class Sequences(VectorSamples):
        name = "sequence"

        def matches(self, task: Task) -> bool:
            return task.info.get("layout") == "sequence"

        def sample_shape(self, task: Task) -> tuple[int, ...]:
            return (4, task.input_dim // 4)

    seq = kinds.register_sample_kind(Sequences(), first=True)
    try:
        kinds.register_sample_kind(Sequences())  # once per kind
        assert sum(isinstance(k, Sequences) for k in SAMPLE_KINDS) == 1
        assert _kind_task(info={"layout": "sequence"}).sample_shape == (4, 4)
        assert _kind_task().sample_shape == (16,)
    finally:
        SAMPLE_KINDS.remove(seq)
    assert _kind_task(info={"layout": "sequence"}).sample_shape == (16,)
