"""Full-size images through a conv bundle: reflect padding and overlapping tiles (torch-free).

A conv bundle's graphs take heights and widths that are multiples of ``2**stages``
(dynamic-shape bundles) or exactly the adapted H x W (dense-code bundles,
``bundle.fixed_hw``). A photo of any H x W runs through them in one of two ways:

* **whole image** (dynamic bundles, the default): the image is reflect-padded to the next
  allowed multiple (the extra rows and columns split between the two sides, the larger half
  at the bottom / right), run once, and cropped back. The result is exactly the graph's
  output on the padded image, cropped: nothing is approximated.
* **tiles** (dense-code bundles always, at their fixed size; dynamic bundles when a
  ``tile`` is asked for, e.g. to bound memory): tiles of ``tile`` = (th, tw) pixels start
  every ``th - overlap`` rows / ``tw - overlap`` columns, the last tile of each row and
  column flush with the image's edge; an image smaller than a tile is reflect-padded up to
  it first. Tiles run in batches and are blended with a separable linear ramp over the
  overlap (weight ``min(1, (i + 1) / (overlap + 1), (t - i) / (overlap + 1))`` at
  position ``i`` of a side of ``t`` pixels), so every pixel is a weighted mean of the
  tiles that cover it; with no overlap the tiles simply abut. Batching does not change the
  result: the tiled run equals each tile run on its own and blended the same way.

Only per-pixel outputs are assembled this way (reconstruction / denoised image, error map):
a latent code or a score describes the graph's input, so ``encode`` / ``score`` still take
the sizes the graph does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["blend_window", "full_size", "pad_to", "padded_size", "run_full_size",
           "run_tiled", "tile_starts"]

Fn = Callable[[np.ndarray], np.ndarray]
DEFAULT_TILE_BATCH = 64


def padded_size(h: int, w: int, multiple: int) -> tuple[int, int]:
    """The smallest (H, W) >= (h, w) with both sides multiples of ``multiple``."""
    m = int(multiple)
    return -(-int(h) // m) * m, -(-int(w) // m) * m


def _split(extra: int) -> tuple[int, int]:
    return extra // 2, extra - extra // 2


def pad_to(x: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad NCHW ``x`` to ``hw``; returns ``(padded, (top, left))`` for cropping.

    numpy's ``reflect`` (the edge pixel not repeated) reflects again when a pad exceeds the
    side; a side of one pixel is edge-replicated.
    """
    h, w = x.shape[2:]
    (top, bottom), (left, right) = _split(hw[0] - h), _split(hw[1] - w)
    if top == bottom == left == right == 0:
        return x, (0, 0)
    mode = "reflect" if min(h, w) > 1 else "edge"
    out = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode)
    return np.ascontiguousarray(out), (top, left)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``size`` (>= tile) pixels, one
    every ``tile - overlap``, the last flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def blend_window(th: int, tw: int, overlap: int) -> np.ndarray:
    """The (th, tw) float32 blending weights of one tile (see the module docstring)."""
    def ramp(t: int) -> np.ndarray:
        i = np.arange(t, dtype=np.float64)
        return np.minimum(1.0, np.minimum(i + 1, t - i) / (overlap + 1))
    return np.outer(ramp(th), ramp(tw)).astype(np.float32)


def _check_tile(tile: tuple[int, int], overlap: int, multiple: int) -> None:
    th, tw = (int(v) for v in tile)
    if th < 1 or tw < 1 or th % multiple or tw % multiple:
        raise InputError(f"tile {th}x{tw} must be positive multiples of {multiple} (the "
                         "bundle's spatial multiple)")
    if not 0 <= overlap < min(th, tw):
        raise InputError(f"tile overlap {overlap} must lie in 0..{min(th, tw) - 1} for "
                         f"{th}x{tw} tiles")


def run_tiled(fn: Fn, x: np.ndarray, tile: tuple[int, int], overlap: int,
              batch: int = DEFAULT_TILE_BATCH) -> np.ndarray:
    """``fn`` over overlapping ``tile``-sized tiles of NCHW ``x``, blended; NC'HW out.

    ``fn`` maps (T, C, th, tw) to (T, C', th, tw) and is called with at most ``batch``
    tiles at a time. An image smaller than a tile is reflect-padded to it and cropped back.
    """
    th, tw = (int(v) for v in tile)
    n, _, h, w = x.shape
    xp, (top, left) = pad_to(x, (max(h, th), max(w, tw)))
    hp, wp = xp.shape[2:]
    if (hp, wp) == (th, tw):  # one tile: the graph's output itself
        return np.ascontiguousarray(np.asarray(fn(xp))[:, :, top:top + h, left:left + w])
    spots = [(i, y, c) for i in range(n) for y in tile_starts(hp, th, overlap)
             for c in tile_starts(wp, tw, overlap)]
    win = blend_window(th, tw, overlap)
    out: np.ndarray | None = None
    weight = np.zeros((hp, wp), np.float32)
    for y, c in {(y, c) for _, y, c in spots}:
        weight[y:y + th, c:c + tw] += win
    for start in range(0, len(spots), batch):
        chunk = spots[start:start + batch]
        tiles = np.stack([xp[i, :, y:y + th, c:c + tw] for i, y, c in chunk])
        res = np.asarray(fn(np.ascontiguousarray(tiles)))
        if out is None:
            out = np.zeros((n, res.shape[1], hp, wp), np.float32)
        for (i, y, c), r in zip(chunk, res):
            out[i, :, y:y + th, c:c + tw] += r * win
    assert out is not None
    out /= weight
    return np.ascontiguousarray(out[:, :, top:top + h, left:left + w])


def full_size(fn: Fn, x: np.ndarray, multiple: int, *, fixed_hw: tuple[int, int] | None = None,
              tile: tuple[int, int] | None = None, overlap: int | None = None,
              batch: int = DEFAULT_TILE_BATCH) -> np.ndarray:
    """Per-pixel output of ``fn`` on NCHW images of any H x W (see the module docstring).

    Args:
        fn: the graph call, e.g. ``Runtime.reconstruct`` or ``Runtime.error_map``.
        x: float32 (N, C, H, W) images.
        multiple: the bundle's spatial multiple (``2**stages``).
        fixed_hw: the only size the graph takes (dense-code bundles): tiles of that size.
        tile: tile size for a dynamic bundle (None: the whole padded image in one call).
        overlap: tile overlap in pixels (default a quarter of the shorter tile side).
        batch: tiles per graph call.
    """
    if fixed_hw is not None:
        if tile is not None and tuple(tile) != tuple(fixed_hw):
            raise InputError(f"this bundle runs at {fixed_hw[0]}x{fixed_hw[1]} only (dense "
                             f"code); tiles must be that size, got {tile[0]}x{tile[1]}")
        tile = fixed_hw
    if tile is None:
        h, w = x.shape[2:]
        xp, (top, left) = pad_to(x, padded_size(h, w, multiple))
        out = np.asarray(fn(xp))
        return np.ascontiguousarray(out[:, :, top:top + h, left:left + w])
    ov = min(tile) // 4 if overlap is None else int(overlap)
    _check_tile(tile, ov, multiple)
    return run_tiled(fn, x, tile, ov, batch)


def run_full_size(rt: Any, images: Any, mode: str = "reconstruct", *,
                  tile: tuple[int, int] | None = None, overlap: int | None = None,
                  batch: int = DEFAULT_TILE_BATCH) -> np.ndarray:
    """A :class:`~metaae_edge.runtime.Runtime` on images of any size: ``mode`` is
    ``reconstruct`` / ``denoise`` (N, C, H, W) or ``error-map`` (N, 1, H, W)."""
    fns = {"reconstruct": rt.reconstruct, "denoise": rt.denoise, "error-map": rt.error_map}
    if mode not in fns:
        raise InputError(f"full-size runs give per-pixel outputs: mode must be one of "
                         f"{', '.join(fns)}, got {mode!r}")
    contract = rt.contract
    if not getattr(contract, "is_image", False):
        raise InputError(f"full-size images need an image (conv) bundle; {rt.bundle.root} "
                         "takes feature vectors")
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None] if contract.channels == 1 else x[None]
    if x.ndim != 4 or x.shape[1] != contract.channels or min(x.shape) == 0:
        raise InputError(f"expected images (N, {contract.channels}, H, W), got shape "
                         f"{tuple(x.shape)}")
    fixed = getattr(contract, "fixed_hw", None)
    return full_size(fns[mode], np.ascontiguousarray(x), contract.spatial_multiple,
                     fixed_hw=fixed, tile=tile, overlap=overlap, batch=batch)
