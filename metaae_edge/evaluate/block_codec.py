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

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

__all__ = ["BlockKLT", "blocks_of", "from_blocks", "pack", "pack_bytes", "pack_run_level",
           "unpack", "unpack_bytes", "unpack_run_level"]

_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]
_ESC = 255


def _compressors():
    return (
        (lambda b: zlib.compress(b, 9, wbits=-15), lambda b: zlib.decompress(b, wbits=-15)),
        (lambda b: lzma.compress(b, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS),
         lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)),
        (lambda b: bz2.compress(b, 9), bz2.decompress),
    )


def _symbol_bytes(q: np.ndarray) -> bytes:
    v = np.asarray(q, np.int64).ravel()
    u = np.where(v >= 0, 2 * v, -2 * v - 1)
    if u.max(initial=0) >= 1 << 24:
        raise DataError("symbol out of range for the packer (|value| >= 2**23)")
    small = u < _ESC
    if small.all():
        return u.astype(np.uint8).tobytes()
    out = bytearray()
    for value in u.tolist():
        out += bytes((value,)) if value < _ESC else bytes((_ESC,)) + value.to_bytes(3, "big")
    return bytes(out)


def _symbols(raw: bytes, n: int) -> np.ndarray:
    b = np.frombuffer(raw, np.uint8)
    if len(b) == n:
        u = b.astype(np.int64)
    else:
        vals, i = [], 0
        while i < len(b):
            if b[i] == _ESC:
                vals.append(int.from_bytes(bytes(b[i + 1:i + 4]), "big"))
                i += 4
            else:
                vals.append(int(b[i]))
                i += 1
        u = np.asarray(vals, np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


def pack_bytes(raw: bytes) -> bytes:
    """Bytes -> tag byte + the smallest of DEFLATE / LZMA2 / bzip2."""
    coded = [enc(raw) for enc, _ in _compressors()]
    best = int(np.argmin([len(c) for c in coded]))
    return bytes((best,)) + coded[best]


def unpack_bytes(data: bytes) -> bytes:
    return _compressors()[data[0]][1](data[1:])


def pack(q: np.ndarray) -> bytes:
    """Integer symbols -> tag byte + the smallest of DEFLATE / LZMA2 / bzip2."""
    return pack_bytes(_symbol_bytes(q))


def unpack(data: bytes, n: int) -> np.ndarray:
    """The inverse of :func:`pack` for ``n`` symbols."""
    return _symbols(unpack_bytes(data), n)


def pack_run_level(q: np.ndarray) -> bytes:
    """(blocks, D) integer coefficients -> three packed streams: non-zeros per block, the
    zero run before each non-zero (in coefficient order), the non-zero values; the first
    two prefixed by their 3-byte lengths."""
    b, k = np.nonzero(q)
    starts = np.r_[True, b[1:] != b[:-1]] if len(b) else np.zeros(0, bool)
    prev = np.where(starts, -1, np.r_[0, k[:-1]] if len(k) else k)
    streams = [pack(np.bincount(b, minlength=len(q))),
               pack_bytes((k - prev - 1).astype(np.uint8).tobytes()), pack(q[b, k])]
    return b"".join(len(x).to_bytes(3, "big") + x for x in streams[:2]) + streams[2]


def unpack_run_level(data: bytes, n_blocks: int, d: int) -> np.ndarray:
    """The inverse of :func:`pack_run_level`."""
    n1 = int.from_bytes(data[:3], "big")
    counts = unpack(data[3:3 + n1], n_blocks)
    rest = data[3 + n1:]
    n2 = int.from_bytes(rest[:3], "big")
    runs = np.frombuffer(unpack_bytes(rest[3:3 + n2]), np.uint8).astype(np.int64)
    levels = unpack(rest[3 + n2:], len(runs))
    b = np.repeat(np.arange(n_blocks), counts)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    steps = runs + 1
    csum = np.cumsum(steps)
    used = counts > 0
    k = csum - np.repeat(csum[first[used]] - steps[first[used]], counts[used]) - 1
    q = np.zeros((n_blocks, d), np.int64)
    q[b, k] = levels
    return q


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
