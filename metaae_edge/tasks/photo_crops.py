"""The ``photo-crops`` image family: crops of real photographs that installed wheels ship.

A stronger prior for the residual denoiser than procedural images alone: each task cuts
its images from one real photograph (:data:`TRAIN_PHOTOS`, read offline from the wheels
of scikit-learn, matplotlib and scikit-image), at one of several scales (1, 1/1.5, 1/2,
1/3, anti-aliased), with a per-task grey conversion (random channel weights of an RGB
photo), contrast range and gamma, and per-image random flips and 90-degree rotations. A
share of the tasks (``natural_share``, default 0.25) is the procedural ``natural`` family
instead (:class:`~metaae_edge.tasks.natural.NaturalFamily`). ``denoise`` tasks are
Gaussian with a known per-task sigma (0.03-0.2 by default).

Training photographs (:data:`TRAIN_PHOTOS`): scikit-learn's ``china.jpg`` and
``flower.jpg`` (``load_sample_images``), matplotlib's ``grace_hopper.jpg`` (sample data),
scikit-image's ``motorcycle_left.png`` / ``motorcycle_right.png`` (a stereo pair),
``retina.jpg``, ``ihc.png``, ``gravel.png``, ``text.png``, ``hubble_deep_field.jpg`` and
``cell.png``. A photo missing from the installed wheels is skipped.

Excluded (:data:`EXCLUDED_PHOTOS`, asserted by ``tests/test_photo_crops.py``): ``camera``
(the support photo of the real-photo tables), the evaluated photos ``astronaut``,
``coffee``, ``chelsea``, ``rocket``, ``brick``, ``grass``, and every photo a table in
docs/images.md evaluates denoising on (``moon``, ``page``, ``coins``, ``clock``, and
``clock_motion``, the same scene blurred).

Splits never share pixels: train crops come from the left 80% of each photo's columns,
val and test crops from the right 20%.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from ..errors import DataError
from ..optional import require
from .base import register_family
from .families import Generated, Streams, mix_query
from .images import IMAGE_RECIPE
from .natural import NaturalFamily

__all__ = ["EXCLUDED_PHOTOS", "TRAIN_PHOTOS", "PhotoCropsFamily", "available_photos",
           "load_train_photo"]

#: name -> (package whose folder holds it, path inside that folder)
TRAIN_PHOTOS: dict[str, tuple[str, str]] = {
    "china": ("sklearn.datasets", "images/china.jpg"),
    "flower": ("sklearn.datasets", "images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "gravel": ("skimage", "data/gravel.png"),
    "text": ("skimage", "data/text.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "cell": ("skimage", "data/cell.png"),
}
#: never used for training: the support photo, the evaluated photos and every photo a
#: docs/images.md table evaluates denoising on
EXCLUDED_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass",
                   "moon", "page", "coins", "clock", "clock_motion")
SCALES = (1.0, 1 / 1.5, 0.5, 1 / 3)
_TRAIN_FRACTION = 0.8


def _path(name: str) -> str:
    package, rel = TRAIN_PHOTOS[name]
    mod = require(package, "metaae-edge[train]")
    return os.path.join(os.path.dirname(mod.__file__), rel)


def available_photos() -> tuple[str, ...]:
    """The :data:`TRAIN_PHOTOS` whose files the installed wheels hold."""
    out = []
    for name in TRAIN_PHOTOS:
        try:
            if os.path.isfile(_path(name)):
                out.append(name)
        except Exception:  # noqa: BLE001 - a package that is not installed: skipped
            continue
    return tuple(out)


@cache
def _pyramid(name: str) -> tuple[np.ndarray, ...]:
    """Photo ``name`` as float32 (H, W, 3) in [0, 1] at every scale of :data:`SCALES`."""
    image = require("PIL.Image", "pillow")
    with image.open(_path(name)) as im:
        im = im.convert("RGB")
        w, h = im.size
        return tuple(np.asarray(im.resize((max(int(round(w * s)), 1), max(int(round(h * s)), 1)),
                                          image.LANCZOS) if s != 1 else im,
                                np.float32) / 255.0 for s in SCALES)


def load_train_photo(name: str) -> np.ndarray:
    """Training photo ``name`` as float32 (H, W, 3) in [0, 1] (full scale)."""
    if name not in TRAIN_PHOTOS:
        raise DataError(f"unknown training photo {name!r}; choose from "
                        f"{', '.join(TRAIN_PHOTOS)}")
    return _pyramid(name)[0]


def _region(img: np.ndarray, split: str) -> np.ndarray:
    cut = int(img.shape[1] * _TRAIN_FRACTION)
    return img[:, :cut] if split == "train" else img[:, cut:]


def _task_params(rs: np.random.Generator, photos: Sequence[str]) -> dict[str, Any]:
    """One photo task's distribution (a fixed number of draws of ``rs``)."""
    u = rs.random(5)
    weights = rs.dirichlet((3.0, 3.0, 3.0))
    contrast = 0.6 + 0.4 * u[2]
    lo = (1 - contrast) * u[3]
    return {"photo": photos[min(int(u[0] * len(photos)), len(photos) - 1)],
            "scale": min(int(u[1] * len(SCALES)), len(SCALES) - 1),
            "grey_weights": [float(v) for v in weights], "grey_lo": float(lo),
            "grey_hi": float(lo + contrast), "gamma": float(np.exp((u[4] - 0.5) * 0.5))}


def render_crops(n: int, res: int, p: dict[str, Any], split: str,
                 rng: np.random.Generator) -> np.ndarray:
    """(n, res, res) grey crops of the task's photo (the largest scale whose split region
    fits ``res`` at or above the task's), flipped / rotated per image."""
    pyr = _pyramid(p["photo"])
    for s in range(p["scale"], -1, -1):
        img = _region(pyr[s], split)
        if min(img.shape[:2]) >= res:
            break
    else:
        raise DataError(f"photo {p['photo']!r} is smaller than {res}x{res} in split {split}")
    grey = img @ np.asarray(p["grey_weights"], np.float32)
    h, w = grey.shape
    ys, xs = rng.integers(0, h - res + 1, n), rng.integers(0, w - res + 1, n)
    flips, rots = rng.integers(0, 2, n), rng.integers(0, 4, n)
    out = np.empty((n, res, res), np.float32)
    for i in range(n):
        crop = grey[ys[i]:ys[i] + res, xs[i]:xs[i] + res]
        out[i] = np.rot90(crop[:, ::-1] if flips[i] else crop, int(rots[i]))
    out = np.clip(out, 0.0, 1.0) ** p["gamma"]
    return (p["grey_lo"] + (p["grey_hi"] - p["grey_lo"]) * out).astype(np.float32)


@register_family(
    "photo-crops",
    "crops of real photographs shipped by scikit-learn / matplotlib / scikit-image (never "
    "the evaluated ones), mixed with the procedural natural family (images)",
    recipe={**IMAGE_RECIPE, "objective": "denoise"},
)
class PhotoCropsFamily(NaturalFamily):
    """Crops of :data:`TRAIN_PHOTOS` (C = 1), a ``natural_share`` of ``natural`` tasks.

    Args:
        photos: the training photos to use (default every available one of
            :data:`TRAIN_PHOTOS`); an excluded or unknown name is refused.
        natural_share: fraction of tasks drawn from the procedural ``natural`` family.
        **kwargs: :class:`~metaae_edge.tasks.natural.NaturalFamily` options
            (``resolutions``, ``noise_range`` = Gaussian sigma range, default 0.03-0.2,
            ``noise_kinds``: default Gaussian only).
    """

    def __init__(self, *, photos: Sequence[str] | None = None, natural_share: float = 0.25,
                 noise_range: tuple[float, float] = (0.03, 0.2),
                 noise_kinds: Sequence[str] = ("gaussian",), **kwargs: Any) -> None:
        super().__init__(noise_range=noise_range, noise_kinds=noise_kinds, **kwargs)
        names = tuple(photos) if photos is not None else available_photos()
        bad = [p for p in names if p in EXCLUDED_PHOTOS or p not in TRAIN_PHOTOS]
        if bad or not names:
            raise DataError(f"photos must be a non-empty subset of {', '.join(TRAIN_PHOTOS)} "
                            f"(evaluation photos are excluded), got {list(names)}")
        if not 0.0 <= natural_share <= 1.0:
            raise DataError(f"natural_share must be in [0, 1], got {natural_share}")
        self.photos, self.natural_share = names, float(natural_share)

    def _generate(self, split: str, streams: Streams, objective: str, n_support: int,
                  n_query: int) -> Generated:
        if float(streams.structure.random()) < self.natural_share:
            gen = super()._generate(split, streams, objective, n_support, n_query)
            gen.info["source"] = "natural"
            return gen
        res, seen = self._resolution(split, streams.structure)
        p = _task_params(streams.structure, self.photos)
        d = res * res
        support = render_crops(n_support, res, p, split, streams.data).reshape(n_support, d)
        info: dict[str, Any] = {"resolution": res, "seen_resolution": seen,
                                "source": "photo", **p}
        labels = None
        if objective != "anomaly":
            query = render_crops(n_query, res, p, split, streams.data).reshape(n_query, d)
        else:
            n_anom = self.n_anomalies(n_query)
            normal = render_crops(n_query - n_anom, res, p, split, streams.data)
            base = render_crops(n_anom, res, p, split, streams.anomaly)[:, None]
            anomalies, kinds = self._defects(base, streams.anomaly)
            query, labels, order = mix_query(normal.reshape(-1, d),
                                             anomalies.reshape(n_anom, d), streams.anomaly)
            info["anomaly_kind"] = np.array(["normal"] * len(normal) + kinds)[order].tolist()
        return Generated(support, query, labels, info, image_shape=(1, res, res))
