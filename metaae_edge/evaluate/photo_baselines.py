"""Denoisers of the real-photo evaluation, each fitted on a task's clean support patches.

A method is a function ``fit(support, sigma, seed, budget_s) -> Fitted``: it sees the
support set only (clean patches, (S, H, W) in [0, 1]) and the task's noise sigma, and
returns a callable that denoises any stack of images (N, H, W) plus what it chose. The
classical filters choose their parameter by PSNR on the support patches under synthetic
Gaussian noise of the task's sigma (seeded), never on the query: the query does not
reach ``fit``.

* ``gaussian`` (sigma grid), ``median`` (size 3 / 5), ``wavelet`` (scikit-image
  ``denoise_wavelet``, BayesShrink, wavelet grid), ``tv`` (``denoise_tv_chambolle``, weight
  grid), ``nlm`` (``denoise_nl_means``, h x patch-size grid x the noise sigma it is given:
  the true sigma, as ours and BM3D are given, or estimated per image by ``estimate_sigma``;
  the tuning keeps whichever is better on the support), ``bm3d`` (the ``bm3d`` package,
  ``sigma_psd`` = the true sigma, nothing tuned);
* ``cnn``: a 5-layer residual CNN (16 channels, 7,265 parameters, predicts the noise)
  trained from scratch on the support patches with fresh noise per step, Adam, until
  ``budget_s`` of wall time or ``max_steps`` steps, whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..optional import require

__all__ = ["CLASSICAL", "Fitted", "fit_classical", "fit_cnn", "psnr_mean", "tune_on_support"]

_SKIMAGE = "metaae-edge[train]"
#: parameter grids of the tuned filters (scikit-image's own parameter names)
GRIDS: dict[str, list[dict[str, Any]]] = {
    "gaussian": [{"sigma": s} for s in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)],
    "median": [{"size": s} for s in (3, 5)],
    "wavelet": [{"wavelet": w} for w in ("db1", "db2", "sym4", "coif1")],
    "tv": [{"weight": w} for w in (0.02, 0.04, 0.06, 0.08, 0.1, 0.14, 0.2, 0.3)],
    "nlm": [{"h": h, "patch_size": p, "sigma": k} for k in ("true", "estimated")
            for p in (3, 5, 7) for h in (0.5, 0.7, 0.9, 1.1)],
    "bm3d": [{}],
}
CLASSICAL = tuple(GRIDS)
#: support patches used for tuning (a fixed, seeded subset: the grid is the cost)
TUNE_PATCHES = 32


@dataclass
class Fitted:
    """A fitted denoiser: ``apply(noisy (N, H, W)) -> (N, H, W)`` and what it chose."""

    apply: Callable[[np.ndarray], np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0


def psnr_mean(pred: np.ndarray, clean: np.ndarray) -> float:
    """Mean over images of PSNR (dB, data range 1) of ``pred`` clipped to [0, 1]."""
    metrics = require("skimage.metrics", _SKIMAGE, package="scikit-image")
    pred = np.clip(pred, 0.0, 1.0)
    return float(np.mean([metrics.peak_signal_noise_ratio(c, p, data_range=1.0)
                          for c, p in zip(clean, pred, strict=True)]))


def _filter(name: str, params: dict[str, Any], sigma: float) -> Callable[[np.ndarray],
                                                                          np.ndarray]:
    """One image (H, W) -> denoised, for filter ``name`` at ``params``."""
    restoration = require("skimage.restoration", _SKIMAGE, package="scikit-image")
    if name == "gaussian":
        from scipy import ndimage
        return lambda x: ndimage.gaussian_filter(x, params["sigma"], mode="reflect")
    if name == "median":
        from scipy import ndimage
        return lambda x: ndimage.median_filter(x, size=params["size"], mode="reflect")
    if name == "wavelet":
        return lambda x: restoration.denoise_wavelet(
            x, method="BayesShrink", mode="soft", wavelet=params["wavelet"],
            rescale_sigma=True)
    if name == "tv":
        return lambda x: restoration.denoise_tv_chambolle(x, weight=params["weight"])
    if name == "nlm":
        def nlm(x: np.ndarray) -> np.ndarray:
            s = (float(restoration.estimate_sigma(x)) if params.get("sigma") == "estimated"
                 else sigma)
            return restoration.denoise_nl_means(
                x, h=params["h"] * s, sigma=s, patch_size=params["patch_size"],
                patch_distance=6, fast_mode=True)
        return nlm
    if name == "bm3d":
        bm3d = require("bm3d", "bm3d", needed_for="the bm3d baseline")
        return lambda x: np.asarray(bm3d.bm3d(x, sigma_psd=sigma), np.float32)
    raise ValueError(f"unknown classical filter {name!r}")


def _stack(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(noisy: np.ndarray) -> np.ndarray:
        return np.stack([fn(np.asarray(x, np.float64)) for x in noisy]).astype(np.float32)
    return apply


def tune_on_support(name: str, support: np.ndarray, sigma: float,
                    seed: int) -> tuple[dict[str, Any], float]:
    """``(params, support PSNR)`` of the grid point best on noisy support patches."""
    rng = np.random.default_rng([seed, 7])
    pick = rng.permutation(len(support))[:TUNE_PATCHES]
    clean = support[pick]
    noisy = (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32)
    best: tuple[float, dict[str, Any]] | None = None
    for params in GRIDS[name] if len(GRIDS[name]) > 1 else []:
        score = psnr_mean(_stack(_filter(name, params, sigma))(noisy), clean)
        if best is None or score > best[0]:
            best = (score, params)
    if best is None:  # nothing to tune (bm3d: the true sigma)
        return dict(GRIDS[name][0]), float("nan")
    return dict(best[1]), best[0]


def fit_classical(name: str, support: np.ndarray, sigma: float, seed: int = 0,
                  budget_s: float | None = None) -> Fitted:
    """A classical filter tuned on ``support`` (``budget_s`` unused: grid search)."""
    t0 = time.perf_counter()
    params, score = tune_on_support(name, support, sigma, seed)
    out = Fitted(_stack(_filter(name, params, sigma)), {**params, "support_psnr": score})
    out.fit_s = time.perf_counter() - t0
    return out


def _cnn(torch: Any, channels: int = 16, layers: int = 5) -> Any:
    nn = torch.nn
    mods: list[Any] = []
    c_in = 1
    for _ in range(layers - 1):
        mods += [nn.Conv2d(c_in, channels, 3, padding=1, padding_mode="reflect"), nn.ReLU()]
        c_in = channels
    mods.append(nn.Conv2d(c_in, 1, 3, padding=1, padding_mode="reflect"))
    return nn.Sequential(*mods)


def fit_cnn(support: np.ndarray, sigma: float, seed: int = 0, budget_s: float | None = 60.0,
            *, max_steps: int = 100_000, batch: int = 32, lr: float = 1e-3) -> Fitted:
    """The residual CNN baseline trained from scratch on ``support`` for ``budget_s``.

    Each step draws ``batch`` support patches and fresh Gaussian noise of ``sigma``; the
    net predicts the noise (output = input - net(input)). The loop stops before a step
    once ``budget_s`` seconds have passed or after ``max_steps`` steps.
    """
    torch = require("torch", _SKIMAGE)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = _cnn(torch)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    data = torch.as_tensor(np.asarray(support, np.float32))[:, None]
    budget = float("inf") if budget_s is None else float(budget_s)
    steps = 0
    while steps < max_steps and time.perf_counter() - t0 < budget:
        idx = torch.randint(len(data), (min(batch, len(data)),), generator=gen)
        clean = data[idx]
        noise = sigma * torch.randn(clean.shape, generator=gen)
        loss = torch.mean((net(clean + noise) - noise) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    net.eval()

    def apply(noisy: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(noisy, np.float32))[:, None]
            return (x - net(x))[:, 0].numpy()

    n_params = sum(p.numel() for p in net.parameters())
    return Fitted(apply, {"steps": steps, "params": int(n_params), "budget_s": budget_s},
                  time.perf_counter() - t0)
