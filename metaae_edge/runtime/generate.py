"""Generation from a bundle: sample latent codes from its stored density (numpy) and
decode them through ``decoder.onnx`` (the graph undoes the normalisation, so samples come
out in raw units). Torch-free; :meth:`Runtime.generate` calls :func:`generate`.

A bundle can generate when its manifest has a ``density`` section naming a listed
``density`` file and it lists a decoder graph; anything else (a denoise bundle, a bundle
exported before generation existed) is refused in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BundleError, InputError
from .bundle import Bundle
from .density import DENSITY_ROLE, Density

__all__ = ["MAX_SAMPLES", "check_n", "generate", "load_density"]

MAX_SAMPLES = 10_000_000


def check_n(n: Any) -> int:
    """``n`` as a sample count (1..MAX_SAMPLES), else a one-line :class:`InputError`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not \
            1 <= int(n) <= MAX_SAMPLES:
        raise InputError(f"--n must be an integer from 1 to {MAX_SAMPLES}, got {n!r}")
    return int(n)


def load_density(bundle: Bundle, precision: str = "fp32") -> Density:
    """The bundle's latent density, checked against its decoder's latent shape.

    Raises:
        BundleError: no density (why, and how to get one), or no decoder graph.
    """
    section = bundle.manifest.get("density")
    entry = next((f for f in bundle.files if f.role == DENSITY_ROLE), None)
    if not isinstance(section, dict) or entry is None:
        why = (f"its objective is {bundle.objective}: a denoise model's codes are of "
               "corrupted inputs" if bundle.objective == "denoise" else
               "it was exported without one")
        raise BundleError(f"bundle {bundle.root} has no latent density, so it cannot "
                          f"generate ({why}); re-export it with adapt-and-export "
                          "--objective reconstruct")
    bundle.path_for("decoder", precision)  # raises naming the graphs it has
    return Density.load(bundle.root / entry.path, tuple(section.get("latent_shape", ())))


def generate(rt: Any, n: Any, seed: int | None = None, temperature: float = 1.0,
             residual: bool = True) -> np.ndarray:
    """``n`` new samples from ``rt``'s bundle (a :class:`~metaae_edge.runtime.Runtime`),
    raw units, (n, D) or, for image bundles, (n, C, H, W); the same ``seed`` gives the
    same samples. ``residual``: add the decoder's noise model (a Gaussian fitted to the
    support's reconstruction residual; probabilistic PCA's isotropic noise, generalised;
    in newer bundles one per latent component, the sample's), when the bundle stores one;
    False gives the decoded means (and leaves out the input-space Gaussian a newer bundle
    may mix in with weight ``input_weight``: those draws replace decoded samples). A
    bundle whose density stores ``location_shift`` (session 30) adds it to every row.

    Raises:
        InputError: a bad ``n`` or ``temperature``.
        BundleError: the bundle cannot generate (see :func:`load_density`).
    """
    n = check_n(n)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
            not 0 < temperature <= 10:
        raise InputError(f"temperature must be a number in (0, 10], got {temperature!r}")
    density = load_density(rt.bundle, rt.precision)
    rng = np.random.default_rng(seed)
    z, comp = density.draw(n, seed=int(rng.integers(2**63)), temperature=float(temperature))
    x = rt.decode(z)
    noise = density.residual_noise(n, rng, comp) if residual else None
    if noise is not None:
        x = x + noise.reshape(x.shape).astype(np.float32)
    if residual and density.input_weight > 0:  # the input-space component (session 28)
        rows = rng.random(n) < density.input_weight
        flat = x.reshape(n, -1)
        flat[rows] = density.input_draw(int(rows.sum()), rng).astype(np.float32)
        x = flat.reshape(x.shape)
    if density.location_shift is not None:  # the family's location prior (session 30)
        if density.location_shift.size != x[0].size:
            raise BundleError(f"bundle {rt.bundle.root}: its density's location_shift has "
                              f"{density.location_shift.size} values, a sample "
                              f"{x[0].size}")
        x = x + density.location_shift.reshape(x.shape[1:])
    return x
