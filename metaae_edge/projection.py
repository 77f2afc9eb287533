"""Wide inputs for the MLP space: a PCA front-end fitted at adaptation, folded at export.

The MLP supernet's first and last layers hold per-feature weights for at most
``max_input_dim`` features (128 in the shipped checkpoints). Wider data (a 9-channel x
64-sample window is 576 values) is adapted in a ``p``-dimensional projection instead:
``y = c * U^T z`` with ``z`` the standardised row, ``U`` (D x p, orthonormal columns) the
support set's top ``p = min(max_input_dim, D, S - 1)`` principal directions and ``c`` one
global scale that gives the projected components unit variance on average (the input scale
the meta-learned weights were trained on; one scalar, so the loss ranking is unchanged).

Since ``||z - U r / c||^2 = ||z - U U^T z||^2 + ||y - r||^2 / c^2``, fitting the
projected reconstruction ``r`` minimises the model-space reconstruction error of ``z``;
the residual outside ``U`` is part of the exported error (it is PCA's error at ``p``),
so an anomaly off the support's span still scores high.

:func:`fold` builds a plain :class:`~metaae_edge.space.CompactAE` taking ``D`` inputs: the
first encoder layer (and the bypass encoder) become ``W c U^T``, the last decoder layer
(and the bypass decoder) ``U W / c`` with bias ``U b / c``. The exported graph is the same
MLP graph as for narrow data, so the runtime, export, parity, INT8 gate and bench do not
change; nothing of the projection remains at run time but these weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import DataError

__all__ = ["InputProjection", "adapt_wide", "fit_projection", "fold", "is_wide", "project_task"]

_FIT_ROWS = 8192  # rows the principal directions are computed from (subsampled above)


@dataclass(frozen=True)
class InputProjection:
    """``y = scale * z @ components``: the front-end of one wide task."""

    components: np.ndarray  # (D, p), orthonormal columns, model (standardised) space
    scale: float
    explained: float  # share of the support's model-space variance inside the span

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def apply(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
        return (self.scale * (z.astype(np.float64) @ self.components)).astype(np.float32)

    def report(self) -> dict[str, Any]:
        return {"kind": "pca", "input_dim": int(self.components.shape[0]),
                "components": self.dim, "scale": float(self.scale),
                "explained_variance": float(self.explained)}


def fit_projection(z: np.ndarray, max_dim: int, seed: int = 0) -> InputProjection:
    """The top principal directions of the standardised support rows ``z`` (N, D).

    Above :data:`_FIT_ROWS` rows a seeded subsample gives the directions (the
    covariance of 8192 rows is what 20,000 would give to within sampling error).
    """
    n, d = z.shape
    p = min(int(max_dim), d, n - 1)
    if p < 1:
        raise DataError(f"a {d}-feature task needs at least 2 support rows, got {n}")
    x = np.asarray(z, dtype=np.float64)
    if n > _FIT_ROWS:
        x = x[np.sort(np.random.default_rng(seed).choice(n, _FIT_ROWS, replace=False))]
    x = x - x.mean(axis=0)
    if len(x) < d:
        _, sv, vt = np.linalg.svd(x, full_matrices=False)
        var, vecs = sv**2 / len(x), vt.T
    else:
        var, vecs = np.linalg.eigh(x.T @ x / len(x))
        var, vecs = var[::-1].clip(min=0.0), vecs[:, ::-1]
    u = vecs[:, :p]
    idx = np.abs(u).argmax(axis=0)  # deterministic signs: largest entry positive
    u = u * np.where(u[idx, np.arange(p)] < 0, -1.0, 1.0)
    kept = float(var[:p].sum())
    scale = float(np.sqrt(p / max(kept, 1e-12)))
    return InputProjection(np.ascontiguousarray(u), scale, kept / max(float(var.sum()), 1e-12))


def project_task(task, batch, proj: InputProjection):
    """A ``p``-feature task of the projected model-space rows of ``batch`` (the original
    task's :class:`~metaae_edge.meta.inner.TaskBatch`), identity-normalised.

    Denoising pairs are projected as real noisy/clean pairs (the corruption was applied in
    the original model space). The query holds the normal rows only (what the reports
    score), so an anomaly task's labels are all zero.
    """
    if task.loss != "mse":
        raise DataError(f"a {task.input_dim}-feature task needs the mse loss (the PCA "
                        "front-end of wide inputs is linear); got bce")
    s, q = proj.apply(batch.support_target), proj.apply(batch.query_target)
    noisy = {}
    if task.objective == "denoise":
        noisy = {"support_noisy": proj.apply(batch.support_in),
                 "query_noisy": proj.apply(batch.query_in), "noise": None}
    labels = np.zeros(len(q), np.int64) if task.objective == "anomaly" else None
    return dataclasses.replace(task, support=s, query=q, query_labels=labels,
                               normalization="identity", info=dict(task.info),
                               image_shape=None, **noisy)


@torch.no_grad()
def fold(model, spec, proj: InputProjection):
    """The compact net of the projected task as a compact net taking ``D`` inputs."""
    from .space import CompactAE

    d = proj.components.shape[0]
    wide = CompactAE(dataclasses.replace(spec, input_shape=(d,)).validate())
    u = torch.as_tensor(proj.components, dtype=torch.float32)
    c = float(proj.scale)
    src, dst = dict(model.state_dict()), wide.state_dict()
    first, last = "encoder.layers.0", f"decoder.layers.{len(spec.decoder)}"
    for name, value in src.items():
        if name in (f"{first}.weight", "bypass_enc.weight"):
            value = (value * c) @ u.T
        elif name in (f"{last}.weight", "bypass_dec.weight", f"{last}.bias"):
            value = (u @ value) / c
        dst[name].copy_(value)
    wide.eval()
    return wide, wide.spec


def is_wide(model, task) -> bool:
    """An MLP supernet given more features than its ``max_input_dim``."""
    cfg = getattr(model, "cfg", None)
    return (cfg is not None and cfg.backbone == "mlp" and task.image_shape is None
            and task.input_dim > cfg.max_input_dim)


def _wide_mse(perp: float, mse_p: float, proj: InputProjection) -> float:
    """Model-space MSE from the projected one: residual outside the span plus the
    projected error mapped back (``/ c^2``, ``p`` of ``D`` coordinates)."""
    d = proj.components.shape[0]
    return perp + mse_p * proj.dim / (proj.scale ** 2 * d)


def _perp(z: torch.Tensor, proj: InputProjection) -> float:
    """Mean squared residual of ``z`` outside the projection's span (per value)."""
    x = z.detach().cpu().numpy().astype(np.float64)
    inside = (x @ proj.components) @ proj.components.T
    return float(((x - inside) ** 2).mean())


def adapt_wide(model, params, task, inner, **kw):
    """:func:`~metaae_edge.adapt.adapt_supernet` on the PCA projection of a wide task,
    folded back to a compact net taking all ``D`` features; the report's MSEs are in the
    task's model space (``input_projection`` says what the front-end kept)."""
    from .adapt import _mse, adapt_supernet
    from .meta.inner import make_batch

    full = make_batch(task, kw.get("device", "cpu"), seed=kw.get("seed", 0))
    proj = fit_projection(full.support_target.cpu().numpy(), model.cfg.max_input_dim,
                          kw.get("seed", 0))
    result = adapt_supernet(model, params, project_task(task, full, proj), inner, **kw)
    rep = result.report
    perp = {"support_mse": _perp(full.support_target, proj),
            "query_mse": _perp(full.query_target, proj)}
    for key in ("before", "relaxed"):
        rep[key] = {k: _wide_mse(perp[k], v, proj) for k, v in rep[key].items()}
    rep["discretized_query_mse"] = _wide_mse(perp["query_mse"], rep["discretized_query_mse"],
                                             proj)
    wide, spec = fold(result.model.cpu(), result.spec, proj)
    rep["after"] = {"support_mse": _mse(wide, full.support_in.cpu(), full.support_target.cpu()),
                    "query_mse": _mse(wide, full.query_in.cpu(), full.query_target.cpu())}
    rep["task"] = task.summary()
    rep["input_projection"] = proj.report()
    rep.update(arch=spec.to_dict(), arch_summary=spec.describe(), params=spec.param_count(),
               macs=spec.macs(), latent_dim=spec.latent_dim, latent_size=spec.latent_size())
    return dataclasses.replace(result, model=wide.to(full.support_in.device), spec=spec,
                               normalizer=task.normalizer())
