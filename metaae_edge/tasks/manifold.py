"""``manifold``: random smooth k-dimensional manifolds embedded in 32-64 dimensions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .base import register_family
from .families import FamilyBase, Generated, Streams, check_range, mix_query

__all__ = ["ManifoldFamily"]

# Latent points used to measure an embedding's scale; fixed so that noise levels and the
# anomalies' marginal matching do not depend on the requested sample sizes.
_N_REFERENCE = 512


@dataclass(frozen=True)
class _Embedding:
    """``f(z) = sin(w * z @ a1 + b1) @ a2 + z @ a3``: a random smooth map R^k -> R^D."""

    a1: np.ndarray  # (k, H), already multiplied by the curvature w
    b1: np.ndarray  # (H,)
    a2: np.ndarray  # (H, D)
    a3: np.ndarray  # (k, D)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.sin(z @ self.a1 + self.b1) @ self.a2 + z @ self.a3

    def tangent(self, z: np.ndarray) -> np.ndarray:
        """Jacobians at each z, shape (N, k, D): rows span the manifold's tangent space."""
        c = np.cos(z @ self.a1 + self.b1)  # (N, H)
        return np.einsum("kh,nh,hd->nkd", self.a1, c, self.a2) + self.a3[None]


@register_family("manifold", "random smooth k-dim manifolds (k in 1..12) embedded in 32-64 dims")
class ManifoldFamily(FamilyBase):
    """Procedural tasks whose data lie near a random k-dimensional manifold.

    Per task: intrinsic dimension ``k`` and ambient dimension ``D`` are drawn uniformly;
    latents ``z ~ N(0, I_k)`` go through a random sine-feature MLP of hidden width ``2D``
    plus a random linear part, then isotropic noise (``noise_frac`` of the signal std)
    and a random per-feature scale and offset. An autoencoder's error therefore falls
    sharply until its latent size reaches ``k``.

    Anomalies are off-manifold: half are on-manifold points pushed orthogonally to the
    local tangent space, shrunk so their per-feature spread matches normal data; half mix
    features of different normal samples (each feature's marginal exactly normal). A
    per-feature outlier test therefore cannot separate them well.

    Args:
        min_dim: Smallest intrinsic dimension.
        max_dim: Largest intrinsic dimension.
        min_ambient: Smallest ambient dimension D.
        max_ambient: Largest ambient dimension D (also ``max_input_dim``).
        noise_frac: Isotropic noise std as a fraction of the mean per-feature signal std.
        curvature: ``(lo, hi)`` range of the sine frequency; higher bends more.
        seed: Family seed.
        anomaly_fraction: Fraction of anomalous query samples.
        noise_range: Per-task ``denoise`` noise level range (normalised units).
    """

    def __init__(
        self,
        *,
        min_dim: int = 1,
        max_dim: int = 12,
        min_ambient: int = 32,
        max_ambient: int = 64,
        noise_frac: float = 0.02,
        curvature: tuple[float, float] = (0.5, 1.5),
        seed: int = 0,
        anomaly_fraction: float = 0.2,
        noise_range: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        super().__init__(seed=seed, anomaly_fraction=anomaly_fraction, noise_range=noise_range)
        check_range("intrinsic dim (min_dim, max_dim)", min_dim, max_dim, minimum=1)
        check_range("ambient dim (min_ambient, max_ambient)", min_ambient, max_ambient, minimum=2)
        check_range("curvature", curvature[0], curvature[1], minimum=0.0)
        check_range("noise_frac", noise_frac, noise_frac, minimum=0.0)
        if max_dim >= min_ambient:
            raise DataError(
                f"max_dim ({max_dim}) must be below min_ambient ({min_ambient}): a manifold "
                "as wide as its ambient space has no structure to learn"
            )
        self.min_dim, self.max_dim = int(min_dim), int(max_dim)
        self.min_ambient, self.max_ambient = int(min_ambient), int(max_ambient)
        self.noise_frac = float(noise_frac)
        self.curvature = (float(curvature[0]), float(curvature[1]))
        self.max_input_dim = self.max_ambient

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        rs = streams.structure
        k = int(rs.integers(self.min_dim, self.max_dim + 1))
        d = int(rs.integers(self.min_ambient, self.max_ambient + 1))
        h = 2 * d
        w = rs.uniform(*self.curvature)
        emb = _Embedding(
            a1=rs.standard_normal((k, h)) * (w / np.sqrt(k)),
            b1=rs.uniform(0.0, 2 * np.pi, h),
            a2=rs.standard_normal((h, d)) / np.sqrt(h),
            a3=rs.standard_normal((k, d)) * (rs.uniform(0.3, 1.0) / np.sqrt(k)),
        )
        scale = np.exp(rs.normal(0.0, 0.5, d))
        offset = rs.normal(0.0, 1.0, d)
        ref = emb(rs.standard_normal((_N_REFERENCE, k)))
        ref_mean, ref_std = ref.mean(axis=0), ref.std(axis=0)
        signal_std = float(ref_std.mean())
        sigma = self.noise_frac * signal_std

        rd = streams.data

        def normal(n: int) -> np.ndarray:
            return emb(rd.standard_normal((n, k)))

        def finish(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            x = x + sigma * rng.standard_normal(x.shape)
            return (x * scale + offset).astype(np.float32)

        info = {
            "intrinsic_dim": k,
            "ambient_dim": d,
            "curvature": float(w),
            "noise_std": float(sigma),
        }
        support = finish(normal(n_support), rd)
        if objective != "anomaly":
            return Generated(support, finish(normal(n_query), rd), None, info)

        n_anom = self.n_anomalies(n_query)
        query_normal = finish(normal(n_query - n_anom), rd)
        ra = streams.anomaly
        n_off = (n_anom + 1) // 2
        off = self._off_manifold(emb, ra, n_off, k, signal_std, ref_mean, ref_std)
        # Each feature taken from a different random normal point (a draw from the product
        # of the marginals): every feature's distribution is normal, the joint point is not.
        n_mix = n_anom - n_off
        donors = emb(ra.standard_normal((max(8 * n_mix, 64), k)))
        mixed = donors[ra.integers(0, len(donors), (n_mix, d)), np.arange(d)]
        anomalies = finish(np.concatenate([off, mixed]), ra)
        query, labels, order = mix_query(query_normal, anomalies, ra)
        kinds = np.array(
            ["normal"] * len(query_normal)
            + ["off_manifold"] * n_off
            + ["feature_mix"] * (n_anom - n_off)
        )
        info["anomaly_kind"] = kinds[order].tolist()
        return Generated(support, query, labels, info)

    @staticmethod
    def _off_manifold(
        emb: _Embedding,
        rng: np.random.Generator,
        n: int,
        k: int,
        signal_std: float,
        ref_mean: np.ndarray,
        ref_std: np.ndarray,
    ) -> np.ndarray:
        """On-manifold points pushed along a random direction normal to the tangent space."""
        z = rng.standard_normal((n, k))
        x = emb(z)
        d = x.shape[1]
        jac = emb.tangent(z)
        u = rng.standard_normal((n, d))
        for i in range(n):
            q, _ = np.linalg.qr(jac[i].T)  # (D, k) orthonormal tangent basis
            u[i] -= q @ (q.T @ u[i])
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        # Each feature moves by 0.25-0.75 signal std on average: far off the manifold relative
        # to the noise, yet inside the normal range of every single feature.
        lo, hi = 0.25, 0.75
        magnitude = rng.uniform(lo, hi, (n, 1)) * signal_std * np.sqrt(d)
        x = x + magnitude * u
        # Shrink towards the mean by the expected variance inflation, so the per-feature
        # spread of anomalies matches normal data (E[m^2] / D per feature).
        mean_sq = (hi**3 - lo**3) / (3 * (hi - lo)) * signal_std**2
        factor = ref_std / np.sqrt(ref_std**2 + mean_sq)
        return ref_mean + (x - ref_mean) * factor
