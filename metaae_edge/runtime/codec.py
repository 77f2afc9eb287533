"""The transform codec of a ``transform`` bundle: image -> file bytes -> image (torch-free).

The bundle's ``encoder.onnx`` gives each B x B block's coefficients and its
``decoder.onnx`` maps (dequantised) coefficients back to pixels (inverse transform, plus the
post-filter when the bundle has one); this module does what the graphs do not:

* quantisation: a uniform quantiser per coefficient with step ``step * weights[k]`` and a
  dead zone (rounding offset ``dead_zone`` for the others, ``dc_offset`` for coefficient 0);
  ``weights`` and the offsets are the manifest's ``codec`` section, fitted at export;
* prediction: coefficient 0 (the block's brightness) is predicted from the block to its
  left (the block above for the first column); the residual is coded;
* entropy coding (the header's coder byte): ``1`` (default) a context-adaptive range coder
  (:mod:`metaae_edge.runtime.codec_rc`; 9-15% fewer bytes than ``0`` on the photos
  measured), ``0`` run / level streams packed with the smallest of DEFLATE / LZMA2 / bzip2
  (:mod:`metaae_edge.runtime.codec_pack`);
* the post-filter switch: a bundle with a post-filter also lists the plain inverse
  transform (``codec_inverse.npy``, role ``codec-inverse``: the basis and the mean
  coefficients); the encoder decodes the file both ways and sets bit 7 of the flags byte
  when the plain inverse is closer to the image it encodes (the post-filter then is not
  run). The choice costs no bytes and never makes a file decode worse than without the
  filter;
* the file: :data:`MAGIC`, a version byte, the flags byte (bits 0-1: the coder, bit 7: no
  post-filter), a 4-byte tag of the bundle (the
  first bytes of the encoder graph's sha256: a file is never decoded with another bundle's
  basis), H and W (2 bytes each), the step (float32), then the coded coefficients:
  :data:`HEADER_BYTES` of header. Every byte of the file is counted by the rate control,
  which bisects the step on the range coder's exact code-length estimate and then checks
  (and, if need be, nudges) the real file against the budget.

Sizes that are not multiples of B are edge-padded for the transform and cropped back.
Decoding is exact: the file determines the quantised coefficients, which determine the
pixels (``tests/test_codec_bundle.py``).
"""

from __future__ import annotations

import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, DataError, InputError
from .codec_pack import pack_run_level, unpack_run_level
from .codec_rc import decode_blocks, encode_blocks, estimate_bytes

__all__ = ["HEADER_BYTES", "INVERSE_ROLE", "MAGIC", "CodecConfig", "TransformCodec",
           "predict_dc", "quantise", "search_step"]

MAGIC = b"MQ"
VERSION = 1
_HEAD = struct.Struct(">2sBB4sHHf")
CODERS = ("pack", "range")
_PLAIN = 0x80  # flags bit: decode with the plain inverse (no post-filter)
INVERSE_ROLE = "codec-inverse"
HEADER_BYTES = _HEAD.size
#: the log-bisection range of the step search (pixel units: images in [0, 1])
STEP_RANGE = (1e-4, 16.0)


@dataclass(frozen=True)
class CodecConfig:
    """The manifest's ``codec`` section."""

    block: int
    weights: tuple[float, ...]
    dead_zone: float = 1.0 / 3.0
    dc_offset: float = 0.5
    default_bpp: float = 1.0

    @classmethod
    def from_manifest(cls, root: Path, section: Any, latent: int) -> CodecConfig:
        if not isinstance(section, dict):
            raise BundleError(f"bundle {root}: not a codec bundle (no 'codec' section in its "
                              "manifest); export one with metaae-edge export-codec")
        try:
            cfg = cls(int(section["block"]), tuple(float(v) for v in section["weights"]),
                      float(section.get("dead_zone", 1 / 3)),
                      float(section.get("dc_offset", 0.5)),
                      float(section.get("default_bpp", 1.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle {root}: malformed codec section ({exc!r})") from None
        w = np.asarray(cfg.weights)
        if len(w) != latent or not np.all(np.isfinite(w)) or np.any(w <= 0) or not (
                0 <= cfg.dead_zone <= 0.5 and 0 <= cfg.dc_offset <= 0.5):
            raise BundleError(f"bundle {root}: codec section does not fit the graphs ({latent} "
                              "positive weights, offsets in [0, 0.5] expected)")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "weights": list(self.weights), "dead_zone": self.dead_zone,
                "dc_offset": self.dc_offset, "default_bpp": self.default_bpp}


class TransformCodec:
    """Encode / decode images with a transform bundle (see the module docstring)."""

    def __init__(self, runtime: Any, config: CodecConfig, tag: bytes,
                 inverse: np.ndarray | None = None):
        self.rt, self.config, self.tag = runtime, config, tag
        self.block = config.block
        self.channels = int(runtime.bundle.contract.channels)
        self._w = np.asarray(config.weights, np.float64)
        #: (D + 1, D) float32: the plain inverse (rows: basis vectors, then the mean
        #: coefficients) of a bundle with a post-filter, else None
        self.inverse = inverse

    @classmethod
    def load(cls, path: str | Path, **runtime_options: Any) -> TransformCodec:
        """Load a codec bundle (``runtime_options`` go to :meth:`Runtime.load`)."""
        from .api import Runtime

        rt = runtime_options.pop("runtime", None) or Runtime.load(path, **runtime_options)
        return cls.from_runtime(rt)

    @classmethod
    def from_runtime(cls, rt: Any) -> TransformCodec:
        b = rt.bundle
        if b.spec.backbone != "transform":
            raise BundleError(f"bundle {b.root}: not a codec bundle ({b.spec.describe()}); "
                              "export one with metaae-edge export-codec")
        cfg = CodecConfig.from_manifest(b.root, b.manifest.get("codec"), b.spec.latent_dim)
        enc = next(f for f in b.files if f.role == "encoder" and f.precision == "fp32")
        inv = next((f for f in b.files if f.role == INVERSE_ROLE), None)
        inverse = None
        if inv is not None:
            inverse = np.load(b.root / inv.path, allow_pickle=False)
            d = b.spec.latent_dim
            if inverse.shape != (d + 1, d) or inverse.dtype != np.float32:
                raise BundleError(f"bundle {b.root}: {inv.path} must be float32 ({d + 1}, {d})")
        return cls(rt, cfg, bytes.fromhex(enc.sha256[:8]), inverse)

    # -- transform --------------------------------------------------------------------
    def _image(self, img: Any) -> np.ndarray:
        x = np.asarray(img, np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 3 or x.shape[0] != self.channels or min(x.shape[1:]) < 1:
            raise InputError(f"the codec takes one {self.channels}-channel image (H, W) or "
                             f"(C, H, W); got shape {np.shape(img)}")
        if max(x.shape[1:]) >= 1 << 16:
            raise InputError(f"image sides must be below 65536, got {x.shape[1:]}")
        if not np.all(np.isfinite(x)):
            raise InputError("the image holds NaN or Inf values")
        return x

    def coefficients(self, img: Any) -> tuple[np.ndarray, tuple[int, int]]:
        """``(coef (blocks, D) float64 in raster block order, (H, W))`` of one image."""
        x = self._image(img)
        h, w = x.shape[1:]
        b = self.block
        ph, pw = -h % b, -w % b
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="edge")
        z = self.rt.encode(np.ascontiguousarray(x[None]))[0]  # (D, ny, nx)
        return z.reshape(z.shape[0], -1).T.astype(np.float64), (h, w)

    def quantise(self, coef: np.ndarray, step: float) -> np.ndarray:
        return quantise(coef, step, self.config)

    # -- bytes ------------------------------------------------------------------------
    def _predicted(self, coef: np.ndarray, hw: tuple[int, int], step: float) -> np.ndarray:
        """(ny, nx, D) quantised coefficients, the DC replaced by its prediction residual."""
        ny, nx = (-(-s // self.block) for s in hw)
        return predict_dc(self.quantise(coef, step).reshape(ny, nx, -1))

    def encode_coefficients(self, coef: np.ndarray, hw: tuple[int, int], step: float,
                            coder: int = 1) -> bytes:
        step = float(np.float32(step))  # what the header carries, so both sides agree
        q = self._predicted(coef, hw, step)
        body = encode_blocks(q) if coder == 1 else pack_run_level(q.reshape(-1, q.shape[-1]))
        return _HEAD.pack(MAGIC, VERSION, coder, self.tag, *hw, step) + body

    def _fit_budget(self, coef: np.ndarray, hw: tuple[int, int], budget: int,
                    coder: int) -> bytes | None:
        if coder == 0:
            step = search_step(lambda s: len(self.encode_coefficients(coef, hw, s, 0)), budget)
            return None if step is None else self.encode_coefficients(coef, hw, step, 0)

        def size(s: float) -> float:  # the range coder's code length, without coding
            return estimate_bytes(self._predicted(coef, hw, float(np.float32(s)))) \
                + HEADER_BYTES

        step = search_step(size, budget)
        if step is None:
            return None
        for _ in range(50):  # the estimate is exact to a few bytes; nudge if it was over
            data = self.encode_coefficients(coef, hw, step, 1)
            if len(data) <= budget:
                return data
            step *= 1.002
        return None

    def encode(self, img: Any, *, bpp: float | None = None, step: float | None = None,
               coder: int = 1) -> bytes:
        """One image -> the file's bytes: at ``step``, or the finest step whose whole file
        fits ``bpp`` bits per pixel (default: the manifest's ``default_bpp``).

        Raises:
            InputError: a bad image or option, or ``bpp`` too small for any step.
        """
        if coder not in (0, 1):
            raise InputError(f"coder must be 0 (pack) or 1 (range), got {coder}")
        coef, hw = self.coefficients(img)
        if step is not None:
            if not step > 0:
                raise InputError(f"step must be > 0, got {step}")
            return self._choose_filter(self.encode_coefficients(coef, hw, step, coder), img)
        bpp = self.config.default_bpp if bpp is None else float(bpp)
        budget = int(bpp * hw[0] * hw[1] / 8)
        data = self._fit_budget(coef, hw, budget, coder)
        if data is None:
            raise InputError(f"{bpp:g} bit/pixel ({budget} bytes) is too small for this "
                             f"image: even the coarsest step needs more")
        return self._choose_filter(data, img)

    def _choose_filter(self, data: bytes, img: Any) -> bytes:
        """Set the no-post-filter bit when the plain inverse decodes closer to ``img``."""
        if self.inverse is None:
            return data
        x = self._image(img)
        q, hw, step, _ = self._parse(data)
        errs = [float(np.mean((self._pixels(q, hw, step, plain) - x) ** 2))
                for plain in (False, True)]
        return data if errs[0] <= errs[1] else data[:3] + bytes((data[3] | _PLAIN,)) + data[4:]

    def quantised(self, data: bytes) -> tuple[np.ndarray, tuple[int, int], float]:
        """The file's quantised coefficients (DC prediction undone), (H, W) and step."""
        return self._parse(data)[:3]

    def _parse(self, data: bytes) -> tuple[np.ndarray, tuple[int, int], float, int]:
        if len(data) < HEADER_BYTES or data[:2] != MAGIC:
            raise DataError("not a metaae-edge codec file (bad magic)")
        magic, version, flags, tag, h, w, step = _HEAD.unpack(data[:HEADER_BYTES])
        coder = flags & 0x03
        if version != VERSION or coder not in (0, 1) or flags & 0x7C or (
                flags & _PLAIN and self.inverse is None):
            raise DataError(f"codec file version {version} / coder {coder}; this metaae-edge "
                            f"reads version {VERSION}, coders 0 and 1")
        if tag != self.tag:
            raise DataError(f"this file was encoded with another codec bundle (tag {tag.hex()},"
                            f" this bundle's is {self.tag.hex()}); decode it with that bundle")
        ny, nx = -(-h // self.block), -(-w // self.block)
        try:
            body, d = data[HEADER_BYTES:], len(self._w)
            q = decode_blocks(body, ny, nx, d).reshape(ny * nx, d) if coder == 1 \
                else unpack_run_level(body, ny * nx, d)
        except (ValueError, IndexError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise DataError(f"corrupt codec file ({type(exc).__name__})") from None
        dc = q[:, 0].reshape(ny, nx).copy()
        dc[:, 0] = np.cumsum(dc[:, 0])
        q[:, 0] = np.cumsum(dc, axis=1).ravel()
        return q, (h, w), step, flags

    def _pixels(self, q: np.ndarray, hw: tuple[int, int], step: float,
                plain: bool) -> np.ndarray:
        """Dequantised coefficients -> (C, H, W) pixels in [0, 1], through the decoder
        graph or (``plain``) the plain inverse transform."""
        h, w = hw
        b = self.block
        ny, nx = -(-h // b), -(-w // b)
        z = (q * (step * self._w)).astype(np.float32)
        if plain:
            blocks = (z + self.inverse[-1]) @ self.inverse[:-1]
            rec = blocks.reshape(ny, nx, self.channels, b, b).transpose(2, 0, 3, 1, 4)
            rec = rec.reshape(self.channels, ny * b, nx * b)
        else:
            rec = self.rt.decode(np.ascontiguousarray(z.T.reshape(1, -1, ny, nx)))[0]
        return np.clip(rec[:, :h, :w], 0.0, 1.0)

    def decode(self, data: bytes) -> np.ndarray:
        """File bytes -> the (C, H, W) float32 image, clipped to [0, 1]."""
        q, hw, step, flags = self._parse(data)
        return self._pixels(q, hw, step, bool(flags & _PLAIN))


def quantise(coef: np.ndarray, step: float, config: CodecConfig) -> np.ndarray:
    """Dead-zone uniform quantiser, step ``step * weights[k]`` for coefficient ``k``."""
    offset = np.full(coef.shape[-1], config.dead_zone)
    offset[0] = config.dc_offset
    a = np.abs(coef) / (step * np.asarray(config.weights, np.float64))
    return (np.sign(coef) * np.floor(a + offset)).astype(np.int64)


def predict_dc(q: np.ndarray) -> np.ndarray:
    """(ny, nx, D) quantised coefficients with the DC replaced by its residual from the
    block to the left (the block above for the first column)."""
    q = q.copy()
    dc = q[..., 0].copy()
    dc[:, 1:] -= q[:, :-1, 0]
    dc[1:, 0] -= q[:-1, 0, 0]
    q[..., 0] = dc
    return q


def search_step(size: Any, budget: int, iters: int = 18) -> float | None:
    """The smallest step in :data:`STEP_RANGE` (log-bisected) whose ``size(step)`` (bytes,
    falling as the step grows) fits ``budget``; None when even the coarsest does not."""
    lo, hi = STEP_RANGE
    if size(hi) > budget:
        return None
    if size(lo) <= budget:
        return lo
    a, b = np.log(lo), np.log(hi)
    for _ in range(iters):
        mid = float(np.exp((a + b) / 2))
        if size(mid) <= budget:
            b = np.log(mid)
        else:
            a = np.log(mid)
    return float(np.exp(b))
