"""``pca+residual-Q``: PCA's code at latent Q and a small MLP correcting PCA's reconstruction.

A reconstruct candidate beside the closed forms of :mod:`.candidates`. The network is a
plain :class:`~metaae_edge.space.CompactAE` with the MLP linear bypass (the vector MLP
contract, exported by the same ONNX exporter, parity and INT8 gates):

- encoder: no hidden layer; its linear map is 0 with bias ``-V mean`` and the bypass
  encoder is ``V`` (the top Q principal directions of the standardised fit rows), so the
  latent is PCA's code ``V (x - mean)``; kept fixed.
- decoder: ``x_hat = V^T z + g(z)`` with ``g`` one hidden ReLU layer of 128 (the bypass decoder
  ``V^T`` plus the MLP). ``g``'s last layer starts at 0 weight and bias ``mean``, so the
  untrained candidate *is* PCA-Q; only ``g`` (and, if ``train_bypass``, ``V^T``) is
  trained, full-batch Adam on the fit rows with early stopping on an inner 20% split of
  them (the best inner-held-out iterate is kept). The selection split of :func:`compete`
  is therefore never seen while fitting, and the candidate is scored there like any other.

Weights start from PCA, not from the meta-learned decoder: the meta-learned decoders
read their own latent (not PCA's code), so their first layer has no meaning on ``V x``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RESIDUAL_PREFIX", "fit_residual", "refit", "residual_candidates", "residual_gate",
           "residual_result"]

RESIDUAL_PREFIX = "pca+residual-"
#: above this many fit rows ``g`` trains on seeded mini-batches of this size (as the
#: meta-learned model's inner steps do): full-batch steps on 16,000 rows made the 20,000 x
#: 64 CSV adapt in 78 s instead of <= 30 s; at or below it the fit is full-batch as measured
MINIBATCH_ROWS = 2048


def _spec(d: int, q: int, hidden: int, enc_hidden: int = 0):
    from ..spec import ArchSpec, LayerSpec

    enc = (LayerSpec(enc_hidden, "relu"),) if enc_hidden else ()
    return ArchSpec(input_shape=(d,), encoder=enc, latent_dim=q,
                    decoder=(LayerSpec(hidden, "relu"),), linear_bypass=True)


def _pca_model(z: np.ndarray, q: int, hidden: int, seed: int, enc_hidden: int = 0):
    """A CompactAE (bypass) equal to PCA-q of ``z``; the first layers of ``g`` (and of
    the encoder correction ``h`` if ``enc_hidden``) random, the last ones 0."""
    import torch

    from ..space import CompactAE

    mean = z.mean(axis=0)
    basis = np.linalg.svd(z - mean, full_matrices=False)[2][:q]  # (q, D)
    torch.manual_seed(seed)
    model = CompactAE(_spec(z.shape[1], q, hidden, enc_hidden))
    f32 = torch.float32
    with torch.no_grad():
        enc = model.encoder.layers[-1]
        enc.weight.zero_()
        enc.bias.copy_(torch.as_tensor(-basis @ mean, dtype=f32))
        model.set_bypass(torch.as_tensor(basis.T, dtype=f32))
        last = model.decoder.layers[-1]
        last.weight.zero_()
        last.bias.copy_(torch.as_tensor(mean, dtype=f32))
    return model


def fit_residual(z: np.ndarray, q: int, *, hidden: int = 128, steps: int = 1500,
                 lr: float = 3e-3, weight_decay: float = 1e-4, train_bypass: bool = False,
                 val_z: np.ndarray | None = None, seed: int = 0, every: int = 10,
                 batch: int | None = None, enc_hidden: int = 0):
    """Train ``g`` on model-space rows ``z`` and return ``(model, info)``.

    Early stopping: on ``val_z`` if given, else on an inner 20% split of ``z`` (at least 4
    rows; the PCA basis then comes from the inner fit rows only). ``info``: the best step,
    the stopping set's MSE of PCA (step 0) and of the kept iterate. ``batch``: minibatch
    rows per step (default: full batch). ``enc_hidden``: > 0 adds an encoder correction
    ``h`` (one hidden ReLU layer, last layer 0 at the start) to PCA's code, trained with
    ``g`` (an option; the candidate does not use it: on 8 train tasks per family at S = 256
    it moved the candidate alone 0.877 -> 0.871 / 0.557 -> 0.525 / 0.767 -> 0.757 x PCA
    on sensors / manifold / tabular, docs/real_data.md).
    """
    import torch

    if val_z is None:
        perm = np.random.default_rng(seed).permutation(len(z))
        n_val = max(int(round(0.2 * len(z))), 4)
        z, val_z = z[perm[n_val:]], z[perm[:n_val]]
    model = _pca_model(z, q, hidden, seed, enc_hidden)
    params = list(model.decoder.parameters())
    if enc_hidden:
        params += list(model.encoder.parameters())
    if train_bypass:
        params.append(model.bypass_dec.weight)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    x = torch.as_tensor(z, dtype=torch.float32)
    xv = torch.as_tensor(val_z, dtype=torch.float32)

    def val_mse() -> float:
        with torch.no_grad():
            return float(((model(xv)[0] - xv) ** 2).mean())

    best = (val_mse(), 0, {k: v.clone() for k, v in model.state_dict().items()})
    pca_val = best[0]
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        xb = x if batch is None else x[torch.randint(len(x), (batch,), generator=gen)]
        opt.zero_grad()
        loss = ((model(xb)[0] - xb) ** 2).mean()
        loss.backward()
        opt.step()
        if step % every == 0:
            v = val_mse()
            if v < best[0]:
                best = (v, step, {k: t.clone() for k, t in model.state_dict().items()})
    model.load_state_dict(best[2])
    model.eval()
    return model, {"best_step": best[1], "pca_val_mse": pca_val, "val_mse": best[0]}


def residual_result(fit_raw: np.ndarray, normalizer, q: int, seed: int = 0, **kw):
    """An AdaptResult holding the ``pca+residual-q`` candidate fitted on ``fit_raw``."""
    from ..adapt import AdaptResult, _arch_report

    z = normalizer.transform(np.asarray(fit_raw)).astype(np.float64)
    if len(z) > MINIBATCH_ROWS:
        kw.setdefault("batch", MINIBATCH_ROWS)
    model, info = fit_residual(z, q, seed=seed, **kw)
    name = f"{RESIDUAL_PREFIX}{q}"
    report = {"candidate": name, "residual_fit": info, **_arch_report(model.spec)}
    return AdaptResult(model, model.spec, normalizer, report, {})


def residual_candidates(fit_raw: np.ndarray, normalizer, cands: list, seed: int = 0
                        ) -> list:
    """``[Candidate("pca+residual-Q")]`` at Q = the largest PCA candidate's latent (the
    cap: ours' latent size), or ``[]`` with fewer than 16 fit rows or no PCA candidate."""
    from .candidates import Candidate

    sizes = [c.result.spec.latent_dim for c in cands if c.name.startswith("pca-")]
    if not sizes or len(fit_raw) < 16:
        return []
    q = max(sizes)
    return [Candidate(f"{RESIDUAL_PREFIX}{q}", residual_result(fit_raw, normalizer, q, seed))]


def residual_gate(names: list[str], rows: list[np.ndarray]) -> set[int]:
    """Indices of ``pca+residual`` candidates that may not be chosen: those not beating the
    best PCA candidate by more than one standard error of their paired per-row difference
    on the held-out rows (the one-standard-error rule of :func:`.candidates.select`: a
    non-linear fit must show its gain over the closed form beyond the comparison's noise)."""
    pcas = [i for i, n in enumerate(names) if n.startswith("pca-")]
    out = set()
    for i, n in enumerate(names):
        if not n.startswith(RESIDUAL_PREFIX):
            continue
        if not pcas:
            out.add(i)
            continue
        diff = rows[i] - rows[max(pcas, key=lambda j: rows[j].mean())]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if not float(diff.mean()) > se:
            out.add(i)
    return out


def refit(name: str, task, seed: int = 0):
    """The ``pca+residual-Q`` winner ``name`` refitted on every support row of ``task``."""
    return residual_result(task.support, task.normalizer(), int(name[len(RESIDUAL_PREFIX):]),
                           seed)
