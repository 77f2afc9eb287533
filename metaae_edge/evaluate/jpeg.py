"""JPEG at a quality or at a byte budget: the compression baseline of the image AEs.

Images are ``(N, C, H, W)`` in ``[0, 1]`` (C = 1 or 3); Pillow is imported inside the
functions. Re-exported by :mod:`metaae_edge.evaluate.image_metrics`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from ..optional import require

__all__ = ["jpeg_at_bytes", "jpeg_bytes_at_quality", "jpeg_header_bytes"]


def _as_images(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise DataError(f"{name}: expected images shaped (N, C, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{name}: expected at least one image, got an empty batch")
    return arr


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
