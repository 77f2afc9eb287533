"""The end-to-end step of :func:`~metaae_edge.runtime.verify.verify_bundle`: one synthetic
sample of the declared shape through the bundle's own runtime path (torch-free).

The sample is raw units around the normalisation mean (``mean + std * N(0, 1)``, seeded),
at the adapted resolution for image bundles (a smaller multiple of ``spatial_multiple``
when that would be more than :data:`MAX_SAMPLE_VALUES` values and the graphs take any size).
It runs through :class:`~metaae_edge.runtime.Runtime` on ``ort-cpu``: every output finite
and of the shape the contract declares; at fp32 ``decode(encode(x))`` must equal the
autoencoder's reconstruction (graphs of one model), ``predict`` runs when there is a
threshold and ``generate`` when there is a latent density.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bundle import Bundle

__all__ = ["MAX_SAMPLE_VALUES", "run_sample", "sample_input"]

#: The most float32 values of the synthetic input (2 samples): 64 MiB.
MAX_SAMPLE_VALUES = 1 << 24
_BATCH = 2
#: decode(encode(x)) vs the autoencoder's reconstruction at fp32, relative to its scale
_CONSISTENCY = 1e-3


def sample_input(bundle: Bundle) -> np.ndarray | None:
    """The synthetic raw input (batch 2, the declared per-sample shape), or None when a
    fixed-size image bundle's only size exceeds :data:`MAX_SAMPLE_VALUES`."""
    contract, spec = bundle.contract, bundle.spec
    shape = tuple(spec.input_shape)
    if contract.is_image:
        c, h, w = shape
        if _BATCH * c * h * w > MAX_SAMPLE_VALUES:
            if contract.fixed_hw is not None:
                return None
            f = contract.spatial_multiple
            h, w = 3 * f, 2 * f  # what the exporter traces with: a size the graphs take
        shape = (c, h, w)
    rng = np.random.default_rng(0)
    mean = bundle.normalization["mean"].astype(np.float64)
    std = bundle.normalization["std"].astype(np.float64)
    z = rng.standard_normal((_BATCH, *shape))
    return np.ascontiguousarray(mean + std * z, dtype=np.float32)  # (1,) broadcasts


def _want(bundle: Bundle, x: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Output name -> the concrete shape its contract declares for input ``x``."""
    hw = tuple(x.shape[2:]) if bundle.contract.is_image else None
    shapes = {"reconstruction": x.shape, "latent": (len(x), *bundle.contract.latent_shape(hw)),
              "score": (len(x),)}
    if hw is not None:
        shapes["error_map"] = (len(x), 1, *hw)
    return shapes


def _check(name: str, arr: Any, want: tuple[int, ...] | None) -> list[str]:
    arr = np.asarray(arr)
    if want is not None and arr.shape != tuple(want):
        return [f"output {name!r} has shape {list(arr.shape)}, the manifest declares "
                f"{list(want)}"]
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        return [f"output {name!r} is not finite on a sample around the normalisation mean"]
    return []


def run_sample(bundle: Bundle, precision: str, loaded: set[tuple[str, str]]) -> list[str]:
    """Run the synthetic sample at ``precision``; one line per failure (empty: it ran).

    Args:
        bundle: the loaded bundle.
        precision: the autoencoder precision to run.
        loaded: the (role, precision) graphs that loaded and fit their role.
    """
    from .api import Runtime

    where = f"sample at {precision}"
    x = sample_input(bundle)
    if x is None:
        return []  # too large to run here; its graphs' shapes were checked
    try:
        rt = Runtime.load(bundle.root, backend="ort-cpu", precision=precision, threads=1,
                          verify=False)
        out = rt.infer(x)
    except Exception as exc:  # noqa: BLE001 - an untrusted graph may fail any way
        return [f"{where}: {_line(exc)}"]
    want = _want(bundle, x)
    errors = [e for name, arr in out.items() for e in _check(name, arr, want.get(name))]
    if errors:
        return [f"{where} through autoencoder: {e}" for e in errors]
    errors += _codec(rt, bundle, precision, loaded, x, out)
    if rt.threshold is not None:
        errors += _step("predict", lambda: rt.predict(x), (len(x),))
    if precision == "fp32" and isinstance(bundle.manifest.get("density"), dict):
        errors += _step("generate", lambda: rt.generate(_BATCH, seed=0), x.shape)
    return [f"{where}: {e}" for e in errors]


def _codec(rt: Any, bundle: Bundle, precision: str, loaded: set[tuple[str, str]],
           x: np.ndarray, out: dict[str, np.ndarray]) -> list[str]:
    """encode -> decode where both graphs exist at ``precision``; at fp32 they must agree
    with the autoencoder (one model's graphs)."""
    if not {("encoder", precision), ("decoder", precision)} <= loaded:
        return []
    want = _want(bundle, x)
    try:
        z = rt.encode(x)
        errors = [f"encoder: {e}" for e in _check("latent", z, want["latent"])]
        if errors:
            return errors
        recon = rt.decode(z)
    except Exception as exc:  # noqa: BLE001 - an untrusted graph may fail any way
        return [f"encoder / decoder: {_line(exc)}"]
    errors = [f"decoder: {e}" for e in _check("reconstruction", recon, x.shape)]
    if errors or precision != "fp32":
        return errors
    for name, got, exp in (("encoder latent", z, out["latent"]),
                           ("decode(encode(x))", recon, out["reconstruction"])):
        diff = float(np.max(np.abs(got - exp)))
        if diff > _CONSISTENCY * (1.0 + float(np.max(np.abs(exp)))):
            errors.append(f"{name} differs from the autoencoder's by {diff:.3g} (graphs of "
                          "different models?)")
    return errors


def _step(name: str, fn: Any, want: tuple[int, ...]) -> list[str]:
    try:
        arr = fn()
    except Exception as exc:  # noqa: BLE001 - an untrusted graph may fail any way
        return [f"{name}: {_line(exc)}"]
    return [f"{name}: {e}" for e in _check(name, arr, want)]


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
