"""Export a compact autoencoder to three self-contained ONNX graphs and gate on parity.

Graphs (dynamic batch axis ``batch``, float32 I/O, raw units at the edges):

* ``autoencoder.onnx``  x [batch, D] -> reconstruction [batch, D], latent [batch, L],
  score [batch] = mean((dec(enc(z)) - z)^2, axis=1) with z = (x - mean) / std
* ``encoder.onnx``      x [batch, D] -> latent [batch, L]
* ``decoder.onnx``      latent [batch, L] -> reconstruction [batch, D]

Which exporter: ``torch.onnx.export(dynamo=True)`` (torch.export-based) is the default
since torch 2.9 and the TorchScript exporter is deprecated, so it is ours too; it is
deterministic (same weights -> same bytes, across processes), names the dynamic axis
"batch" from ``Dim("batch")`` and needs no ``dynamic_axes`` for every output. Its one
snag, found by testing on torch 2.13: it only implements opset >= 18 and down-converts,
and onnx's 18->17 converter cannot adapt ReduceMean-18 (axes became an input), leaving the
model at opset 18 with a logged traceback. We therefore write the score as
``sum(d*d, 1) * (1/D)`` (ReduceSum has taken axes as an input since opset 13, so nothing
needs converting) and check the produced opset equals the requested one. An export costs
~2 s warm (vs ~0.1 s for TorchScript), so we export the autoencoder once and cut the
encoder and decoder out of it with ``onnx.utils.Extractor``.
``exporter="torchscript"`` stays available as a fallback for models dynamo cannot capture.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils
import torch
from torch import nn

from ..errors import DataError, ExportError, ParityError
from ..runtime.backends import require
from ..runtime.bundle import package_version
from ..spec import ArchSpec
from ..tasks.base import Normalizer

__all__ = ["GRAPHS", "DEFAULT_TOLERANCES", "export_onnx", "check_parity", "torch_reference"]

#: role -> (file name, input names, output names)
GRAPHS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "autoencoder": ("autoencoder.onnx", ("x",), ("reconstruction", "latent", "score")),
    "encoder": ("encoder.onnx", ("x",), ("latent",)),
    "decoder": ("decoder.onnx", ("latent",), ("reconstruction",)),
}
#: output -> (atol, rtol) for fp32; reconstruction is compared in model (normalised) units.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "reconstruction": (1e-4, 1e-3),
    "latent": (1e-4, 1e-3),
    "score": (1e-4, 1e-3),
}
MAX_OPSET = 20


class _Autoencoder(nn.Module):
    def __init__(self, model: nn.Module, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.inv_d = 1.0 / float(len(mean))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = (x - self.mean) / self.std
        latent = self.model.encode(z)
        r = self.model.decode(latent)
        d = r - z
        # sum * (1/D) rather than mean: see the module docstring (opset 17 conversion).
        return r * self.std + self.mean, latent, (d * d).sum(dim=1) * self.inv_d


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter chatter (torchvision notices, deprecation and conversion logs)."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch.fx")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_autoencoder(module: nn.Module, example: torch.Tensor, opset: int,
                        exporter: str) -> onnx.ModelProto:
    _, inputs, outputs = GRAPHS["autoencoder"]
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, input_names=list(inputs),
                output_names=list(outputs), dynamic_shapes={inputs[0]: {0: torch.export.Dim(
                    "batch")}}, optimize=True, verbose=False, external_data=False)
            return program.model_proto
        buf = io.BytesIO()
        torch.onnx.export(
            module, (example,), buf, dynamo=False, opset_version=opset,
            input_names=list(inputs), output_names=list(outputs),
            dynamic_axes={n: {0: "batch"} for n in (*inputs, *outputs)},
            do_constant_folding=True)
        return onnx.load_from_string(buf.getvalue())


def _split(proto: onnx.ModelProto) -> dict[str, onnx.ModelProto]:
    """Cut encoder (x -> latent) and decoder (latent -> reconstruction) out of the full graph.

    One export instead of three (the exporter's fixed cost dominates), and the three
    graphs share bit-identical weights by construction.
    """
    extractor = onnx.utils.Extractor(proto)
    graphs = {"autoencoder": proto}
    for role in ("encoder", "decoder"):
        _, inputs, outputs = GRAPHS[role]
        part = extractor.extract_model(list(inputs), list(outputs))
        part.producer_name, part.producer_version = proto.producer_name, proto.producer_version
        part.graph.name = role
        graphs[role] = part
    return graphs


def _finish(proto: onnx.ModelProto, role: str, spec: ArchSpec, opset: int,
            exporter: str) -> onnx.ModelProto:
    """Check opset and batch axis, lower the IR version, attach metadata, run the checker."""
    got = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    if got.get("ai.onnx") != opset:
        raise ExportError(
            f"the {exporter} exporter produced opset {got.get('ai.onnx')} for {role}, not the "
            f"requested {opset}; request opset {got.get('ai.onnx')} or exporter='torchscript'")
    for vi in (*proto.graph.input, *proto.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        if dim0.dim_param != "batch":
            raise ExportError(f"{role} {vi.name!r} has no dynamic 'batch' axis after export")
    # The lowest IR version the opset allows: older onnxruntime / TensorRT parsers refuse
    # newer IR versions they do not need.
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import), True)
    meta = {
        "metaae_edge.role": role,
        "metaae_edge.arch_spec": spec.to_json(sort_keys=True),
        "metaae_edge.version": package_version(),
        "metaae_edge.exporter": exporter,
        "torch.version": torch.__version__,
        "onnx.version": onnx.__version__,
    }
    if role == "autoencoder":
        meta["metaae_edge.score"] = "mean((dec(enc(z)) - z)^2, axis=1), z = (x - mean) / std"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = f"metaae-edge {role}: {spec.describe()}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{role} graph failed onnx.checker: {exc}".splitlines()[0]) from None
    return proto


def _check_reference(reference: np.ndarray, dim: int) -> np.ndarray:
    ref = np.asarray(reference)
    if ref.ndim != 2 or ref.shape[1] != dim or ref.shape[0] == 0 or ref.dtype.kind not in "biuf":
        raise DataError(f"parity reference must be a non-empty numeric (samples, {dim}) array, "
                        f"got shape {ref.shape} dtype {ref.dtype}")
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    if not np.all(np.isfinite(ref)):
        raise DataError("parity reference contains NaN/Inf")
    return ref


def torch_reference(model: nn.Module, normalizer: Normalizer,
                    x: np.ndarray) -> dict[str, np.ndarray]:
    """The torch fp32 outputs the graphs must reproduce (normalisation done in torch)."""
    m = copy.deepcopy(model).cpu().float().eval()
    mean = torch.from_numpy(np.asarray(normalizer.mean, np.float32))
    std = torch.from_numpy(np.asarray(normalizer.std, np.float32))
    with torch.no_grad():
        z = (torch.from_numpy(x) - mean) / std
        latent = m.encode(z)
        r = m.decode(latent)
        return {"reconstruction": (r * std + mean).numpy(), "latent": latent.numpy(),
                "score": ((r - z) ** 2).mean(dim=1).numpy()}


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


def check_parity(
    model: nn.Module,
    normalizer: Normalizer,
    out_dir: Path,
    reference: np.ndarray,
    *,
    tolerances: dict[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Run the three graphs in onnxruntime (CPU) against the torch model on ``reference``.

    Each graph runs on the whole reference as one batch and on a batch of one. The
    reconstruction is compared in normalised units (error / std), so tolerances mean the
    same whatever the raw scale. The decoder is fed the torch latent.

    Returns:
        The parity report: per graph and output max abs / rel error, tolerances, passed.

    Raises:
        ParityError: an output differs beyond ``atol + rtol * |ref|``.
    """
    ort = require("onnxruntime", "metaae-edge[cpu]")
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    ref = _check_reference(reference, len(normalizer.mean))
    expected = torch_reference(model, normalizer, ref)
    std = np.asarray(normalizer.std, np.float64)
    feeds = {"x": ref, "latent": expected["latent"]}
    report: dict[str, Any] = {"n_samples": int(len(ref)), "batch_sizes": sorted({len(ref), 1}),
                              "provider": "CPUExecutionProvider",
                              "onnxruntime_version": ort.__version__, "graphs": {}}
    failures = []
    for role, (fname, inputs, outputs) in GRAPHS.items():
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(Path(out_dir) / fname), so,
                                    providers=["CPUExecutionProvider"])
        full = sess.run(list(outputs), {inputs[0]: feeds[inputs[0]]})
        one = sess.run(list(outputs), {inputs[0]: feeds[inputs[0]][:1]})
        report["graphs"][role] = {}
        for name, got, got1 in zip(outputs, full, one):
            atol, rtol = tol[name]
            scale = std if name == "reconstruction" else None
            res = _compare(got, expected[name], atol, rtol, scale)
            res1 = _compare(got1, expected[name][:1], atol, rtol, scale)
            res["passed"] = res["passed"] and res1["passed"]
            report["graphs"][role][name] = res
            if not res["passed"]:
                failures.append(f"{fname} output {name!r}: max abs err {res['max_abs_err']:.3g}"
                                f" exceeds atol {atol:g} + rtol {rtol:g}*|ref|")
    report["max_abs_err"] = max(r["max_abs_err"] for g in report["graphs"].values()
                                for r in g.values())
    report["passed"] = not failures
    if failures:
        raise ParityError(f"ONNX parity check failed on {len(ref)} samples: {failures[0]}; "
                          "the exported graph does not match the torch model")
    return report


def export_onnx(
    model: nn.Module,
    normalizer: Normalizer,
    out_dir: Path,
    *,
    reference: np.ndarray,
    opset: int = 17,
    tolerances: dict[str, tuple[float, float]] | None = None,
    exporter: str = "dynamo",
) -> dict[str, Any]:
    """Export ``autoencoder.onnx``, ``encoder.onnx`` and ``decoder.onnx`` and check parity.

    Args:
        model: a compact autoencoder in model space with ``encode``/``decode`` and a
            ``spec`` (:class:`~metaae_edge.space.compact.CompactAE`).
        normalizer: raw -> model-space map baked into the graphs.
        out_dir: existing directory the graphs are written into.
        reference: held-out raw samples (N, D) for the parity gate.
        opset: ONNX opset (<= 20; 17 suits the ORT quantiser and TensorRT 10/11).
        tolerances: per output ``{"reconstruction"|"latent"|"score": (atol, rtol)}``
            overriding :data:`DEFAULT_TOLERANCES`.
        exporter: ``dynamo`` (default) or ``torchscript``.

    Returns:
        The parity report (see :func:`check_parity`) plus ``opset`` and ``exporter``.

    Raises:
        ExportError: export or the ONNX checker failed.
        ParityError: onnxruntime output differs from torch beyond tolerance.
    """
    spec: ArchSpec = getattr(model, "spec", None)
    if not isinstance(spec, ArchSpec):
        raise ExportError("model has no ArchSpec `spec`; export a CompactAE")
    if exporter not in ("dynamo", "torchscript"):
        raise ExportError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    if not 13 <= opset <= MAX_OPSET:
        raise ExportError(f"opset must be between 13 and {MAX_OPSET}, got {opset}")
    mean = np.asarray(normalizer.mean, np.float32)
    std = np.asarray(normalizer.std, np.float32)
    if mean.shape != (spec.input_dim,) or std.shape != (spec.input_dim,):
        raise ExportError(f"normalizer has {mean.shape[0]} features, the model {spec.input_dim}")
    _check_reference(reference, spec.input_dim)
    m = copy.deepcopy(model).cpu().float().eval()  # never touch the caller's module
    # Batch 3 as the example: torch.export specialises dims whose example size is 0 or 1.
    example = torch.zeros(3, spec.input_dim)
    try:
        proto = _export_autoencoder(_Autoencoder(m, mean, std).eval(), example, opset, exporter)
        graphs = _split(proto)
    except Exception as exc:  # the exporters raise many types; report one line
        raise ExportError(f"exporting with the {exporter} exporter failed: "
                          f"{exc}".splitlines()[0]) from exc
    out_dir = Path(out_dir)
    for role, graph in graphs.items():
        graph = _finish(graph, role, spec, opset, exporter)
        onnx.save_model(graph, str(out_dir / GRAPHS[role][0]))
    report = check_parity(m, normalizer, out_dir, reference, tolerances=tolerances)
    return {**report, "opset": opset, "exporter": exporter}
