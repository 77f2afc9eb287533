"""Byte-exact image codecs for the rate-distortion study (numpy + the standard library).

* :func:`pack` / :func:`unpack`: integer symbols -> bytes with real entropy coding. The
  symbols are zig-zag mapped to unsigned values (one byte each, 255 escapes a 3-byte
  value) and compressed with raw DEFLATE, raw LZMA2 and bzip2; the smallest wins and a
  one-byte tag names it. Every byte of the result is counted.
* :class:`BlockKLT`: a fitted block transform codec. An 8x8 KLT (PCA of 8x8 blocks cut
  from support photos; orthonormal, so squared error in the transform domain is squared
  error in pixels), a uniform quantiser with a dead zone (rounding offset 1/3 for the AC
  coefficients, 1/2 for the first), the first coefficient predicted from the block to its
  left (above for the first column), the coefficients in variance order coded as run /
  level pairs (:func:`pack_run_level`: three streams, each packed as above). Header:
  height, width (2 bytes each), the step (float32), two 3-byte stream lengths and three
  tags: 17 bytes. The basis and mean ship with the decoder
  (like a learned decoder's weights). Not a bundle: it is a numpy codec, not an ONNX graph.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..runtime.codec_pack import (
    pack,
    pack_bytes,
    pack_run_level,
    unpack,
    unpack_bytes,
    unpack_run_level,
)

__all__ = ["BlockKLT", "blocks_of", "from_blocks", "pack", "pack_bytes", "pack_run_level",
           "unpack", "unpack_bytes", "unpack_run_level"]


def blocks_of(img: np.ndarray, b: int) -> np.ndarray:
    """(H, W) with H, W multiples of ``b`` -> (H/b, W/b, b*b) raster blocks."""
    h, w = img.shape
    return img.reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(h // b, w // b, b * b)


def from_blocks(blocks: np.ndarray, b: int) -> np.ndarray:
    """The inverse of :func:`blocks_of`."""
    ny, nx, _ = blocks.shape
    return blocks.reshape(ny, nx, b, b).transpose(0, 2, 1, 3).reshape(ny * b, nx * b)


@dataclass
class BlockKLT:
    """An 8x8 (``block``) KLT codec fitted on support photos; see the module docstring."""

    block: int
    mean: np.ndarray  # (D,)
    basis: np.ndarray  # (D, D), orthonormal columns, by decreasing variance

    @classmethod
    def fit(cls, photos: list[np.ndarray], block: int = 8, stride: int = 4) -> BlockKLT:
        """PCA of every ``block`` x ``block`` window (``stride`` apart) of ``photos``."""
        rows = []
        for p in photos:
            win = np.lib.stride_tricks.sliding_window_view(np.asarray(p, np.float64),
                                                           (block, block))
            rows.append(win[::stride, ::stride].reshape(-1, block * block))
        x = np.concatenate(rows)
        mean = x.mean(axis=0)
        vals, vecs = np.linalg.eigh(np.cov(x - mean, rowvar=False))
        return cls(block, mean, vecs[:, np.argsort(vals)[::-1]])

    def coefficients(self, img: np.ndarray) -> np.ndarray:
        """(H, W) -> (H/b, W/b, D) transform coefficients."""
        h, w = img.shape
        if h % self.block or w % self.block or h >= 1 << 16 or w >= 1 << 16:
            raise DataError(f"BlockKLT: image sides must be multiples of {self.block} below "
                            f"65536, got {h}x{w}")
        return (blocks_of(np.asarray(img, np.float64), self.block) - self.mean) @ self.basis

    def quantise(self, coef: np.ndarray, step: float) -> np.ndarray:
        offset = np.full(coef.shape[-1], 1.0 / 3.0)
        offset[0] = 0.5
        return (np.sign(coef) * np.floor(np.abs(coef) / step + offset)).astype(np.int64)

    def pixels(self, q: np.ndarray, step: float) -> np.ndarray:
        """Quantised coefficients -> the decoded (H, W) image (float, unclipped)."""
        return from_blocks((q * step) @ self.basis.T + self.mean, self.block)

    def encode_coefficients(self, coef: np.ndarray, step: float) -> bytes:
        step = float(np.float32(step))  # what the header carries, so the decoder agrees
        q = self.quantise(coef, step)
        ny, nx, _ = q.shape
        dc = q[..., 0].copy()
        dc[:, 1:] -= q[:, :-1, 0]  # left neighbour
        dc[1:, 0] -= q[:-1, 0, 0]  # first column: the block above
        flat = q.reshape(ny * nx, -1).copy()
        flat[:, 0] = dc.ravel()
        head = struct.pack(">HHf", ny * self.block, nx * self.block, step)
        return head + pack_run_level(flat)

    def encode(self, img: np.ndarray, step: float) -> bytes:
        return self.encode_coefficients(self.coefficients(img), step)

    def decode(self, data: bytes) -> np.ndarray:
        h, w, step = struct.unpack(">HHf", data[:8])
        ny, nx, d = h // self.block, w // self.block, self.block * self.block
        q = unpack_run_level(data[8:], ny * nx, d).reshape(ny, nx, d)
        dc = q[..., 0].copy()
        dc[:, 0] = np.cumsum(dc[:, 0])
        q[..., 0] = np.cumsum(dc, axis=1)
        return self.pixels(q, step)
