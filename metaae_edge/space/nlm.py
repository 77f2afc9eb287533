"""Non-local means as plain torch ops that export to standard ONNX (any H x W).

:func:`nl_means` follows scikit-image's ``denoise_nl_means(fast_mode=True, patch_size,
patch_distance, h, sigma)`` (the Froment / Darbon integral-image variant) in its "gather"
form: for every shift ``t`` in the ``(2 d + 1)^2`` search window,

    D_t(p) = max(0, sum_{q in box(p)} sum_c [(x_c(q) - x_c(q + t))^2 - 2 sigma^2]) / (C h^2 s^2)
    w_t(p) = exp(-D_t(p)) if D_t(p) <= 5 else 0
    out(p) = sum_t w_t(p) x(p + t) / sum_t w_t(p)

with ``s`` the (odd) patch size, ``o = s // 2`` and ``box(p)`` scikit-image's
``2 o x 2 o`` box (rows and columns ``p - o + 1 .. p + o``: its integral-image difference),
borders reflected (numpy's ``reflect``, iterated for images smaller than the pad). The
one deliberate difference: scikit-image's ``_fast_exp`` is Schraudolph's bit-trick
approximation of ``exp`` (a few % off); here ``exp`` is exact (``tests/test_nlm.py``
measures the PSNR gap to scikit-image on real photos).

Torch: :func:`nl_means_rows` (session 27) uses the symmetric search window
(``w_{-t}(p) = w_t(p - t)``), so only the shifts of half of it are computed, one search
row at a time (its shifts stacked from static Slices of the padded image; the reflect pad
two Gathers whose indices come from the image's data); the box sum is two 3-D
AveragePools (separable), then Exp, a cut-off mask and the weighted sum, to which each
row adds its own and its mirror's terms (the mirror's per-shift column offset removed by
a skew Reshape). :func:`nl_means_full` (every shift by one-hot Convs, the graph before
session 27) is kept as the reference the tests and ``scripts/nlm_latency.py`` compare to.

Export (session 28): tracing either took the dynamo exporter 35-50 s at distance 6. Inside
:func:`nlm_export_placeholder` (which ``export_onnx`` enters), :func:`nl_means` is one
opaque custom op; the exporters write it as a placeholder node and
:mod:`metaae_edge.exporters.nlm_graph` replaces it by the same filter built node by node
with ``onnx.helper`` (the symmetric window one shift at a time, opset 13-20, any H x W).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["DISTANCE_CUTOFF", "NLMParams", "nl_means", "nl_means_full", "nl_means_rows",
           "nlm_export_placeholder", "reflect_pad"]

#: scikit-image's cut-off: a shift whose normalised patch distance exceeds it gets no weight
DISTANCE_CUTOFF = 5.0


@dataclass(frozen=True)
class NLMParams:
    """Non-local means settings in the units of the image it runs on (model units for a
    denoiser: pixel values / the normaliser's std)."""

    patch_size: int = 5
    patch_distance: int = 6
    h: float = 0.08
    sigma: float = 0.1

    def __post_init__(self) -> None:
        if int(self.patch_size) < 2 or int(self.patch_distance) < 0:
            raise ValueError(f"bad NLM patch_size / patch_distance: {self}")
        if not (self.h > 0 and self.sigma >= 0):
            raise ValueError(f"NLM needs h > 0 and sigma >= 0, got {self}")

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(patch_size, patch_distance, h, sigma)``: the ArchSpec's ``nlm`` field."""
        return (int(self.patch_size), int(self.patch_distance), float(self.h),
                float(self.sigma))

    @classmethod
    def from_tuple(cls, t) -> NLMParams:
        s, d, h, sigma = t
        return cls(int(s), int(d), float(h), float(sigma))

    def scaled(self, factor: float) -> NLMParams:
        """The same filter on an image multiplied by ``factor`` (h and sigma scale)."""
        return NLMParams(self.patch_size, self.patch_distance, self.h * factor,
                         self.sigma * factor)

    def shift_macs_per_pixel(self, channels: int = 1) -> int:
        """MACs per pixel of the two one-hot shift convolutions (``taps = 2 d + 1``:
        ``taps^2`` for the search rows, ``taps^3`` for the columns), per channel; the
        rest is about 11 elementwise operations per shift."""
        taps = 2 * int(self.patch_distance) + 1
        return channels * (taps ** 2 + taps ** 3)


def _reflect_index(ones: torch.Tensor, pad: int) -> torch.Tensor:
    """numpy ``reflect`` indices ``-pad .. n + pad - 1`` of a length-``n`` axis, from a
    vector of ``n`` ones (so the graph takes ``n`` from data, not from a Shape)."""
    n = ones.sum()
    extra = torch.ones(pad, dtype=ones.dtype, device=ones.device)
    i = torch.cumsum(torch.cat([extra, ones, extra]), 0) - 1.0 - pad
    period = torch.clamp(2.0 * (n - 1.0), min=1.0)
    m = torch.remainder(i, period)
    return torch.minimum(m, period - m).long()


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad (N, C, H, W) by ``pad`` on every side as numpy's ``reflect`` does
    (iterated where ``pad >= H``); H, W >= 1."""
    if pad == 0:
        return x
    ones = x[:1, :1] * 0 + 1
    rows = _reflect_index(ones[0, 0, :, 0], pad)
    cols = _reflect_index(ones[0, 0, 0, :], pad)
    return x.index_select(-2, rows).index_select(-1, cols)


def _box(t: torch.Tensor, k: int) -> torch.Tensor:
    """Sums over k x k windows (valid), (N, S, H', W') -> (N, S, H' - k + 1, W' - k + 1)."""
    t = F.avg_pool2d(t, (k, 1), stride=1)  # separable: 2k reads per output, not k^2
    return F.avg_pool2d(t, (1, k), stride=1) * float(k * k)


def _one_hot(taps: int, rows: bool, dtype, device) -> torch.Tensor:
    """Conv weights (taps, 1, taps, 1) (``rows``) or (taps, 1, 1, taps): output channel
    i copies the input shifted by i: exact copies (one weight 1, the rest 0)."""
    w = torch.eye(taps, dtype=dtype, device=device)
    return w.view(taps, 1, taps, 1) if rows else w.view(taps, 1, 1, taps)


#: per thread / task (a ContextVar): an export in one thread never routes another thread's
#: training through the op (which has no autograd formula)
_PLACEHOLDER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "metaae_edge_nlm_placeholder", default=False)


@contextlib.contextmanager
def nlm_export_placeholder() -> Iterator[None]:
    """While active, :func:`nl_means` is the one opaque op ``torch.ops.metaae_edge.nlm``
    (its settings as arguments): the ONNX exporters write it as a single placeholder node
    that :func:`metaae_edge.exporters.nlm_graph.splice_nlm` replaces by the NLM graph
    built with ``onnx.helper`` (milliseconds, instead of tracing hundreds of ops)."""
    token = _PLACEHOLDER.set(True)
    try:
        yield
    finally:
        _PLACEHOLDER.reset(token)


@torch.library.custom_op("metaae_edge::nlm", mutates_args=())
def _nlm_op(x: torch.Tensor, patch_size: int, patch_distance: int, h: float,
            sigma: float) -> torch.Tensor:
    return nl_means_rows(x, NLMParams(patch_size, patch_distance, h, sigma))


@_nlm_op.register_fake
def _nlm_fake(x, patch_size, patch_distance, h, sigma):
    return torch.empty_like(x)


def nl_means(x: torch.Tensor, params: NLMParams) -> torch.Tensor:
    """Non-local means of ``x`` (N, C, H, W) (see the module docstring): :func:`nl_means_rows`,
    or, inside :func:`nlm_export_placeholder`, the op the exporters splice the graph into."""
    if _PLACEHOLDER.get():
        return torch.ops.metaae_edge.nlm(x, *params.as_tuple())
    return nl_means_rows(x, params)


def nl_means_rows(x: torch.Tensor, params: NLMParams) -> torch.Tensor:
    """Non-local means of ``x`` (N, C, H, W) (see the module docstring). A fixed filter:
    differentiable, but nothing in it is trained.

    Symmetric search window: ``w_{-t}(p) = w_t(p - t)`` (the same squared differences,
    summed over the shifted box), so patch distances are computed only for the shift 0
    (``w = 1``) and half the others, ``t = (a, b)`` with ``a > 0`` or ``a = 0, b > 0``,
    one search row ``a`` at a time (its shifts stacked on an axis), on the image and its
    copy moved by ``-t``; the mirrored shift's weights are that map's other crop.
    """
    s = int(params.patch_size) | 1
    o, d, c = s // 2, int(params.patch_distance), x.shape[1]
    h2s2 = c * float(params.h) ** 2 * s * s
    var2 = 2.0 * float(params.sigma) ** 2
    xp = reflect_pad(x, o + 2 * d + 1)
    num, den = x, 1.0
    for a in range(d + 1):
        b0 = 1 if a == 0 else -d  # this row's shifts (a, b0 .. d)
        if b0 > d:
            continue
        # q in rows -a-o+1 .. H-1+o, columns -d-o+1 .. W+d+o: the boxes of E (rows -a .. H-1,
        # columns -d .. W+d), where the weights of (a, b) at p and at p - (a, b) lie
        xa = _cut(_cut(xp, -2, 2 * d - a + 2, 2 * d + 1), -1, d + 2, d)
        rows = _cut(xp, -2, 2 * d + 2, 2 * d + 1 - a)
        xb = torch.stack([_cut(rows, -1, d + 2 + b, d - b) for b in range(b0, d + 1)], 3)
        diff = xa.unsqueeze(3) - xb  # (N, C, rows, shifts, columns)
        diff = diff * diff
        diff = (diff.sum(1, keepdim=True) if c > 1 else diff) - c * var2
        box = F.avg_pool3d(F.avg_pool3d(diff, (2 * o, 1, 1), stride=1), (1, 1, 2 * o), stride=1)
        neg = torch.clamp(box * float(4 * o * o) * (-1.0 / h2s2), max=0.0)
        w = torch.exp(neg) * (neg >= -DISTANCE_CUTOFF).to(neg.dtype)
        # (a, b)'s own term at p: rows a .., columns d .. d + W - 1 of E
        here = _cut(_cut(w, -3, a, 0), -1, d, d + 1)
        xt = _cut(_cut(xb, -3, a + o - 1, o), -1, d + o - 1, d + o + 1)
        num = num + (here * xt).sum(3)
        den = den + here.sum(3)
        # the mirrored (-a, -b) at p: w and x at p - (a, b); shift b's column offset is
        # removed by reading the (shifts, columns) plane with rows one shorter (a skew)
        xe = _cut(_cut(xa, -2, o - 1, o + a), -1, o - 1, o)
        xe = torch.cat([xe, torch.ones_like(xe[:, :1])], 1).unsqueeze(3)
        m = _cut(w, -3, 0, a) * xe  # (N, C + 1, H, shifts, W + 2d + 1)
        ns, we = m.shape[3], m.shape[4]
        m = m.flatten(3)[..., :ns * (we - 1)].unflatten(3, (ns, we - 1)).sum(3)
        m = _cut(m, -1, d - b0, d + b0)
        num, den = num + m[:, :c], den + m[:, c:]
    return num / den


def _cut(t: torch.Tensor, dim: int, start: int, cut: int) -> torch.Tensor:
    """``t`` without its first ``start`` and last ``cut`` entries along ``dim`` (a static
    Slice: the end relative to the size)."""
    idx = [slice(None)] * t.dim()
    idx[dim] = slice(start, -cut if cut else None)
    return t[tuple(idx)]


def nl_means_full(x: torch.Tensor, params: NLMParams, rows_per_chunk: int = 4) -> torch.Tensor:
    """:func:`nl_means` computing every shift (the graph before session 27): the
    reference ``tests/test_nlm.py`` and ``scripts/nlm_latency.py --variants old`` compare
    the symmetric one with. The shifted copies are two one-hot convolutions (rows, then
    columns per row), so the graph has a few dozen nodes; ``rows_per_chunk`` search rows
    are processed at a time (``(2 d + 1) * rows_per_chunk`` shifted images in memory).
    """
    s = int(params.patch_size) | 1  # odd, as scikit-image makes it
    o, d = s // 2, int(params.patch_distance)
    taps = 2 * d + 1
    n, c = x.shape[0], x.shape[1]
    h2s2 = c * float(params.h) ** 2 * s * s
    var2 = 2.0 * float(params.sigma) ** 2
    xp = reflect_pad(x, o + d).flatten(0, 1).unsqueeze(1)  # (N C, 1, H + 2o + 2d, ...)
    # x's rows / columns -o .. H + o - 1 (the centre patches' boxes)
    centre = xp[..., d:-d, d:-d].unflatten(0, (n, c)) if d else xp.unflatten(0, (n, c))
    by_row = F.conv2d(xp, _one_hot(taps, True, x.dtype, x.device))  # (N C, taps, H + 2o, .)
    col_w = _one_hot(taps, False, x.dtype, x.device)
    num, den = None, None
    for r0 in range(0, taps, rows_per_chunk):
        r = min(rows_per_chunk, taps - r0)
        # shift (ty, tx) = (r0 + i - d, j - d) at channel i * taps + j
        shifted = F.conv2d(by_row[:, r0:r0 + r], col_w.repeat(r, 1, 1, 1), groups=r)
        shifted = shifted.unflatten(0, (n, c))  # (N, C, S, H + 2o, W + 2o)
        diff = centre - shifted
        diff = (diff * diff).sum(1) - c * var2
        # box rows / columns p - o + 1 .. p + o: window start index p + 1; -distance
        neg = torch.clamp(_box(diff, 2 * o)[..., 1:, 1:] * (-1.0 / h2s2), max=0.0)
        w = torch.exp(neg) * (neg >= -DISTANCE_CUTOFF).to(neg.dtype)
        contrib = (w.unsqueeze(1) * shifted[..., o:-o, o:-o]).sum(2)  # values at p + t
        wsum = w.sum(1, keepdim=True)
        num = contrib if num is None else num + contrib
        den = wsum if den is None else den + wsum
    return num / den
