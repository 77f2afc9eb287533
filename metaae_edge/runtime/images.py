"""Read and write image batches for the image backbone (torch-free: numpy + lazy Pillow).

Inputs :func:`read_images` accepts:

- a folder of ``.png`` / ``.jpg`` / ``.jpeg`` files, read in sorted name order (other
  files and sub-folders are ignored); all must share one size and one mode;
- a single image file (N = 1);
- an ``.npy`` array of shape ``(N, H, W)`` (C = 1) or ``(N, H, W, C)`` with C in (1, 3)
  (channels last, as images are usually stored); or an ``.npz`` holding one such array
  (the rule of every reader, :func:`~metaae_edge.runtime.readers.npz_key`: the array
  named ``x`` / ``images`` / ``data``, else the only one).

Caps: arrays follow the one reader's size cap; an image above
:func:`~metaae_edge.runtime.readers.max_image_pixels` (40 megapixels;
``METAAE_EDGE_MAX_PIXELS``) is refused in one line from its header, before it is decoded,
and Pillow's decompression-bomb warning or error, a truncated or corrupt file are one-line
:class:`~metaae_edge.errors.DataError` too.

Scaling to [0, 1]: 8-bit data (``uint8`` arrays, 8-bit image files) are divided by 255,
16-bit ones (``uint16``, 16-bit grayscale PNG) by 65535 (``info["bit_depths"]`` records 8 or
16 per file, and :func:`write_images` writes each output back at its input's depth); a
16-bit colour PNG is refused (Pillow would read it at 8 bits); float arrays are taken as
they are (NaN / Inf refused); other integer arrays are accepted when every value lies in
0..255. Image modes: grayscale (``L``, ``1``, ``LA``, 16-bit) gives C = 1, colour (``RGB``,
``RGBA``, ``P``, ``CMYK``, ``YCbCr``) C = 3; an alpha channel is dropped (``info["modes"]`` keeps
each file's Pillow mode, so ``run`` can refuse what it would lose). Every problem is a
:class:`~metaae_edge.errors.DataError` with one line saying what was expected, what was
found and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..fsutil import atomic_path, refuse_special
from .image_decode import _pil, check_pixels, decode_file
from .readers import check_file, load_npy, load_npz

__all__ = [
    "ARRAY_SUFFIXES",
    "IMAGE_SUFFIXES",
    "check_pixels",
    "read_image_batch",
    "read_images",
    "to_nchw",
    "to_uint16",
    "to_uint8",
    "write_images",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES: tuple[str, ...] = (".npy", ".npz")
_WRITE_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}


def _describe(shape: tuple[int, ...]) -> str:
    c, h, w = shape
    return f"{w}x{h} {'grayscale' if c == 1 else 'RGB'}"


def _read_folder(folder: Path) -> tuple[np.ndarray, list[str], list[str], list[int]]:
    named = [p for p in folder.iterdir()
             if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES]
    for p in named:  # an image-named FIFO or device would block or never end
        refuse_special(p, DataError)
    files = sorted(p for p in named if p.is_file())
    if not files:
        raise DataError(
            f"{folder} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images; expected a "
            "folder of image files (or pass an .npy array of shape (N, H, W[, C]))"
        )
    first, mode, depth = decode_file(files[0])
    out = np.empty((len(files), *first.shape), np.float32)
    out[0] = first
    modes, depths = [mode], [depth]
    for i, f in enumerate(files[1:], start=1):
        arr, mode, depth = decode_file(f)
        modes.append(mode)
        depths.append(depth)
        if arr.shape != first.shape:
            raise DataError(
                f"{f} is {_describe(arr.shape)} but {files[0].name} is {_describe(first.shape)}; "
                "every image in a folder must share one size and mode: resize / convert them "
                "or split the folder"
            )
        out[i] = arr
    return out, [f.name for f in files], modes, depths


def _scale_array(raw: np.ndarray, path: Path) -> np.ndarray:
    kind = raw.dtype.kind
    if kind == "u" and raw.dtype.itemsize == 1:
        return raw.astype(np.float32) / 255.0
    if kind == "u" and raw.dtype.itemsize == 2:
        return raw.astype(np.float32) / 65535.0
    if kind == "b":
        return raw.astype(np.float32)
    if kind in "iu":
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise DataError(
                f"{path}: {raw.dtype} pixels range {int(raw.min())}..{int(raw.max())}; expected "
                "uint8 / 0..255 (scaled by 1/255), uint16, or floats in [0, 1]: convert it, "
                "e.g. (x / x.max()).astype(np.float32)"
            )
        return raw.astype(np.float32) / 255.0
    if kind == "f":
        bad = np.argwhere(~np.isfinite(raw))
        if len(bad):
            idx = tuple(int(v) for v in bad[0])
            what = "NaN" if np.isnan(raw[idx]) else "Inf"
            raise DataError(
                f"{path}: image {idx[0]} (0-based) holds {what} at pixel {idx[1:]} "
                f"({len(bad)} non-finite values in all); expected finite pixel values: "
                "fix or drop those images"
            )
        out = raw.astype(np.float32)
        if not np.isfinite(out).all():
            raise DataError(f"{path}: values overflow float32; rescale pixels to [0, 1]")
        return out
    raise DataError(
        f"{path} holds {raw.dtype} values; expected numeric pixels (uint8, uint16 or float): "
        "convert it with x.astype(np.float32)"
    )


def _read_array(path: Path) -> np.ndarray:
    """An image stack from .npy / .npz by the one reader's rules (size cap, never
    unpickled, the ``.npz`` samples rule of :func:`~metaae_edge.runtime.readers.npz_key`)."""
    suffix = check_file(path, DataError, ARRAY_SUFFIXES)
    raw = load_npy(path, DataError) if suffix == ".npy" else load_npz(path, DataError)[0]
    raw = np.asarray(raw)
    if raw.ndim in (3, 4):
        h, w = raw.shape[1:3]
        check_pixels(path, int(w), int(h))
    return to_nchw(raw, path)


def to_nchw(raw: np.ndarray, path: Path | str) -> np.ndarray:
    """An image array ``(N, H, W)`` or ``(N, H, W, C)`` -> scaled float32 ``(N, C, H, W)``.

    ``path`` only names the source in error messages. Scaling as for :func:`read_images`.
    """
    if raw.ndim == 3:
        raw = raw[:, None]
    elif raw.ndim == 4 and raw.shape[-1] in (1, 3):
        raw = raw.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{path}: expected images of shape (N, H, W) or (N, H, W, C) with C 1 or 3, got "
            f"{raw.shape}; for one image add a batch axis: x[None]"
        )
    if min(raw.shape) == 0:
        raise DataError(f"{path} is empty: shape {raw.shape}; expected at least one image")
    return np.ascontiguousarray(_scale_array(raw, path))


def read_images(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read a batch of images as float32 ``(N, C, H, W)`` in [0, 1].

    Args:
        path: A folder of PNG/JPEG files (sorted by name; all of one size and mode), one
            image file, or an ``.npy`` / ``.npz`` array of shape ``(N, H, W)`` or
            ``(N, H, W, C)`` with C in (1, 3). See the module docstring for scaling.

    Returns:
        ``(images, names, info)``: names are file names (folder / file) or
        ``<stem>_<index>`` (arrays); info records ``source``, ``format``, ``n_images``,
        ``channels``, ``height`` and ``width``, and for image files ``modes`` (each
        file's Pillow mode) and ``bit_depths`` (8 or 16 per file).

    Raises:
        DataError: Missing path, no or unreadable images, mixed sizes or modes, a wrong
            array shape or dtype, NaN/Inf.
        BackendUnavailableError: Pillow is needed (image files) but not installed.
    """
    p = Path(path)
    refuse_special(p, DataError)  # before anything opens it: a FIFO would block
    if not p.exists():
        raise DataError(
            f"image path not found: {p}; expected a folder of PNG/JPEG files, an image file "
            "or an .npy array: check the path"
        )
    modes: list[str] | None = None
    depths: list[int] | None = None
    if p.is_dir():
        images, names, modes, depths = _read_folder(p)
        fmt = "folder"
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        arr, mode, depth = decode_file(p)
        images, names, fmt, modes, depths = arr[None], [p.name], "image", [mode], [depth]
    elif p.suffix.lower() in ARRAY_SUFFIXES:
        images = _read_array(p)
        names = [f"{p.stem}_{i:05d}" for i in range(len(images))]
        fmt = p.suffix.lower()[1:]
    else:
        raise DataError(
            f"unsupported image input {p} (suffix {p.suffix or '(none)'!r}); expected a folder, "
            f"a {'/'.join(IMAGE_SUFFIXES)} file or an .npy array of shape (N, H, W[, C])"
        )
    n, c, h, w = images.shape
    info: dict[str, Any] = {"source": str(p), "format": fmt, "n_images": n, "channels": c,
                            "height": h, "width": w}
    if modes is not None:
        info["modes"], info["bit_depths"] = modes, depths
    return images, names, info


def read_image_batch(path: str | os.PathLike[str]) -> np.ndarray:
    """Just the float32 ``(N, C, H, W)`` images of :func:`read_images` (raw samples of an
    image bundle, e.g. ``calibrate --data``)."""
    return read_images(path)[0]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float pixels -> uint8, clipped to [0, 1] and rounded (the inverse of reading / 255)."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(images: np.ndarray) -> np.ndarray:
    """Float pixels -> uint16, clipped to [0, 1] and rounded (the inverse of / 65535)."""
    return np.round(np.clip(np.asarray(images, np.float64), 0.0, 1.0) * 65535.0).astype(
        np.uint16)


def write_images(
    images: np.ndarray,
    out_dir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    fmt: str = "png",
    bit_depths: Sequence[int] | None = None,
) -> list[Path]:
    """Write float images as 8-bit files (grayscale for C = 1, RGB for C = 3), or 16-bit
    grayscale PNG where ``bit_depths`` says 16.

    Args:
        images: ``(N, C, H, W)`` (or ``(N, H, W)``, C = 1) pixel values; clipped to [0, 1].
        out_dir: Folder to write to (created if missing).
        names: One name per image (default ``000000`` ...); a name's suffix is replaced by
            the format's, so names from :func:`read_images` map input to output files.
        fmt: ``png`` (lossless, default) or ``jpeg``.
        bit_depths: 8 or 16 per image (default all 8), e.g. ``info["bit_depths"]`` of
            :func:`read_images`; 16 needs PNG and one channel.

    Returns:
        The written paths, in order.

    Raises:
        DataError: Wrong shape, NaN/Inf, a bad or duplicate name, an unknown format.
    """
    if fmt.lower() not in _WRITE_FORMATS:
        raise DataError(f"image format must be one of {', '.join(_WRITE_FORMATS)}, got {fmt!r}")
    suffix = _WRITE_FORMATS[fmt.lower()]
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or min(x.shape) == 0:
        raise DataError(
            f"images to write must have shape (N, C, H, W) with C 1 or 3, got {x.shape}; "
            "reshape flat samples with x.reshape(-1, *image_shape)"
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"images to write must be numeric, got {x.dtype}")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        raise DataError(f"image {int(bad[0][0])} (0-based) holds NaN/Inf; expected finite "
                        "pixel values to write")
    n = len(x)
    names = [f"{i:06d}" for i in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise DataError(f"got {len(names)} names for {n} images; pass one name per image")
    files = []
    for name in names:
        stem = Path(name).stem if Path(name).suffix.lower() in (
            *IMAGE_SUFFIXES, *ARRAY_SUFFIXES) else name
        if not stem or stem in (".", "..") or "/" in stem or "\\" in stem:
            raise DataError(f"image name {name!r} is not a plain file name; pass names "
                            "without folders")
        files.append(stem + suffix)
    dup = next((f for i, f in enumerate(files) if f in files[:i]), None)
    if dup is not None:
        raise DataError(f"two images would both be written as {dup}; pass unique names")
    depths = [8] * n if bit_depths is None else [int(d) for d in bit_depths]
    if len(depths) != n or any(d not in (8, 16) for d in depths) or (
            16 in depths and (suffix != ".png" or x.shape[1] != 1)):
        raise DataError(f"bit_depths must be 8 or 16 per image (16: grayscale PNG only), got "
                        f"{sorted(set(depths))} for {n} {x.shape[1]}-channel {fmt} images")
    image_mod = _pil()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for img_px, depth, fname in zip(x, depths, files):
        arr = to_uint8(img_px.astype(np.float32)) if depth == 8 else to_uint16(img_px)
        img = (image_mod.fromarray(arr[0]) if arr.shape[0] == 1
               else image_mod.fromarray(arr.transpose(1, 2, 0)))
        target = out / fname
        # A temporary sibling renamed into place: a crash never leaves a truncated image.
        with atomic_path(target) as tmp:
            img.save(tmp, format="PNG" if suffix == ".png" else "JPEG",
                     **({} if suffix == ".png" else {"quality": 95}))
        written.append(target)
    return written
