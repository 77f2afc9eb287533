"""``digits``: scikit-learn's bundled 8x8 handwritten digits, as few-class tasks."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import DataError
from ..optional import require
from .base import LOSSES, SPLITS, register_family
from .families import FamilyBase, Generated, Streams, check_range

__all__ = ["DigitsFamily", "digits_pool"]

# Fixed, seed-independent split of the 1797 images: a family seed must never move a test
# image into the training pool.
_POOL_SEED = 20240611
_POOL_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    """All images as (1797, 8, 8) float32 in [0, 1] and their labels (bundled, no download)."""
    load_digits = require("sklearn.datasets", "metaae-edge[train]", package="scikit-learn",
                          needed_for="the 'digits' task family").load_digits
    bunch = load_digits()
    images = (np.asarray(bunch.images, np.float32) / 16.0).clip(0.0, 1.0)
    return images, np.asarray(bunch.target, np.int64)


def digits_pool(split: str) -> np.ndarray:
    """Indices (into ``sklearn.datasets.load_digits``) of the images ``split`` may use.

    The train/val/test pools (60/20/20) are disjoint and fixed regardless of any seed.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    n = len(_load()[1])
    perm = np.random.default_rng(_POOL_SEED).permutation(n)
    n_train = round(_POOL_FRACTIONS["train"] * n)
    n_val = round(_POOL_FRACTIONS["val"] * n)
    bounds = {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, n),
    }
    lo, hi = bounds[split]
    return np.sort(perm[lo:hi])


def one_class_split(family: FamilyBase, chosen: np.ndarray, pool: np.ndarray,
                    targets: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
                    n_support: int, n_query: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-class anomaly split of image indices: support and the query's normal part from
    ``chosen`` (the task's classes, shuffled), anomalies from the pool's other classes.

    Returns ``(support_idx, query_idx, labels)`` with labels 1 = anomaly.
    """
    n_s, n_norm = _sizes(len(chosen), n_support, n_query - family.n_anomalies(n_query))
    # Keep the anomaly share even when the normal part of the query was capped.
    ratio = family.anomaly_fraction / (1.0 - family.anomaly_fraction)
    n_anom = max(1, min(round(n_norm * ratio), n_query - n_norm))
    others = pool[~np.isin(targets[pool], classes)]
    anom_idx = rng.choice(others, size=n_anom, replace=False)
    both = np.concatenate([chosen[n_s : n_s + n_norm], anom_idx])
    flags = np.concatenate([np.zeros(n_norm, np.int64), np.ones(n_anom, np.int64)])
    order = rng.permutation(len(both))
    return chosen[:n_s], both[order], flags[order]


def _sizes(n_avail: int, n_support: int, n_query: int) -> tuple[int, int]:
    """Support/query sizes that fit ``n_avail`` images without drawing any twice.

    The requested sizes are used when they fit. Otherwise the query is capped to what the
    support leaves, but never below half the images: small pools shrink the query first,
    then the support (down to half the images).
    """
    n_s = min(n_support, max(n_avail - n_query, n_avail // 2, 1))
    return n_s, min(n_query, n_avail - n_s)


def _augment(images: np.ndarray, flip: bool, dy: int, dx: int, gamma: float) -> np.ndarray:
    """The task's augmentation: optional mirror, a +-1 pixel shift (zero fill), a gamma."""
    x = images[:, :, ::-1] if flip else images
    x = np.roll(x, (dy, dx), axis=(1, 2))
    # np.roll wraps around; blank the wrapped row/column so the shift is a true translation.
    if dy == 1:
        x[:, 0, :] = 0.0
    elif dy == -1:
        x[:, -1, :] = 0.0
    if dx == 1:
        x[:, :, 0] = 0.0
    elif dx == -1:
        x[:, :, -1] = 0.0
    return np.power(x, gamma).reshape(len(x), 64).astype(np.float32)


@register_family("digits", "8x8 handwritten digits (scikit-learn bundled), 2-5 classes per task")
class DigitsFamily(FamilyBase):
    """Tasks from scikit-learn's bundled 8x8 digits, scaled to [0, 1] (64 features).

    A task takes 2-5 random classes from its split's image pool (see :func:`digits_pool`)
    and applies one random augmentation to all its images (mirror, a +-1 pixel shift and
    an intensity gamma). ``anomaly`` is one-class: support and the normal query samples are
    one class, the anomalies (``anomaly_fraction`` of the query) come from the other
    classes of the pool.

    Pools are small (about 36 images per class in val/test), and no image is drawn twice
    within a task, so the default 64 support + 256 query is capped to what is available
    (see ``info["capped"]``): the query shrinks first, then the support.

    Args:
        loss: ``"mse"`` (default) or ``"bce"`` (data lie in [0, 1]).
        min_classes: Fewest classes per task.
        max_classes: Most classes per task.
        seed: Family seed.
        anomaly_fraction: Fraction of anomalous query samples.
        noise_range: Per-task ``denoise`` noise level range, in pixel units (data are not
            standardised: ``normalization`` is ``"identity"``).
    """

    max_input_dim = 64
    normalization = "identity"

    def __init__(
        self,
        *,
        loss: str = "mse",
        min_classes: int = 2,
        max_classes: int = 5,
        seed: int = 0,
        anomaly_fraction: float = 0.2,
        noise_range: tuple[float, float] = (0.05, 0.3),
    ) -> None:
        super().__init__(seed=seed, anomaly_fraction=anomaly_fraction, noise_range=noise_range)
        if loss not in LOSSES:
            raise DataError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        check_range("classes (min_classes, max_classes)", min_classes, max_classes, minimum=1)
        if max_classes > 10:
            raise DataError(f"max_classes must be <= 10 (digits 0-9), got {max_classes}")
        self.loss = loss
        self.min_classes, self.max_classes = int(min_classes), int(max_classes)

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        images, targets = _load()
        pool = digits_pool(split)
        rs = streams.structure
        n_cls = (
            1
            if objective == "anomaly"
            else int(rs.integers(self.min_classes, self.max_classes + 1))
        )
        classes = np.sort(rs.choice(10, size=n_cls, replace=False))
        aug = {
            "flip": bool(rs.random() < 0.25),
            "dy": int(rs.integers(-1, 2)),
            "dx": int(rs.integers(-1, 2)),
            "gamma": float(np.exp(rs.uniform(np.log(0.7), np.log(1.4)))),
        }
        chosen = pool[np.isin(targets[pool], classes)]
        chosen = chosen[streams.data.permutation(len(chosen))]
        info: dict[str, Any] = {
            "classes": classes.tolist(),
            "n_classes": n_cls,
            "augmentation": aug,
            "flip": int(aug["flip"]),
            "shift_y": aug["dy"],
            "shift_x": aug["dx"],
            "gamma": aug["gamma"],
        }

        if objective != "anomaly":
            n_s, n_q = _sizes(len(chosen), n_support, n_query)
            s_idx, q_idx = chosen[:n_s], chosen[n_s : n_s + n_q]
            labels = None
            query_classes = targets[q_idx]
        else:
            s_idx, q_idx, labels = one_class_split(self, chosen, pool, targets, classes,
                                                   streams.anomaly, n_support, n_query)
            n_s = len(s_idx)
            query_classes = targets[q_idx]
            n_q = len(q_idx)
        info.update(
            capped=int(n_s < n_support or n_q < n_query),
            support_indices=s_idx.tolist(),
            query_indices=q_idx.tolist(),
            query_classes=query_classes.tolist(),
        )
        support = _augment(images[s_idx], aug["flip"], aug["dy"], aug["dx"], aug["gamma"])
        query = _augment(images[q_idx], aug["flip"], aug["dy"], aug["dx"], aug["gamma"])
        return Generated(support, query, labels, info)
