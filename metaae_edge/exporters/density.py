"""The latent density of a bundle: encode the support set with the bundle's own encoder
graph, fit :func:`~metaae_edge.runtime.density.fit_density`, and store it as the listed,
hashed file ``density.npz`` (role ``density``) with a ``density`` manifest section.

Two ways in: :func:`stage_density` inside the one
:meth:`~metaae_edge.exporters.writer.BundleWriter.create` of ``write_bundle(density_support=)``
(what ``adapt-and-export`` runs: the bundle is written, and signed, once), and
:func:`add_density` on an existing bundle through
:meth:`~metaae_edge.exporters.writer.BundleWriter.update`.

Torch-free: the codes come from ``encoder.onnx`` through the runtime, so the density sits
in exactly the space ``decoder.onnx`` decodes, whichever model (meta-learned or a
closed-form candidate) the bundle holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.density import DENSITY_FILE, DENSITY_ROLE, fit_density
from ..runtime.density_blend import choose_input_weight, fit_input_gaussian
from ..runtime.density_digits import DIGITS_PRIOR_FILE, digits_shift, load_digits_prior
from ..runtime.density_location import load_priors, posterior_shift
from ..runtime.density_residual import fit_residuals, responsibilities
from ..runtime.density_temperature import choose_temperature
from .writer import BundleWriter

__all__ = ["DIGITS_PRIOR_FILE", "GENERATIVE_OBJECTIVES", "PRIORS_FILE", "add_density",
           "stage_density"]

#: objectives whose decoder maps codes of clean data back to data (a denoise bundle's
#: codes are of corrupted inputs: no density, and generate refuses it)
GENERATIVE_OBJECTIVES = ("reconstruct", "anomaly")

#: the location priors learned on meta-training tasks (``scripts/generation_prior.py``)
PRIORS_FILE = Path(__file__).resolve().parent.parent / "checkpoints" / "location_priors.json"


def _location(density, manifest: dict[str, Any], support: np.ndarray, seed: int,
              priors: str | Path | None, digits: str | Path | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """The density with the location prior's shift of ``support`` (session 30,
    :mod:`~metaae_edge.runtime.density_location`) when ``priors`` holds one for the
    bundle's task family and input size, or (family ``digits``, ``digits`` a file) the
    structured digits prior's (session 31, :mod:`~metaae_edge.runtime.density_digits`),
    and the manifest keys saying what happened."""
    family = str((manifest.get("task") or {}).get("family", ""))
    x = support.reshape(len(support), -1)
    if family == "digits" and digits is not None and x.shape[1] == 64:
        prior = load_digits_prior(digits)
        if prior is not None:
            return _shifted(density, x, digits_shift(x, prior), "digits (structured)")
    path = Path(priors)
    prior = load_priors(path).get(family, {}).get(x.shape[1]) if path.exists() else None
    if prior is None:
        return density, {}
    return _shifted(density, x, posterior_shift(x, prior, seed), family)


def _digits_rank(manifest: dict[str, Any], support: np.ndarray,
                 digits: str | Path | None) -> int | None:
    """The factor residual's rank a digits bundle takes with the structured prior (its
    ``residual_rank``, session 31), when the prior applies to ``support``; else None."""
    family = str((manifest.get("task") or {}).get("family", ""))
    x = support.reshape(len(support), -1)
    if family != "digits" or digits is None or x.shape[1] != 64:
        return None
    prior = load_digits_prior(digits)
    if prior is None or not prior.residual_rank or digits_shift(x, prior) is None:
        return None
    return prior.residual_rank


def _shifted(density, x: np.ndarray, shift: np.ndarray | None, name: str
             ) -> tuple[Any, dict[str, Any]]:
    """``density`` with ``shift`` (None: the prior refused the support) and its keys."""
    if shift is None:
        what = "support" if name.startswith("digits") else "support mean"
        return density, {"location_prior": f"{name}: {what} implausible, unused"}
    sd = np.where(x.std(0) > 1e-12, x.std(0), 1.0)
    return dataclasses.replace(density, location_shift=shift.astype(np.float32)), {
        "location_prior": name,
        "location_shift_rms": round(float(np.sqrt(np.mean((shift / sd) ** 2))), 6)}


def _fit(bundle: str | Path, support: np.ndarray, seed: int, max_components: int,
         per_component: bool = True, blend: bool = False,
         location: str | Path | None = None, factor: bool = False,
         digits: str | Path | None = None) -> tuple[Any, bytes, dict[str, Any]]:
    """``(runtime, density.npz bytes, manifest section)`` of ``support`` through the bundle
    at ``bundle`` (its graphs on ort-cpu); ``location``: a location-priors JSON;
    ``factor``: the residual may be a factor analyser (session 30 (b)); ``digits``: the
    structured digits prior's file (used with ``location``, session 31)."""
    from ..runtime import Runtime

    rt = Runtime.load(bundle, backend="ort-cpu")
    support = np.asarray(support, np.float32)
    if rt.contract.is_image and support.ndim == 2:  # tasks hold images flattened
        support = rt.contract.unflatten(support)
    codes = rt.encode(support)
    density = fit_density(codes, seed=seed, max_components=max_components)
    resid = support - rt.reconstruct(support)  # raw units: the decoder's noise model
    resp = responsibilities(density, codes) if per_component else None
    rank = None if location is None else _digits_rank(rt.manifest, support, digits)
    r_mean, r_chol, r_means, r_chols, r_info = fit_residuals(
        resid, resp, support.reshape(len(support), -1).std(0), seed=seed, factor=factor,
        factor_rank=rank)
    temp, t_info = choose_temperature(codes, density, seed=seed)
    density = dataclasses.replace(density, residual_mean=r_mean, residual_chol=r_chol,
                                  residual_means=r_means, residual_chols=r_chols,
                                  temperature=temp)
    density, b_info = _blend(density, support, codes, resid, rt.decode, seed) if blend \
        else (density, {})
    density, l_info = (density, {}) if location is None else \
        _location(density, rt.manifest, support, seed, location, digits)
    section = {"path": DENSITY_FILE, "latent_shape": list(density.latent_shape),
               "residual_noise": "full" if r_chol.ndim == 2 else "diagonal", **density.info,
               **({} if r_means is None else {"residual_components": len(r_means)}),
               **r_info, "temperature": temp, "temperature_mmd2": t_info, **b_info,
               **l_info}
    return rt, density.to_bytes(), section


def _blend(density, support, codes, resid, decode, seed: int) -> tuple[Any, dict[str, Any]]:
    """The density with its input-space Gaussian (weight chosen on support folds,
    :mod:`~metaae_edge.runtime.density_blend`) and the manifest keys saying so."""
    w, scores = choose_input_weight(support, codes, resid, density, decode, seed=seed)
    if not scores:
        return density, {}
    info = {"input_weight": w, "input_weight_mmd2": scores}
    if w == 0:
        return density, info
    mean, chol = fit_input_gaussian(support, seed)
    return dataclasses.replace(density, input_weight=w, input_mean=mean,
                               input_chol=chol), info


def stage_density(writer: BundleWriter, manifest: dict[str, Any], support: np.ndarray, *,
                  seed: int = 0, max_components: int = 5,
                  location: str | Path | None = PRIORS_FILE,
                  digits: str | Path | None = DIGITS_PRIOR_FILE) -> dict[str, Any]:
    """Inside :meth:`BundleWriter.create`, once the graphs are staged and listed: fit the
    density through the staged bundle (``manifest`` as its draft, see
    :meth:`BundleWriter.preview`) and stage ``density.npz``; returns the ``density``
    section for the commit. ``location``, ``digits``: as in :func:`add_density`."""
    _, data, section = _fit(writer.preview(manifest), support, seed, max_components,
                            location=location, digits=digits)
    writer.path(DENSITY_FILE).write_bytes(data)
    writer.add(DENSITY_FILE, DENSITY_ROLE)
    return section


def add_density(bundle: str | Path, support: np.ndarray, *, seed: int = 0,
                max_components: int = 5, per_component: bool = True, blend: bool = False,
                location: str | Path | None = PRIORS_FILE, factor: bool = False,
                digits: str | Path | None = DIGITS_PRIOR_FILE, sign_key: Any = None,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit the latent density of ``support`` (raw samples or images) and add it to the
    existing ``bundle``; returns the manifest's ``density`` section. ``per_component``
    False: only the pooled residual noise model (what bundles before session 27 hold);
    ``blend`` True: also mix in the input-space Gaussian, its weight chosen on support
    folds (session 28; off by default: on the 20-task test table it changed no family's
    MMD^2 beyond its interval and lost tabular's significance against PCA sampling,
    docs/generation.md); ``location``: a location-priors JSON (default
    :data:`PRIORS_FILE`, the shipped one; None: no shift): shift the samples by its prior
    for the bundle's task family and input size, when it has one (session 30; the default
    since its 20-task test run, docs/generation.md); ``factor``: the residual noise model
    may be a factor analyser, its rank by held-out likelihood on the support residuals
    (session 30 (b), :mod:`~metaae_edge.runtime.density_factor`); ``digits``: with
    ``location`` given, a digits bundle's shift comes from this structured prior file
    instead (session 31, :mod:`~metaae_edge.runtime.density_digits`; the default since its
    20-task test run; None: not used)."""
    rt, data, section = _fit(bundle, support, seed, max_components, per_component, blend,
                             location, factor, digits)
    with BundleWriter.update(rt.bundle, sign_key=sign_key, log=log) as writer:
        writer.path(DENSITY_FILE).write_bytes(data)
        writer.add(DENSITY_FILE, DENSITY_ROLE)
        writer.commit(density=section)
    return section
