"""Decoding one image file for :mod:`metaae_edge.runtime.images`, with the guards of the
one reader (torch-free: numpy + lazy Pillow).

An image above :func:`~metaae_edge.runtime.readers.max_image_pixels` is refused from its
PNG header (or Pillow's lazy open, which reads only the header) before any pixel is
decoded; Pillow's ``DecompressionBombWarning`` / ``DecompressionBombError``, truncated and
corrupt files are one-line :class:`~metaae_edge.errors.DataError`.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..optional import require
from .readers import max_image_pixels

__all__ = ["check_pixels", "decode_file"]

_GRAY_MODES = {"L": 255.0, "1": 255.0, "LA": 255.0, "I;16": 65535.0, "I;16B": 65535.0,
               "I;16L": 65535.0, "I": 65535.0}
_COLOR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "RGBX", "LAB", "HSV")


def _pil() -> Any:
    return require("PIL.Image", "metaae-edge[images]", package="Pillow",
                   needed_for="reading and writing image files")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _check_png_depth(path: Path) -> int:
    """8 or 16: the file's bits per sample; a 16-bit colour PNG is refused."""
    header = _png_header(path)
    if header is None or header[0] != 16:
        return 8
    if header[1] != 0:  # 2 RGB, 4 gray + alpha, 6 RGBA
        raise DataError(
            f"{path}: a 16-bit {'grayscale + alpha' if header[1] == 4 else 'colour'} PNG, "
            "which Pillow reads at 8 bits; save it as 16-bit grayscale or 8-bit RGB")
    return 16


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR (before Pillow opens it), or None."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def check_pixels(path: Path | str, width: int, height: int) -> None:
    """Refuse an image above :func:`~metaae_edge.runtime.readers.max_image_pixels` in one
    line, before it is decoded (a small file can hold a huge image)."""
    cap = max_image_pixels()
    if width * height > cap:
        raise DataError(
            f"{path}: a {width}x{height} image ({width * height / 1e6:.1f} megapixels) is "
            f"above the cap of {cap / 1e6:.0f} megapixels per image; downscale or crop it "
            "first, or raise the cap with METAAE_EDGE_MAX_PIXELS")


def _open_checked(image_mod: Any, path: Path) -> Any:
    """Pillow's lazy open (header only) with the pixel cap applied."""
    size = _png_size(path)
    if size is not None:
        check_pixels(path, *size)
    img = image_mod.open(path)
    try:
        check_pixels(path, *img.size)
    except DataError:
        img.close()
        raise
    return img


def decode_file(path: Path) -> tuple[np.ndarray, str, int]:
    """One image file -> (float32 (C, H, W) in [0, 1], Pillow mode, bits per sample)."""
    image_mod = _pil()
    bomb = (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning)
    try:
        depth = _check_png_depth(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_mod.DecompressionBombWarning)
            img = _open_checked(image_mod, path)
        with img:
            img.load()
            mode = img.mode
            if mode in _GRAY_MODES:
                scale = _GRAY_MODES[mode]
                if mode in ("1", "LA"):
                    img = img.convert("L")
                arr = np.asarray(img)
                if mode == "1":
                    scale = 255.0
                if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
                    raise DataError(
                        f"{path}: 32-bit integer pixels outside 0..65535 (found "
                        f"{int(arr.min())}..{int(arr.max())}); save it as 8- or 16-bit PNG"
                    )
                return (arr.astype(np.float32) / scale)[None], mode, depth
            if mode in _COLOR_MODES:
                arr = np.asarray(img.convert("RGB"))
                return (arr.astype(np.float32) / 255.0).transpose(2, 0, 1), mode, 8
    except DataError:
        raise
    except bomb as exc:  # a huge image hidden in a small file, seen by Pillow
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc}); "
                        "downscale the image first") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
            MemoryError) as exc:  # "cannot identify image", truncated or corrupt data
        raise DataError(
            f"could not read {path} as an image ({exc}); expected a PNG or JPEG file: "
            "re-export it or remove it from the folder"
        ) from None
    raise DataError(
        f"{path}: unsupported image mode {mode!r}; expected grayscale (L, 16-bit) or RGB: "
        "convert it, e.g. Image.open(p).convert('RGB').save(p)"
    )
