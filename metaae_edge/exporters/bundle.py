"""Write a verified bundle directory: graphs + manifest.json, renamed into place atomically.

Everything goes through :class:`~metaae_edge.exporters.writer.BundleWriter`: written into a
hidden temporary sibling (``.NAME.tmp-XXXX``) and loaded back with
:func:`metaae_edge.runtime.load_bundle` (hashes and all) before one ``rename`` puts it in
place, so a crash or a failed parity gate never leaves a half bundle at ``out``.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..contracts import contract_for
from ..errors import ExportError
from ..runtime.bundle import SCHEMA_VERSION, package_version
from ..spec import ArchSpec
from ..tasks.base import OBJECTIVES, Normalizer
from .graphs import graphs_for
from .onnx import export_onnx, torch_reference
from .writer import BundleWriter

__all__ = ["write_bundle"]


def _threshold(threshold: dict[str, Any] | None) -> dict[str, Any] | None:
    if threshold is None:
        return None
    if not isinstance(threshold, dict) or "value" not in threshold:
        raise ExportError("threshold must be None or a dict with at least 'value'")
    out = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in threshold.items()}
    v = out["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ExportError(f"threshold value must be a finite number, got {v!r}")
    out["value"] = float(v)
    return out


def _score_stats(scores: np.ndarray) -> dict[str, float]:
    q = np.quantile(scores.astype(np.float64), [0.5, 0.95, 0.99])
    return {"n": int(len(scores)), "mean": float(scores.mean()), "std": float(scores.std()),
            "p50": float(q[0]), "p95": float(q[1]), "p99": float(q[2]),
            "max": float(scores.max())}


def _manifest(*, spec: ArchSpec, normalizer: Normalizer, task_summary: dict[str, Any],
              objective: str, threshold: dict[str, Any] | None, reports: dict[str, Any],
              parity: dict[str, Any], files: list[dict[str, Any]], seed: int | None,
              score_stats: dict[str, float]) -> dict[str, Any]:
    import onnx
    import torch

    inp, outputs = io_section(spec)
    return {
        "schema_version": SCHEMA_VERSION,
        "metaae_edge_version": package_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "objective": objective,
        "seed": seed,
        "task": task_summary,
        "arch": spec.to_dict(),
        "arch_description": spec.describe(),
        "params": spec.param_count(),
        "macs": spec.macs(),
        "input": inp,
        "outputs": outputs,
        "graphs": {role: {"inputs": list(ins), "outputs": list(outs)}
                   for role, (_, ins, outs) in graphs_for(spec).items()},
        "normalization": {"mean": np.asarray(normalizer.mean, np.float32).tolist(),
                          "std": np.asarray(normalizer.std, np.float32).tolist()},
        "score_stats": score_stats,
        "threshold": threshold,
        "files": files,
        "parity": parity,
        "reports": reports,
        "environment": {"torch": torch.__version__, "onnx": onnx.__version__},
    }


def io_section(spec: ArchSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest's ``input`` / ``outputs`` sections: the model kind's IO contract's."""
    return contract_for(spec).io_section()


def write_bundle(
    out: Path,
    *,
    model: nn.Module,
    spec: ArchSpec,
    normalizer: Normalizer,
    task_summary: dict[str, Any],
    objective: str,
    reference: np.ndarray,
    threshold: dict[str, Any] | None,
    reports: dict[str, Any],
    force: bool = False,
    seed: int | None = None,
    opset: int = 17,
    tolerances: dict[str, tuple[float, float]] | None = None,
    exporter: str = "dynamo",
    sign_key: Any = None,
    density_support: np.ndarray | None = None,
    density_prior: bool = True,
) -> Path:
    """Export ``model`` and write a verified bundle directory at ``out``.

    Args:
        out: bundle directory to create.
        model: the frozen compact autoencoder (model space), e.g. a ``CompactAE``.
        spec: its architecture (must equal ``model.spec``).
        normalizer: raw -> model-space map, baked into the graphs and the manifest.
        task_summary: JSON-able task description (``Task.summary()``).
        objective: reconstruct | denoise | anomaly.
        reference: held-out raw samples (N, D) for the parity gate and score statistics;
            for conv models images (N, C, H, W) or flattened (N, C*H*W) at the spec's
            resolution.
        threshold: ``{"value", "fpr", "method", "score_mean", "score_std"}`` or None.
        reports: adaptation / fine-tuning reports to keep in the manifest.
        force: replace an existing bundle at ``out``.
        seed: the seed the bundle was produced with (recorded).
        opset, tolerances, exporter: passed to :func:`~metaae_edge.exporters.onnx.export_onnx`.
        sign_key: Ed25519 private key (or PEM path): ``manifest.sig`` is staged with it.
        density_support: raw samples (or images) to fit the latent density on, through the
            staged graphs, into the same write (``density.npz`` and the ``density``
            section; :mod:`metaae_edge.exporters.density`, seeded with ``seed``, 0 if None).
        density_prior: shift the density's samples by the shipped location prior of the
            task's family and input size, where there is one (False: never;
            ``--no-location-prior``).

    Returns:
        ``out``.

    Raises:
        BundleError: ``out`` exists (without ``force``) or cannot be replaced.
        ExportError / ParityError: export or the parity gate failed; nothing is written.
    """
    out = Path(out).expanduser()
    spec.validate()
    if getattr(model, "spec", spec) != spec:
        raise ExportError(f"model architecture {model.spec.describe()} does not match the "
                          f"spec {spec.describe()}")
    if objective not in OBJECTIVES:
        raise ExportError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    threshold = _threshold(threshold)
    with BundleWriter.create(out, force=force, sign_key=sign_key) as writer:
        parity = export_onnx(model, normalizer, writer.stage, reference=reference, opset=opset,
                             tolerances=tolerances, exporter=exporter)
        scores = torch_reference(model, normalizer,
                                 np.ascontiguousarray(reference, np.float32))["score"]
        for role, (fname, _, _) in graphs_for(spec).items():
            writer.add(fname, role, "fp32")
        manifest = _manifest(spec=spec, normalizer=normalizer, task_summary=task_summary,
                             objective=objective, threshold=threshold, reports=reports,
                             parity=parity, files=writer.file_entries(), seed=seed,
                             score_stats=_score_stats(scores))
        if density_support is not None:  # the latent density, fitted on the staged graphs
            from . import density

            manifest["density"] = density.stage_density(
                writer, manifest, density_support, seed=0 if seed is None else seed,
                location=density.PRIORS_FILE if density_prior else None,
                digits=density.DIGITS_PRIOR_FILE if density_prior else None)
        writer.commit(manifest)
    return out
