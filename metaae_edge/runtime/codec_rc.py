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

The encoder lays out every context, class and raw-bit chunk with numpy (:func:`_parts`,
shared with :func:`estimate_bytes`; :func:`_units`, :func:`_steps`) and codes them in one
loop of plain ints (:func:`_code`); the decoder, whose contexts depend on what it has
decoded, goes symbol by symbol (:class:`_Models`, :class:`_Decoder`).
``tests/test_codec_rc.py`` pins the bytes.
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
    """Magnitude class: 0 for 0, else 1 + floor(log2 |v|) (``int.bit_length`` of ``|v|``:
    ``frexp``'s exponent, exact below 2**53)."""
    a = np.abs(np.asarray(v, np.int64))
    return np.frexp(a.astype(np.float64))[1].astype(np.int64)


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


def _parts(q: np.ndarray, e: np.ndarray) -> tuple[list[tuple[np.ndarray, ...]], np.ndarray]:
    """What is coded, by part: ``[DC, end of block, AC]``, each ``(context, class, value,
    raw bit count)`` (DC and end of block: one per block in raster order; AC: the coded
    coefficients ``k <= e``, in raster block order then ``k``), and the (ny, nx, D - 1)
    mask of the coded AC coefficients. A value's raw bits are its sign (not for the end
    of block) and mantissa; its class is coded in its context."""
    d = q.shape[-1]
    dc = q[..., 0]
    dc_c = _cls(dc)
    dcl, _ = _neighbours(dc_c)
    el, eu = _neighbours(e)
    ec = _cls(e)
    k = np.arange(1, d)
    band = np.array([_band(int(i)) for i in k], np.int16)
    ac = q[..., 1:]
    # small dtypes for the (ny, nx, D - 1) temporaries: min(|ac|, 2) is all the contexts
    # read of a neighbour (nb = min(|left| + |up|, 2))
    nz = ac != 0
    small = nz.view(np.int8) + ((ac > 1) | (ac < -1))
    sl, su = _neighbours(small)
    prev = np.zeros(ac.shape, np.int8)
    prev[..., 1:] = nz[..., :-1]
    coded = k <= e[..., None]
    c_ac = np.where(k == e[..., None], _LAST + band,
                    (_AC + band * 6) + np.minimum(sl + su, 2) * 2 + prev)[coded]
    v = ac[coded]
    acc = _cls(v)
    return [(_DC + np.minimum(dcl, 11).ravel(), dc_c.ravel(), dc.ravel(), dc_c.ravel()),
            (_EOB + np.minimum(_cls((el + eu + 1) // 2), 11).ravel(), ec.ravel(), e.ravel(),
             np.maximum(ec - 1, 0).ravel()),
            (c_ac, acc, v, acc)], coded


def estimate_bytes(q: np.ndarray) -> float:
    """The adaptive model's code length of ``q`` in bytes (no coding; see the module)."""
    parts, _ = _parts(q, _eob(q))  # AC coefficients 1..e are coded (e: the last non-zero)
    ctx, sym = (np.concatenate([p[i] for p in parts]).astype(np.int64) for i in (0, 1))
    raw = sum(int(p[3].sum()) for p in parts)
    if sym.size and sym.max() >= _CLASSES:
        return math.inf
    counts = np.bincount(ctx * _CLASSES + sym,
                         minlength=_NCTX * _CLASSES).reshape(_NCTX, _CLASSES)
    a = 1.0 / _INC  # counts start at 1 and grow by 2: a Dirichlet(1/2) predictor
    n = counts.sum(axis=1)
    lg = np.vectorize(math.lgamma)
    used = n > 0
    bits = (lg(n[used] + _CLASSES * a) - math.lgamma(_CLASSES * a)
            - (lg(counts[used] + a) - math.lgamma(a)).sum(axis=1)).sum() / math.log(2)
    return (bits + raw) / 8 + 4


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


def _units(q: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`_parts` in coding order (per block in raster order: the DC residual, the end
    of block, each coded AC coefficient): per value its context, class, raw bits (the sign
    above the mantissa; the end of block: the mantissa only) and their count."""
    nx = q.shape[1]
    parts, coded = _parts(q, e)
    per_block = 2 + e.ravel()
    start = np.cumsum(per_block) - per_block
    by, bx, j = np.nonzero(coded)
    n = int(per_block.sum())
    ctx, cls, raw, nbits = (np.zeros(n, np.int64) for _ in range(4))
    for at, (c, m, v, nb), signed in zip((start, start + 1, start[by * nx + bx] + 2 + j),
                                         parts, (True, False, True)):
        half = np.left_shift(np.int64(1), np.maximum(m - 1, 0))
        if signed:
            bits = np.where(m > 0, (v < 0) * half | (np.abs(v) - half), 0)
        else:
            bits = np.where(m > 1, v - half, 0)
        ctx[at], cls[at], raw[at], nbits[at] = c, m, bits, nb
    return ctx, cls, raw, nbits


def _steps(ctx: np.ndarray, cls: np.ndarray, raw: np.ndarray,
           nbits: np.ndarray) -> tuple[list[int], list[int]]:
    """The coder's steps: ``(context, class)`` of an adaptive symbol, or ``(-m, value)`` of
    ``m`` raw bits at probability 1/2 (at most 16 at a time, the high chunk first)."""
    two = nbits > 16
    per = 1 + (nbits > 0) + two
    start = np.cumsum(per) - per
    a, b = np.empty(int(per.sum()), np.int64), np.empty(int(per.sum()), np.int64)
    a[start], b[start] = ctx, cls
    low = np.maximum(nbits - 16, 0)
    one = nbits > 0
    a[start[one] + 1] = -np.where(two, 16, nbits)[one]
    b[start[one] + 1] = np.where(two, np.right_shift(raw, low) & 0xFFFF, raw)[one]
    a[start[two] + 2] = -low[two]
    b[start[two] + 2] = (raw & (np.left_shift(1, low) - 1))[two]
    return a.tolist(), b.tolist()


def _shift(low: int, cache: int, pending: int, out: bytearray) -> tuple[int, int, int]:
    """One byte out of ``low`` (the LZMA carry scheme: a run of 0xFF bytes waits in
    ``pending`` until a carry is known; ``cache`` < 0: no byte yet); new
    ``(low, cache, pending)``."""
    if low < 0xFF000000 or low > _MASK32:
        carry = low >> 32
        if cache >= 0:
            out.append((cache + carry) & 0xFF)
        if pending:
            out.extend(bytes([(0xFF + carry) & 0xFF]) * pending)
        return (low & 0x00FFFFFF) << 8, (low >> 24) & 0xFF, 0
    return (low & 0x00FFFFFF) << 8, cache, pending + 1


def _code(ctxs: list[int], syms: list[int]) -> bytes:
    """Range-code :func:`_steps`' steps: each class through its context's adaptive
    frequency model (counts start at 1, grow by 2, halve past 2**16), raw bits at
    probability 1/2; the state as four ints, everything inlined but :func:`_shift`."""
    freq = [[1] * _CLASSES for _ in range(_NCTX)]
    total = [_CLASSES] * _NCTX
    low, rng, cache, pending = 0, _MASK32, -1, 0
    out = bytearray()
    for c, s in zip(ctxs, syms):
        if c >= 0:  # class s in context c
            f = freq[c]
            t = total[c]
            r = rng // t
            low += sum(f[:s]) * r
            rng = f[s] * r
            f[s] += _INC
            t += _INC
            if t > _LIMIT:
                freq[c] = f = [(v + 1) // 2 for v in f]
                t = sum(f)
            total[c] = t
        else:  # -c raw bits of value s
            r = rng >> -c
            low += s * r
            rng = r
        while rng < _TOP:
            rng <<= 8
            low, cache, pending = _shift(low, cache, pending, out)
    for _ in range(5):
        low, cache, pending = _shift(low, cache, pending, out)
    return bytes(out).rstrip(b"\0")  # the decoder reads zeros past the end


def encode_blocks(q: np.ndarray) -> bytes:
    """(ny, nx, D) integer coefficients (DC already predicted) -> bytes.

    numpy lays out what is coded (:func:`_units`, :func:`_steps`); one loop codes it
    (:func:`_code`): the inverse of :class:`_Decoder` and :meth:`_Models.decode`."""
    q = np.asarray(q, np.int64)
    if q.size and np.abs(q).max() >= 1 << (_CLASSES - 1):
        raise DataError("a quantised coefficient is too large for the coder; use a larger step")
    return _code(*_steps(*_units(q, _eob(q))))


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
