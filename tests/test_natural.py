"""Tests for the ``natural`` image family: dead-leaves statistics, seeds, noise kinds."""

from __future__ import annotations

import numpy as np
import pytest

from metaae_edge.errors import DataError
from metaae_edge.tasks import (
    ImageSamples,
    NaturalFamily,
    Noise,
    PoissonGaussianNoise,
    create_family,
    create_recipe,
    list_families,
)
from metaae_edge.tasks.natural import (
    NATURAL_SEEN,
    NATURAL_UNSEEN,
    _n_leaves,
    _task_params,
    render_natural,
)


def spectrum_slope(imgs: np.ndarray) -> float:
    """Slope of log radially averaged power vs log frequency (2 .. res/4 cycles/image)."""
    n, h, w = imgs.shape
    x = (imgs - imgs.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(h), np.hanning(w))
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(0)
    f = np.rint(np.hypot(np.fft.fftfreq(h)[:, None] * h, np.fft.fftfreq(w)[None, :] * w))
    ks = np.arange(2, h // 4 + 1)
    radial = np.array([power[f == k].mean() for k in ks])
    return float(np.polyfit(np.log(ks), np.log(radial), 1)[0])


def test_registered_with_recipe_and_dims() -> None:
    assert "natural" in list_families()
    fam = create_family("natural")
    assert isinstance(fam, NaturalFamily)
    assert fam.max_input_dim == max(NATURAL_SEEN + NATURAL_UNSEEN) ** 2
    recipe = create_recipe("natural")
    assert recipe.family == "natural" and recipe.objective == "denoise"


@pytest.mark.parametrize("res", [16, 20, 40, 64])
def test_shapes_ranges_and_resolutions(res: int) -> None:
    t = create_family("natural", resolution=res).sample("test", 3, n_support=16, n_query=8)
    assert t.image_shape == (1, res, res) and t.info["resolution"] == res
    assert t.support.shape == (16, res * res) and t.query.shape == (8, res * res)
    assert t.support.dtype == np.float32
    assert t.support.min() >= 0.0 and t.support.max() <= 1.0
    assert t.support.std() > 0.01  # not blank
    assert t.normalization == "global" and isinstance(t.sample_kind, ImageSamples)
    assert t.info["seen_resolution"] == int(res in NATURAL_SEEN)


def test_splits_draw_seen_then_unseen_resolutions() -> None:
    fam = create_family("natural")
    train = {fam.sample("train", i, n_support=2, n_query=1).info["resolution"]
             for i in range(40)}
    test = {fam.sample("test", i, n_support=2, n_query=1).info["resolution"] for i in range(60)}
    assert train <= set(NATURAL_SEEN) and len(train) >= 4
    assert test & set(NATURAL_UNSEEN)


def test_deterministic_by_seed_and_index() -> None:
    a = create_family("natural", seed=1).sample("train", 5, objective="denoise")
    b = create_family("natural", seed=1).sample("train", 5, objective="denoise")
    c = create_family("natural", seed=2).sample("train", 5, objective="denoise")
    d = create_family("natural", seed=1).sample("train", 6, objective="denoise")
    assert np.array_equal(a.support, b.support) and np.array_equal(a.query, b.query)
    assert a.noise == b.noise
    assert a.image_shape != c.image_shape or not np.array_equal(a.support, c.support)
    assert a.image_shape != d.image_shape or not np.array_equal(a.support, d.support)


def test_power_spectrum_follows_a_power_law() -> None:
    rng = np.random.default_rng(0)
    slopes = [spectrum_slope(render_natural(32, 64, _task_params(rng), rng)) for _ in range(8)]
    assert -3.2 <= float(np.median(slopes)) <= -1.5, slopes
    assert sum(-3.6 <= s <= -1.3 for s in slopes) >= 7, slopes
    # The dead-leaves part alone (no blur, no texture) is scale-invariant too.
    p = {**_task_params(rng), "blur": 0.0, "p_texture_image": 0.0, "leaf_texture": 0.0}
    assert -3.2 <= spectrum_slope(render_natural(32, 64, p, rng)) <= -1.5


def test_leaf_sizes_follow_r_minus_3() -> None:
    from metaae_edge.tasks.natural import _draw_leaves
    rng = np.random.default_rng(0)
    p = {**_task_params(rng), "r_min_px": 1.0, "r_max": 1.0}
    r = _draw_leaves(1, 200_000, 64, p, rng)["a"].ravel()
    # P(r > x) = (x^-2 - hi^-2) / (lo^-2 - hi^-2) for p(r) ~ r^-3 on [lo, hi]
    lo, hi = 1.0, 64.0
    for x in (2.0, 4.0, 8.0):
        expect = (x ** -2 - hi ** -2) / (lo ** -2 - hi ** -2)
        assert abs(float((r > x).mean()) - expect) < 0.01
    assert _n_leaves(64, p) > _n_leaves(16, p)


def test_denoise_tasks_draw_every_noise_kind_in_range() -> None:
    fam = create_family("natural")
    noises = [fam.sample("train", i, objective="denoise", n_support=2, n_query=1).noise
              for i in range(60)]
    kinds = {n.kind for n in noises}
    assert kinds == {"gaussian", "poisson-gaussian", "salt-pepper"}
    for n in noises:
        if n.kind == "gaussian" or n.kind == "salt-pepper":
            assert 0.02 <= n.level <= 0.2
        else:
            assert isinstance(n, PoissonGaussianNoise) and 0.002 <= n.gain <= 0.04
    only = create_family("natural", noise_kinds=["poisson-gaussian"])
    assert only.sample("val", 0, objective="denoise").noise.kind == "poisson-gaussian"
    with pytest.raises(DataError, match="noise_kinds"):
        create_family("natural", noise_kinds=["speckle"])


def test_salt_and_pepper_fraction() -> None:
    x = np.full((200, 32 * 32), 0.5, np.float32)
    y = Noise("salt-pepper", 0.1).apply(x, np.random.default_rng(0), bounds=(0.0, 1.0))
    hit = y != 0.5
    assert abs(float(hit.mean()) - 0.1) < 0.005
    assert set(np.unique(y[hit])) == {0.0, 1.0}
    assert abs(float((y[hit] == 1.0).mean()) - 0.5) < 0.02


def test_gaussian_sigma() -> None:
    x = np.full((100, 1024), 0.5, np.float32)
    y = Noise("gaussian", 0.07).apply(x, np.random.default_rng(0))
    assert abs(float((y - x).std()) - 0.07) < 0.002


def test_poisson_gaussian_variance_grows_with_intensity() -> None:
    noise = PoissonGaussianNoise(level=0.02, gain=0.01)
    rng = np.random.default_rng(0)
    var = []
    for level in (0.1, 0.5, 0.9):
        x = np.full((100, 1000), level, np.float32)
        y = noise.apply(x, rng)
        assert abs(float(y.mean()) - level) < 0.003  # unbiased
        var.append(float(y.var()))
        assert abs(var[-1] - (0.01 * level + 0.02 ** 2)) < 0.05 * var[-1]
    assert var[0] < var[1] < var[2]
    assert str(noise) == "poisson-gaussian:0.02,gain=0.01"
    with pytest.raises(DataError):
        PoissonGaussianNoise(level=0.02, gain=0.0)


def test_poisson_gaussian_task_goes_through_make_batch() -> None:
    torch = pytest.importorskip("torch")
    from metaae_edge.meta.inner import make_batch
    fam = create_family("natural", noise_kinds=["poisson-gaussian"], resolution=24)
    t = fam.sample("train", 1, objective="denoise", n_support=8, n_query=4)
    b = make_batch(t, seed=0)
    assert tuple(b.support_in.shape) == (8, 1, 24, 24)
    assert not torch.equal(b.support_in, b.support_target)


def test_anomaly_tasks_have_labels() -> None:
    t = create_family("natural").sample("test", 0, objective="anomaly", n_support=8, n_query=20)
    assert t.query_labels is not None and 0 < t.query_labels.sum() < 20
    assert len(t.info["anomaly_kind"]) == 20
