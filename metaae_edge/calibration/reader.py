"""A calibration data reader over raw task data (onnxruntime's CalibrationDataReader protocol)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["CalibrationReader", "check_raw"]


def check_raw(data: Any, width: int | None = None, what: str = "calibration data") -> np.ndarray:
    """Validate raw samples: a finite, non-empty numeric (N, D) array -> float32 C-order."""
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "biuf":
        raise DataError(f"{what} must be a non-empty numeric (samples, features) array, got "
                        f"shape {arr.shape} dtype {arr.dtype}")
    if width is not None and arr.shape[1] != width:
        raise DataError(f"{what} has {arr.shape[1]} features, the bundle expects {width}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} contains NaN/Inf; remove or impute them first")
    return arr


class CalibrationReader:
    """Feeds raw samples to ``onnxruntime.quantization.quantize_static`` in batches.

    Implements the CalibrationDataReader protocol (``get_next`` returns one feed dict or
    None when exhausted; ``rewind`` starts over), so onnxruntime can walk it once per
    calibration pass. The graphs normalise internally, so the data is *raw*.

    Args:
        data: raw samples (N, D).
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
