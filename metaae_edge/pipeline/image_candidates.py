"""Classical filters that compete with the meta-learned denoiser on held-out support images.

For a ``denoiser`` checkpoint and a ``denoise`` task, :func:`denoiser_compete` splits the
support set (``holdout``, at least 4 images), adapts "ours" on the rest, and scores on the
held-out images (corrupted with the task's noise, seeded) against their clean versions:

* ``ours``: the adapted residual network;
* ``gaussian-S``: a Gaussian filter of sigma S pixels (S in :data:`GAUSSIAN_SIGMAS`), a
  ``denoiser`` spec with no layers and ``smoothing = 2 * ceil(3 S) + 1`` (edge-replicated
  borders);
* ``median3``: the 3x3 median input filter alone;
* ``identity``: the noisy input unchanged;
* with Gaussian noise of a known sigma (:mod:`.nlm_candidates`): non-local means
  ``nlm-pP-hF`` (scikit-image's fast mode as an exported graph, ``h`` and the patch size
  chosen on the held-out images like the Gaussian's sigma), ``ours-nlm``, the residual
  network adapted to refine the best NLM's output, and ``ours-nlm-joint``, the shipped
  pre-trained network that sees the input and that NLM's output (:mod:`.nlm_refiner`).

The lowest held-out MSE is exported, so the bundle is never worse on that split than a
filter it could have chosen. "ours" is exported as adapted on the fit split (the model
that was scored). The manifest's ``reports`` get ``candidates`` / ``selected``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import DataError
from .candidates import Candidate, Competition, with_support
from .nlm_candidates import hybrid_result, nlm_candidates, nlm_sigma
from .nlm_presets import DEFAULT_PRESET, nlm_preset
from .nlm_refiner import joint_result

__all__ = ["GAUSSIAN_SIGMAS", "classical_result", "denoiser_compete", "denoiser_select",
           "gaussian_kernel"]

GAUSSIAN_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)
_MIN_HOLD = 4


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised (k, k) Gaussian, ``k = 2 * ceil(3 sigma) + 1``."""
    r = int(math.ceil(3 * sigma))
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


def classical_result(name: str, shape: tuple[int, int, int], normalizer,
                     sigma: float | None = None, prefilter: str = "none",
                     nlm: tuple[float, ...] = ()):
    """An AdaptResult holding a layer-free denoiser spec: a Gaussian, a median, non-local
    means (``nlm``: its settings in model units) or identity."""
    import torch

    from ..adapt import AdaptResult, _arch_report
    from ..space import CompactDenoiser
    from ..spec import ArchSpec

    kernel = gaussian_kernel(sigma) if sigma else None
    spec = ArchSpec(tuple(shape), (), int(shape[0]), (), backbone="denoiser",
                    prefilter=prefilter, nlm=tuple(nlm),
                    smoothing=0 if kernel is None else len(kernel)).validate()
    model = CompactDenoiser(spec)
    if kernel is not None:
        with torch.no_grad():
            model.smooth.weight.copy_(torch.as_tensor(kernel).expand_as(model.smooth.weight))
    model.eval()
    return AdaptResult(model, spec, normalizer, {"candidate": name, **_arch_report(spec)}, {})


def _hold_mse(result, noisy_z: np.ndarray, clean_z: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        out = torch.cat([result.model(torch.as_tensor(noisy_z[i:i + 64]))[0]
                         for i in range(0, len(noisy_z), 64)]).numpy()
    return float(np.mean((out - clean_z) ** 2))


def _split(task, holdout: float, seed: int):
    n = len(task.support)
    n_hold = max(int(round(n * holdout)), _MIN_HOLD)
    if n - n_hold < _MIN_HOLD:
        return None
    perm = np.random.default_rng(seed).permutation(n)
    return task.support[perm[n_hold:]], task.support[perm[:n_hold]]


def _candidates(fit_task, shape, norm) -> list[Candidate]:
    out = [Candidate(f"gaussian-{s:g}", classical_result(f"gaussian-{s:g}", shape, norm, s))
           for s in GAUSSIAN_SIGMAS]
    out.append(Candidate("median3", classical_result("median3", shape, norm,
                                                     prefilter="median3")))
    out.append(Candidate("identity", classical_result("identity", shape, norm)))
    return out


def denoiser_compete(run_adapt, task, holdout: float, seed: int, hybrid: bool = True,
                     joint: bool = True, preset: str | None = None) -> Competition:
    """Adapt "ours" on a split of ``task``'s support, select among it and the classical
    filters on the held-out images (see the module docstring); ``hybrid``: also adapt
    ``ours-nlm`` (a second adaptation); ``joint``: also ``ours-nlm-joint``; ``preset``:
    the NLM distance and refiner (:mod:`.nlm_presets`, default ``quality``)."""
    nlm = nlm_preset(preset)
    if task.noise is None and task.support_noisy is None:
        raise DataError("denoising needs a noise model: pass --noise, e.g. gaussian:0.1")
    split = _split(task, holdout, seed)
    if split is None or task.noise is None:  # tiny support or real pairs: ours only
        ours = run_adapt(task)
        return Competition(ours, ours, None)
    fit_rows, hold_rows = split
    fit_task = with_support(task, fit_rows)
    ours = run_adapt(fit_task)
    norm, kind = fit_task.normalizer(), task.sample_kind
    shape = tuple(task.sample_shape)
    clean = norm.transform(hold_rows)
    noisy = kind.corrupt(task.noise, norm, hold_rows, clean,
                         np.random.default_rng(seed + 1))
    clean_z = clean.reshape(len(clean), *shape).astype(np.float32)
    noisy_z = np.ascontiguousarray(noisy.reshape(len(noisy), *shape), dtype=np.float32)
    cands = [Candidate("ours", ours), *_candidates(fit_task, shape, norm)]
    sigma = nlm_sigma(task)
    if sigma is not None:
        cands += nlm_candidates(shape, norm, sigma, nlm.nlm_distance())
    for c in cands:
        c.score = -_hold_mse(c.result, noisy_z, clean_z)  # higher is better
    if sigma is not None:
        cands += _nlm_nets(run_adapt, fit_task, cands, seed, hybrid,
                           nlm.refiner_path() if joint else None)
        for c in cands:
            if c.score is None:
                c.score = -_hold_mse(c.result, noisy_z, clean_z)
    best = max(cands, key=lambda c: c.score)
    runner = max((c for c in cands if c is not best), key=lambda c: c.score)
    selected: dict[str, Any] = {"name": best.name, "score": best.score,
                                "margin": best.score - runner.score,
                                "runner_up": runner.name,
                                "metric": "-MSE on held-out support images (model units)",
                                "n_holdout": len(hold_rows)}
    if sigma is not None and nlm.name != DEFAULT_PRESET and "nlm" in best.name:
        # only where the winner is NLM-based; the default's manifest as before
        selected["nlm_preset"] = nlm.name
    selection = {"candidates": [c.row() for c in cands], "selected": selected}
    comp = Competition(best.result, ours, selection, ours_on_task=False)
    comp.pool = {c.name: c.result for c in cands}  # every candidate's AdaptResult (scripts)
    return comp


def _nlm_nets(run_adapt, fit_task, cands, seed: int, hybrid: bool,
              refiner) -> list[Candidate]:
    """``ours-nlm`` (``hybrid``) and ``ours-nlm-joint`` (the ``refiner`` file, when not
    None and present) on the best-scoring ``nlm-*`` candidate's settings (not yet
    scored)."""
    best_nlm = max((c for c in cands if c.name.startswith("nlm-")), key=lambda c: c.score)
    out = []
    if hybrid:
        out.append(Candidate("ours-nlm", hybrid_result(run_adapt, fit_task, best_nlm, seed)))
    res = joint_result(fit_task, best_nlm, seed, path=refiner) if refiner else None
    if res is not None:
        out.append(Candidate("ours-nlm-joint", res))
    return out


def denoiser_select(run_adapt, task, options):
    """``_adapt_select``'s answer for a denoiser checkpoint: ``(result, selection, ours)``.

    Raises:
        DataError: a codec use (``reconstruct`` objective or ``--latent-bytes``), in one
            line (:data:`~metaae_edge.contracts.denoise.CODEC_REFUSAL`).
    """
    import dataclasses

    from ..contracts.denoise import CODEC_REFUSAL

    if options.objective == "reconstruct" or options.latent_bytes:
        raise DataError(CODEC_REFUSAL)
    if options.objective != "denoise" or options.candidates == "meta":
        return run_adapt(task), None, None
    comp = denoiser_compete(run_adapt, task, options.holdout, options.seed,
                            preset=options.nlm_preset)
    if comp.selection is None:
        return comp.winner, None, None
    winner = dataclasses.replace(comp.winner, report=comp.ours.report)
    ours = None if comp.winner is comp.ours else (lambda: comp.ours)
    return winner, comp.selection, ours
