"""Shared helpers of the image (conv) export tests: synthetic images and the torch
reference the exported graphs are compared with."""

from __future__ import annotations

import numpy as np
import torch

from metaae_edge.space.conv import CompactConvAE
from metaae_edge.tasks.base import Normalizer


def blob_images(n: int, shape: tuple[int, int, int], seed: int = 0,
                rel_radius: float | None = None) -> np.ndarray:
    """Blobs on a noisy background in [0, 1], (n, C, H, W) float32; the blob radius is
    drawn from [2, 5] pixels, or ``rel_radius`` times the shorter side."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = rng.uniform(0.0, 0.15, (n, c, h, w))
    for i in range(n):
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        r = rng.uniform(2, 5) if rel_radius is None else rel_radius * min(h, w)
        out[i, :, (yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 0.8
    return np.clip(out, 0, 1).astype(np.float32)


def torch_reference(model: CompactConvAE, norm: Normalizer,
                    x: np.ndarray) -> dict[str, np.ndarray]:
    """Independent torch reference in NCHW: per-pixel error averaged over channels."""
    mean, std = float(norm.mean[0]), float(norm.std[0])
    with torch.no_grad():
        z = (torch.from_numpy(x) - mean) / std
        r, latent = model(z)
        sq = (r - z) ** 2
        return {"reconstruction": (r * std + mean).numpy(), "latent": latent.numpy(),
                "score": sq.mean(dim=(1, 2, 3)).numpy(),
                "error_map": sq.mean(dim=1, keepdim=True).numpy()}


def edge_task(n: int = 40, res: int = 32, margin: int = 8, max_side: int = 20):
    """A denoise task (Gaussian 0.1) of piecewise-constant images: a flat background and 3
    flat rectangles (corner within ``res - margin``, sides 6 .. ``max_side`` - 1), sharp
    edges: NLM's regime, and one where NLM leaves noise on the flat parts a net can remove."""
    from metaae_edge.tasks.base import Noise, Task

    rng = np.random.default_rng(0)
    imgs = np.empty((n, res, res), np.float32)
    for k in range(n):
        img = np.full((res, res), rng.uniform(0.2, 0.8), np.float32)
        for _ in range(3):
            y, x = rng.integers(0, res - margin, 2)
            value = rng.uniform(0, 1)  # drawn before the sides, as the slice assignment did
            h, w = rng.integers(6, max_side), rng.integers(6, max_side)
            img[y:y + h, x:x + w] = value
        imgs[k] = img
    x = imgs.reshape(n, -1)
    return Task("edges", "test", x, x[:8], objective="denoise", normalization="global",
                noise=Noise("gaussian", 0.1), image_shape=(1, res, res))
