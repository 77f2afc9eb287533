"""numpy-only checks and coercions of user arrays, shared by every IO contract.

Two flavours: the Runtime's (:class:`~metaae_edge.errors.InputError`, one sample or a
batch, fast no-copy paths live in the contracts) and batch data handed to the exporters and
calibration (:class:`~metaae_edge.errors.DataError`, images may come flattened).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError, InputError

_F32 = np.dtype(np.float32)  # builtin dtypes are singletons: ``is`` is the cheap test

__all__ = ["as_vectors", "check_image_batch", "check_reference_images",
           "check_reference_vectors", "check_vector_batch", "coerce_images",
           "coerce_vectors", "fixed_size_error", "locate_nonfinite", "numeric_array",
           "require_finite"]


def locate_nonfinite(arr: np.ndarray) -> str | None:
    """Where the first NaN / Inf of ``arr`` is, in words (None: all finite).

    ``row r, column c`` for (batch, features) arrays; ``image n, channel c, pixel (y, x)``
    for NCHW image batches.
    """
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    kind = "NaN" if np.isnan(arr[idx]) else "Inf"
    if arr.ndim == 4:
        n, c, y, x = idx
        return f"{kind} at image {n}, channel {c}, pixel (y={y}, x={x})"
    if arr.ndim == 2:
        return f"{kind} at row {idx[0]}, column {idx[1]}"
    return f"{kind} at index {idx}"


def numeric_array(x: object, expected: str, how: str) -> np.ndarray:
    """``x`` as a real-numeric ndarray (not yet float32), or a one-line :class:`InputError`
    that starts with ``expected`` (``how``: what to pass instead of a non-array)."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{expected}; could not make an array of the input ({exc}); "
                             f"{how}") from None
    kind = arr.dtype.kind
    if kind in "USO":
        name = "strings" if kind in "US" else "Python objects"
        raise InputError(f"{expected}; got {name} (dtype {arr.dtype}); convert the values "
                         "to numbers first")
    if kind not in "biuf":  # complex, datetime, void...
        raise InputError(f"{expected}; got dtype {arr.dtype}, which cannot be cast safely")
    return arr


def coerce_vectors(x: object, width: int, what: str, hint: str) -> np.ndarray:
    """Slow path: turn anything array-like into C-contiguous float32 (batch, width)."""
    expected = f"expected (batch, {width}) float32 {what}"
    arr = numeric_array(x, expected, "pass an ndarray or a list of equal-length rows")
    if arr.size == 0:
        raise InputError(f"{expected}; got an empty batch (shape {arr.shape}); pass at "
                         "least one sample")
    shape = arr.shape
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)  # one sample
    elif arr.ndim != 2:
        raise InputError(f"{expected}; got a {arr.ndim}-D array of shape {shape}")
    if arr.shape[1] != width:
        one = " (a 1-D input is one sample)" if len(shape) == 1 else ""
        raise InputError(f"{expected}; got {shape}{one}. {hint}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_vectors(x: object, width: int, what: str, hint: str) -> np.ndarray:
    """``x`` as C-contiguous float32 (batch, width): itself when it already is one."""
    if (type(x) is np.ndarray and x.dtype is _F32 and x.ndim == 2 and x.shape[1] == width
            and x.shape[0] and x.flags.c_contiguous):
        return x  # fast path: no copy
    return coerce_vectors(x, width, what, hint)


def fixed_size_error(fixed: tuple[int, int], got: tuple[int, ...]) -> InputError:
    """The one-line error for an image of the wrong size given to a fixed-resolution
    (dense-bottleneck) bundle, whose graphs accept exactly ``fixed`` = (H, W)."""
    h, w = fixed
    return InputError(f"this bundle runs at {h}x{w} only (dense code); got {got[0]}x{got[1]}: "
                      f"resize or crop the images to {h}x{w}")


def coerce_images(x: object, channels: int, multiple: int, what: str = "images",
                  hint: str = "") -> np.ndarray:
    """Turn array-like images into a C-contiguous float32 (batch, C, H, W) array.

    Accepts (N, C, H, W); (N, H, W) or a single (H, W) image when ``channels == 1``; a
    single (C, H, W) image. H and W must be positive multiples of ``multiple`` (use 1 to
    accept any size, e.g. for latent codes).

    Raises:
        InputError: one line saying what was expected, what was found and how to fix it.
    """
    sizes = "H and W" if multiple == 1 else f"H and W multiples of {multiple}"
    expected = f"expected {what} (batch, {channels}, H, W) float32 with {sizes}"
    arr = numeric_array(x, expected, "pass an ndarray")
    if arr.size == 0:
        raise InputError(f"{expected}; got an empty input (shape {arr.shape}); pass at least "
                         "one image")
    shape = arr.shape
    if arr.ndim == 2 and channels == 1:
        arr = arr[None, None]  # one grayscale image (H, W)
    elif arr.ndim == 3 and channels == 1:
        arr = arr[:, None]  # (N, H, W) grayscale batch; (1, H, W) is one image either way
    elif arr.ndim == 3 and shape[0] == channels:
        arr = arr[None]  # one (C, H, W) image
    elif arr.ndim != 4:
        raise InputError(f"{expected}; got a {arr.ndim}-D array of shape {shape}. {hint}")
    if arr.shape[1] != channels:
        last = ("; it looks channels-last: use x.transpose(0, 3, 1, 2)"
                if arr.ndim == 4 and arr.shape[-1] == channels else "")
        raise InputError(f"{expected}; got shape {shape} with {arr.shape[1]} channel(s){last}. "
                         f"{hint}")
    h, w = arr.shape[2], arr.shape[3]
    if h % multiple or w % multiple:
        fix_h, fix_w = max(multiple, h // multiple * multiple), max(multiple,
                                                                   w // multiple * multiple)
        raise InputError(f"{expected}; got {h}x{w} (shape {shape}): height and width must be "
                         f"multiples of {multiple}; crop or pad the images, e.g. to "
                         f"{fix_h}x{fix_w}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def require_finite(arr: np.ndarray, what: str) -> np.ndarray:
    """``arr`` as C-contiguous float32, or a :class:`DataError` if it holds NaN / Inf."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} contains NaN/Inf; remove or impute them first")
    return arr


def check_vector_batch(data: object, width: int | None, what: str) -> np.ndarray:
    """Validate raw samples: a finite, non-empty numeric (N, D) array -> float32 C-order."""
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "biuf":
        raise DataError(f"{what} must be a non-empty numeric (samples, features) array, got "
                        f"shape {arr.shape} dtype {arr.dtype}")
    if width is not None and arr.shape[1] != width:
        raise DataError(f"{what} has {arr.shape[1]} features, the bundle expects {width}")
    return require_finite(arr, what)


def check_image_batch(data: object, image_shape: tuple[int, int, int], multiple: int,
                      what: str, fixed_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Validate raw images -> finite float32 (N, C, H, W), C-order.

    Accepts (N, C, H, W) with H, W multiples of ``multiple``, (N, H, W) when C is 1, or
    samples flattened at the adapted resolution (N, C*H*W) as image tasks store them.
    With ``fixed_hw`` (graphs static in H and W) the images must be exactly that size.
    """
    c, h, w = image_shape
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        raise DataError(f"{what} must be non-empty numeric images, got shape {arr.shape} "
                        f"dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == c * h * w:
        arr = arr.reshape(len(arr), c, h, w)
    elif arr.ndim == 3 and c == 1:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] != c or arr.shape[2] % multiple or arr.shape[3] % multiple:
        raise DataError(f"{what} must be images (N, {c}, H, W) with H and W multiples of "
                        f"{multiple}, or flattened (N, {c * h * w}); got shape {arr.shape}")
    if fixed_hw is not None and tuple(arr.shape[2:]) != tuple(fixed_hw):
        fh, fw = fixed_hw
        raise DataError(f"{what} must be {fh}x{fw} images (N, {c}, {fh}, {fw}): this bundle runs "
                        f"at {fh}x{fw} only (dense code); got {arr.shape[2]}x{arr.shape[3]}")
    return require_finite(arr, what)


def _reference_array(reference: object) -> np.ndarray:
    ref = np.asarray(reference)
    if ref.size == 0 or ref.dtype.kind not in "biuf":
        raise DataError(f"parity reference must be a non-empty numeric array, got shape "
                        f"{ref.shape} dtype {ref.dtype}")
    return ref


def _finite_reference(ref: np.ndarray) -> np.ndarray:
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    if not np.all(np.isfinite(ref)):
        raise DataError("parity reference contains NaN/Inf")
    return ref


def check_reference_vectors(reference: object, dim: int) -> np.ndarray:
    """Parity / reference samples of a vector model -> finite float32 (N, ``dim``)."""
    ref = _reference_array(reference)
    if ref.ndim != 2 or ref.shape[1] != dim:
        raise DataError(f"parity reference must be a non-empty numeric (samples, {dim}) "
                        f"array, got shape {ref.shape} dtype {ref.dtype}")
    return _finite_reference(ref)


def check_reference_images(reference: object, image_shape: tuple[int, int, int], multiple: int,
                           fixed_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Parity / reference images -> finite float32 (N, C, H, W): H, W multiples of
    ``multiple`` (exactly ``fixed_hw`` if given), or samples flattened at ``image_shape``."""
    ref = _reference_array(reference)
    c, h, w = image_shape
    if ref.ndim == 2 and ref.shape[1] == c * h * w:
        ref = ref.reshape(len(ref), c, h, w)
    if ref.ndim != 4 or ref.shape[1] != c or ref.shape[2] % multiple or ref.shape[3] % multiple:
        raise DataError(f"parity reference must be images (samples, {c}, H, W) with H and "
                        f"W multiples of {multiple}, or flattened samples (samples, "
                        f"{c * h * w}); got shape {ref.shape}")
    if fixed_hw is not None and ref.shape[2:] != tuple(fixed_hw):
        fh, fw = fixed_hw
        raise DataError(f"parity reference must be images (samples, {c}, {fh}, {fw}): this "
                        f"architecture runs at {fh}x{fw} only (dense code); got shape "
                        f"{ref.shape}")
    return _finite_reference(ref)
