"""Context-adaptive range coding of quantised block coefficients (numpy + stdlib only).

What is coded, per block in raster order (``q``: (ny, nx, D) integers, ``q[..., 0]`` the
predicted DC residual, the others in decreasing-variance order):

* the DC residual: its magnitude class (0 for 0, else ``1 + floor(log2 |v|)``) in a
  context of the left block's DC class, then a sign bit and ``class - 1`` mantissa bits;
* the end of block ``e`` (1 + the last non-zero AC index; 0: none): its class in a context
  of the left and upper blocks' ``e``, then its mantissa bits;
* each AC coefficient ``k < e``: its magnitude class in a context of (the frequency band of
  ``k``, the magnitudes of coefficient ``k`` in the left and upper blocks, whether
  coefficient ``k - 1`` of this block is non-zero; the last one, known non-zero, has its
  own contexts per band), then sign and mantissa bits.

Classes go through adaptive frequency models (counts start at 1, grow by 2, halve past
2**16); sign and mantissa bits are coded at probability 1/2. The coder is the LZMA-style
range coder (32-bit range, carry propagation through a cached byte), so the decoder
reproduces the symbols exactly. :func:`estimate_bytes` gives the same model's code length
without coding (closed form per context, the order of symbols does not matter while no
count halves), vectorised, for the rate search.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError

__all__ = ["decode_blocks", "encode_blocks", "estimate_bytes"]

_TOP = 1 << 24
_MASK32 = (1 << 32) - 1
_LIMIT = 1 << 16
_INC = 2
_CLASSES = 20  # magnitudes below 2**19
_BANDS = 16


def _cls(v: np.ndarray) -> np.ndarray:
    """Magnitude class: 0 for 0, else 1 + floor(log2 |v|)."""
    a = np.abs(np.asarray(v, np.int64))
    out = np.zeros(a.shape, np.int64)
    nz = a > 0
    out[nz] = np.floor(np.log2(a[nz])).astype(np.int64) + 1
    return out


def _cls1(v: int) -> int:
    return abs(v).bit_length()


def _band(k: int) -> int:
    return min(int(2 * math.log2(k)), _BANDS - 1)


# context ids: [AC: band * 6 + nb * 2 + prev] [last: band] [EOB: 12] [DC: 12]
_AC, _LAST = 0, _BANDS * 6
_EOB = _LAST + _BANDS
_DC = _EOB + 12
_NCTX = _DC + 12


def _eob(q: np.ndarray) -> np.ndarray:
    nz = q[..., 1:] != 0
    d = nz.shape[-1]
    last = d - np.argmax(nz[..., ::-1], axis=-1)
    return np.where(nz.any(axis=-1), last + 0, 0)  # 1 + index into q[..., 1:] -> k


def _neighbours(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros_like(a)
    up = np.zeros_like(a)
    left[:, 1:] = a[:, :-1]
    up[1:] = a[:-1]
    return left, up


def _symbols(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Every class symbol's (context, class) and the count of raw (sign / mantissa) bits."""
    ny, nx, d = q.shape
    e = _eob(q)  # AC coefficients 1..e are coded (e: index of the last non-zero)
    dc_c = _cls(q[..., 0])
    dcl, _ = _neighbours(dc_c)
    ctx = [_DC + np.minimum(dcl, 11).ravel()]
    sym = [dc_c.ravel()]
    el, eu = _neighbours(e)
    ctx.append(_EOB + np.minimum(_cls((el + eu + 1) // 2), 11).ravel())
    ec = _cls(e)
    sym.append(ec.ravel())
    raw = int(np.maximum(dc_c - 1, 0).sum() + (dc_c > 0).sum() + np.maximum(ec - 1, 0).sum())
    k = np.arange(1, d)
    band = np.minimum((2 * np.log2(k)).astype(np.int64), _BANDS - 1)
    ac = q[..., 1:]
    al, au = _neighbours(np.abs(ac))
    nb = np.minimum(al + au, 2)
    prev = np.zeros_like(ac)
    prev[..., 1:] = ac[..., :-1] != 0
    coded = k[None, None, :] <= e[..., None]
    last = k[None, None, :] == e[..., None]
    c_ac = np.where(last, _LAST + band, _AC + band * 6 + nb * 2 + prev)
    acc = _cls(ac)
    ctx.append(c_ac[coded])
    sym.append(acc[coded])
    raw += int(np.maximum(acc[coded] - 1, 0).sum() + (acc[coded] > 0).sum())
    return np.concatenate(ctx), np.concatenate(sym), raw


def estimate_bytes(q: np.ndarray) -> float:
    """The adaptive model's code length of ``q`` in bytes (no coding; see the module)."""
    ctx, sym, raw = _symbols(q)
    if sym.size and sym.max() >= _CLASSES:
        return math.inf
    counts = np.zeros((_NCTX, _CLASSES), np.int64)
    np.add.at(counts, (ctx, sym), 1)
    a = 1.0 / _INC  # counts start at 1 and grow by 2: a Dirichlet(1/2) predictor
    n = counts.sum(axis=1)
    lg = np.vectorize(math.lgamma)
    used = n > 0
    bits = (lg(n[used] + _CLASSES * a) - math.lgamma(_CLASSES * a)
            - (lg(counts[used] + a) - math.lgamma(a)).sum(axis=1)).sum() / math.log(2)
    return (bits + raw) / 8 + 4


class _Encoder:
    def __init__(self) -> None:
        self.low, self.range, self.cache, self.pending = 0, _MASK32, None, 0
        self.out = bytearray()

    def encode(self, start: int, size: int, total: int) -> None:
        r = self.range // total
        self.low += start * r
        self.range = size * r
        while self.range < _TOP:
            self.range <<= 8
            self._shift()

    def _shift(self) -> None:
        low = self.low
        if low < 0xFF000000 or low > _MASK32:
            carry = low >> 32
            if self.cache is not None:
                self.out.append((self.cache + carry) & 0xFF)
            self.out.extend(bytes([(0xFF + carry) & 0xFF]) * self.pending)
            self.pending = 0
            self.cache = (low >> 24) & 0xFF
        else:
            self.pending += 1
        self.low = (low & 0x00FFFFFF) << 8

    def bits(self, value: int, n: int) -> None:
        while n > 0:
            m = min(n, 16)
            n -= m
            self.encode((value >> n) & ((1 << m) - 1), 1, 1 << m)

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift()
        return bytes(self.out).rstrip(b"\0")  # the decoder reads zeros past the end


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 4
        self.range = _MASK32
        self.code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")
        self.r = 1

    def _byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def target(self, total: int) -> int:
        self.r = self.range // total
        return min(self.code // self.r, total - 1)

    def consume(self, start: int, size: int) -> None:
        self.code -= start * self.r
        self.range = size * self.r
        while self.range < _TOP:
            self.code = ((self.code << 8) | self._byte()) & _MASK32
            self.range <<= 8

    def bits(self, n: int) -> int:
        v = 0
        while n > 0:
            m = min(n, 16)
            n -= m
            t = self.target(1 << m)
            self.consume(t, 1)
            v = (v << m) | t
        return v


class _Models:
    """One adaptive frequency table per context."""

    def __init__(self) -> None:
        self.freq = [[1] * _CLASSES for _ in range(_NCTX)]
        self.total = [_CLASSES] * _NCTX

    def _update(self, c: int, s: int) -> None:
        f = self.freq[c]
        f[s] += _INC
        self.total[c] += _INC
        if self.total[c] > _LIMIT:
            self.freq[c] = [(v + 1) // 2 for v in f]
            self.total[c] = sum(self.freq[c])

    def encode(self, enc: _Encoder, c: int, s: int) -> None:
        f = self.freq[c]
        enc.encode(sum(f[:s]), f[s], self.total[c])
        self._update(c, s)

    def decode(self, dec: _Decoder, c: int) -> int:
        f = self.freq[c]
        t = dec.target(self.total[c])
        s, cum = 0, 0
        while cum + f[s] <= t:
            cum += f[s]
            s += 1
        dec.consume(cum, f[s])
        self._update(c, s)
        return s


def _put(models: _Models, enc: _Encoder, c: int, v: int) -> int:
    """Class of ``v`` in context ``c``, then its sign and mantissa bits."""
    m = _cls1(v)
    models.encode(enc, c, m)
    if m:
        enc.bits((v < 0) << (m - 1) | (abs(v) - (1 << (m - 1))), m)
    return m


def _put_u(models: _Models, enc: _Encoder, c: int, v: int) -> None:
    """Class of ``v`` >= 0 in context ``c``, then its mantissa bits (no sign)."""
    m = _cls1(v)
    models.encode(enc, c, m)
    if m > 1:
        enc.bits(v - (1 << (m - 1)), m - 1)


def _get_u(models: _Models, dec: _Decoder, c: int) -> int:
    m = models.decode(dec, c)
    return 0 if not m else (1 << (m - 1)) + (dec.bits(m - 1) if m > 1 else 0)


def _get(models: _Models, dec: _Decoder, c: int) -> int:
    m = models.decode(dec, c)
    if not m:
        return 0
    v = dec.bits(m)
    mag = (1 << (m - 1)) + (v & ((1 << (m - 1)) - 1))
    return -mag if v >> (m - 1) else mag


def encode_blocks(q: np.ndarray) -> bytes:
    """(ny, nx, D) integer coefficients (DC already predicted) -> bytes."""
    q = np.asarray(q, np.int64)
    if q.size and np.abs(q).max() >= 1 << (_CLASSES - 1):
        raise DataError("a quantised coefficient is too large for the coder; use a larger step")
    ny, nx, d = q.shape
    e = _eob(q)
    bands = [0] + [_band(k) for k in range(1, d)]
    models, enc = _Models(), _Encoder()
    rows = q.tolist()
    dcc = [[0] * nx for _ in range(ny)]
    for y in range(ny):
        for x in range(nx):
            blk = rows[y][x]
            dcc[y][x] = _put(models, enc, _DC + min(dcc[y][x - 1] if x else 0, 11), blk[0])
            el = int(e[y, x - 1]) if x else 0
            eu = int(e[y - 1, x]) if y else 0
            ex = int(e[y, x])
            _put_u(models, enc, _EOB + min(_cls1((el + eu + 1) // 2), 11), ex)
            left = rows[y][x - 1] if x else None
            up = rows[y - 1][x] if y else None
            prev = 0
            for k in range(1, ex + 1):
                v = blk[k]
                if k == ex:
                    c = _LAST + bands[k]
                else:
                    nb = min((abs(left[k]) if left else 0) + (abs(up[k]) if up else 0), 2)
                    c = _AC + bands[k] * 6 + nb * 2 + prev
                prev = int(_put(models, enc, c, v) > 0)
    return enc.finish()


def decode_blocks(data: bytes, ny: int, nx: int, d: int) -> np.ndarray:
    """The inverse of :func:`encode_blocks`."""
    bands = [0] + [_band(k) for k in range(1, d)]
    models, dec = _Models(), _Decoder(data)
    rows = [[None] * nx for _ in range(ny)]
    e = [[0] * nx for _ in range(ny)]
    dcc = [[0] * nx for _ in range(ny)]
    for y in range(ny):
        for x in range(nx):
            blk = [0] * d
            blk[0] = _get(models, dec, _DC + min(dcc[y][x - 1] if x else 0, 11))
            dcc[y][x] = _cls1(blk[0])
            el = e[y][x - 1] if x else 0
            eu = e[y - 1][x] if y else 0
            ex = _get_u(models, dec, _EOB + min(_cls1((el + eu + 1) // 2), 11))
            if not 0 <= ex < d:
                raise DataError("corrupt codec file (block end out of range)")
            e[y][x] = ex
            left = rows[y][x - 1] if x else None
            up = rows[y - 1][x] if y else None
            prev = 0
            for k in range(1, ex + 1):
                if k == ex:
                    c = _LAST + bands[k]
                else:
                    nb = min((abs(left[k]) if left else 0) + (abs(up[k]) if up else 0), 2)
                    c = _AC + bands[k] * 6 + nb * 2 + prev
                blk[k] = _get(models, dec, c)
                prev = int(blk[k] != 0)
            rows[y][x] = blk
    return np.asarray(rows, np.int64).reshape(ny, nx, d)
