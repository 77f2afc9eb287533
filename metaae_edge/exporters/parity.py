"""The parity gate: exported graphs in onnxruntime against the torch model they came from.

MLP graphs are checked on the reference samples as one batch and as a batch of one. Conv
(image) graphs are checked the same way at the reference's resolution and, when it is
small enough, again at twice its height and width (the graphs have dynamic H / W, so a
second resolution is what shows the dynamic axes were exported correctly). Conv graphs of
a fixed-resolution spec (``spec.fixed_hw``, a dense bottleneck) accept only the spec's own
H x W, so they are checked there alone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..contracts import contract_for
from ..contracts.reference import vector_score
from ..errors import ParityError
from ..runtime.backends import require
from ..spec import ArchSpec
from ..tasks.base import Normalizer
from .graphs import DEFAULT_TOLERANCES

__all__ = ["SECOND_RESOLUTION_MAX_PIXELS", "SECOND_RESOLUTION_SAMPLES", "check_parity",
           "check_reference", "torch_reference"]

#: The conv gate also runs at twice the reference's height and width, on at most this many
#: images, when that resolution has at most this many pixels per image.
SECOND_RESOLUTION_SAMPLES = 16
SECOND_RESOLUTION_MAX_PIXELS = 512 * 512


def check_reference(reference: Any, spec: ArchSpec) -> np.ndarray:
    """Validate parity / reference data with the spec's contract: float32 (N, D) for MLP
    specs; for conv specs images (N, C, H, W) with H, W multiples of ``2**stages`` (exactly
    the spec's H, W for a fixed-resolution spec), or flattened samples (N, C*H*W) at the
    spec's own resolution (reshaped).

    Raises:
        DataError: one line naming the expected and the found shape.
    """
    return contract_for(spec).check_reference(reference)


def torch_reference(model: nn.Module, normalizer: Normalizer,
                    x: np.ndarray) -> dict[str, np.ndarray]:
    """The torch fp32 outputs the graphs must reproduce (normalisation done in torch), the
    score and error map by the contract's reference maths (:mod:`metaae_edge.contracts`).

    For conv models ``x`` may be flattened samples at the spec's resolution; the outputs
    are NCHW and include ``error_map``.
    """
    m = copy.deepcopy(model).cpu().float().eval()
    mean = torch.from_numpy(np.asarray(normalizer.mean, np.float32))
    std = torch.from_numpy(np.asarray(normalizer.std, np.float32))
    spec: ArchSpec | None = getattr(m, "spec", None)
    contract = None if spec is None else contract_for(spec)
    if contract is not None:
        x = contract.check_reference(x)
    with torch.no_grad():
        z = (torch.from_numpy(np.ascontiguousarray(x, np.float32)) - mean) / std
        latent = m.encode(z)
        r = m.decode(latent)
        if contract is None:
            score, error_map = vector_score(r - z, 1.0 / float(z.shape[1])), None
        else:
            score, error_map = contract.torch_errors(r, z)
        out = {"reconstruction": (r * std + mean).numpy(), "latent": latent.numpy(),
               "score": score.numpy()}
        if error_map is not None:
            out["error_map"] = error_map.numpy()
        return out


def _compare(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float,
             scale: np.ndarray | None) -> dict[str, Any]:
    """allclose-style check; with ``scale`` errors are compared in units of ``scale``."""
    got64, ref64 = got.astype(np.float64), ref.astype(np.float64)
    raw = np.abs(got64 - ref64)
    err, mag = (raw, np.abs(ref64)) if scale is None else (raw / scale, np.abs(ref64) / scale)
    ok = got.shape == ref.shape and bool(np.all(err <= atol + rtol * mag))
    out = {"max_abs_err": float(err.max()),
           "max_rel_err": float((err / np.maximum(mag, atol)).max()),
           "atol": atol, "rtol": rtol, "passed": ok}
    if scale is not None:
        out["max_abs_err_raw"] = float(raw.max())
        out["compared_in"] = "normalised units (error / std)"
    return out


def _second_resolution(ref: np.ndarray) -> np.ndarray | None:
    """The first images upsampled 2x (nearest): valid input at twice the resolution."""
    n, _, h, w = ref.shape
    if 4 * h * w > SECOND_RESOLUTION_MAX_PIXELS:
        return None
    sub = ref[:SECOND_RESOLUTION_SAMPLES]
    return np.ascontiguousarray(sub.repeat(2, axis=2).repeat(2, axis=3))


def _run_graphs(sessions: dict[str, Any], graphs: dict[str, Any], x: np.ndarray,
                expected: dict[str, np.ndarray], tol: dict[str, tuple[float, float]],
                std: np.ndarray, failures: list[str], where: str) -> dict[str, Any]:
    """Every graph on ``x`` as one batch and as a batch of one, against ``expected``."""
    feeds = {"x": x, "latent": expected["latent"]}
    out: dict[str, Any] = {}
    for role, (fname, inputs, outputs) in graphs.items():
        sess = sessions[role]
        full = sess.run(list(outputs), {inputs[0]: feeds[inputs[0]]})
        one = sess.run(list(outputs), {inputs[0]: feeds[inputs[0]][:1]})
        out[role] = {}
        for name, got, got1 in zip(outputs, full, one):
            atol, rtol = tol[name]
            scale = std if name == "reconstruction" else None
            res = _compare(got, expected[name], atol, rtol, scale)
            res1 = _compare(got1, expected[name][:1], atol, rtol, scale)
            res["passed"] = res["passed"] and res1["passed"]
            out[role][name] = res
            if not res["passed"]:
                failures.append(f"{fname} output {name!r}{where}: max abs err "
                                f"{res['max_abs_err']:.3g} exceeds atol {atol:g} + rtol "
                                f"{rtol:g}*|ref|")
    return out


def check_parity(
    model: nn.Module,
    normalizer: Normalizer,
    out_dir: Path,
    reference: np.ndarray,
    *,
    tolerances: dict[str, tuple[float, float]] | None = None,
    second_resolution: bool = True,
) -> dict[str, Any]:
    """Run the three graphs in onnxruntime (CPU) against the torch model on ``reference``.

    Each graph runs on the whole reference as one batch and on a batch of one. The
    reconstruction is compared in normalised units (error / std), so tolerances mean the
    same whatever the raw scale. The decoder is fed the torch latent. Conv models are
    checked at the reference's resolution and (``second_resolution``) at twice its height
    and width on up to :data:`SECOND_RESOLUTION_SAMPLES` images, unless that exceeds
    :data:`SECOND_RESOLUTION_MAX_PIXELS` or the spec runs at one fixed resolution
    (``spec.fixed_hw``).

    Returns:
        The parity report: per graph and output max abs / rel error, tolerances, passed;
        conv reports add ``resolutions`` (per ``HxW``: samples, graphs, max abs error).

    Raises:
        ParityError: an output differs beyond ``atol + rtol * |ref|``.
    """
    ort = require("onnxruntime", "metaae-edge[cpu]")
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    spec: ArchSpec = model.spec
    contract = contract_for(spec)
    graphs = contract.graphs
    ref = contract.check_reference(reference)
    std = np.asarray(normalizer.std, np.float64)
    sessions = {}
    for role, (fname, _, _) in graphs.items():
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sessions[role] = ort.InferenceSession(str(Path(out_dir) / fname), so,
                                              providers=["CPUExecutionProvider"])
    report: dict[str, Any] = {"n_samples": int(len(ref)), "batch_sizes": sorted({len(ref), 1}),
                              "provider": "CPUExecutionProvider",
                              "onnxruntime_version": ort.__version__, "graphs": {}}
    failures: list[str] = []
    inputs = [ref]
    if second_resolution and contract.dynamic_hw:
        big = _second_resolution(ref)
        if big is not None:
            inputs.append(big)
    for i, x in enumerate(inputs):
        label = contract.size_label(x)  # HxW of images; None for vectors
        expected = torch_reference(model, normalizer, x)
        res = _run_graphs(sessions, graphs, x, expected, tol, std, failures,
                          f" at {label}" if label else "")
        if i == 0:
            report["graphs"] = res
        if label:
            report.setdefault("resolutions", {})[label] = {
                "n_samples": int(len(x)), "batch_sizes": sorted({len(x), 1}),
                "max_abs_err": max(r["max_abs_err"] for g in res.values() for r in g.values()),
                "passed": all(r["passed"] for g in res.values() for r in g.values()),
                "graphs": res}
    errs = [r["max_abs_err"] for g in report["graphs"].values() for r in g.values()]
    errs += [v["max_abs_err"] for v in report.get("resolutions", {}).values()]
    report["max_abs_err"] = max(errs)
    report["passed"] = not failures
    if failures:
        raise ParityError(f"ONNX parity check failed on {len(ref)} samples: {failures[0]}; "
                          "the exported graph does not match the torch model")
    return report
