"""Support images -> a verified transform-codec bundle (``metaae-edge export-codec``).

1. The block transform: the KLT (PCA) of every ``block`` x ``block`` window (``stride``
   apart) of the support images, a complete orthonormal basis by decreasing variance, with
   the mean block (:func:`fit_klt`).
2. Optionally the post-filter (:mod:`metaae_edge.pipeline.codec_postfilter`): a small
   residual CNN after the inverse transform, trained on the support images decoded at
   several rates; kept only if it lowers the error on held-out support crops.
3. The bundle: :func:`~metaae_edge.exporters.bundle.write_bundle` (ONNX export, the parity
   gate, hashes, the staged rename), then the manifest's ``codec`` section (quantiser
   weights, dead zone, default rate: :class:`~metaae_edge.runtime.codec.CodecConfig`) added
   through :class:`~metaae_edge.exporters.writer.BundleWriter`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

_INVERSE_FILE = "codec_inverse.npy"

__all__ = ["CodecExportOptions", "CodecExportReport", "export_codec", "fit_klt",
           "load_codec_images"]


@dataclass(frozen=True)
class CodecExportOptions:
    out: Path
    block: int = 8
    stride: int = 4
    #: ``none`` | ``auto`` (trained, kept if it helps on held-out support crops) | ``on``
    postfilter: str = "none"
    postfilter_width: int = 16
    postfilter_depth: int = 2
    postfilter_steps: int = 1000
    #: the rates (bit/pixel) the post-filter is trained at
    train_bpp: tuple[float, ...] = (0.25, 0.5, 1.0)
    dead_zone: float = 1.0 / 3.0
    default_bpp: float = 1.0
    seed: int = 0
    force: bool = False
    sign_key: Path | None = None

    def validate(self) -> CodecExportOptions:
        from ..contracts.transform import TRANSFORM_BLOCKS

        if self.block not in TRANSFORM_BLOCKS:
            raise DataError(f"--block must be one of {TRANSFORM_BLOCKS}, got {self.block}")
        if self.postfilter not in ("none", "auto", "on"):
            raise DataError(f"--postfilter must be none, auto or on, got {self.postfilter!r}")
        if not 1 <= self.stride <= self.block:
            raise DataError(f"--stride must be in 1..{self.block}, got {self.stride}")
        if not self.train_bpp or not all(r > 0 for r in self.train_bpp):
            raise DataError(f"--train-bpp must be positive rates, got {self.train_bpp}")
        if not self.default_bpp > 0:
            raise DataError(f"--bpp must be > 0, got {self.default_bpp}")
        from ..exporters.writer import prepare_target

        prepare_target(Path(self.out), self.force)  # before any work
        return self


@dataclass
class CodecExportReport:
    bundle: Path
    arch: str
    spec: Any
    manifest: dict[str, Any]
    fit: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def load_codec_images(path: str | Path) -> list[np.ndarray]:
    """Support images for the fit: one image file, a folder of them (any sizes), or an
    ``.npy`` / ``.npz`` stack; each (C, H, W) float in [0, 1]."""
    from ..runtime.images import IMAGE_SUFFIXES, read_images

    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) \
        if p.is_dir() else [p]
    if not files:
        raise DataError(f"{p}: no PNG / JPEG images in this folder")
    out = []
    for f in files:
        imgs, _, _ = read_images(f)
        out.extend(np.asarray(x, np.float64) for x in imgs)
    return out


def fit_klt(images: list[np.ndarray], block: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """``(basis (D, D) orthonormal columns by decreasing variance, mean (D,))`` of every
    ``block`` x ``block`` window ``stride`` apart (D = C * block**2, (c, row, col) order)."""
    rows = []
    for img in images:
        x = np.asarray(img, np.float64)
        if x.ndim == 2:
            x = x[None]
        if min(x.shape[1:]) < block:
            continue
        win = np.lib.stride_tricks.sliding_window_view(x, (x.shape[0], block, block))[0]
        rows.append(win[::stride, ::stride].reshape(-1, x.shape[0] * block * block))
    if not rows or sum(len(r) for r in rows) < 4 * rows[0].shape[1]:
        raise DataError(f"too little support data for a {block}x{block} transform: need at "
                        f"least {4 * block * block} windows (e.g. one 64x64 image)")
    x = np.concatenate(rows)
    mean = x.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(x - mean, rowvar=False))
    basis = vecs[:, np.argsort(vals)[::-1]]
    basis *= np.where(basis.sum(axis=0) < 0, -1.0, 1.0)  # a fixed sign: same data, same file
    return basis, mean


def _spec(channels: int, block: int, layers: tuple = ()):
    from ..spec import ArchSpec

    return ArchSpec((channels, block, block), (), channels * block * block, tuple(layers),
                    backbone="transform").validate()


def _reference(images: list[np.ndarray], block: int, seed: int) -> np.ndarray:
    """Parity images: up to 8 crops of 4 x 4 blocks from the support images."""
    rng = np.random.default_rng(seed)
    side = 4 * block
    out = []
    for i in range(8):
        img = images[i % len(images)]
        img = img[None] if img.ndim == 2 else img
        h, w = img.shape[1:]
        if h < side or w < side:
            continue
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        out.append(img[:, y:y + side, x:x + side])
    if not out:
        raise DataError(f"support images must be at least {side}x{side} pixels")
    return np.stack(out).astype(np.float32)


def export_codec(images: list[np.ndarray], options: CodecExportOptions, *,
                 log: Any = None) -> CodecExportReport:
    """Fit, export and verify a transform-codec bundle from support ``images``."""
    from ..exporters.bundle import write_bundle
    from ..exporters.codec_model import transform_codec
    from ..exporters.writer import BundleWriter
    from ..runtime import load_bundle
    from ..runtime.codec import INVERSE_ROLE, CodecConfig
    from ..tasks.base import Normalizer

    options.validate()
    log = log or (lambda line: None)
    t0 = time.perf_counter()
    images = [np.asarray(x, np.float64)[None] if np.ndim(x) == 2 else np.asarray(x, np.float64)
              for x in images]
    channels = images[0].shape[0]
    if any(x.shape[0] != channels for x in images):
        raise DataError("support images must all have the same number of channels")
    basis, mean = fit_klt(images, options.block, options.stride)
    model = transform_codec(_spec(channels, options.block), basis, mean)
    fit: dict[str, Any] = {"support_images": len(images), "stride": options.stride,
                           "windows_per_image": [int(((x.shape[1] - options.block)
                                                      // options.stride + 1)
                                                     * ((x.shape[2] - options.block)
                                                        // options.stride + 1))
                                                 for x in images]}
    if options.postfilter != "none":
        from .codec_postfilter import train_postfilter

        model, fit["postfilter"] = train_postfilter(model, images, options, log)
    t1 = time.perf_counter()
    config = CodecConfig(options.block, tuple([1.0] * model.spec.latent_dim),
                         options.dead_zone, 0.5, options.default_bpp)
    norm = Normalizer(np.zeros(1, np.float32), np.ones(1, np.float32))
    summary = {"name": "codec-support", "images": len(images), "channels": channels,
               "sizes": [list(x.shape[1:]) for x in images]}
    bundle = write_bundle(options.out, model=model, spec=model.spec, normalizer=norm,
                          task_summary=summary, objective="reconstruct",
                          reference=_reference(images, options.block, options.seed),
                          threshold=None, reports={"codec_fit": fit}, force=options.force,
                          seed=options.seed, sign_key=options.sign_key)
    with BundleWriter.update(bundle, sign_key=options.sign_key, log=log) as writer:
        if model.spec.decoder:  # the plain inverse, for the encoder's post-filter switch
            inverse = np.vstack([basis.T, (basis.T @ mean)[None]]).astype(np.float32)
            np.save(writer.path(_INVERSE_FILE), inverse, allow_pickle=False)
            writer.add(_INVERSE_FILE, INVERSE_ROLE)
        writer.commit(codec=config.to_dict())
    t2 = time.perf_counter()
    return CodecExportReport(bundle=bundle, arch=model.spec.describe(), spec=model.spec,
                             manifest=load_bundle(bundle).manifest, fit=fit,
                             timings={"fit_s": t1 - t0, "bundle_s": t2 - t1})
