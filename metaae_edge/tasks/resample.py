"""Helpers of the image families: resolution checks, bicubic axis weights, stroke thickness."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError

MIN_RESOLUTION = 4
MAX_RESOLUTION = 512


def _cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (the one bicubic image resizing uses)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _resample_matrix(n_src: int, n_out: int, scale: float, shift: float) -> np.ndarray:
    """(n_out, n_src) bicubic weights of an axis scaled by ``scale`` about the centre and
    shifted by ``shift`` source pixels; outside the source image counts as 0 (background).
    Downsampling widens the kernel so it does not alias.
    """
    y = (np.arange(n_out) + 0.5) / n_out  # output pixel centres, unit coordinates
    src = ((y - 0.5 - shift / n_src) / scale + 0.5) * n_src - 0.5  # source pixel coordinates
    widen = max(1.0, n_src / (n_out * scale))
    w = _cubic((src[:, None] - np.arange(n_src)[None, :]) / widen) / widen
    return w.astype(np.float32)


def _thicken(x: np.ndarray, t: float) -> np.ndarray:
    """Stroke thickness: blend toward a 4-neighbour dilation (t > 0) or erosion (t < 0)."""
    if t == 0:
        return x
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="constant")
    stack = np.stack([p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2],
                      p[:, 1:-1, 2:]])
    target = stack.max(axis=0) if t > 0 else stack.min(axis=0)
    return x + abs(t) * (target - x)


def _check_resolutions(name: str, values: Sequence[int]) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not (
            MIN_RESOLUTION <= v <= MAX_RESOLUTION
        ):
            raise DataError(
                f"{name} must hold integers in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {v!r}"
            )
        out.append(int(v))
    return tuple(sorted(set(out)))
