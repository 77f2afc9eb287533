"""Integer symbols <-> bytes for the transform codec (numpy + the standard library only).

* :func:`pack` / :func:`unpack`: integer symbols -> bytes with real entropy coding. The
  symbols are zig-zag mapped to unsigned values (one byte each, 255 escapes a 3-byte
  value) and compressed with raw DEFLATE, raw LZMA2 and bzip2; the smallest wins and a
  one-byte tag names it. Every byte of the result is counted.
* :func:`pack_run_level` / :func:`unpack_run_level`: (blocks, D) coefficients as three
  such streams: non-zeros per block, the zero run before each non-zero, the values.
"""

from __future__ import annotations

import bz2
import lzma
import zlib

import numpy as np

from ..errors import DataError

__all__ = ["pack", "pack_bytes", "pack_run_level", "unpack", "unpack_bytes",
           "unpack_run_level"]

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
