"""Load a user's own images (folder, image file, .npy/.npz, clean/noisy pairs) as a Task."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..fsutil import refuse_special
from ..runtime.images import read_images, to_nchw
from ..runtime.readers import load_npz_pair
from .base import OBJECTIVES, Noise, Task

__all__ = ["DEFAULT_PATCH", "MAX_ADAPT_PIXELS", "QUERY_FRACTION", "load_image_task",
           "patchify"]

DEFAULT_PATCH = 32
QUERY_FRACTION = 0.2
_GROUP_SPLIT_MIN_IMAGES = 5  # from here on whole images go to the query (no patch leakage)
_MAX_NAMES = 64  # image names kept in info (summary-free) for small data sets
#: Adapting reads every image and cuts it into patches held in memory (and the pipeline's
#: candidates and density run over all of them): more pixels than this in all are refused
#: in one line rather than running out of memory.
MAX_ADAPT_PIXELS = 2_000_000


def _check_adapt_size(p: Path, images: np.ndarray) -> None:
    n, _, h, w = images.shape
    if n * h * w > MAX_ADAPT_PIXELS:
        raise DataError(
            f"{p}: {n} image(s) of {w}x{h} ({n * h * w / 1e6:.1f} megapixels in all) are "
            f"above the {MAX_ADAPT_PIXELS / 1e6:.0f} megapixels adapting takes; crop or "
            "downscale them, or pass a few crops (adapting needs patches, not whole photos)")


def patchify(images: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(N, C, H, W)`` images into non-overlapping ``patch x patch`` tiles.

    Tiles run row by row from the top-left corner; a border narrower than ``patch`` is
    dropped.

    Returns:
        ``(tiles (N * rows * cols, C, patch, patch), source image index of each tile)``.
    """
    n, c, h, w = images.shape
    rows, cols = h // patch, w // patch
    if rows == 0 or cols == 0:
        raise DataError(
            f"images of {w}x{h} pixels are smaller than the {patch}x{patch} patch; pass a "
            f"patch of at most {min(h, w)}"
        )
    x = images[:, :, : rows * patch, : cols * patch]
    x = x.reshape(n, c, rows, patch, cols, patch).transpose(0, 2, 4, 1, 3, 5)
    tiles = np.ascontiguousarray(x.reshape(n * rows * cols, c, patch, patch))
    return tiles, np.repeat(np.arange(n), rows * cols)


def _read_pairs(p: Path) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]] | None:
    """Clean/noisy pairs from ``p/clean`` + ``p/noisy`` or an .npz with both; else None."""
    if p.is_dir() and (p / "clean").is_dir() and (p / "noisy").is_dir():
        clean, names, info = read_images(p / "clean")
        noisy, noisy_names, _ = read_images(p / "noisy")
        missing = sorted(set(names) ^ set(noisy_names))
        if missing:
            where = "noisy" if missing[0] in names else "clean"
            raise DataError(
                f"{p}: {missing[0]} has no partner in {p / where} ({len(missing)} unpaired files); "
                "clean/ and noisy/ must hold the same file names"
            )
        fmt = "paired-folder"
    elif p.suffix.lower() == ".npz" and p.is_file():
        pair = load_npz_pair(p, ("clean", "noisy"), DataError)  # the reader's caps
        if pair is None:
            return None
        raw_clean, raw_noisy = pair
        clean, noisy = to_nchw(raw_clean, f"{p}['clean']"), to_nchw(raw_noisy, f"{p}['noisy']")
        names = [f"{p.stem}_{i:05d}" for i in range(len(clean))]
        n, c, h, w = clean.shape
        info = {"source": str(p), "n_images": n, "channels": c, "height": h, "width": w}
        fmt = "paired-npz"
    else:
        return None
    if clean.shape != noisy.shape:
        raise DataError(
            f"{p}: clean images have shape {clean.shape[1:]} x {len(clean)} but noisy ones "
            f"{noisy.shape[1:]} x {len(noisy)}; each noisy image must match its clean one"
        )
    info.update(source=str(p), format=fmt)
    return clean, noisy, names, info


def _split(
    n: int, groups: np.ndarray, n_groups: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    """Support / query sample indices: by whole image when there are enough images."""
    if n_groups >= _GROUP_SPLIT_MIN_IMAGES and n_groups < n:
        order = rng.permutation(n_groups)
        n_q = max(1, round(QUERY_FRACTION * n_groups))
        in_query = np.isin(groups, order[:n_q])
        sup, qry = np.flatnonzero(~in_query), np.flatnonzero(in_query)
        return rng.permutation(sup), rng.permutation(qry), "image"
    perm = rng.permutation(n)
    n_q = min(max(1, round(QUERY_FRACTION * n)), n - 1)
    return perm[n_q:], perm[:n_q], "sample"


def _check_args(objective: str | None, max_side: int, patch: int | None,
                n_support: int | None) -> None:
    if objective is not None and objective not in OBJECTIVES:
        raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    for name, value, lo in (("max_side", max_side, 1), ("patch", patch, 2),
                            ("n_support", n_support, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < lo):
            raise DataError(f"{name} must be an integer >= {lo}, got {value!r}")


def _read_source(p: Path, objective: str | None, noise: Noise | str | None):
    """(images, noisy or None, names, info, objective): paired data or plain images."""
    refuse_special(p, DataError)  # the pairs' .npz is opened before read_images runs
    paired = _read_pairs(p) if p.exists() else None
    if paired is None:
        images, names, info = read_images(p)
        return images, None, names, info, objective or "reconstruct"
    images, noisy, names, info = paired
    objective = objective or "denoise"
    if noise is not None:
        raise DataError(
            f"{p} holds clean/noisy pairs, which carry their own noise; drop the noise "
            "option (or pass clean images only to add synthetic noise)"
        )
    info["paired"] = 1
    return images, noisy if objective == "denoise" else None, names, info, objective


def _samples(p: Path, images: np.ndarray, noisy: np.ndarray | None, patch: int | None,
             max_side: int, info: dict[str, Any]):
    """(samples, groups, noisy samples, patch): whole images, or patches when large."""
    n_img, _, h, w = images.shape
    if patch is None:
        patch = min(DEFAULT_PATCH, h, w) if max(h, w) > max_side else None
    elif h <= patch and w <= patch:
        patch = None
    if patch is None:
        samples, groups, noisy_samples = images, np.arange(n_img), noisy
    else:
        samples, groups = patchify(images, int(patch))
        noisy_samples = None if noisy is None else patchify(noisy, int(patch))[0]
        info["patch_rows"], info["patch_cols"] = h // patch, w // patch
    if len(samples) < 2:
        raise DataError(
            f"{p} gives {len(samples)} sample; expected at least 2 to split into support and "
            "query: add images, or pass a smaller patch to cut the image into tiles"
        )
    return samples, groups, noisy_samples, patch


def load_image_task(
    path: str | os.PathLike[str],
    *,
    objective: str | None = None,
    noise: Noise | str | None = None,
    n_support: int | None = None,
    patch: int | None = None,
    seed: int = 0,
    max_side: int = 64,
) -> Task:
    """Load a user's images as an image task (family ``"user"``, name = the path's stem).

    Images are read with :func:`~metaae_edge.runtime.images.read_images` (a folder of
    PNG/JPEG files, one image file, or an ``.npy`` / ``.npz`` array ``(N, H, W[, C])``),
    optionally cut into non-overlapping patches, and split by a seeded permutation into
    support (80%) and query (20%, at least one sample); with five or more source images
    and patching, whole images go to one side (no patch leakage). Paired data (a folder
    with ``clean/`` and ``noisy/`` sub-folders of the same file names, or an ``.npz`` with
    ``clean`` and ``noisy`` arrays) makes a ``denoise`` task with real noise. For
    ``anomaly`` every image is taken as normal (the query is unlabelled).

    Args:
        path: Images or paired data as above.
        objective: ``reconstruct``, ``denoise`` or ``anomaly``; default ``denoise`` for
            paired data (other objectives use its clean images), ``reconstruct`` otherwise.
        noise: Synthetic ``denoise`` corruption in pixel units (a :class:`Noise` or text
            like ``salt-pepper:0.1``); default ``gaussian:0.1``. Refused for paired data.
        n_support: Keep at most this many support samples (default: all of them).
        patch: Patch side. Default: images with both sides ``<= max_side`` are used whole,
            larger ones are cut into 32x32 patches (or the shorter side, if less); given,
            images larger than ``patch`` are cut into ``patch x patch`` tiles.
        seed: Seed of the support/query split.
        max_side: Largest side used whole when ``patch`` is not given.

    Returns:
        A task of flattened float32 samples in [0, 1] with ``image_shape``,
        ``normalization="global"``, ``loss="mse"``; ``info`` records the source, format,
        patch (0 = whole images), original size, channels, counts and (<= 64) names.

    Raises:
        DataError: With one line saying what is wrong and how to fix it.
        BackendUnavailableError: Image files need Pillow (``metaae-edge[images]``).
    """
    _check_args(objective, max_side, patch, n_support)
    p = Path(path)
    images, noisy, names, info, objective = _read_source(p, objective, noise)
    _check_adapt_size(p, images)
    n_img, c, h, w = images.shape
    samples, groups, noisy_samples, patch = _samples(p, images, noisy, patch, max_side, info)
    n = len(samples)
    sup, qry, split_by = _split(n, groups, n_img, np.random.default_rng(seed))
    if n_support is not None:
        sup = sup[: int(n_support)]

    def flat(x: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
        return None if x is None else np.ascontiguousarray(x[idx].reshape(len(idx), -1))

    if isinstance(noise, str):
        noise = Noise.parse(noise)
    if objective == "denoise" and noisy is None and noise is None:
        noise = Noise("gaussian", 0.1)
    info.update(patch=int(patch or 0), image_height=h, image_width=w, image_size=f"{h}x{w}",
                channels=c, n_images=n_img, n_samples=n, split_by=split_by)
    for key in ("height", "width"):
        info.pop(key, None)
    if n_img <= _MAX_NAMES:
        info["names"] = list(names)
    return Task(
        name=p.stem or p.name, family="user", support=flat(samples, sup),
        query=flat(samples, qry), objective=objective, seed=int(seed), loss="mse",
        normalization="global", noise=noise if objective == "denoise" else None, info=info,
        image_shape=tuple(int(v) for v in samples.shape[1:]),
        support_noisy=flat(noisy_samples, sup), query_noisy=flat(noisy_samples, qry),
    )
