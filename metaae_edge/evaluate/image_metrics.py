"""Classical image-quality metrics and baselines for the image autoencoders.

What a learned denoising / compression autoencoder on small grayscale (or RGB) images is
compared against: per-image PSNR and SSIM, JPEG at a byte budget, PCA at equal latent
bytes, and Gaussian / median filters tuned on the support set.

Images are arrays shaped ``(N, C, H, W)`` with values in ``[0, data_range]`` (normally
``[0, 1]``); every function returns one value per image. numpy only at import time; scipy
(filters) and Pillow (JPEG) are imported inside the functions that need them. No torch.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..optional import require

__all__ = [
    "DEFAULT_MEDIAN_SIZES",
    "DEFAULT_SIGMAS",
    "Denoiser",
    "PCACodec",
    "best_classical_denoiser",
    "gaussian_denoiser",
    "jpeg_at_bytes",
    "jpeg_bytes_at_quality",
    "jpeg_header_bytes",
    "median_denoiser",
    "psnr",
    "ssim",
    "ssim_window_size",
]

#: PSNR reported for identical images (MSE 0), instead of +inf.
PSNR_CAP_DB = 100.0
#: Gaussian-filter sigmas (pixels) tried by :func:`gaussian_denoiser`.
DEFAULT_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.round(np.arange(0.3, 2.01, 0.1), 2))
#: Median-filter window sizes tried by :func:`median_denoiser`.
DEFAULT_MEDIAN_SIZES: tuple[int, ...] = (2, 3, 5)


def _as_images(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise DataError(f"{name}: expected images shaped (N, C, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{name}: expected at least one image, got an empty batch")
    return arr


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_images(pred, "pred").astype(np.float64)
    t = _as_images(target, "target").astype(np.float64)
    if p.shape != t.shape:
        raise DataError(f"pred and target must have the same shape, got {p.shape} vs {t.shape}")
    return p, t


# ---------------------------------------------------------------------------------- metrics


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Per-image PSNR in dB: ``10 log10(data_range^2 / MSE)``, MSE over (C, H, W).

    Identical images (MSE 0) report :data:`PSNR_CAP_DB` (100 dB), and no value exceeds it,
    so means over images stay finite.

    Returns:
        float64 array shaped (N,).
    """
    p, t = _pair(pred, target)
    err = np.mean((p - t) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(float(data_range) ** 2 / err)
    return np.minimum(db, PSNR_CAP_DB)


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(r**2) / (2.0 * sigma**2))
    return w / w.sum()


def ssim_window_size(height: int, width: int, win_size: int = 7) -> int:
    """The window SSIM uses: ``win_size``, shrunk to the largest odd size fitting the image."""
    size = min(int(win_size), int(height), int(width))
    return max(1, size if size % 2 == 1 else size - 1)


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0, win_size: int = 7,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) with a Gaussian window, averaged over channels.

    Local means, variances and the covariance are Gaussian-weighted (``sigma`` 1.5, the
    window truncated to ``win_size`` taps and renormalised); variances are the biased
    (weighted) ones of the paper, ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``. The SSIM map is
    **'valid'-style**: only windows lying entirely inside the image are averaged (as in the
    reference MATLAB code's ``filter2(..., 'valid')``), which is computed as a separable
    ``scipy.ndimage.correlate1d`` over H and W followed by cropping ``win_size // 2``
    pixels from each border (so the boundary mode never matters). ``win_size`` is shrunk to
    the largest odd size that fits (an 8x8 image keeps 7 and averages a 2x2 map; a 4x4
    image uses 3). Each image and channel is filtered independently.

    Returns:
        float64 array shaped (N,): mean SSIM over the valid map and the channels.
    """
    from scipy.ndimage import correlate1d

    x, y = _pair(pred, target)
    size = ssim_window_size(x.shape[2], x.shape[3], win_size)
    w = _gaussian_window(size, sigma)
    pad = size // 2

    def local_mean(a: np.ndarray) -> np.ndarray:
        a = correlate1d(a, w, axis=2, mode="reflect")
        a = correlate1d(a, w, axis=3, mode="reflect")
        return a[:, :, pad:a.shape[2] - pad, pad:a.shape[3] - pad]

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return np.mean(num / den, axis=(1, 2, 3))


# ------------------------------------------------------------------------------------- JPEG


def _pil():
    return require("PIL.Image", "pillow", package="Pillow", needed_for="the JPEG baseline")


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8 for Pillow."""
    c = img.shape[0]
    if c not in (1, 3):
        raise DataError(f"JPEG needs 1 (grayscale) or 3 (RGB) channels, got {c}")
    u8 = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return u8[0] if c == 1 else np.ascontiguousarray(u8.transpose(1, 2, 0))


def _encode(u8: np.ndarray, quality: int, optimize: bool) -> bytes:
    buf = io.BytesIO()
    _pil().fromarray(u8).save(buf, format="JPEG", quality=int(quality), optimize=optimize)
    return buf.getvalue()


def _decode(data: bytes, channels: int) -> np.ndarray:
    img = _pil().open(io.BytesIO(data))
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _header_size(data: bytes) -> int:
    """Bytes before the SOS marker (0xFFDA) plus the 2-byte EOI: everything but the payload.

    Walks the marker segments (each ``FF xx`` + 2-byte big-endian length) rather than
    searching for ``FF DA``, which may also occur inside a quantisation table.
    """
    i = 2  # after SOI (FF D8)
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"malformed JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:
            return i + 2
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    raise ValueError("malformed JPEG: no SOS marker")


def _size(data: bytes, header_free: bool) -> int:
    return len(data) - _header_size(data) if header_free else len(data)


def _qualities(quality: int | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    q = np.broadcast_to(np.asarray(quality, dtype=np.int64), (n,))
    if np.any(q < 1) or np.any(q > 100):
        raise DataError(f"JPEG quality must lie in 1..100, got {np.unique(q).tolist()}")
    return q


def jpeg_bytes_at_quality(images: np.ndarray, quality: int | Sequence[int] | np.ndarray,
                          header_free: bool = False,
                          optimize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Encode each image as JPEG at a fixed quality (one int, or one per image).

    Args:
        images: (N, C, H, W) in [0, 1], C = 1 (mode 'L') or 3 ('RGB', Pillow's default
            4:2:0 chroma subsampling). Values are clipped and rounded to 8 bits first.
        quality: Pillow quality 1..100, scalar or shaped (N,).
        header_free: count only the entropy-coded payload (see :func:`jpeg_at_bytes`).
        optimize: Pillow's optimised Huffman tables (smaller files, slower).

    Returns:
        ``(decoded (N, C, H, W) float32, bytes_per_image (N,) int64)``.
    """
    imgs = _as_images(images, "images")
    q = _qualities(quality, imgs.shape[0])
    dec = np.empty(imgs.shape, np.float32)
    nbytes = np.empty(imgs.shape[0], np.int64)
    for i, img in enumerate(imgs):
        data = _encode(_to_uint8(img), int(q[i]), optimize)
        dec[i] = _decode(data, img.shape[0])
        nbytes[i] = _size(data, header_free)
    return dec, nbytes


def jpeg_header_bytes(images: np.ndarray, quality: int | Sequence[int] | np.ndarray,
                      optimize: bool = False) -> np.ndarray:
    """Per-image JPEG header size (bytes before SOS + 2-byte EOI) at ``quality``, (N,) int64.

    ``total = payload + header``: pass the qualities :func:`jpeg_at_bytes` chose with
    ``header_free=True`` to report the full file size beside the payload.
    """
    imgs = _as_images(images, "images")
    q = _qualities(quality, imgs.shape[0])
    return np.asarray([_header_size(_encode(_to_uint8(img), int(q[i]), optimize))
                       for i, img in enumerate(imgs)], dtype=np.int64)


def jpeg_at_bytes(images: np.ndarray, max_bytes: int, header_free: bool = False,
                  optimize: bool = False,
                  q_max: int = 95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """JPEG at a byte budget: per image, the highest quality whose size is <= ``max_bytes``.

    Quality is binary-searched over 1..``q_max`` (95, Pillow's recommended maximum). JPEG
    size is almost, but not strictly, monotone in quality, so the search may stop a notch
    below the best feasible quality; the chosen encoding always respects the budget unless
    even quality 1 exceeds it, in which case quality 1 is used and its real (over-budget)
    size is reported: callers must report it as such (``bytes_per_image > max_bytes``).

    Tiny images: a baseline JPEG file carries ~hundreds of bytes of header (SOI, JFIF APP0,
    quantisation and Huffman tables, SOF) independent of content, which dominates an 8x8 or
    32x32 image (Pillow: 320 header bytes for grayscale, 611 for RGB; a smooth 32x32
    grayscale image at quality 50 is ~450 bytes in all, an 8x8 noise image ~360).
    ``header_free=True`` budgets and reports only the entropy-coded payload (file size minus
    the bytes before the SOS marker 0xFFDA and minus the 2-byte EOI), a fair comparison
    against a codec that ships its tables out of band, like a learned decoder. Report both:
    the full size is ``bytes + jpeg_header_bytes(images, quality)``, or
    ``jpeg_bytes_at_quality(images, quality)[1]``.

    Returns:
        ``(decoded (N, C, H, W) float32, bytes_per_image (N,) int64, quality (N,) int64)``.
    """
    imgs = _as_images(images, "images")
    n = imgs.shape[0]
    dec = np.empty(imgs.shape, np.float32)
    nbytes = np.empty(n, np.int64)
    quality = np.empty(n, np.int64)
    for i, img in enumerate(imgs):
        u8 = _to_uint8(img)
        cache: dict[int, bytes] = {}

        def enc(q: int, u8: np.ndarray = u8, cache: dict[int, bytes] = cache) -> bytes:
            if q not in cache:
                cache[q] = _encode(u8, q, optimize)
            return cache[q]

        lo, hi = 1, int(q_max)  # invariant: the answer is in [lo, hi] or is 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _size(enc(mid), header_free) <= max_bytes:
                lo = mid
            else:
                hi = mid - 1
        data = enc(lo)
        dec[i] = _decode(data, img.shape[0])
        nbytes[i] = _size(data, header_free)
        quality[i] = lo
    return dec, nbytes, quality


# -------------------------------------------------------------------------------------- PCA


@dataclass
class PCACodec:
    """PCA with int8 latent codes: the "PCA at equal latent bytes" baseline.

    ``k`` principal components of the support set; each code is quantised with a
    per-component symmetric scale ``max|code| / 127`` fitted on the support codes, so one
    image costs ``k`` bytes. Query codes beyond the support range saturate at +-127.
    """

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), orthonormal rows
    scale: np.ndarray  # (k,)
    shape: tuple[int, ...]  # per-sample shape decode restores
    explained_variance: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @classmethod
    def fit(cls, x: np.ndarray, k: int) -> PCACodec:
        """Fit on support samples ``x`` (N, D), or (N, ...) flattened; k clipped to min(N, D)."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise DataError(f"PCACodec.fit: expected (N, D) samples, got shape {arr.shape}")
        if k < 1:
            raise DataError(f"PCACodec.fit: k must be >= 1, got {k}")
        flat = arr.reshape(arr.shape[0], -1)
        mean = flat.mean(axis=0)
        _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
        k = min(int(k), vt.shape[0])
        comps = vt[:k]
        codes = (flat - mean) @ comps.T
        amax = np.abs(codes).max(axis=0)
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        return cls(mean=mean, components=comps, scale=scale, shape=tuple(arr.shape[1:]),
                   explained_variance=(s[:k] ** 2) / max(flat.shape[0] - 1, 1))

    @property
    def k(self) -> int:
        """Number of components (after clipping)."""
        return int(self.components.shape[0])

    @property
    def bytes_per_image(self) -> int:
        """Latent bytes per image: one int8 per component."""
        return self.k

    def _flat(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        flat = arr.reshape(arr.shape[0], -1)
        if flat.shape[1] != self.mean.shape[0]:
            raise DataError(f"PCACodec: expected {self.mean.shape[0]} features per sample, "
                            f"got {flat.shape[1]}")
        return flat

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Samples (N, D) or (N, ...) -> int8 codes (N, k)."""
        z = (self._flat(x) - self.mean) @ self.components.T / self.scale
        return np.clip(np.round(z), -127, 127).astype(np.int8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int8 codes (N, k) -> float32 samples shaped like the fit input, (N, *shape)."""
        c = np.asarray(codes)
        if c.ndim != 2 or c.shape[1] != self.k:
            raise DataError(f"PCACodec.decode: expected codes (N, {self.k}), got {c.shape}")
        out = (c.astype(np.float64) * self.scale) @ self.components + self.mean
        return out.reshape((c.shape[0], *self.shape)).astype(np.float32)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x))


# -------------------------------------------------------------------------------- denoisers


@dataclass(frozen=True)
class Denoiser:
    """A classical denoiser with its parameter chosen on the support set; callable.

    Attributes:
        name: ``"gaussian"`` or ``"median"``.
        param: the chosen sigma (pixels) or window size.
        fn: images -> denoised images, filtering each image and channel over H, W only.
        support_mse: mean squared error on the support pairs at ``param``.
        grid: every (param, support MSE) tried.
    """

    name: str
    param: float
    fn: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    support_mse: float
    grid: tuple[tuple[float, float], ...] = field(repr=False, default=())

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.fn(images)


def _spatial(ndim: int, value: float | int, lead: float | int) -> tuple:
    """Per-axis filter parameter: ``lead`` (no-op) on batch / channel axes, value on H, W."""
    return (lead,) * (ndim - 2) + (value, value)


def _gaussian_fn(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    def fn(images: np.ndarray) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        x = np.asarray(images, dtype=np.float32)
        return gaussian_filter(x, sigma=_spatial(x.ndim, float(sigma), 0.0), mode="reflect")

    return fn


def _median_fn(size: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(images: np.ndarray) -> np.ndarray:
        from scipy.ndimage import median_filter

        x = np.asarray(images, dtype=np.float32)
        return median_filter(x, size=_spatial(x.ndim, int(size), 1), mode="reflect")

    return fn


def _tune(name: str, make: Callable, grid: Sequence, noisy: np.ndarray,
          clean: np.ndarray) -> Denoiser:
    noisy_a = np.asarray(noisy, np.float32)
    clean_a = np.asarray(clean, np.float64)
    if noisy_a.shape != clean_a.shape or noisy_a.ndim < 2 or noisy_a.size == 0:
        raise DataError(f"{name} denoiser: support noisy and clean must be non-empty and "
                        f"equally shaped, got {noisy_a.shape} vs {clean_a.shape}")
    if len(grid) == 0:
        raise DataError(f"{name} denoiser: empty parameter grid")
    tried = []
    for p in grid:
        err = float(np.mean((make(p)(noisy_a).astype(np.float64) - clean_a) ** 2))
        tried.append((p, err))
    best, best_err = min(tried, key=lambda t: t[1])  # first (smallest) on ties
    return Denoiser(name=name, param=best, fn=make(best), support_mse=best_err,
                    grid=tuple(tried))


def gaussian_denoiser(support_noisy: np.ndarray, support_clean: np.ndarray,
                      sigmas: Sequence[float] = DEFAULT_SIGMAS) -> Denoiser:
    """Gaussian blur (reflect border) with sigma chosen from ``sigmas`` by support MSE."""
    return _tune("gaussian", _gaussian_fn, [float(s) for s in sigmas],
                 support_noisy, support_clean)


def median_denoiser(support_noisy: np.ndarray, support_clean: np.ndarray,
                    sizes: Sequence[int] = DEFAULT_MEDIAN_SIZES) -> Denoiser:
    """Median filter (reflect border) with window size chosen from ``sizes`` by support MSE."""
    return _tune("median", _median_fn, [int(s) for s in sizes], support_noisy, support_clean)


def best_classical_denoiser(support_noisy: np.ndarray, support_clean: np.ndarray,
                            sigmas: Sequence[float] = DEFAULT_SIGMAS,
                            sizes: Sequence[int] = DEFAULT_MEDIAN_SIZES) -> Denoiser:
    """The tuned Gaussian or median denoiser, whichever has the lower support MSE.

    The result carries ``name``, ``param`` and ``fn`` (and is itself callable).
    """
    cands = [gaussian_denoiser(support_noisy, support_clean, sigmas),
             median_denoiser(support_noisy, support_clean, sizes)]
    return min(cands, key=lambda d: d.support_mse)
