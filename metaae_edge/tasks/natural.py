"""The ``natural`` image family: procedural images with the statistics of photographs.

Dead leaves (occluding ellipses, rectangles and half-discs whose sizes follow the
scale-invariant density ``p(r) ~ r**-3`` between ``r_min`` and ``r_max``, front to back),
each leaf with its own grey level, linear shading gradient and texture amplitude, over
a smooth background; a per-task share of images is blended with (or replaced by) a
Gaussian random field whose amplitude spectrum falls as ``f**-alpha`` (procedural
texture); a per-task optical blur and contrast range. Their radially averaged power
spectrum follows a power law like natural images (``tests/test_natural.py``), and
nothing is downloaded.

Tasks are square, at many resolutions (powers of two and not: 16 ... 64 by default;
the conv space constrains the depth to what H and W allow). ``denoise`` tasks draw a
corruption per task: Gaussian (sigma 0.02-0.2 by default), Poisson-Gaussian (signal-
dependent shot noise plus read noise, :class:`PoissonGaussianNoise`) or salt-and-pepper.
numpy only, seeded and reproducible; 64 patches of 32 x 32 take a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .base import Noise, register_family
from .families import Generated, Streams, check_range, mix_query
from .images import IMAGE_RECIPE, ImageFamilyBase, ShapesFamily

__all__ = ["NATURAL_NOISE_KINDS", "NaturalFamily", "PoissonGaussianNoise", "render_natural"]

NATURAL_SEEN = (16, 24, 32, 40, 48, 64)
NATURAL_UNSEEN = (20, 28, 56)
NATURAL_NOISE_KINDS = ("gaussian", "poisson-gaussian", "salt-pepper")
#: stencil half-widths (pixels) of the small-leaf bins; larger leaves are rendered densely
_STENCILS = (1, 2, 3, 4, 6, 9, 13)
_COVERAGE = 2.5  # expected leaves over a point: exp(-2.5) = 8% of pixels show the background
_MAX_LEAVES = 1500
_GEOMETRY = ("cx", "cy", "cos", "sin", "inv_a", "inv_b", "kind")


@dataclass(frozen=True)
class PoissonGaussianNoise(Noise):
    """Signal-dependent noise of a photon-counting sensor, in pixel units ([0, 1]).

    ``y = gain * Poisson(x / gain) + level * N(0, 1)``: variance ``gain * x + level**2``
    grows linearly with the intensity ``x`` (``level`` is the read-noise sigma).
    """

    kind: str = "poisson-gaussian"
    level: float = 0.02
    gain: float = 0.01

    def __post_init__(self) -> None:
        if not (self.gain > 0 and self.level >= 0 and np.isfinite(self.gain + self.level)):
            raise DataError(f"poisson-gaussian noise needs gain > 0 and level >= 0, got "
                            f"gain={self.gain}, level={self.level}")

    def apply(self, z: np.ndarray, rng: np.random.Generator,
              bounds: tuple[float, float] | None = None) -> np.ndarray:
        lam = np.clip(z, 0.0, None) / self.gain
        shot = rng.poisson(lam).astype(np.float32) * np.float32(self.gain)
        return (shot + self.level * rng.standard_normal(z.shape)).astype(np.float32)

    def __str__(self) -> str:
        return f"poisson-gaussian:{self.level:g},gain={self.gain:g}"


# ------------------------------------------------------------------------------ render


def _task_params(rs: np.random.Generator) -> dict[str, Any]:
    """One task's image distribution (consumes a fixed number of draws of ``rs``)."""
    u = rs.random(16)
    contrast = 0.3 + 0.7 * u[0]
    mid = contrast / 2 + (1 - contrast) * u[1]
    return {
        "grey_lo": float(mid - contrast / 2), "grey_hi": float(mid + contrast / 2),
        "r_min_px": float(1.0 + 2.0 * u[2]),  # smallest leaf radius, pixels
        "r_max": float(0.25 + 0.75 * u[3]),  # largest, image widths
        "aspect_max": float(1.0 + 2.0 * u[4]),
        "p_rect": float(u[5]), "p_half": float(0.3 * u[6]),
        "gradient": float(0.6 * u[7]),  # shading slope scale (grey range per image width)
        "p_textured": float(u[8]), "leaf_texture": float(0.15 * u[9]),
        "texture_alpha": float(0.7 + 0.8 * u[10]),  # amplitude ~ f**-alpha
        "p_texture_image": float(0.4 * u[11]),  # images blended with a texture field
        "blur": float(1.2 * u[12] ** 2),  # Gaussian blur sigma, pixels
        "gamma": float(np.exp(np.log(0.6) + np.log(1.6 / 0.6) * u[13])),
        "rotation": float(np.pi * u[14]),
        "background_gradient": float(0.5 * u[15]),
    }


def _n_leaves(res: int, p: dict[str, Any]) -> int:
    """Leaves per image so that a point is covered ``_COVERAGE`` times on average."""
    lo, hi = p["r_min_px"] / res, p["r_max"]
    if hi <= lo:
        return 8
    mean_r2 = np.log(hi / lo) / ((lo ** -2 - hi ** -2) / 2)  # E[r^2] under r^-3
    area = np.pi * mean_r2 / (0.5 * (1 + 1 / p["aspect_max"]))  # mean aspect shrinks b
    domain = 1.2 ** 2  # centres in [-0.1, 1.1]^2
    return int(np.clip(np.ceil(_COVERAGE * domain / area), 8, _MAX_LEAVES))


def _draw_leaves(n: int, k: int, res: int, p: dict[str, Any],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``k`` leaves per image (index 0 in front), geometry in pixels, shape (n, k)."""
    lo, hi = p["r_min_px"], max(p["r_max"] * res, p["r_min_px"] * 1.01)
    u = rng.random((n, k))
    r = (lo ** -2 - u * (lo ** -2 - hi ** -2)) ** -0.5  # inverse CDF of r^-3 on [lo, hi]
    kind = np.where(rng.random((n, k)) < p["p_rect"], 1, 0)
    kind = np.where(rng.random((n, k)) < p["p_half"], 2, kind)
    theta = rng.random((n, k)) * np.pi + p["rotation"]
    span = p["grey_hi"] - p["grey_lo"]
    grey = p["grey_lo"] + span * rng.random((n, k)) ** p["gamma"]
    slope = rng.standard_normal((n, k, 2)) * (p["gradient"] * span / res)
    tex = p["leaf_texture"] * (rng.random((n, k)) < p["p_textured"]) * rng.random((n, k))
    f32 = np.float32
    b = r / rng.uniform(1.0, p["aspect_max"], (n, k))
    return {
        "cx": (rng.uniform(-0.1, 1.1, (n, k)) * res).astype(f32),
        "cy": (rng.uniform(-0.1, 1.1, (n, k)) * res).astype(f32),
        "a": r.astype(f32), "inv_a": (1 / r).astype(f32), "inv_b": (1 / b).astype(f32),
        "kind": kind.astype(np.int8), "cos": np.cos(theta).astype(f32),
        "sin": np.sin(theta).astype(f32), "grey": grey.astype(f32),
        "gx": slope[..., 0].astype(f32), "gy": slope[..., 1].astype(f32), "tex": tex.astype(f32),
    }


def _inside(dx: np.ndarray, dy: np.ndarray, leaf: dict[str, np.ndarray]) -> np.ndarray:
    """Whether offsets ``(dx, dy)`` from each leaf's centre fall inside it (broadcast)."""
    u = (dx * leaf["cos"] + dy * leaf["sin"]) * leaf["inv_a"]
    v = (dy * leaf["cos"] - dx * leaf["sin"]) * leaf["inv_b"]
    u *= u
    vv = v * v
    inside = np.where(leaf["kind"] == 1, np.maximum(u, vv), u + vv) <= 1.0
    return inside & ((leaf["kind"] != 2) | (v >= 0))


def _zbuffer(leaves: dict[str, np.ndarray], n: int, k: int, res: int) -> np.ndarray:
    """(n, res, res) index of the front-most leaf at each pixel (``k``: none)."""
    z = np.full(n * res * res, k, np.int32)
    reach = np.ceil(leaves["a"])  # pixel centres within r of c: offsets -ceil(r)..ceil(r)
    lower = 0
    for hw in _STENCILS:  # small leaves: a (2hw+1)^2 stencil around each centre
        ii, jj = np.nonzero((reach > lower) & (reach <= hw))
        lower = hw
        if not len(ii):
            continue
        sub = {key: leaves[key][ii, jj][:, None] for key in _GEOMETRY}
        off = np.arange(-hw, hw + 1, dtype=np.int32)
        oy, ox = (g.ravel()[None, :] for g in np.meshgrid(off, off, indexing="ij"))
        py = np.floor(sub["cy"]).astype(np.int32) + oy
        px = np.floor(sub["cx"]).astype(np.int32) + ox
        ok = (py >= 0) & (py < res) & (px >= 0) & (px < res)
        half = np.float32(0.5)
        ok &= _inside(px.astype(np.float32) + (half - sub["cx"]),
                      py.astype(np.float32) + (half - sub["cy"]), sub)
        flat = (ii[:, None].astype(np.int64) * res + py) * res + px
        np.minimum.at(z, flat[ok], np.broadcast_to(jj[:, None], ok.shape)[ok].astype(np.int32))
    big = reach > lower
    if big.any():  # large leaves: dense, padded to the most any image has
        order = np.argsort(~big, axis=1, kind="stable")[:, : int(big.sum(1).max())]
        order = order.astype(np.int32)
        sub = {key: np.take_along_axis(leaves[key], order, 1)[:, :, None, None]
               for key in _GEOMETRY}
        g = np.arange(res, dtype=np.float32) + np.float32(0.5)
        hit = _inside(g[None, None, None, :] - sub["cx"], g[None, None, :, None] - sub["cy"],
                      sub) & np.take_along_axis(big, order, 1)[:, :, None, None]
        depth = np.where(hit, order[:, :, None, None], np.int32(k)).min(axis=1)
        z = np.minimum(z, depth.reshape(-1))
    return z.reshape(n, res, res)


def _power_field(n: int, res: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """(n, res, res) Gaussian random fields, amplitude ~ f**-alpha, zero mean, unit std."""
    f = np.hypot(np.fft.fftfreq(res)[:, None], np.fft.rfftfreq(res)[None, :]) * res
    amp = np.maximum(f, 1.0) ** -alpha
    amp[0, 0] = 0.0
    spec = np.fft.rfft2(rng.standard_normal((n, res, res)), axes=(1, 2)) * amp
    x = np.fft.irfft2(spec, s=(res, res), axes=(1, 2))
    return x / np.maximum(x.std(axis=(1, 2), keepdims=True), 1e-8)


def _blur_matrix(res: int, sigma: float) -> np.ndarray:
    """(res, res) separable Gaussian blur along one axis, borders reflected."""
    if sigma < 0.05:
        return np.eye(res)
    rad = int(np.ceil(3 * sigma))
    t = np.arange(-rad, rad + 1)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    w /= w.sum()
    m = np.zeros((res, res))
    for off, wt in zip(t, w, strict=True):
        idx = np.arange(res) + off
        idx = np.where(idx < 0, -idx - 1, np.where(idx >= res, 2 * res - idx - 1, idx))
        np.add.at(m, (np.arange(res), np.clip(idx, 0, res - 1)), wt)
    return m


def render_natural(n: int, res: int, p: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """``n`` images (n, res, res) of the task ``p`` (:func:`_task_params`), in [0, 1]."""
    k = _n_leaves(res, p)
    leaves = _draw_leaves(n, k, res, p, rng)
    z = _zbuffer(leaves, n, k, res)
    # The background is leaf k: a grey level with a gentle gradient across the image.
    span = p["grey_hi"] - p["grey_lo"]
    bg = {"grey": p["grey_lo"] + span * rng.random((n, 1)),
          "cx": np.full((n, 1), res / 2), "cy": np.full((n, 1), res / 2),
          "gx": rng.standard_normal((n, 1)) * p["background_gradient"] * span / res,
          "gy": rng.standard_normal((n, 1)) * p["background_gradient"] * span / res,
          "tex": np.zeros((n, 1))}
    flat = z.reshape(n, -1)

    def at(key: str) -> np.ndarray:
        table = np.concatenate([leaves[key], bg[key]], axis=1)
        return np.take_along_axis(table, flat, axis=1).reshape(z.shape)

    g = np.arange(res) + 0.5
    img = at("grey") + at("gx") * (g[None, None, :] - at("cx")) \
        + at("gy") * (g[None, :, None] - at("cy"))
    img = img + at("tex") * _power_field(n, res, p["texture_alpha"], rng)
    mix = (rng.random(n) < p["p_texture_image"]) * rng.uniform(0.3, 1.0, n)
    on = np.flatnonzero(mix)
    if len(on):  # blend these images towards a texture field
        field = p["grey_lo"] + span * (0.5 + 0.2 * _power_field(len(on), res,
                                                                p["texture_alpha"], rng))
        img[on] += mix[on, None, None] * (field - img[on])
    blur = _blur_matrix(res, p["blur"])
    img = np.einsum("ik,nkl,jl->nij", blur, img, blur, optimize=True)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------ family


@register_family(
    "natural",
    "procedural natural-image statistics: dead leaves (r^-3 sizes), textures, blur, "
    "16-64 px, Gaussian / Poisson-Gaussian / salt-and-pepper noise (images)",
    recipe={**IMAGE_RECIPE, "objective": "denoise"},
)
class NaturalFamily(ImageFamilyBase):
    """Dead-leaves images with textures and blur, one image distribution per task (C = 1).

    Args:
        poisson_gain_range: ``(lo, hi)`` of a Poisson-Gaussian task's gain (shot-noise
            variance per unit intensity), drawn log-uniformly; its read noise sigma is
            drawn from ``read_noise_range``.
        read_noise_range: Read-noise sigma range of Poisson-Gaussian tasks.
        **kwargs: :class:`~metaae_edge.tasks.images.ImageFamilyBase` options
            (``resolutions``, ``unseen_resolutions``, ``resolution``, ``seed``,
            ``noise_range`` = Gaussian sigma range, default 0.02-0.2, ``noise_kinds``
            from :data:`NATURAL_NOISE_KINDS`).
    """

    max_input_dim = max(NATURAL_SEEN + NATURAL_UNSEEN) ** 2
    salt_pepper_range = (0.02, 0.2)

    def __init__(
        self,
        *,
        resolutions: Sequence[int] = NATURAL_SEEN,
        unseen_resolutions: Sequence[int] = NATURAL_UNSEEN,
        noise_range: tuple[float, float] = (0.02, 0.2),
        noise_kinds: Sequence[str] = NATURAL_NOISE_KINDS,
        poisson_gain_range: tuple[float, float] = (0.002, 0.04),
        read_noise_range: tuple[float, float] = (0.005, 0.05),
        **kwargs: Any,
    ) -> None:
        super().__init__(resolutions=resolutions, unseen_resolutions=unseen_resolutions,
                         noise_range=noise_range, noise_kinds=("gaussian",), **kwargs)
        kinds = tuple(noise_kinds)
        if not kinds or any(k not in NATURAL_NOISE_KINDS for k in kinds):
            raise DataError(f"noise_kinds must be a non-empty subset of {NATURAL_NOISE_KINDS},"
                            f" got {kinds}")
        check_range("poisson_gain_range", *map(float, poisson_gain_range), minimum=1e-6)
        check_range("read_noise_range", *map(float, read_noise_range), minimum=0.0)
        self.noise_kinds = kinds
        self.poisson_gain_range = tuple(map(float, poisson_gain_range))
        self.read_noise_range = tuple(map(float, read_noise_range))

    def _draw_noise(self, rng: np.random.Generator) -> Noise:
        kinds = self.noise_kinds
        kind = kinds[0] if len(kinds) == 1 else kinds[int(rng.integers(len(kinds)))]
        if kind == "poisson-gaussian":
            lo, hi = np.log(self.poisson_gain_range)
            gain = float(np.exp(rng.uniform(lo, hi)))
            return PoissonGaussianNoise(level=float(rng.uniform(*self.read_noise_range)),
                                        gain=gain)
        lo, hi = self.noise_range if kind == "gaussian" else self.salt_pepper_range
        return Noise(kind, float(rng.uniform(lo, hi)))

    _defects = ShapesFamily._defects  # a bright blob or scratch (anomaly query images)

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        res, seen = self._resolution(split, streams.structure)
        p = _task_params(streams.structure)
        d = res * res
        support = render_natural(n_support, res, p, streams.data).reshape(n_support, d)
        info: dict[str, Any] = {"resolution": res, "seen_resolution": seen,
                                "n_leaves": _n_leaves(res, p), **p}
        labels = None
        if objective != "anomaly":
            query = render_natural(n_query, res, p, streams.data).reshape(n_query, d)
        else:
            n_anom = self.n_anomalies(n_query)
            normal = render_natural(n_query - n_anom, res, p, streams.data).reshape(-1, d)
            base = render_natural(n_anom, res, p, streams.anomaly)[:, None]
            anomalies, kinds = self._defects(base, streams.anomaly)
            query, labels, order = mix_query(normal, anomalies.reshape(n_anom, d),
                                             streams.anomaly)
            info["anomaly_kind"] = np.array(["normal"] * len(normal) + kinds)[order].tolist()
        return Generated(support, query, labels, info, image_shape=(1, res, res))
