"""Tests for the real-photo evaluation (scikit-image's bundled photographs, offline)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from metaae_edge.errors import DataError  # noqa: E402
from metaae_edge.evaluate.photo_baselines import (  # noqa: E402
    fit_classical,
    fit_cnn,
    psnr_mean,
    tune_on_support,
)
from metaae_edge.evaluate.photos import (  # noqa: E402
    PHOTOS,
    fit_methods,
    load_photo,
    make_photo_task,
    photo_markdown,
    score_unit,
)


@pytest.mark.parametrize("name", ["camera", "astronaut", "coffee", "brick", "text"])
def test_photos_load_offline_as_grey_unit_range(name: str, monkeypatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    img = load_photo(name)
    assert img.ndim == 2 and img.dtype == np.float32 and min(img.shape) >= 100
    assert 0.0 <= img.min() < img.max() <= 1.0


def test_bad_photo_names_the_valid_ones() -> None:
    with pytest.raises(DataError, match="camera, astronaut"):
        load_photo("mona-lisa")
    with pytest.raises(DataError, match="differ"):
        make_photo_task("camera", "camera")


def _task():
    return make_photo_task("astronaut", "camera", seed=0, sigma=0.1, n_support=48,
                           n_query=6, size=32, full_crop=64)


@pytest.mark.parametrize("name", ["gaussian", "median", "wavelet", "tv", "nlm"])
def test_classical_baselines_beat_the_noisy_input(name: str) -> None:
    t = _task()
    fitted = fit_classical(name, t.support, t.sigma, seed=0)
    noisy = psnr_mean(t.query_noisy, t.query)
    assert psnr_mean(fitted.apply(t.query_noisy), t.query) > noisy + 1.0


def test_bm3d_beats_the_noisy_input() -> None:
    pytest.importorskip("bm3d")
    t = _task()
    fitted = fit_classical("bm3d", t.support, t.sigma)
    assert fitted.params["support_psnr"] != fitted.params["support_psnr"]  # nan: untuned
    out = fitted.apply(t.query_noisy[:2])
    assert psnr_mean(out, t.query[:2]) > psnr_mean(t.query_noisy[:2], t.query[:2]) + 3.0


def test_tuning_never_reads_the_query() -> None:
    t = _task()
    garbage = make_photo_task("astronaut", "camera", seed=0, sigma=0.1, n_support=48,
                              n_query=6, size=32, full_crop=64)
    rng = np.random.default_rng(5)
    garbage.query = rng.random(garbage.query.shape).astype(np.float32)
    garbage.query_noisy = rng.random(garbage.query.shape).astype(np.float32)
    for name in ("gaussian", "tv", "nlm"):
        assert tune_on_support(name, t.support, t.sigma, 0) == \
            tune_on_support(name, garbage.support, garbage.sigma, 0)
    methods = ["noisy", "gaussian", "tv"]
    a = score_unit(t, fit_methods(t.support, t.sigma, 0, methods, ours=None))
    b = score_unit(garbage, fit_methods(garbage.support, garbage.sigma, 0, methods,
                                        ours=None))
    assert [r["params"] for r in a] == [r["params"] for r in b]
    assert a[1]["psnr"] != b[1]["psnr"]  # the query did change


def test_cnn_respects_its_step_cap_and_budget() -> None:
    pytest.importorskip("torch")
    t = _task()
    capped = fit_cnn(t.support, t.sigma, seed=0, budget_s=None, max_steps=3)
    assert capped.params["steps"] == 3 and capped.params["params"] == 7265
    assert fit_cnn(t.support, t.sigma, seed=0, budget_s=0.0).params["steps"] == 0
    out = capped.apply(t.full_noisy[None])
    assert out.shape == (1, 64, 64)


def test_unknown_method_and_markdown() -> None:
    t = _task()
    with pytest.raises(DataError, match="unknown method"):
        fit_methods(t.support, t.sigma, 0, ["sharpen"], ours=None)
    rows = []
    for seed in (0, 1):
        u = make_photo_task("coffee", "camera", seed=seed, n_support=16, n_query=2,
                            full_crop=32)
        rows += score_unit(u, fit_methods(u.support, u.sigma, seed, ["noisy", "gaussian"],
                                          ours=None))
    md = photo_markdown(rows)
    assert "| coffee (camera) |" in md and "mean of 1 photos" in md and "**" in md
    assert set(PHOTOS) >= {"camera", "astronaut", "coffee", "chelsea", "rocket"}
