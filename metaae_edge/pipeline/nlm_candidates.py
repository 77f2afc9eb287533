"""Non-local means candidates of the denoiser competition (:mod:`.image_candidates`).

* ``nlm-pP-hF``: scikit-image's fast non-local means (:mod:`metaae_edge.space.nlm`) with
  patch size ``P``, search distance :data:`NLM_DISTANCE`, the task's noise sigma and
  ``h = F * sigma`` (F in :data:`NLM_H_FACTORS`), as a layer-free denoiser spec (its
  ``nlm`` field, in model units: pixel values / the normaliser's std);
* ``ours-nlm``: the residual network refining the NLM output (``out = u - f(u)``, ``u`` =
  NLM of the input), adapted from the checkpoint on pairs (NLM of the noisy fit images,
  clean fit images) with the best NLM candidate's settings (chosen on the held-out
  images first). Its fine-tune cycles :data:`NLM_DRAWS` noise draws of the fit images
  (their NLM outputs precomputed; :mod:`metaae_edge.fresh_noise`), the first of which is
  the fixed copy the adaptation's early stopping judges on.

Only for Gaussian noise of a known sigma (``--noise gaussian:S``): NLM's weights subtract
the expected noise distance ``2 sigma^2``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..fresh_noise import DRAWS_KEY
from .candidates import Candidate, with_support

__all__ = ["NLM_DISTANCE", "NLM_DRAWS", "NLM_H_FACTORS", "NLM_PATCHES", "hybrid_result",
           "nlm_candidates", "nlm_sigma"]

NLM_H_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)
NLM_PATCHES = (5, 7)
#: the default search distance (session 30: 1, with the half-resolution-stage refiner;
#: rounds 25-28 used 6, now ``--nlm-preset wide``; :mod:`.nlm_presets`)
NLM_DISTANCE = 1
#: noise draws of the fit images whose NLM outputs the ``ours-nlm`` fine-tune cycles
NLM_DRAWS = 4
#: the ``ours-nlm`` fine-tune's learning rate, as a factor on the adaptation's (1e-3
#: of 3e-3; chosen on the tuning pairs moon:page, coins:clock, docs/images.md)
NLM_FINETUNE_LR_SCALE = 1 / 3


def nlm_sigma(task) -> float | None:
    """The task's Gaussian noise sigma in pixel units, or None (no NLM candidates)."""
    noise = task.noise
    if noise is None or noise.kind != "gaussian" or task.sample_kind.name != "image":
        return None
    return float(noise.level)


def _params(patch: int, factor: float, sigma: float, distance: int | None = None):
    from ..space.nlm import NLMParams

    return NLMParams(patch, NLM_DISTANCE if distance is None else int(distance),
                     factor * sigma, sigma)


def nlm_candidates(shape, norm, sigma: float, distance: int | None = None) -> list[Candidate]:
    """The layer-free NLM filters (pixel-unit settings in ``report['nlm_pixel']``) at
    search distance ``distance`` (default :data:`NLM_DISTANCE`; ``--nlm-preset``)."""
    from .image_candidates import classical_result

    std = float(np.asarray(norm.std).reshape(-1)[0])
    out = []
    for patch in NLM_PATCHES:
        for f in NLM_H_FACTORS:
            name = f"nlm-p{patch}-h{f:g}"
            px = _params(patch, f, sigma, distance)
            res = classical_result(name, shape, norm, nlm=px.scaled(1.0 / std).as_tuple())
            res.report["nlm_pixel"] = px.as_tuple()
            out.append(Candidate(name, res))
    return out


def _nlm_pixels(rows: np.ndarray, shape, params) -> np.ndarray:
    """NLM (pixel units) of flattened images ``rows`` (N, C*H*W)."""
    import torch

    from ..space.nlm import nl_means

    x = torch.as_tensor(rows.reshape(len(rows), *shape), dtype=torch.float32)
    with torch.no_grad():
        out = torch.cat([nl_means(x[i:i + 64], params) for i in range(0, len(x), 64)])
    return out.reshape(len(rows), -1).numpy().astype(np.float32)


def hybrid_result(run_adapt, fit_task, best: Candidate, seed: int):
    """``ours-nlm``: adapt the residual net on (NLM(noisy fit images), clean) and compose
    it with the NLM of ``best`` (an ``nlm-*`` candidate) into one denoiser spec."""
    from ..adapt import FINETUNE_LR_KEY, AdaptResult, _arch_report
    from ..space import CompactDenoiser
    from ..space.nlm import NLMParams

    shape = tuple(fit_task.sample_shape)
    px = NLMParams.from_tuple(best.result.report["nlm_pixel"])
    rng = np.random.default_rng(seed + 2)
    kind, noise = fit_task.sample_kind, fit_task.noise
    noisy = {}
    for name in ("support", "query"):
        rows = getattr(fit_task, name)
        corrupted = noise.apply(rows, rng, bounds=kind.noise_bounds)
        noisy[f"{name}_noisy"] = _nlm_pixels(corrupted, shape, px)
    paired = dataclasses.replace(with_support(fit_task, fit_task.support), noise=None, **noisy)
    if NLM_DRAWS > 1:  # the fine-tune cycles these (metaae_edge.fresh_noise); draw 0 as before
        more = [_nlm_pixels(noise.apply(fit_task.support, rng, bounds=kind.noise_bounds),
                            shape, px) for _ in range(NLM_DRAWS - 1)]
        paired.info[DRAWS_KEY] = np.stack([noisy["support_noisy"], *more])
    if NLM_FINETUNE_LR_SCALE != 1.0:
        paired.info[FINETUNE_LR_KEY] = NLM_FINETUNE_LR_SCALE
    net = run_adapt(paired)
    spec = dataclasses.replace(net.spec, nlm=best.result.spec.nlm).validate()
    model = CompactDenoiser(spec)
    model.load_state_dict(net.model.state_dict())
    model.eval()
    report = {**net.report, **_arch_report(spec), "candidate": "ours-nlm",
              "nlm_pixel": px.as_tuple()}
    return AdaptResult(model, spec, net.normalizer, report, net.adapted_params)
