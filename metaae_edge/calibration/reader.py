"""A calibration data reader over raw task data (onnxruntime's CalibrationDataReader protocol)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..contracts.arrays import check_image_batch, check_vector_batch, require_finite
from ..errors import DataError

__all__ = ["CalibrationReader", "check_images", "check_raw"]


def check_images(data: Any, image_shape: tuple[int, int, int], multiple: int,
                 what: str = "calibration data",
                 fixed_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Validate raw images for an image bundle -> finite float32 (N, C, H, W), C-order.

    Accepts (N, C, H, W) with H, W multiples of ``multiple``, (N, H, W) when C is 1, or
    samples flattened at the adapted resolution (N, C*H*W) as image tasks store them.
    With ``fixed_hw`` (a dense-bottleneck bundle, whose graphs are static in H and W) the
    images must be exactly that size: calibration and the gate feed them to those graphs.
    A bundle's contract does the same: ``bundle.contract.check_data(data, what)``.
    """
    return check_image_batch(data, image_shape, multiple, what, fixed_hw)


def check_raw(data: Any, width: int | None = None, what: str = "calibration data") -> np.ndarray:
    """Validate raw samples: a finite, non-empty numeric (N, D) array -> float32 C-order.

    Without ``width``, (N, C, H, W) image batches (and latent maps) are accepted too.
    """
    arr = np.asarray(data)
    if width is None and arr.ndim == 4 and arr.size and arr.dtype.kind in "biuf":
        return require_finite(arr, what)
    return check_vector_batch(arr, width, what)


class CalibrationReader:
    """Feeds raw samples to ``onnxruntime.quantization.quantize_static`` in batches.

    Implements the CalibrationDataReader protocol (``get_next`` returns one feed dict or
    None when exhausted; ``rewind`` starts over), so onnxruntime can walk it once per
    calibration pass. The graphs normalise internally, so the data is *raw*.

    Args:
        data: raw samples (N, D), or images / latent maps (N, C, H, W) fed as NCHW.
        input_name: the graph input to feed (``x`` for autoencoder / encoder graphs).
        samples: how many samples to use (drawn without replacement with ``seed``; all
            of them when ``N <= samples``).
        batch_size: samples per feed.
        seed: seeds the draw.
    """

    def __init__(self, data: Any, input_name: str = "x", samples: int = 256,
                 batch_size: int = 64, seed: int = 0):
        arr = check_raw(data)
        if samples < 1 or batch_size < 1:
            raise DataError(f"calibration samples and batch size must be >= 1, got "
                            f"{samples} and {batch_size}")
        if len(arr) > samples:
            idx = np.sort(np.random.default_rng(seed).choice(len(arr), samples, replace=False))
            arr = arr[idx]
        self.data = arr
        self.input_name = input_name
        self.batch_size = int(batch_size)
        self._pos = 0

    def __len__(self) -> int:
        """Number of samples the reader yields per pass."""
        return len(self.data)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next ``{input_name: batch}`` feed, or None at the end of the pass."""
        if self._pos >= len(self.data):
            return None
        batch = self.data[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        """Start the next pass from the first batch."""
        self._pos = 0

    def __iter__(self):
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed
