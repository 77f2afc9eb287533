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

Conv (image) models (:class:`~metaae_edge.space.conv.CompactConvAE`) export the same three
graphs with NCHW tensors whose height and width are dynamic as well as the batch:

* ``autoencoder.onnx``  x [batch, C, height, width] -> reconstruction [batch, C, height,
  width], latent [batch, L, latent_height, latent_width], score [batch] (mean over C, H, W
  of the squared model-space error) and error_map [batch, 1, height, width] (the squared
  error averaged over channels: the anomaly heat map)
* ``encoder.onnx`` / ``decoder.onnx`` cut out of it as for the MLP.

Height and width are declared to torch.export as ``2**stages * Dim("h_blocks")`` (and
``w_blocks``), so the graph is valid exactly for sizes the network can run at; the
exporter's derived dim names (``4*h_blocks``, ``s38``...) are renamed on the graph inputs
and outputs to ``height`` / ``width`` / ``latent_height`` / ``latent_width``.
Normalisation is global (one mean and std), which broadcasts over any resolution. The
score divides the sum of squared errors by the element count taken from the input's
shape (``Shape`` -> ``Mul`` -> ``Cast`` -> ``Div``), again avoiding ReduceMean so the graph
stays at opset 17.

A conv spec with a dense bottleneck (``spec.fixed_hw``: the latent is resized to a fixed
grid and flattened into ``dense_latent`` values by a linear layer) runs at its own H x W
only: the resize ops are built from static sizes, so torch.export could not trace them
over symbolic ones, and the linear layer would not fit any other size anyway. Such graphs
keep the batch axis dynamic and H, W static (``x`` [batch, C, H, W]); their latent is
[batch, dense_latent], the metadata adds ``metaae_edge.fixed_hw`` = ``"HxW"`` and parity is
checked at that size only.
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

from ..contracts import IOContract, contract_for
from ..errors import ExportError
from ..runtime.bundle import package_version
from ..spec import ArchSpec
from ..tasks.base import Normalizer
from .graphs import CONV_GRAPHS, DEFAULT_TOLERANCES, GRAPHS, MAX_OPSET, graphs_for
from .parity import check_parity, check_reference, torch_reference

__all__ = ["GRAPHS", "CONV_GRAPHS", "DEFAULT_TOLERANCES", "graphs_for", "export_onnx",
           "check_parity", "torch_reference"]

class _Autoencoder(nn.Module):
    """Raw input -> the autoencoder graph's outputs: reconstruction, latent, score (and, for
    images, the error map), by the contract's reference maths. Normalisation is done here;
    for images it is global (one mean and std), which broadcasts over any resolution."""

    def __init__(self, model: nn.Module, mean: np.ndarray, std: np.ndarray,
                 contract: IOContract):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.contract = contract

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = (x - self.mean) / self.std
        latent = self.model.encode(z)
        r = self.model.decode(latent)
        return self.contract.torch_outputs(x, z, latent, r, self.mean, self.std)


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
                        exporter: str, contract: IOContract) -> onnx.ModelProto:
    """Export ``module``; a spec with ``nlm``: NLM as one placeholder node, then spliced
    (:mod:`.nlm_graph`: the graph built with ``onnx.helper``, not traced); a denoiser's
    narrow convs (its tail) as ConvTranspose (:mod:`.conv_rewrite`)."""
    spec = contract.spec
    if not getattr(spec, "nlm", None):
        proto = _trace(module, example, opset, exporter, contract, {})
    else:
        from ..space.nlm import nlm_export_placeholder
        from .nlm_graph import splice_nlm, translation_table

        with nlm_export_placeholder():
            proto = _trace(module, example, opset, exporter, contract, translation_table())
        splice_nlm(proto, spec.input_shape[0])  # none if the module's NLM was traced as ops
    if getattr(spec, "backbone", None) == "denoiser":
        from .conv_rewrite import narrow_convs_as_transposed

        narrow_convs_as_transposed(proto)  # the tail: an NCHWc conv would pad it to 16
    return proto


def _trace(module: nn.Module, example: torch.Tensor, opset: int, exporter: str,
           contract: IOContract, custom: dict) -> onnx.ModelProto:
    _, inputs, outputs = contract.graphs["autoencoder"]
    Dim = torch.export.Dim
    with _quiet(), torch.no_grad():
        if exporter == "dynamo":
            axes: dict[int, Any] = {0: Dim("batch")}
            # images: H and W any multiple of 2**stages, the sizes the network can run at
            axes.update({i: m * Dim(name) for i, (name, m) in contract.export_axes().items()})
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset, input_names=list(inputs),
                output_names=list(outputs), dynamic_shapes={inputs[0]: axes}, optimize=True,
                verbose=False, external_data=False, custom_translation_table=custom or None)
            proto = program.model_proto
        else:
            buf = io.BytesIO()
            torch.onnx.export(
                module, (example,), buf, dynamo=False, opset_version=opset,
                input_names=list(inputs), output_names=list(outputs),
                dynamic_axes={n: contract.dynamic_axes(n) for n in (*inputs, *outputs)},
                do_constant_folding=True)
            proto = onnx.load_from_string(buf.getvalue())
    dims = contract.graph_dims()
    if dims:
        _name_dims(proto, dims)
    return proto


def _name_dims(proto: onnx.ModelProto, dims: dict[str, tuple[str | int | None, ...]]) -> None:
    """Rename the exporter's derived dim names on the graph's inputs / outputs.

    torch.export names them after the symbolic expressions (``4*h_blocks``, ``s38``);
    ``height`` / ``width`` (and ``latent_height`` / ``latent_width``) say what they are.
    Intermediate value_info would keep the old names, so it is dropped (onnxruntime and
    TensorRT infer intermediate shapes themselves). Static axes (every one but the batch
    of a fixed-resolution spec) keep their sizes.
    """
    for vi in (*proto.graph.input, *proto.graph.output):
        names = dims.get(vi.name)
        if names is None:
            continue
        for dim, name in zip(vi.type.tensor_type.shape.dim, names):
            if isinstance(name, str):
                dim.dim_param = name  # also clears a fixed dim_value (a oneof)
    del proto.graph.value_info[:]


def _split(proto: onnx.ModelProto, spec: ArchSpec) -> dict[str, onnx.ModelProto]:
    """Cut encoder (x -> latent) and decoder (latent -> reconstruction) out of the full graph.

    One export instead of three (the exporter's fixed cost dominates), and the three
    graphs share bit-identical weights by construction.
    """
    extractor = onnx.utils.Extractor(proto)
    graphs = {"autoencoder": proto}
    for role in ("encoder", "decoder"):
        _, inputs, outputs = graphs_for(spec)[role]
        part = extractor.extract_model(list(inputs), list(outputs))
        part.producer_name, part.producer_version = proto.producer_name, proto.producer_version
        part.graph.name = role
        graphs[role] = part
    return graphs


#: graph metadata: the widest activation per input value a module of the model declares
#: (``activation_width``: values per sample), read by the runtime to size its chunks
ACTIVATION_KEY = "metaae_edge.activation_factor"


def activation_factor(model: nn.Module, input_values: int) -> float | None:
    """The largest ``activation_width`` a submodule of ``model`` declares, over
    ``input_values`` (values per sample); None if none declares one."""
    widths = [float(m.activation_width) for m in model.modules()
              if getattr(m, "activation_width", None)]
    return max(widths) / max(1, input_values) if widths else None


def _finish(proto: onnx.ModelProto, role: str, spec: ArchSpec, opset: int,
            exporter: str, factor: float | None = None) -> onnx.ModelProto:
    """Check opset and batch axis, lower the IR version, attach metadata, run the checker."""
    got = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    if got.get("ai.onnx") != opset:
        raise ExportError(
            f"the {exporter} exporter produced opset {got.get('ai.onnx')} for {role}, not the "
            f"requested {opset}; request opset {got.get('ai.onnx')} or exporter='torchscript'")
    contract = contract_for(spec)
    for vi in (*proto.graph.input, *proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != "batch":
            raise ExportError(f"{role} {vi.name!r} has no dynamic 'batch' axis after export")
        why = contract.graph_shape_error(role, vi.name, dims)  # H / W axes, per kind
        if why is not None:
            raise ExportError(why)
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
    meta.update(contract.graph_metadata(role))
    if factor is not None and role != "decoder":
        meta[ACTIVATION_KEY] = f"{factor:.6g}"
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = f"metaae-edge {role}: {spec.describe()}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{role} graph failed onnx.checker: {exc}".splitlines()[0]) from None
    return proto


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
            ``spec``: :class:`~metaae_edge.space.compact.CompactAE` or
            :class:`~metaae_edge.space.conv.CompactConvAE`.
        normalizer: raw -> model-space map baked into the graphs (conv: global, shape (1,)).
        out_dir: existing directory the graphs are written into.
        reference: held-out raw samples (N, D) for the parity gate; for conv models
            images (N, C, H, W) or flattened samples (N, C*H*W) at the spec's resolution.
        opset: ONNX opset (<= 20; 17 suits the ORT quantiser and TensorRT 10/11).
        tolerances: per output ``{"reconstruction"|"latent"|"score"|"error_map": (atol,
            rtol)}`` overriding :data:`DEFAULT_TOLERANCES`.
        exporter: ``dynamo`` (default) or ``torchscript``.

    Returns:
        The parity report (see :func:`check_parity`) plus ``opset`` and ``exporter``.

    Raises:
        ExportError: export or the ONNX checker failed.
        ParityError: onnxruntime output differs from torch beyond tolerance.
    """
    spec: ArchSpec = getattr(model, "spec", None)
    if not isinstance(spec, ArchSpec):
        raise ExportError("model has no ArchSpec `spec`; export a CompactAE or CompactConvAE")
    if exporter not in ("dynamo", "torchscript"):
        raise ExportError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    if not 13 <= opset <= MAX_OPSET:
        raise ExportError(f"opset must be between 13 and {MAX_OPSET}, got {opset}")
    mean = np.asarray(normalizer.mean, np.float32)
    std = np.asarray(normalizer.std, np.float32)
    contract = contract_for(spec)
    why = contract.normalizer_error(mean, std)
    if why is not None:
        raise ExportError(why)
    check_reference(reference, spec)
    m = copy.deepcopy(model).cpu().float().eval()  # never touch the caller's module
    # Batch 3 as the example: torch.export specialises dims whose example size is 0 or 1;
    # images: see the contract's export_example.
    example = torch.zeros(*contract.export_example())
    module = _Autoencoder(m, mean, std, contract)
    try:
        proto = _export_autoencoder(module.eval(), example, opset, exporter, contract)
        graphs = _split(proto, spec)
    except Exception as exc:  # the exporters raise many types; report one line
        raise ExportError(f"exporting with the {exporter} exporter failed: "
                          f"{exc}".splitlines()[0]) from exc
    out_dir = Path(out_dir)
    factor = activation_factor(m, int(np.prod(contract.export_example()[1:])))
    for role, graph in graphs.items():
        graph = _finish(graph, role, spec, opset, exporter, factor)
        onnx.save_model(graph, str(out_dir / graphs_for(spec)[role][0]))
    report = check_parity(m, normalizer, out_dir, reference, tolerances=tolerances)
    return {**report, "opset": opset, "exporter": exporter}
