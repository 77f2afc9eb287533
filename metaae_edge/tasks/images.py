"""Image task families at several resolutions: ``digits-res`` and ``shapes``.

Samples are stored flattened, ``(N, C * H * W)`` in C-order of ``(C, H, W)``, pixel values
in [0, 1]; the task's ``image_shape`` says how to fold them back. Each task has one
resolution (``H = W``): train and val draw it from the *seen* resolutions, the test split
from seen + unseen (held-out) ones, unless the family forces one with ``resolution``.

The resolution is drawn first and always consumes the same amount of the task's
structure stream, so forcing a resolution renders the *same* task (classes, augmentation,
texture distribution) at another size: evaluation can compare one task at seen and unseen
resolutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .base import register_family
from .digits import _load, _sizes, digits_pool, one_class_split
from .families import FamilyBase, Generated, Streams, check_range, mix_query
from .resample import _check_resolutions, _resample_matrix, _thicken

__all__ = ["DigitsResFamily", "ImageFamilyBase", "ShapesFamily"]

DEFAULT_SEEN = (8, 16, 24)
DEFAULT_UNSEEN = (12, 32)
#: The image families' meta-training recipe (conv space): each inner step costs ~10x an
#: MLP step, so fewer, smaller meta-batches; one checkpoint serves reconstruct/compression
#: and denoising ("mixed").
IMAGE_RECIPE: dict[str, Any] = {
    "meta_steps": 300, "meta_batch": 2, "objective": "mixed",
    "posttrain_steps": 400, "posttrain_bpp": (0.0, 0.5, 1.0, 2.0)}
_NOISE_KINDS = ("gaussian", "salt-pepper")


class ImageFamilyBase(FamilyBase):
    """Resolution options shared by the image families (square images, ``H = W``).

    Args:
        resolutions: Seen resolutions (train, val and test draw from them).
        unseen_resolutions: Held-out resolutions, drawn only by the test split.
        resolution: Force every task to this resolution (evaluation at one size). train and
            val refuse a resolution outside ``resolutions``.
        seed: Family seed.
        anomaly_fraction: Fraction of anomalous query samples.
        noise_range: Per-task Gaussian ``denoise`` sigma range, in pixel units.
        noise_kinds: Corruptions a ``denoise`` task draws from (``gaussian``,
            ``salt-pepper``; the latter's level is drawn from ``salt_pepper_range``).
    """

    loss = "mse"
    normalization = "global"
    noise_kinds: tuple[str, ...] = _NOISE_KINDS
    channels = 1

    def __init__(
        self,
        *,
        resolutions: Sequence[int] = DEFAULT_SEEN,
        unseen_resolutions: Sequence[int] = DEFAULT_UNSEEN,
        resolution: int | None = None,
        seed: int = 0,
        anomaly_fraction: float = 0.2,
        noise_range: tuple[float, float] = (0.05, 0.2),
        noise_kinds: Sequence[str] = _NOISE_KINDS,
    ) -> None:
        super().__init__(seed=seed, anomaly_fraction=anomaly_fraction, noise_range=noise_range)
        self.resolutions = _check_resolutions("resolutions", resolutions)
        self.unseen_resolutions = _check_resolutions("unseen_resolutions", unseen_resolutions)
        if not self.resolutions:
            raise DataError("resolutions must name at least one seen resolution, got ()")
        overlap = sorted(set(self.resolutions) & set(self.unseen_resolutions))
        if overlap:
            raise DataError(
                f"resolutions {overlap} are both seen and unseen; a held-out resolution must "
                "not be in resolutions"
            )
        self.resolution = (
            None if resolution is None else _check_resolutions("resolution", [resolution])[0]
        )
        kinds = tuple(noise_kinds)
        if not kinds or any(k not in _NOISE_KINDS for k in kinds):
            raise DataError(f"noise_kinds must be a non-empty subset of {_NOISE_KINDS}, "
                            f"got {kinds}")
        self.noise_kinds = kinds
        sides = [*self.resolutions, *self.unseen_resolutions, self.resolution or 0]
        self.max_input_dim = self.channels * max(sides) ** 2

    def _resolution(self, split: str, rs: np.random.Generator) -> tuple[int, int]:
        """``(resolution, seen)`` of a task; always consumes exactly one draw of ``rs``."""
        u = float(rs.random())
        if self.resolution is not None:
            r = self.resolution
            if split != "test" and r not in self.resolutions:
                raise DataError(
                    f"resolution {r} is not a seen resolution {self.resolutions}; {split} tasks "
                    "use seen resolutions only: sample the test split or add it to resolutions"
                )
        else:
            choices = self.resolutions
            if split == "test":
                choices = tuple(sorted(self.resolutions + self.unseen_resolutions))
            r = choices[min(int(u * len(choices)), len(choices) - 1)]
        return r, int(r in self.resolutions)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(seed={self.seed}, resolutions={self.resolutions}, "
                f"unseen_resolutions={self.unseen_resolutions}, resolution={self.resolution})")


# ----------------------------------------------------------------------------- digits-res


@register_family(
    "digits-res",
    "8x8 digits (scikit-learn bundled) resampled to 8-32 px, 2-4 classes per task (images)",
    recipe=IMAGE_RECIPE,
)
class DigitsResFamily(ImageFamilyBase):
    """scikit-learn's 8x8 digits, bicubically resampled to a per-task resolution (C = 1).

    Uses the same disjoint train/val/test image pools as ``digits`` (see
    :func:`~metaae_edge.tasks.digits.digits_pool`). A task takes 2-4 classes and one random
    augmentation for all its images: a sub-pixel shift, a scale, a stroke thickness (blend
    toward dilation / erosion) and a contrast (background level, peak level and gamma),
    all defined in the 8x8 source frame so they look the same at every resolution.
    ``anomaly`` is one-class (``anomaly_classes`` normal classes, default 1); anomalies are
    images of the pool's other classes. Pools are small, so 64 + 256 is capped to what is
    available (``info["capped"]``), as for ``digits``.

    Args:
        min_classes: Fewest classes per task (``reconstruct`` / ``denoise``).
        max_classes: Most classes per task.
        anomaly_classes: Normal classes of an ``anomaly`` task.
        **kwargs: :class:`ImageFamilyBase` options (resolutions, seed, noise ...).
    """

    max_input_dim = max(DEFAULT_SEEN + DEFAULT_UNSEEN) ** 2

    def __init__(
        self,
        *,
        min_classes: int = 2,
        max_classes: int = 4,
        anomaly_classes: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_range("classes (min_classes, max_classes)", min_classes, max_classes, minimum=1)
        if max_classes > 10:
            raise DataError(f"max_classes must be <= 10 (digits 0-9), got {max_classes}")
        if not (1 <= anomaly_classes <= 9):
            raise DataError(f"anomaly_classes must be in [1, 9], got {anomaly_classes}")
        self.min_classes, self.max_classes = int(min_classes), int(max_classes)
        self.anomaly_classes = int(anomaly_classes)

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        images, targets = _load()
        pool = digits_pool(split)
        rs = streams.structure
        res, seen = self._resolution(split, rs)
        n_cls = (self.anomaly_classes if objective == "anomaly"
                 else int(rs.integers(self.min_classes, self.max_classes + 1)))
        classes = np.sort(rs.choice(10, size=n_cls, replace=False))
        aug = {
            "shift_y": float(rs.uniform(-0.75, 0.75)),
            "shift_x": float(rs.uniform(-0.75, 0.75)),
            "scale": float(np.exp(rs.uniform(np.log(0.85), np.log(1.15)))),
            "thickness": float(rs.uniform(-0.3, 0.6)),
            "background": float(rs.uniform(0.0, 0.15)),
            "peak": float(rs.uniform(0.75, 1.0)),
            "gamma": float(np.exp(rs.uniform(np.log(0.7), np.log(1.4)))),
        }
        chosen = pool[np.isin(targets[pool], classes)]
        chosen = chosen[streams.data.permutation(len(chosen))]
        if objective != "anomaly":
            n_s, n_q = _sizes(len(chosen), n_support, n_query)
            s_idx, q_idx, labels = chosen[:n_s], chosen[n_s : n_s + n_q], None
        else:
            s_idx, q_idx, labels = one_class_split(self, chosen, pool, targets, classes,
                                                   streams.anomaly, n_support, n_query)
            n_s = len(s_idx)
            n_q = len(q_idx)
        info: dict[str, Any] = {
            "resolution": res,
            "seen_resolution": seen,
            "classes": classes.tolist(),
            "n_classes": n_cls,
            "augmentation": aug,
            **aug,
            "capped": int(n_s < n_support or n_q < n_query),
            "support_indices": s_idx.tolist(),
            "query_indices": q_idx.tolist(),
            "query_classes": targets[q_idx].tolist(),
        }
        support = self._render(images[s_idx], res, aug)
        query = self._render(images[q_idx], res, aug)
        return Generated(support, query, labels, info, image_shape=(1, res, res))

    @staticmethod
    def _render(src: np.ndarray, res: int, aug: dict[str, float]) -> np.ndarray:
        x = _thicken(src, aug["thickness"])
        n = src.shape[1]
        wy = _resample_matrix(n, res, aug["scale"], aug["shift_y"])
        wx = _resample_matrix(n, res, aug["scale"], aug["shift_x"])
        x = np.einsum("ik,nkl,jl->nij", wy, x.astype(np.float32), wx, optimize=True)
        x = np.power(np.clip(x, 0.0, 1.0), aug["gamma"])
        x = aug["background"] + (aug["peak"] - aug["background"]) * x
        return x.reshape(len(x), res * res).astype(np.float32)


# --------------------------------------------------------------------------------- shapes

_MAX_OBJECTS = 4
_DEFECTS = ("blob", "scratch")


@register_family(
    "shapes",
    "procedural ellipses/rectangles/stripes at 8-32 px, defects as anomalies (images)",
    recipe=IMAGE_RECIPE,
)
class ShapesFamily(ImageFamilyBase):
    """Procedural images: 1-4 ellipses / rectangles over a smooth, optionally striped
    background, drawn in continuous coordinates so any resolution renders the same scene.

    Each task has its own distribution: object count range, ellipse/rectangle mix, size and
    aspect ranges, rotation spread, edge softness, background level and gradient, stripe
    texture (frequency, orientation, amplitude) and palette. Normal pixels stay below about
    0.8. ``anomaly`` images are normal images with a local defect the normal ones never
    have: a bright blob or a bright scratch (``info["anomaly_kind"]`` per query sample).

    Args:
        channels: 1 (grayscale) or 3 (RGB; objects and background get per-task colours).
        **kwargs: :class:`ImageFamilyBase` options (resolutions, seed, noise ...).
    """

    max_input_dim = max(DEFAULT_SEEN + DEFAULT_UNSEEN) ** 2

    def __init__(self, *, channels: int = 1, **kwargs: Any) -> None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        self.channels = int(channels)
        super().__init__(**kwargs)

    def _task_params(self, rs: np.random.Generator) -> dict[str, Any]:
        c = self.channels
        lo = int(rs.integers(1, 3))
        s_min = float(rs.uniform(0.08, 0.18))
        palette = rs.uniform(0.3, 0.8, size=(2, c))
        # RGB backgrounds get a tint, so they are not always grey.
        bg_color = np.ones(1) if c == 1 else rs.uniform(0.6, 1.0, size=c)
        return {
            "min_objects": lo,
            "max_objects": min(lo + int(rs.integers(0, 3)), _MAX_OBJECTS),
            "p_ellipse": float(rs.uniform(0.0, 1.0)),
            "size_min": s_min,
            "size_max": s_min * float(rs.uniform(1.2, 2.0)),
            "aspect_max": float(rs.uniform(1.0, 2.5)),
            "rotation": float(rs.uniform(0.0, np.pi)) * float(rs.random() < 0.6),
            "edge": float(rs.uniform(0.005, 0.03)),
            "background": float(rs.uniform(0.05, 0.35)),
            "gradient": float(rs.uniform(0.0, 0.1)),
            "stripes": float(rs.uniform(0.04, 0.12)) * float(rs.random() < 0.5),
            "stripe_freq": float(rs.uniform(1.5, 3.5)),
            "stripe_angle": float(rs.uniform(0.0, np.pi)),
            "palette": palette,
            "color_jitter": float(rs.uniform(0.02, 0.1)),
            "bg_color": bg_color,
        }

    def _render(self, n: int, res: int, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """``n`` normal images (n, C, res, res) of the task ``p``."""
        c, k, f32 = self.channels, _MAX_OBJECTS, np.float32
        g = (np.arange(res, dtype=f32) + 0.5) / res
        yy, xx = g[None, :, None], g[None, None, :]
        # Background: level + linear gradient + optional stripes, per sample.
        level = (p["background"] + rng.uniform(-0.04, 0.04, size=n)).astype(f32)
        phi = rng.uniform(0.0, 2 * np.pi, size=n)
        gx = (p["gradient"] * np.cos(phi)).astype(f32)[:, None, None]
        gy = (p["gradient"] * np.sin(phi)).astype(f32)[:, None, None]
        bg = level[:, None, None] + gx * (xx - 0.5) + gy * (yy - 0.5)
        if p["stripes"] > 0:
            ang = p["stripe_angle"] + rng.uniform(-0.2, 0.2, size=n)
            phase = rng.uniform(0.0, 2 * np.pi, size=n).astype(f32)[:, None, None]
            fx = (2 * np.pi * p["stripe_freq"] * np.cos(ang)).astype(f32)[:, None, None]
            fy = (2 * np.pi * p["stripe_freq"] * np.sin(ang)).astype(f32)[:, None, None]
            bg = bg + f32(p["stripes"]) * np.sin(fx * xx + fy * yy + phase)
        img = bg[:, None] * p["bg_color"].astype(f32)[None, :, None, None]  # (n, C, res, res)
        # Objects: k slots per sample, the first `count` active, composited in order.
        count = rng.integers(p["min_objects"], p["max_objects"] + 1, size=n)
        cx, cy = rng.uniform(0.15, 0.85, size=(2, n, k)).astype(f32)
        a = rng.uniform(p["size_min"], p["size_max"], size=(n, k))
        b = (a / rng.uniform(1.0, p["aspect_max"], size=(n, k))).astype(f32)
        a = a.astype(f32)
        theta = rng.uniform(0.0, 1.0, size=(n, k)) * p["rotation"]
        cos, sin = np.cos(theta).astype(f32), np.sin(theta).astype(f32)
        is_ellipse = rng.random(size=(n, k)) < p["p_ellipse"]
        pick = rng.integers(0, 2, size=(n, k))
        colors = p["palette"][pick] + rng.uniform(-1, 1, size=(n, k, c)) * p["color_jitter"]
        colors = np.clip(colors, 0.05, 0.8).astype(f32)
        # Edge: a linear ramp at least a third of a pixel wide (anti-aliasing).
        ramp = f32(1.0 / max(2 * p["edge"], 0.7 / res))
        for j in range(k):
            on = np.flatnonzero(count > j)
            if not len(on):
                continue

            def col(v: np.ndarray, on: np.ndarray = on, j: int = j) -> np.ndarray:
                return v[on, j, None, None]

            dx, dy = xx - col(cx), yy - col(cy)
            u = dx * col(cos) + dy * col(sin)
            v = dy * col(cos) - dx * col(sin)
            ell = is_ellipse[on, j]
            dist = np.empty((len(on), res, res), f32)
            if ell.any():
                ae, be = col(a)[ell], col(b)[ell]
                dist[ell] = (np.sqrt((u[ell] / ae) ** 2 + (v[ell] / be) ** 2) - 1.0) * be
            if not ell.all():
                ar, br = col(a)[~ell], col(b)[~ell]
                dist[~ell] = np.maximum(np.abs(u[~ell]) - ar, np.abs(v[~ell]) - br)
            m = np.clip(0.5 - dist * ramp, 0.0, 1.0)[:, None]
            img[on] = img[on] * (1.0 - m) + colors[on, j, :, None, None] * m
        return np.clip(img, 0.0, 1.0, out=img)

    def _defects(
        self, img: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[str]]:
        """Paint one bright blob or scratch onto each image (n, C, res, res)."""
        n, res = len(img), img.shape[-1]
        px = 1.0 / res
        g = (np.arange(res, dtype=np.float32) + 0.5) / res
        yy, xx = g[None, :, None], g[None, None, :]
        f32 = np.float32
        kinds = rng.integers(0, len(_DEFECTS), size=n)
        cx, cy = rng.uniform(0.2, 0.8, size=(2, n)).astype(f32)
        value = rng.uniform(0.9, 1.0, size=n).astype(f32)
        # Blob: a Gaussian spot at least about a pixel wide.
        sigma = np.maximum(rng.uniform(0.04, 0.08, size=n), 0.6 * px).astype(f32)
        d2 = (xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2
        blob = np.exp(-d2 / (2 * sigma[:, None, None] ** 2))
        # Scratch: a thin segment through (cx, cy).
        ang = rng.uniform(0.0, np.pi, size=n)
        half = rng.uniform(0.15, 0.3, size=n).astype(f32)
        ux, uy = np.cos(ang).astype(f32)[:, None, None], np.sin(ang).astype(f32)[:, None, None]
        rx, ry = xx - cx[:, None, None], yy - cy[:, None, None]
        along = np.clip(rx * ux + ry * uy, -half[:, None, None], half[:, None, None])
        dist = np.sqrt((rx - along * ux) ** 2 + (ry - along * uy) ** 2)
        hw = max(0.015, 0.5 * px)
        scratch = np.clip(0.5 - (dist - hw) / f32(0.7 * px), 0.0, 1.0)
        mask = np.where((kinds == 0)[:, None, None], blob, scratch)[:, None]
        out = img * (1.0 - mask) + value[:, None, None, None] * mask
        return np.clip(out, 0.0, 1.0).astype(np.float32), [_DEFECTS[i] for i in kinds]

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        res, seen = self._resolution(split, streams.structure)
        p = self._task_params(streams.structure)
        d = self.channels * res * res
        support = self._render(n_support, res, p, streams.data).reshape(n_support, d)
        info: dict[str, Any] = {
            "resolution": res,
            "seen_resolution": seen,
            "channels": self.channels,
            **{k: v for k, v in p.items() if not isinstance(v, np.ndarray)},
            "palette": p["palette"].tolist(),
        }
        labels = None
        if objective != "anomaly":
            query = self._render(n_query, res, p, streams.data).reshape(n_query, d)
        else:
            n_anom = self.n_anomalies(n_query)
            normal = self._render(n_query - n_anom, res, p, streams.data).reshape(-1, d)
            base = self._render(n_anom, res, p, streams.anomaly)
            anomalies, kinds = self._defects(base, streams.anomaly)
            query, labels, order = mix_query(normal, anomalies.reshape(n_anom, d),
                                             streams.anomaly)
            info["anomaly_kind"] = np.array(["normal"] * len(normal) + kinds)[order].tolist()
        return Generated(support, query, labels, info, image_shape=(self.channels, res, res))
