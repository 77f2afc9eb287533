"""Rate-distortion on real photographs: every codec at a byte budget, bytes counted for real.

Photos: the grayscale versions (Pillow's ``L``, ITU-R 601 luma, 8 bits) of photographs that
scikit-image ships in its wheel, cropped to multiples of 16 so that every block codec
covers the same pixels. The support photo (``motorcycle_left``) is used for fitting and
adaptation only; it is never evaluated.

At a target rate R bits/pixel each codec gets ``R * H * W / 8`` bytes for the whole file
(headers included) and uses its best setting that fits (a quality or step search):

* ``jpeg``: Pillow, optimised Huffman tables, the highest quality 1..95 whose file fits;
* ``webp``: Pillow's lossy WebP (method 6), the highest quality 0..100 whose file fits;
* ``klt``: :class:`~metaae_edge.evaluate.block_codec.BlockKLT` fitted on the support photo,
  the smallest step whose bytes fit (a numpy codec, not a bundle);
* ``ours``: a transform-codec bundle (``metaae-edge export-codec``, fitted on the support
  photo) through :class:`~metaae_edge.runtime.codec.TransformCodec`: the bundle's graphs,
  the runtime's quantiser and range coder, the whole file counted;
* ``dense-ae``: the dense-code bundles adapted from ``builtin:digits-res-codec`` to 16x16
  patches of the support photo (graphs of the bundle: encoder / decoder through the
  Runtime), the photo cut into non-overlapping 16x16 tiles; codes quantised with a
  per-value step ``s * max|support code| / 127`` (int8 at s = 1) and coded with
  :func:`~metaae_edge.evaluate.block_codec.pack`; the smallest s >= 1 that fits, over every
  bundle given (header 10 bytes: size, s, bundle index, pack tag);
* ``pca-int8``: the int8 PCA codec path of the evaluation (``PCACodec``), 16x16 blocks,
  ``k = R * 256 / 8`` components fitted on the support patches, raw int8 codes (k bytes a
  block) + a 4-byte header: nominal bytes, no entropy coding.

Decoded pixels are rounded to 8 bits before PSNR (what a decoder would write).

``split="halves"`` (:func:`rate_distortion_halves`) is the per-photo setting: each photo's
top half is the support a codec bundle is fitted on (``export_codec``), its bottom half is
what every method is scored on; ``ours-support`` there is the support-photo bundle on the
same bottom halves.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError, InputError
from ..optional import require
from .block_codec import BlockKLT, blocks_of, from_blocks, pack, unpack
from .jpeg import jpeg_at_bytes

__all__ = ["EVAL_PHOTOS", "SUPPORT_PHOTO", "BundleCodec", "RDConfig", "load_photo",
           "rate_distortion", "rate_distortion_halves", "summarise", "transform_rows"]

EVAL_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass",
               "gravel")
SUPPORT_PHOTO = "motorcycle_left"
_FILES = {"rocket": "rocket.jpg"}


def load_photo(name: str, multiple: int = 16) -> np.ndarray:
    """A scikit-image photo as float64 grey in [0, 1] (8-bit levels), cropped to multiples."""
    data = require("skimage.data", "scikit-image", package="scikit-image",
                   needed_for="the photos of the rate-distortion study")
    path = os.path.join(os.path.dirname(data.__file__), _FILES.get(name, f"{name}.png"))
    if not os.path.exists(path):
        raise DataError(f"scikit-image has no photo {name!r} in its wheel ({path})")
    img = require("PIL.Image", "pillow", package="Pillow", needed_for="reading photos")
    with img.open(path) as im:
        grey = np.asarray(im.convert("L"), np.float64) / 255.0
    h, w = (s // multiple * multiple for s in grey.shape)
    return grey[:h, :w]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def _search(encode: Callable[[float], bytes], budget: int, lo: float, hi: float,
            iters: int = 14) -> tuple[float, bytes] | None:
    """Smallest parameter in [lo, hi] (log-bisected) whose bytes fit ``budget``; bytes
    decrease with the parameter. None when even ``hi`` does not fit."""
    best = encode(hi)
    if len(best) > budget:
        return None
    good = hi
    first = encode(lo)
    if len(first) <= budget:
        return lo, first
    a, b = np.log(lo), np.log(hi)
    for _ in range(iters):
        mid = float(np.exp((a + b) / 2))
        data = encode(mid)
        if len(data) <= budget:
            b, good, best = np.log(mid), mid, data
        else:
            a = np.log(mid)
    return good, best


def _quality_search(encode: Callable[[int], bytes], budget: int, lo: int, hi: int):
    """Highest integer quality in [lo, hi] whose bytes fit (lo if none does)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(encode(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo, encode(lo)


def webp_at_bytes(img: np.ndarray, budget: int) -> tuple[np.ndarray, int, int]:
    pil = require("PIL.Image", "pillow", package="Pillow", needed_for="the WebP baseline")
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    cache: dict[int, bytes] = {}

    def enc(q: int) -> bytes:
        if q not in cache:
            buf = io.BytesIO()
            pil.fromarray(u8).save(buf, format="WEBP", quality=int(q), method=6)
            cache[q] = buf.getvalue()
        return cache[q]
    q, data = _quality_search(enc, budget, 0, 100)
    dec = np.asarray(pil.open(io.BytesIO(data)).convert("L"), np.float64) / 255.0
    return dec, len(data), q


@dataclass
class BundleCodec:
    """Dense-code bundles (one per latent size) as a tile codec; see the module docstring."""

    runtimes: list[Any]
    base_steps: list[np.ndarray]  # per bundle, (L,) int8 steps from the support codes
    tile: int = 16
    _codes: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, paths: list[str], support: np.ndarray) -> BundleCodec:
        from ..runtime import Runtime

        rts = [Runtime.load(p, threads=1) for p in paths]
        tile = rts[0].contract.fixed_hw[0]
        steps = []
        for rt in rts:
            if rt.contract.fixed_hw != (tile, tile):
                raise DataError(f"{rt.bundle.root}: every codec bundle must run at {tile}x{tile}")
            z = rt.encode(support.astype(np.float32))
            steps.append(np.maximum(np.abs(z).max(axis=0), 1e-8) / 127.0)
        return cls(rts, steps, tile)

    def _latents(self, img: np.ndarray, k: int) -> np.ndarray:
        key = (img.shape, hash(img.tobytes()), k)  # not id(): ids are reused
        if key not in self._codes:
            blocks = blocks_of(img, self.tile).reshape(-1, 1, self.tile, self.tile)
            self._codes[key] = self.runtimes[k].encode(blocks.astype(np.float32))
        return self._codes[key]

    def encode(self, img: np.ndarray, k: int, s: float) -> bytes:
        s = float(np.float32(s))
        q = np.clip(np.round(self._latents(img, k) / (self.base_steps[k] * s)), -127, 127)
        head = struct.pack(">HHfB", *img.shape, s, k)
        return head + pack(q.astype(np.int64).T)

    def decode(self, data: bytes) -> np.ndarray:
        h, w, s, k = struct.unpack(">HHfB", data[:9])
        n, dim = (h // self.tile) * (w // self.tile), len(self.base_steps[k])
        q = unpack(data[9:], n * dim).reshape(dim, n).T
        rec = self.runtimes[k].decode((q * self.base_steps[k] * s).astype(np.float32))
        return from_blocks(rec.reshape(h // self.tile, w // self.tile, -1), self.tile)


@dataclass(frozen=True)
class RDConfig:
    rates: tuple[float, ...] = (0.25, 0.5, 1.0)
    photos: tuple[str, ...] = EVAL_PHOTOS
    bundles: tuple[str, ...] = ()  # dense-code bundles for "dense-ae" (none: skipped)
    codec: str | None = None  # a transform-codec bundle for "ours" (None: skipped)
    support_patches: int = 512
    seed: int = 0


def _support_patches(photo: np.ndarray, n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, photo.shape[0] - size, n)
    xs = rng.integers(0, photo.shape[1] - size, n)
    return np.stack([photo[y:y + size, x:x + size] for y, x in zip(ys, xs)])[:, None]


def _row(method: str, photo: str, rate: float, img: np.ndarray, dec: np.ndarray,
         nbytes: int, **extra: Any) -> dict[str, Any]:
    return {"method": method, "photo": photo, "rate": rate, "psnr": psnr(_u8(dec), img),
            "bytes": int(nbytes), "bpp": 8.0 * nbytes / img.size, **extra}


def _reference_rows(name: str, img: np.ndarray, rate: float) -> list[dict[str, Any]]:
    budget = int(rate * img.size / 8)
    jd, jb, jq = jpeg_at_bytes(img[None, None], budget, optimize=True)
    wd, wb, wq = webp_at_bytes(img, budget)
    return [_row("jpeg", name, rate, img, jd[0, 0], jb[0], quality=int(jq[0])),
            _row("webp", name, rate, img, wd, wb, quality=wq)]


def transform_rows(method: str, name: str, img: np.ndarray, rate: float,
                   codec: Any) -> list[dict[str, Any]]:
    """A transform-codec bundle (:class:`~metaae_edge.runtime.codec.TransformCodec`) at
    ``rate``: the file's bytes, decoded from those bytes."""
    try:
        data = codec.encode(img, bpp=rate)
    except InputError:  # the budget is below the coarsest file
        return []
    step = float(np.frombuffer(data[12:16], ">f4")[0])
    return [_row(method, name, rate, img, codec.decode(data)[0], len(data), step=step)]


def _codec_rows(name: str, img: np.ndarray, rate: float, klt: BlockKLT,
                pca: dict, dense: BundleCodec | None, ours: Any) -> list[dict[str, Any]]:
    from .image_metrics import PCACodec

    budget = int(rate * img.size / 8)
    rows = _reference_rows(name, img, rate)
    if ours is not None:
        rows.extend(transform_rows("ours", name, img, rate, ours))
    coef = klt.coefficients(img)
    found = _search(lambda s: klt.encode_coefficients(coef, s), budget, 1e-3, 4.0)
    if found is not None:
        rows.append(_row("klt", name, rate, img, klt.decode(found[1]), len(found[1]),
                         step=found[0]))
    k = int(rate * 256 / 8)
    if k not in pca:
        pca[k] = PCACodec.fit(pca["support"], k)
    codec: PCACodec = pca[k]
    blocks = blocks_of(img, 16)
    rec = codec.decode(codec.encode(blocks.reshape(-1, 256))).reshape(blocks.shape)
    rows.append(_row("pca-int8", name, rate, img, from_blocks(rec, 16),
                     4 + codec.k * blocks.shape[0] * blocks.shape[1], k=codec.k))
    if dense is not None:
        rows.extend(_ours_rows(name, img, rate, budget, dense))
    return rows


def _ours_rows(name: str, img: np.ndarray, rate: float, budget: int,
               ours: BundleCodec) -> list[dict[str, Any]]:
    best = None
    for k in range(len(ours.runtimes)):
        found = _search(lambda s, k=k: ours.encode(img, k, s), budget, 1.0, 256.0, iters=10)
        if found is None:
            continue
        dec = ours.decode(found[1])
        row = _row("dense-ae", name, rate, img, dec, len(found[1]), s=found[0],
                   latent=len(ours.base_steps[k]))
        if best is None or row["psnr"] > best["psnr"]:
            best = row
    return [] if best is None else [best]


def rate_distortion(cfg: RDConfig, progress: Callable[[str], None] | None = None
                    ) -> list[dict[str, Any]]:
    """One row per (method, photo, rate): psnr, bytes, bpp and the chosen setting."""
    support = load_photo(SUPPORT_PHOTO)
    klt = BlockKLT.fit([support])
    patches = _support_patches(support, cfg.support_patches, 16, cfg.seed)
    pca: dict = {"support": patches.reshape(len(patches), -1)}
    dense = BundleCodec.load(list(cfg.bundles), patches) if cfg.bundles else None
    ours = None if cfg.codec is None else _transform_codec(cfg.codec)
    rows = []
    for name in cfg.photos:
        img = load_photo(name)
        for rate in cfg.rates:
            rows.extend(_codec_rows(name, img, rate, klt, pca, dense, ours))
            if progress is not None:
                progress(f"{name} {rate} bpp done")
    return rows


def _transform_codec(path: str) -> Any:
    from ..runtime.codec import TransformCodec

    return TransformCodec.load(path, threads=1)


def rate_distortion_halves(cfg: RDConfig, fit_dir: str, export: Any,
                           progress: Callable[[str], None] | None = None
                           ) -> list[dict[str, Any]]:
    """The per-photo setting (module docstring): ``export(support_images, out)`` writes a
    codec bundle fitted on each photo's top half (under ``fit_dir``); JPEG, WebP, that
    bundle (``ours``) and ``cfg.codec`` (``ours-support``) are scored on the bottom half."""
    support = None if cfg.codec is None else _transform_codec(cfg.codec)
    rows = []
    for name in cfg.photos:
        img = load_photo(name)
        half = img.shape[0] // 32 * 16
        top, bottom = img[:half], img[half:2 * half]
        ours = _transform_codec(str(export([top], os.path.join(fit_dir, name))))
        for rate in cfg.rates:
            rows.extend(_reference_rows(name, bottom, rate))
            rows.extend(transform_rows("ours", name, bottom, rate, ours))
            if support is not None:
                rows.extend(transform_rows("ours-support", name, bottom, rate, support))
            if progress is not None:
                progress(f"{name} {rate} bpp done (halves)")
    return rows


def _ci95(v: np.ndarray) -> float:
    if len(v) < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, float]]:
    """(method, rate) -> mean PSNR, its 95% t half-width, mean bpp, and the paired
    difference to JPEG (mean, 95% half-width, photos won)."""
    out = {}
    for m, r in sorted({(row["method"], row["rate"]) for row in rows}):
        mine = {row["photo"]: row for row in rows if row["method"] == m and row["rate"] == r}
        jpeg = {row["photo"]: row for row in rows if row["method"] == "jpeg"
                and row["rate"] == r}
        p = np.array([row["psnr"] for row in mine.values()])
        d = np.array([mine[k]["psnr"] - jpeg[k]["psnr"] for k in mine if k in jpeg])
        out[(m, r)] = {"psnr": float(p.mean()), "ci": _ci95(p), "n": len(p),
                       "bpp": float(np.mean([row["bpp"] for row in mine.values()])),
                       "vs_jpeg": float(d.mean()) if len(d) else float("nan"),
                       "vs_jpeg_ci": _ci95(d), "wins": int((d > 0).sum())}
    return out
