"""Classical image metrics and baselines: PSNR, SSIM, JPEG at a budget, PCA codec, denoisers."""

import numpy as np
import pytest

from metaae_edge.errors import DataError
from metaae_edge.evaluate.image_metrics import (
    DEFAULT_MEDIAN_SIZES,
    DEFAULT_SIGMAS,
    PCACodec,
    best_classical_denoiser,
    gaussian_denoiser,
    jpeg_at_bytes,
    jpeg_bytes_at_quality,
    jpeg_header_bytes,
    median_denoiser,
    psnr,
    ssim,
    ssim_window_size,
)


def smooth_images(n: int, size: int = 32, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Low-frequency sinusoid images in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, channels, size, size), np.float32)
    for i in range(n):
        for c in range(channels):
            a, b = rng.uniform(0.3, 1.5, 2)
            ph = rng.uniform(0, 2 * np.pi)
            out[i, c] = 0.5 + 0.4 * np.sin(2 * np.pi * (a * xx + b * yy) + ph)
    return out


# ------------------------------------------------------------------------------------ PSNR


def test_psnr_known_mse_and_cap():
    t = smooth_images(3, 8)
    p = t + 0.1  # MSE 0.01 exactly -> 20 dB
    db = psnr(p, t)
    assert db.shape == (3,)
    np.testing.assert_allclose(db, 20.0, atol=1e-4)
    np.testing.assert_allclose(psnr(p * 255, t * 255, data_range=255.0), 20.0, atol=1e-4)
    same = psnr(t, t)
    assert np.all(np.isfinite(same)) and np.all(same == 100.0)
    # per image: only the second image is perturbed
    p2 = t.copy()
    p2[1] += 0.01
    db2 = psnr(p2, t)
    assert db2[0] == 100.0 and db2[2] == 100.0
    np.testing.assert_allclose(db2[1], 40.0, atol=1e-3)


def test_shape_errors():
    with pytest.raises(DataError, match="same shape"):
        psnr(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 7)))
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


# ------------------------------------------------------------------------------------ SSIM


def _ssim_reference(x: np.ndarray, y: np.ndarray, win: int, sigma: float = 1.5,
                    data_range: float = 1.0) -> float:
    """Straight-from-the-paper SSIM of one 2D image pair, explicit loops over valid windows."""
    r = np.arange(win) - (win - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    w2 = np.outer(g, g)
    w2 /= w2.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            px, py = x[i:i + win, j:j + win], y[i:i + win, j:j + win]
            mx, my = (w2 * px).sum(), (w2 * py).sum()
            vx = (w2 * (px - mx) ** 2).sum()
            vy = (w2 * (py - my) ** 2).sum()
            cxy = (w2 * (px - mx) * (py - my)).sum()
            vals.append((2 * mx * my + c1) * (2 * cxy + c2)
                        / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_window_size():
    assert ssim_window_size(32, 32) == 7
    assert ssim_window_size(8, 8) == 7
    assert ssim_window_size(6, 32) == 5
    assert ssim_window_size(4, 4) == 3
    assert ssim_window_size(2, 2) == 1
    assert ssim_window_size(32, 32, win_size=11) == 11


def test_ssim_identity_and_symmetry():
    rng = np.random.default_rng(1)
    for shape in [(4, 1, 8, 8), (3, 3, 32, 32), (2, 1, 4, 4), (2, 1, 2, 2)]:
        x = rng.uniform(0, 1, shape).astype(np.float32)
        y = np.clip(x + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
        s_xx = ssim(x, x)
        assert s_xx.shape == (shape[0],)
        np.testing.assert_allclose(s_xx, 1.0, atol=1e-12)
        s_xy = ssim(x, y)
        np.testing.assert_allclose(s_xy, ssim(y, x), atol=1e-12)
        assert np.all(s_xy < 1.0)


def test_ssim_matches_paper_reference():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (2, 1, 8, 8))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    ours = ssim(x, y)
    ref = [_ssim_reference(x[i, 0], y[i, 0], win=7) for i in range(2)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    x = rng.uniform(0, 1, (1, 1, 12, 10))
    y = x**2
    np.testing.assert_allclose(ssim(x, y)[0], _ssim_reference(x[0, 0], y[0, 0], win=7),
                               rtol=1e-10)


def test_ssim_hand_computed_constant_images():
    # Constant images: variances and covariance vanish, so SSIM = (2ab + C1)/(a^2 + b^2 + C1).
    a, b = 0.2, 0.4
    x = np.full((1, 1, 8, 8), a)
    y = np.full((1, 1, 8, 8), b)
    expected = (2 * 0.08 + 1e-4) / (0.04 + 0.16 + 1e-4)  # = 0.1601 / 0.2001
    np.testing.assert_allclose(ssim(x, y), expected, rtol=1e-9)
    np.testing.assert_allclose(ssim(x, y)[0], 0.80009995, atol=1e-8)
    # win_size 1: the per-pixel luminance term only
    p = np.array([[[[0.0, 1.0], [0.5, 0.25]]]])
    q = np.array([[[[0.5, 1.0], [0.5, 0.75]]]])
    c1 = 1e-4
    per_px = (2 * p * q + c1) / (p**2 + q**2 + c1)
    np.testing.assert_allclose(ssim(p, q, win_size=1), per_px.mean(), rtol=1e-12)


def test_ssim_decreases_with_noise_and_averages_channels():
    x = smooth_images(6, 32, seed=3).astype(np.float64)
    noise = np.random.default_rng(4).normal(0, 1, x.shape)
    levels = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]
    scores = np.stack([ssim(x + s * noise, x) for s in levels])  # (levels, N)
    assert np.all(np.diff(scores, axis=0) < 0)
    # 8x8 works too, and on average it also falls with noise
    x8 = x[:, :, :8, :8]
    s8 = [ssim(x8 + s * noise[:, :, :8, :8], x8).mean() for s in levels]
    assert np.all(np.diff(s8) < 0)
    # channels are averaged
    rgb = smooth_images(2, 16, channels=3, seed=5)
    noisy = rgb + 0.1 * np.random.default_rng(6).normal(0, 1, rgb.shape)
    per_c = np.stack([ssim(noisy[:, c:c + 1], rgb[:, c:c + 1]) for c in range(3)], axis=1)
    np.testing.assert_allclose(ssim(noisy, rgb), per_c.mean(axis=1), rtol=1e-12)


# ------------------------------------------------------------------------------------ JPEG


def test_jpeg_at_bytes_respects_budget_and_maximises_quality():
    imgs = smooth_images(4, 32, seed=7)
    budget = 420
    dec, nbytes, q = jpeg_at_bytes(imgs, budget)
    assert dec.shape == imgs.shape and dec.dtype == np.float32
    assert nbytes.shape == q.shape == (4,)
    assert np.all(nbytes <= budget) and np.all((q >= 1) & (q <= 95))
    # the reported size is the real size at that quality, and one notch more is over budget
    _, real = jpeg_bytes_at_quality(imgs, q)
    np.testing.assert_array_equal(real, nbytes)
    _, above = jpeg_bytes_at_quality(imgs, np.minimum(q + 1, 100))
    assert np.all((above > budget) | (q == 95))


def test_jpeg_more_bytes_higher_psnr():
    imgs = smooth_images(3, 32, seed=8)
    means = []
    for budget in (380, 430, 520, 700):  # quality 1 costs <= 367 here
        dec, nbytes, _ = jpeg_at_bytes(imgs, budget)
        assert np.all(nbytes <= budget)
        means.append(psnr(dec, imgs).mean())
    assert np.all(np.diff(means) > 0), means


def test_jpeg_over_budget_reports_real_size():
    imgs = smooth_images(2, 32, seed=9)
    dec, nbytes, q = jpeg_at_bytes(imgs, 50)  # less than the header alone
    assert np.all(q == 1)
    assert np.all(nbytes > 50)
    np.testing.assert_array_equal(nbytes, jpeg_bytes_at_quality(imgs, 1)[1])
    assert np.all(np.isfinite(dec))


def test_jpeg_header_free_payload():
    imgs = smooth_images(3, 32, seed=10)
    _, total = jpeg_bytes_at_quality(imgs, 50)
    _, payload = jpeg_bytes_at_quality(imgs, 50, header_free=True)
    header = jpeg_header_bytes(imgs, 50)
    np.testing.assert_array_equal(payload + header, total)
    assert np.all(header > 150) and np.all(payload > 0)
    assert np.all(header == header[0])  # tables do not depend on content
    # header = the bytes before SOS (FF DA) + the 2-byte EOI (FF D9), checked on the file
    import io

    from PIL import Image

    buf = io.BytesIO()
    u8 = np.round(imgs[0, 0] * 255).astype(np.uint8)
    Image.fromarray(u8).save(buf, format="JPEG", quality=50)
    data = buf.getvalue()
    assert data[-2:] == b"\xff\xd9" and len(data) == total[0]
    assert header[0] == data.index(b"\xff\xda") + 2
    dec, pb, q = jpeg_at_bytes(imgs, 60, header_free=True)
    assert np.all(pb <= 60)
    np.testing.assert_array_equal(pb, jpeg_bytes_at_quality(imgs, q, header_free=True)[1])
    # the payload budget buys more quality than the same number counted with headers
    _, _, q_full = jpeg_at_bytes(imgs, 60 + int(header[0]))
    assert np.all(q >= q_full - 2)


def test_jpeg_rgb_and_bad_channels():
    rgb = smooth_images(2, 16, channels=3, seed=11)
    dec, nbytes, q = jpeg_at_bytes(rgb, 2000)
    assert dec.shape == rgb.shape and np.all(nbytes <= 2000)
    assert np.all(psnr(dec, rgb) > 20)  # 4:2:0 chroma subsampling limits colourful images
    # channel order survives the round trip
    flat = np.empty((1, 3, 16, 16), np.float32)
    flat[0, 0], flat[0, 1], flat[0, 2] = 0.2, 0.5, 0.8
    dec_flat, _ = jpeg_bytes_at_quality(flat, 90)
    np.testing.assert_allclose(dec_flat.mean(axis=(2, 3))[0], [0.2, 0.5, 0.8], atol=0.02)
    with pytest.raises(DataError, match="channels"):
        jpeg_bytes_at_quality(np.zeros((1, 2, 8, 8), np.float32), 50)
    with pytest.raises(DataError, match="quality"):
        jpeg_bytes_at_quality(rgb, 0)


# ------------------------------------------------------------------------------------- PCA


def test_pca_codec_full_rank_near_exact_and_small_k_worse():
    x = smooth_images(300, 8, seed=12).reshape(300, 1, 8, 8)
    x = x + np.random.default_rng(13).normal(0, 0.05, x.shape).astype(np.float32)
    flat = x.reshape(300, -1)
    d = flat.shape[1]
    full = PCACodec.fit(flat, d)
    assert full.k == d and full.bytes_per_image == d
    codes = full.encode(flat)
    assert codes.dtype == np.int8 and codes.shape == (300, d)
    # symmetric per-component scale fitted on the support: every component reaches +-127
    np.testing.assert_array_equal(np.abs(codes.astype(int)).max(axis=0), 127)
    rec = full.decode(codes)
    assert rec.shape == flat.shape and rec.dtype == np.float32
    # orthonormal components: squared error <= sum of (scale/2)^2 from int8 rounding
    bound = np.sum((full.scale / 2) ** 2) / d
    err_full = np.mean((rec - flat) ** 2)
    assert err_full <= bound * 1.001
    assert err_full < 1e-4
    small = PCACodec.fit(flat, 4)
    assert small.bytes_per_image == 4
    err_small = np.mean((small.reconstruct(flat) - flat) ** 2)
    assert err_small > 10 * err_full
    # images in, images out
    img_codec = PCACodec.fit(x, 8)
    assert img_codec.reconstruct(x).shape == x.shape


def test_pca_codec_clips_k_and_saturates():
    x = np.random.default_rng(14).uniform(0, 1, (10, 64))
    codec = PCACodec.fit(x, 50)
    assert codec.k == 10 and codec.bytes_per_image == 10
    far = x[:2] * 100.0  # far outside the support range -> codes saturate, not wrap
    codes = codec.encode(far)
    assert codes.min() >= -127 and codes.max() <= 127
    with pytest.raises(DataError):
        codec.encode(np.zeros((2, 63)))


# -------------------------------------------------------------------------------- denoisers


def test_gaussian_denoiser_improves_psnr_on_gaussian_noise():
    rng = np.random.default_rng(15)
    clean = smooth_images(64, 32, seed=16)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    den = gaussian_denoiser(noisy[:32], clean[:32])
    assert den.name == "gaussian" and den.param in DEFAULT_SIGMAS
    assert len(den.grid) == len(DEFAULT_SIGMAS)
    assert den.support_mse == min(e for _, e in den.grid)
    out = den(noisy[32:])
    assert out.shape == clean[32:].shape
    gain = psnr(out, clean[32:]) - psnr(noisy[32:], clean[32:])
    assert np.all(gain > 3.0), gain


def test_median_beats_gaussian_on_salt_and_pepper():
    rng = np.random.default_rng(17)
    clean = smooth_images(48, 32, seed=18)
    noisy = clean.copy()
    mask = rng.uniform(size=clean.shape)
    noisy[mask < 0.05] = 0.0
    noisy[mask > 0.95] = 1.0
    sup, qry = slice(0, 24), slice(24, 48)
    g = gaussian_denoiser(noisy[sup], clean[sup])
    m = median_denoiser(noisy[sup], clean[sup])
    assert m.param in DEFAULT_MEDIAN_SIZES
    assert m.support_mse < g.support_mse
    assert psnr(m(noisy[qry]), clean[qry]).mean() > psnr(g(noisy[qry]), clean[qry]).mean()
    best = best_classical_denoiser(noisy[sup], clean[sup])
    assert (best.name, best.param) == ("median", m.param)
    np.testing.assert_array_equal(best.fn(noisy[qry]), m(noisy[qry]))


@pytest.mark.parametrize("make", [gaussian_denoiser, median_denoiser])
def test_denoisers_filter_each_image_and_channel_alone(make):
    rng = np.random.default_rng(19)
    clean = smooth_images(4, 16, channels=2, seed=20)
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    den = make(noisy, clean)
    batch = den(noisy)
    np.testing.assert_allclose(den(noisy[2:3]), batch[2:3], atol=1e-6)  # no batch mixing
    mixed = noisy.copy()
    mixed[:, 1] = 0.0  # a zero channel stays zero whatever its neighbour holds
    np.testing.assert_allclose(den(mixed)[:, 1], 0.0, atol=1e-7)
    np.testing.assert_allclose(den(mixed)[:, 0], batch[:, 0], atol=1e-6)
    with pytest.raises(DataError):
        make(noisy, clean[:3])
