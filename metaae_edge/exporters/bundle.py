"""Write a verified bundle directory: graphs + manifest.json, renamed into place atomically.

Everything is written into a hidden temporary sibling (``.NAME.tmp-XXXX``) and loaded back
with :func:`metaae_edge.runtime.load_bundle` (hashes and all) before one ``rename`` puts it
in place, so a crash or a failed parity gate never leaves a half bundle at ``out``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..contracts import contract_for
from ..errors import BundleError, ExportError
from ..runtime.bundle import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    load_bundle,
    package_version,
    sha256_file,
)
from ..spec import ArchSpec
from ..tasks.base import OBJECTIVES, Normalizer
from .graphs import graphs_for
from .onnx import export_onnx, torch_reference

__all__ = ["write_bundle"]


def _jsonable(obj: Any) -> Any:
    """json.dumps ``default``: numpy scalars / arrays and paths become plain JSON."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


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


def _prepare_target(out: Path, force: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    # --force replaces a bundle (or an empty folder), never an arbitrary directory or file.
    if out.is_symlink() or not out.is_dir():
        raise BundleError(f"refusing to replace {out}: it is not a bundle directory")
    if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise BundleError(f"refusing to replace {out}: it is a non-empty directory without "
                          f"{MANIFEST_NAME}, not a metaae-edge bundle")


def _swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        try:
            os.rename(tmp, out)
        except OSError as exc:
            raise BundleError(f"could not move the bundle into {out}: {exc}") from None
        return
    _prepare_target(out, force)  # re-check: something may have appeared meanwhile
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    try:
        os.rename(out, old / out.name)
    except OSError as exc:
        shutil.rmtree(old, ignore_errors=True)
        raise BundleError(f"could not replace {out}: {exc}") from None
    try:
        os.rename(tmp, out)
    except OSError as exc:
        os.rename(old / out.name, out)  # put the previous bundle back
        shutil.rmtree(old, ignore_errors=True)
        raise BundleError(f"could not move the bundle into {out}: {exc}") from None
    shutil.rmtree(old, ignore_errors=True)


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
    _prepare_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        parity = export_onnx(model, normalizer, tmp, reference=reference, opset=opset,
                             tolerances=tolerances, exporter=exporter)
        scores = torch_reference(model, normalizer,
                                 np.ascontiguousarray(reference, np.float32))["score"]
        files = [{"path": fname, "role": role, "precision": "fp32",
                  "sha256": sha256_file(tmp / fname), "bytes": (tmp / fname).stat().st_size}
                 for role, (fname, _, _) in graphs_for(spec).items()]
        manifest = _manifest(spec=spec, normalizer=normalizer, task_summary=task_summary,
                             objective=objective, threshold=threshold, reports=reports,
                             parity=parity, files=files, seed=seed,
                             score_stats=_score_stats(scores))
        try:
            text = json.dumps(manifest, indent=2, default=_jsonable, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ExportError(f"manifest is not JSON serialisable: {exc}") from None
        (tmp / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
        load_bundle(tmp, verify=True)  # read back exactly what a device will read
        _swap_into_place(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
