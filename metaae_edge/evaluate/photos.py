"""Real-photo denoising evaluation: scikit-image's bundled photographs, ours vs baselines.

The photographs ship inside scikit-image's wheel (no download; :data:`PHOTOS`), loaded
as grayscale float32 in [0, 1]. A task pairs two different photos:

* support: ``n_support`` clean ``size x size`` patches of the *support* photo (one per
  run, ``camera`` by default, never evaluated): all any method may fit or tune on; each
  method is fitted once per seed and applied to every evaluated photo;
* query (patch task): ``n_query`` patches of the *evaluated* photo with Gaussian noise of
  ``sigma`` (not clipped), scored against their clean versions;
* full image: the evaluated photo (or its centre ``full_crop`` square) with noise, denoised
  whole.

Methods (:data:`METHODS`): ``noisy`` (the input), the tuned classical filters and the
residual CNN of :mod:`.photo_baselines`, and ``ours``: the public pipeline
(:func:`~metaae_edge.pipeline.adapt_and_export` on an in-memory denoise task of the
support patches, then the bundle's :class:`~metaae_edge.runtime.Runtime` on the query),
from any checkpoint (``builtin:NAME`` or a path). The CNN's wall-time budget defaults to
ours' adaptation time on the same task. The procedural ``natural`` family uses no
photograph; the ``photo-crops`` family (:mod:`metaae_edge.tasks.photo_crops`, tried
in round 23, not shipped: docs/images.md) uses other photographs and excludes the
support photo, every photo evaluated here by default and the docs' tuning pairs
(``EXCLUDED_PHOTOS``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..optional import require
from .metrics import mean_ci
from .photo_baselines import CLASSICAL, Fitted, fit_classical, fit_cnn, psnr_mean

__all__ = ["METHODS", "PHOTOS", "PhotoTask", "fit_methods", "fit_ours", "load_photo",
           "make_photo_task", "photo_markdown", "run_photo_eval", "score_unit",
           "support_patches"]

#: photographs scikit-image ships in its wheel (``skimage.data`` names; no pooch needed)
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel",
          "moon", "page", "coins", "text", "clock", "immunohistochemistry",
          "hubble_deep_field")
METHODS = ("noisy", *CLASSICAL, "cnn", "ours")
DEFAULT_CHECKPOINT = "builtin:digits-res"


def load_photo(name: str) -> np.ndarray:
    """Photograph ``name`` as grayscale float32 (H, W) in [0, 1].

    Raises:
        DataError: ``name`` is not one of :data:`PHOTOS` (the message lists them).
    """
    if name not in PHOTOS:
        raise DataError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}")
    data = require("skimage.data", "metaae-edge[train]", package="scikit-image")
    color = require("skimage.color", "metaae-edge[train]", package="scikit-image")
    img = np.asarray(getattr(data, name)())
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    elif img.dtype == np.uint8:
        img = img / 255.0
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _patches(img: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    if h < size or w < size:
        raise DataError(f"photo of {h}x{w} is smaller than the {size}x{size} patch")
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(0, w - size + 1, n)
    return np.stack([img[y:y + size, x:x + size] for y, x in zip(ys, xs, strict=True)])


def _crop(img: np.ndarray, side: int) -> np.ndarray:
    if side <= 0 or (img.shape[0] <= side and img.shape[1] <= side):
        return img
    h, w = img.shape
    y, x = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return img[y:y + side, x:x + side]


@dataclass
class PhotoTask:
    """One evaluation unit: clean support patches of one photo, a noisy other photo."""

    photo: str
    support_photo: str
    seed: int
    sigma: float
    support: np.ndarray  # (S, size, size) clean
    query: np.ndarray  # (Q, size, size) clean
    query_noisy: np.ndarray
    full: np.ndarray  # (H, W) clean
    full_noisy: np.ndarray


def support_patches(support_photo: str, seed: int = 0, n_support: int = 256,
                    size: int = 32) -> np.ndarray:
    """(S, size, size) clean patches of ``support_photo``, the same for every evaluated
    photo of a seed."""
    rng = np.random.default_rng([seed, PHOTOS.index(support_photo), 1])
    return _patches(load_photo(support_photo), n_support, size, rng)


def make_photo_task(photo: str, support_photo: str, seed: int = 0, sigma: float = 0.1,
                    n_support: int = 256, n_query: int = 32, size: int = 32,
                    full_crop: int = 256) -> PhotoTask:
    """The unit (``photo`` evaluated, ``support_photo`` to fit on), seeded."""
    if photo == support_photo:
        raise DataError(f"the support photo must differ from the evaluated one ({photo!r})")
    if not (sigma > 0 and np.isfinite(sigma)):
        raise DataError(f"sigma must be positive, got {sigma}")
    support = support_patches(support_photo, seed, n_support, size)
    rng = np.random.default_rng([seed, PHOTOS.index(photo), PHOTOS.index(support_photo)])
    img = load_photo(photo)
    query = _patches(img, n_query, size, rng)
    full = _crop(img, full_crop)
    noisy = (query + sigma * rng.standard_normal(query.shape)).astype(np.float32)
    full_noisy = (full + sigma * rng.standard_normal(full.shape)).astype(np.float32)
    return PhotoTask(photo, support_photo, seed, sigma, support, query, noisy, full,
                     full_noisy)


def _bundle_apply(runtime: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Denoise (N, H, W) through the bundle: reflect-pad to the graph's multiple."""
    contract = runtime.contract
    m = int(getattr(contract, "spatial_multiple", 1))
    fixed = getattr(contract, "fixed_hw", None)

    def apply(noisy: np.ndarray) -> np.ndarray:
        n, h, w = noisy.shape
        if fixed is not None and tuple(fixed) != (h, w):
            raise DataError(f"this bundle runs at {fixed} only; got {h}x{w}")
        ph, pw = (-h) % m, (-w) % m
        x = np.pad(noisy, ((0, 0), (0, ph), (0, pw)), mode="reflect")[:, None]
        out = np.concatenate([runtime.denoise(np.ascontiguousarray(x[i:i + 64]))
                              for i in range(0, n, 64)])
        return out[:, 0, :h, :w]

    return apply


def fit_ours(checkpoint: str = DEFAULT_CHECKPOINT, **options: Any) -> Callable[..., Fitted]:
    """"ours" as a method: adapt ``checkpoint`` on the support patches with the public
    pipeline (``adapt_and_export``; ``options`` are :class:`ExportOptions` fields), load
    the bundle and denoise with it. ``fit_s`` is the adaptation time (what the CNN gets)."""

    def fit(support: np.ndarray, sigma: float, seed: int = 0,
            budget_s: float | None = None) -> Fitted:
        from ..pipeline import ExportOptions, adapt_and_export
        from ..runtime import Runtime
        from ..tasks import Noise, Task

        s, h, w = support.shape
        flat = support.reshape(s, h * w)
        # The query of this task is reported by the adaptation only; it holds support
        # patches: the evaluated photo never enters the pipeline before denoising.
        task = Task(name="photo-support", family="photos", support=flat, query=flat[:32],
                    objective="denoise", normalization="global",
                    noise=Noise("gaussian", float(sigma)), image_shape=(1, h, w), seed=seed)
        tmp = tempfile.TemporaryDirectory(prefix="photo-ours-")
        opts = ExportOptions(out=Path(tmp.name) / "bundle", objective="denoise", seed=seed,
                             **options)
        report = adapt_and_export(checkpoint, task, opts)
        runtime = Runtime.load(report.bundle, backend="ort-cpu", threads=1)
        apply = _bundle_apply(runtime)
        apply.__dict__["_keep"] = tmp  # the bundle folder lives as long as the method
        return Fitted(apply, {"arch": report.arch, "params": report.spec.param_count(),
                              "macs_per_pixel": report.spec.macs() / (h * w),
                              "checkpoint": checkpoint}, float(report.timings["adapt_s"]))

    return fit


def _fitter(method: str, ours: Callable[..., Fitted]) -> Callable[..., Fitted]:
    if method == "ours":
        return ours
    if method == "cnn":
        return fit_cnn
    if method == "noisy":
        return lambda support, sigma, seed=0, budget_s=None: Fitted(lambda x: x)
    return lambda support, sigma, seed=0, budget_s=None: fit_classical(
        method, support, sigma, seed)


def fit_methods(support: np.ndarray, sigma: float, seed: int, methods: Sequence[str],
                ours: Callable[..., Fitted], budget_s: float | None = None
                ) -> dict[str, Fitted]:
    """Every method fitted on the clean ``support`` patches only (ours first: without
    ``budget_s`` its adaptation time is the CNN's budget)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DataError(f"unknown method(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(METHODS)}")
    fitted, budget = {}, budget_s
    for m in sorted(methods, key=lambda m: m != "ours"):
        fitted[m] = _fitter(m, ours)(support, sigma, seed, budget)
        if m == "ours" and budget_s is None:
            budget = fitted[m].fit_s
    return {m: fitted[m] for m in methods}


def score_unit(task: PhotoTask, fitted: dict[str, Fitted],
               full: bool = True) -> list[dict[str, Any]]:
    """One row per fitted method: patch PSNR, full-image PSNR, what it chose, seconds."""
    rows = []
    for m, f in fitted.items():
        t0 = time.perf_counter()
        row = {"photo": task.photo, "support_photo": task.support_photo, "seed": task.seed,
               "sigma": task.sigma, "method": m,
               "psnr": psnr_mean(f.apply(task.query_noisy), task.query),
               "fit_s": f.fit_s, "params": f.params}
        if full:
            row["psnr_full"] = psnr_mean(f.apply(task.full_noisy[None]), task.full[None])
        row["apply_s"] = time.perf_counter() - t0
        rows.append(row)
    return rows


def run_photo_eval(photos: Sequence[str], seeds: Sequence[int], *,
                   support_photo: str = "camera", sigma: float = 0.1,
                   methods: Sequence[str] = METHODS, checkpoint: str = DEFAULT_CHECKPOINT,
                   budget_s: float | None = None, n_support: int = 256, n_query: int = 32,
                   size: int = 32, full_crop: int = 256, full: bool = True,
                   log: Callable[[str], None] | None = None,
                   ours_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per seed: fit every method once on ``support_photo``'s patches, score it on each
    photo of ``photos`` (which must not include the support photo). ``ours_options``:
    :class:`~metaae_edge.pipeline.ExportOptions` fields for ours (e.g. ``candidates``)."""
    photos = list(photos)
    for p in [support_photo, *photos]:
        if p not in PHOTOS:
            load_photo(p)  # raises, naming the valid photos, before any work
    if support_photo in photos or not photos:
        raise DataError(f"evaluate at least one photo other than the support photo "
                        f"{support_photo!r}; got {photos}")
    ours = fit_ours(checkpoint, **(ours_options or {}))
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        support = support_patches(support_photo, seed, n_support, size)
        fitted = fit_methods(support, sigma, seed, methods, ours, budget_s)
        if log:
            log(f"seed {seed}: fitted on {support_photo} (" + ", ".join(
                f"{m} {f.fit_s:.1f}s" for m, f in fitted.items()) + ")")
        for photo in photos:
            task = make_photo_task(photo, support_photo, seed, sigma, n_support, n_query,
                                   size, full_crop)
            unit = score_unit(task, fitted, full)
            rows += unit
            if log:
                log(f"seed {seed} {photo}: " + ", ".join(
                    f"{r['method']} {r['psnr']:.2f}/{r.get('psnr_full', float('nan')):.2f}"
                    for r in unit))
    return rows


def _cell(values: list[float]) -> str:
    ci = mean_ci(values)
    return f"{ci['mean']:.2f}" + (f" ± {ci['ci95']:.2f}" if np.isfinite(ci["ci95"]) else "")


def photo_markdown(rows: list[dict[str, Any]], key: str = "psnr") -> str:
    """Per-photo rows (mean ± 95% t half-width over seeds), then the mean over photos
    (per seed, then over seeds); the best mean per row in bold."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    photos = list(dict.fromkeys(r["photo"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    val = {(r["photo"], r["seed"], r["method"]): r.get(key) for r in rows}
    lines = ["| photo (support photo) | " + " | ".join(methods) + " |",
             "| --- |" + " --- |" * len(methods)]

    def line(label: str, cols: list[list[float]]) -> str:
        means = [float(np.mean(c)) if c else float("nan") for c in cols]
        best = int(np.nanargmax(means))
        cells = [(f"**{_cell(c)}**" if j == best else _cell(c)) if c else "-"
                 for j, c in enumerate(cols)]
        return f"| {label} | " + " | ".join(cells) + " |"

    for p in photos:
        sup = next(r["support_photo"] for r in rows if r["photo"] == p)
        cols = [[val[(p, s, m)] for s in seeds if val.get((p, s, m)) is not None]
                for m in methods]
        lines.append(line(f"{p} ({sup})", cols))
    mean_cols = [[float(np.mean([val[(p, s, m)] for p in photos])) for s in seeds
                  if all(val.get((p, s, m)) is not None for p in photos)] for m in methods]
    lines.append(line(f"mean of {len(photos)} photos", mean_cols))
    return "\n".join(lines)
