"""``tabular``: realistic procedural tables with the four ADBench anomaly kinds.

Normal rows come from a mixture of clusters in a low-dimensional latent space, heavy
tailed (multivariate Student-t), pushed through a random warped (linear + sine) map into
``D`` columns, then given mixed scales (per-column scale over five orders of magnitude),
a few skewed (log-normal) columns, discrete (few-level integer) columns and constant
columns. Anomalies follow Han et al., "ADBench" (NeurIPS 2022): local, global,
dependency and clustered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .base import register_family
from .families import FamilyBase, Generated, Streams, check_range, mix_query

__all__ = ["ANOMALY_KINDS", "TabularFamily"]

ANOMALY_KINDS: tuple[str, ...] = ("local", "global", "dependency", "clustered")
_N_REFERENCE = 2048  # normal rows that fix bins, bounding box and cluster moments
_HIDDEN = 16  # sine features of the warp
#: meta-train defaults of builtin:tabular: the linear (PCA) bypass, so a fresh supernet is PCA
#: and meta-learning learns a non-linear residual on top (measured: 0.99-1.00x PCA's query
#: MSE after the default 30 fine-tune steps where builtin:manifold is 1.4-2.0x)
_RECIPE = {"linear_bypass": True, "meta_steps": 800, "val_every": 100}


@dataclass
class _Table:
    """One task's generative model of normal rows."""

    means: np.ndarray  # (C, k) cluster centres in latent space
    chols: np.ndarray  # (C, k, k) cluster covariance factors
    weights: np.ndarray  # (C,)
    df: float  # Student-t degrees of freedom (inf: Gaussian)
    lin: np.ndarray  # (k, D)
    w1: np.ndarray  # (k, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, D)
    noise: float
    scale: np.ndarray  # (D,)
    offset: np.ndarray  # (D,)
    skewed: np.ndarray  # column indices passed through exp
    discrete: np.ndarray  # column indices quantised to integer levels
    constant: np.ndarray  # column indices held constant
    edges: list[np.ndarray] | None = None  # bin edges per discrete column
    const_values: np.ndarray | None = None

    def latent(self, rng: np.random.Generator, n: int,
               cluster: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``n`` latent points (heavy-tailed around their cluster centre) and clusters."""
        k = self.means.shape[1]
        if cluster is None:
            c = rng.choice(len(self.weights), size=n, p=self.weights)
        else:
            c = np.full(n, cluster)
        g = rng.standard_normal((n, k))
        if np.isfinite(self.df):  # multivariate t: one chi-square radius per row
            g = g / np.sqrt(rng.chisquare(self.df, (n, 1)) / self.df)
        z = self.means[c] + np.einsum("nij,nj->ni", self.chols[c], g)
        return z, c

    def embed(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Continuous columns before the per-column transforms (with isotropic noise)."""
        x = z @ self.lin + np.sin(z @ self.w1 + self.b1) @ self.w2
        return x + self.noise * rng.standard_normal(x.shape)

    def finish(self, x: np.ndarray) -> np.ndarray:
        """Skew, scale, discretise and hold constant: continuous -> observed columns."""
        x = x.copy()
        x[:, self.skewed] = np.exp(np.clip(x[:, self.skewed], -8.0, 8.0))
        x = x * self.scale + self.offset
        if self.edges is not None:
            for j, e in zip(self.discrete, self.edges, strict=True):
                x[:, j] = np.searchsorted(e, x[:, j]).astype(np.float64)
        if self.const_values is not None:
            x[:, self.constant] = self.const_values
        return x

    def calibrate(self, ref: np.ndarray, rng: np.random.Generator) -> None:
        """Bin edges (2-10 levels, random quantile cuts) and constant values from ``ref``."""
        self.edges, self.const_values = None, None
        scaled = self.finish(ref)
        self.edges = []
        for j in self.discrete:
            levels = int(rng.integers(2, 11))
            cuts = np.sort(rng.uniform(0.05, 0.95, levels - 1))
            self.edges.append(np.quantile(scaled[:, j], cuts))
        self.const_values = np.round(rng.normal(0, 1, len(self.constant)) * 10.0, 2)


@register_family("tabular", "realistic tables (8-64 columns by default, any width >= 2): clusters, "
                 "heavy tails, mixed scales, discrete/constant columns; ADBench anomalies",
                 recipe=_RECIPE)
class TabularFamily(FamilyBase):
    """Procedural tables whose anomaly kind and contamination vary per task.

    Per task: width ``D`` in ``[min_features, max_features]``, latent dimension ``k``,
    1-4 clusters, Student-t tails (df 2.5-30, or Gaussian), a warp whose nonlinearity
    varies, per-column scales ``10**U(-2, 3)``, up to 15% skewed, up to 30% discrete and
    up to 10% constant columns (``info`` lists them).

    Anomalies (``anomaly`` objective; one kind per task, ``info["anomaly_type"]``, and
    contamination ``info["contamination"]`` drawn from ``contamination``):

    - ``local``: points of a normal cluster whose deviation from the cluster mean is
      scaled by ``sqrt(a)``, ``a`` in [3, 6] (the cluster's covariance inflated ``a``-fold:
      ADBench's GMM with inflated covariance, the task's own mixture standing for the fit).
    - ``global``: uniform over the normal bounding box enlarged by 10-50% of each range
      (rounded in discrete columns, which stay integer-valued).
    - ``dependency``: each column drawn independently from its normal marginal (a donor
      normal row per column): every marginal is exact, every dependency is broken.
    - ``clustered``: a dense (0.1-0.3x spread) copy of one cluster shifted by 0.5-2.5
      column std in a random direction.

    Args:
        min_features: Smallest width (>= 2).
        max_features: Largest width (also ``max_input_dim``).
        max_latent: Largest latent dimension (capped at ``D - 1``).
        contamination: ``(lo, hi)`` range of the query's anomaly share.
        anomaly_kinds: The kinds tasks draw from (uniformly).
        seed: Family seed.
        noise_range: Per-task ``denoise`` noise level range (normalised units).
    """

    def __init__(
        self,
        *,
        min_features: int = 8,
        max_features: int = 64,
        max_latent: int = 8,
        contamination: tuple[float, float] = (0.02, 0.2),
        anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS,
        seed: int = 0,
        anomaly_fraction: float = 0.1,
        noise_range: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        super().__init__(seed=seed, anomaly_fraction=anomaly_fraction, noise_range=noise_range)
        check_range("width (min_features, max_features)", min_features, max_features,
                    minimum=2)
        check_range("max_latent", 1, max_latent, minimum=1)
        check_range("contamination", contamination[0], contamination[1], minimum=1e-6)
        if contamination[1] >= 1.0:
            raise DataError(f"contamination must stay below 1, got {contamination}")
        bad = [k for k in anomaly_kinds if k not in ANOMALY_KINDS]
        if bad or not anomaly_kinds:
            raise DataError(f"anomaly_kinds must be from {ANOMALY_KINDS}, got {anomaly_kinds}")
        self.min_features, self.max_features = int(min_features), int(max_features)
        self.max_latent = int(max_latent)
        self.contamination = (float(contamination[0]), float(contamination[1]))
        self.anomaly_kinds = tuple(anomaly_kinds)
        self.max_input_dim = self.max_features

    def _table(self, rs: np.random.Generator) -> _Table:
        """Draw one task's structure."""
        d = int(rs.integers(self.min_features, self.max_features + 1))
        k = int(rs.integers(1, max(1, min(self.max_latent, d - 1)) + 1))
        n_c = int(rs.integers(1, 5))
        chols = np.stack([np.linalg.cholesky(_random_cov(rs, k)) for _ in range(n_c)])
        perm = rs.permutation(d)
        n_const = int(rs.integers(0, int(0.1 * d) + 1)) if d >= 4 else 0
        n_disc = int(rs.integers(0, int(0.3 * d) + 1)) if d >= 3 else 0
        n_skew = int(rs.integers(0, int(0.15 * d) + 1))
        n_skew = min(n_skew, d - n_const - n_disc)
        warp = rs.uniform(0.0, 1.5)
        return _Table(
            means=rs.normal(0.0, 2.5, (n_c, k)),
            chols=chols,
            weights=rs.dirichlet(np.full(n_c, 2.0)),
            df=float(rs.uniform(2.5, 30.0)) if rs.random() < 0.7 else float("inf"),
            lin=rs.standard_normal((k, d)) / np.sqrt(k),
            w1=rs.standard_normal((k, _HIDDEN)) * (rs.uniform(0.3, 1.2) / np.sqrt(k)),
            b1=rs.uniform(0.0, 2 * np.pi, _HIDDEN),
            w2=rs.standard_normal((_HIDDEN, d)) * (warp / np.sqrt(_HIDDEN)),
            noise=float(rs.uniform(0.02, 0.1)),
            scale=10.0 ** rs.uniform(-2.0, 3.0, d),
            offset=rs.normal(0.0, 1.0, d) * 10.0 ** rs.uniform(-1.0, 2.0, d),
            constant=np.sort(perm[:n_const]),
            discrete=np.sort(perm[n_const:n_const + n_disc]),
            skewed=np.sort(perm[n_const + n_disc:n_const + n_disc + n_skew]),
        )

    def _generate(
        self, split: str, streams: Streams, objective: str, n_support: int, n_query: int
    ) -> Generated:
        rs = streams.structure
        tab = self._table(rs)
        z_ref, c_ref = tab.latent(rs, _N_REFERENCE)
        x_ref = tab.embed(z_ref, rs)
        tab.calibrate(x_ref, rs)
        info = {
            "n_features": int(tab.lin.shape[1]),
            "intrinsic_dim": int(tab.means.shape[1]),
            "n_clusters": len(tab.weights),
            "student_df": tab.df if np.isfinite(tab.df) else 0.0,
            "constant_columns": tab.constant.tolist(),
            "discrete_columns": tab.discrete.tolist(),
            "skewed_columns": tab.skewed.tolist(),
        }
        rd = streams.data
        support = tab.finish(tab.embed(tab.latent(rd, n_support)[0], rd))
        if objective != "anomaly":
            query = tab.finish(tab.embed(tab.latent(rd, n_query)[0], rd))
            return Generated(support, query, None, info)
        ra = streams.anomaly
        kind = self.anomaly_kinds[int(ra.integers(len(self.anomaly_kinds)))]
        frac = float(ra.uniform(*self.contamination))
        n_anom = int(min(max(round(frac * n_query), 1), n_query - 1))
        normal = tab.finish(tab.embed(tab.latent(rd, n_query - n_anom)[0], rd))
        anomalies = _ANOMALY[kind](tab, ra, n_anom, x_ref, c_ref)
        query, labels, order = mix_query(normal, anomalies, ra)
        info.update(anomaly_type=kind, contamination=n_anom / n_query)
        info["anomaly_kind"] = np.where(labels == 1, kind, "normal").tolist()
        return Generated(support, query, labels, info)


def _random_cov(rs: np.random.Generator, k: int) -> np.ndarray:
    """A random SPD latent covariance with eigenvalues spread over ~1.5 decades."""
    q, _ = np.linalg.qr(rs.standard_normal((k, k)))
    eig = 10.0 ** rs.uniform(-1.5, 0.0, k)
    return (q * eig) @ q.T + 1e-9 * np.eye(k)


def _local(tab: _Table, rng: np.random.Generator, n: int, x_ref: np.ndarray,
           c_ref: np.ndarray) -> np.ndarray:
    """Deviations from the cluster mean scaled by sqrt(a): covariance inflated a-fold."""
    c = rng.choice(len(tab.weights), size=n, p=tab.weights)
    x = np.empty((n, x_ref.shape[1]))
    for j in np.unique(c):
        rows = c == j
        z, _ = tab.latent(rng, int(rows.sum()), cluster=int(j))
        mean = x_ref[c_ref == j].mean(axis=0) if np.any(c_ref == j) else x_ref.mean(axis=0)
        a = rng.uniform(3.0, 6.0, (int(rows.sum()), 1))
        x[rows] = mean + np.sqrt(a) * (tab.embed(z, rng) - mean)
    return tab.finish(x)


def _global(tab: _Table, rng: np.random.Generator, n: int, x_ref: np.ndarray,
            c_ref: np.ndarray) -> np.ndarray:
    """Uniform over the normal bounding box enlarged by 10-50% of each column's range."""
    obs = tab.finish(x_ref)
    lo, hi = obs.min(axis=0), obs.max(axis=0)
    m = rng.uniform(0.1, 0.5) * (hi - lo)
    x = rng.uniform(lo - m, hi + m, (n, obs.shape[1]))
    x[:, tab.discrete] = np.round(x[:, tab.discrete])  # integer columns stay integer
    return x


def _dependency(tab: _Table, rng: np.random.Generator, n: int, x_ref: np.ndarray,
                c_ref: np.ndarray) -> np.ndarray:
    """Each column from its own fresh normal donor row: the product of the marginals."""
    d = x_ref.shape[1]
    n_donor = max(8 * n, 256)
    donors = tab.finish(tab.embed(tab.latent(rng, n_donor)[0], rng))
    return donors[rng.integers(0, n_donor, (n, d)), np.arange(d)]


def _clustered(tab: _Table, rng: np.random.Generator, n: int, x_ref: np.ndarray,
               c_ref: np.ndarray) -> np.ndarray:
    """A dense copy (0.1-0.3x spread) of one cluster, shifted 0.5-2.5 std per column."""
    j = int(rng.choice(len(tab.weights), p=tab.weights))
    z, _ = tab.latent(rng, n, cluster=j)
    x = tab.embed(z, rng)
    mean = x.mean(axis=0)
    u = rng.standard_normal(x.shape[1])
    shift = rng.uniform(0.5, 2.5) * x_ref.std(axis=0) * u / np.sqrt(np.mean(u**2))
    return tab.finish(mean + shift + rng.uniform(0.1, 0.3) * (x - mean))


_ANOMALY = {"local": _local, "global": _global, "dependency": _dependency,
            "clustered": _clustered}
