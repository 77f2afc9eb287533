"""TensorRT: a static compatibility check (runs anywhere) and an engine builder (needs TRT).

Precision lives in the ONNX graph (DESIGN.md): TensorRT 10 deprecated and TensorRT 11
removed ``BuilderFlag.FP16`` / ``INT8`` and the implicit INT8 calibrators, so engines are
built from FP16 / Q/DQ INT8 graphs as *strongly typed* networks, where each tensor keeps the
type the graph gives it. Both major versions are handled by feature detection:
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is only passed where it still exists and is
not deprecated (TRT < 10), ``STRONGLY_TYPED`` wherever it exists.

The engine is a plain serialized plan (no header prepended) next to ``engine.json``
recording TensorRT version, GPU, compute capability, profile, precision and the sha256 of
the source ONNX, under ``engines/<gpu>-sm<cc>-trt<ver>/``. The builder is untested on this
project's CI (no GPU); see tests/test_tensorrt.py, marked ``tensorrt``.

Image (conv) graphs have dynamic height and width as well as batch. Their default
optimisation profile (:func:`metaae_edge.runtime.backends.image_profile`): batch 1 / 16 /
64 (min / opt / max); height and width from one block of ``2**stages`` pixels, tuned for
the resolution the architecture was adapted at, up to 4x that resolution (at least 64
pixels a side). TensorRT reserves activation memory for the largest shape, so the box is
kept modest; widen it with ``max_hw`` / ``max_batch`` (``build-engine --max-hw 256x256``).
The decoder's latent profile is the same box divided by ``2**stages``. Image graphs with a
dense bottleneck (``spec.fixed_hw``) have static height and width: their profile varies the
batch only (min = opt = max at the adapted H x W) and the decoder's input is the
(batch, dense_latent) code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ExportError, SpecError
from ..optional import require
from ..runtime.backends import IMAGE_MAX_BATCH, IMAGE_OPT_BATCH, image_profile, latent_profile
from ..runtime.bundle import sha256_file
from ..spec import ArchSpec

__all__ = ["TRT_ONNX_OPS", "check_tensorrt_compat", "build_engine", "engine_dir_name"]

#: ONNX ops (default domain) the TensorRT 10/11 ONNX parser supports, restricted to what
#: this project emits (first line) plus common ones (from onnx-tensorrt's
#: docs/operators.md). Anything else is reported by :func:`check_tensorrt_compat`.
TRT_ONNX_OPS: frozenset[str] = frozenset({
    # emitted by metaae-edge graphs (fp32 / fp16 / int8)
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Tanh", "Sigmoid",
    "HardSwish", "HardSigmoid", "ReduceSum", "Constant", "Cast", "QuantizeLinear",
    "DequantizeLinear", "Identity",
    # common
    "Abs", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Clip", "Concat",
    "ConstantOfShape", "Conv", "ConvTranspose", "Elu", "Equal", "Erf", "Exp", "Expand",
    "Flatten", "Gather", "Gelu", "GlobalAveragePool", "GlobalMaxPool", "Greater",
    "InstanceNormalization", "LayerNormalization", "Less", "Log", "Max", "MaxPool", "Min",
    "Neg", "Not", "Pad", "Pow", "Reciprocal", "ReduceL2", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSumSquare", "Reshape", "Resize", "Shape", "Slice",
    "Softmax", "Softplus", "Split", "Sqrt", "Squeeze", "Tile", "TopK", "Transpose",
    "Unsqueeze", "Where",
})
_QDQ_TYPES = {3}  # INT8 (TensorProto.INT8); FP8 / INT4 are not used by this project
# Resize attributes TensorRT's ONNX parser implements (onnx-tensorrt docs/operators.md).
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                  "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


def graph_spec(model: Any) -> ArchSpec | None:
    """The ArchSpec in a graph's ``metaae_edge.arch_spec`` metadata (None if absent)."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        return ArchSpec.from_json(props["metaae_edge.arch_spec"])
    except (KeyError, SpecError):
        return None


def _is_image_graph(g: Any, spec: ArchSpec | None) -> bool:
    if spec is not None:
        return spec.backbone == "conv"
    return any(len(vi.type.tensor_type.shape.dim) == 4 for vi in g.input)


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _node_errors(n: Any, consts: dict[str, Any]) -> list[str]:
    """Op-specific restrictions of TensorRT's ONNX parser."""
    errors = []
    if n.op_type == "Resize":
        mode = _attr(n, "mode", "nearest")
        coord = _attr(n, "coordinate_transformation_mode", "half_pixel")
        nearest = _attr(n, "nearest_mode", "round_prefer_floor")
        if mode not in _RESIZE_MODES:
            errors.append(f"node {n.name!r}: Resize mode {mode!r}; TensorRT supports "
                          f"{', '.join(sorted(_RESIZE_MODES))}")
        if coord not in _RESIZE_COORDS:
            errors.append(f"node {n.name!r}: Resize coordinate_transformation_mode {coord!r} "
                          "is not supported by TensorRT")
        if mode == "nearest" and nearest not in _RESIZE_NEAREST:
            errors.append(f"node {n.name!r}: Resize nearest_mode {nearest!r} is not "
                          "supported by TensorRT")
    if n.op_type in ("Squeeze", "Unsqueeze") and len(n.input) > 1 and n.input[1] \
            and n.input[1] not in consts:
        errors.append(f"node {n.name!r}: {n.op_type} axes {n.input[1]!r} are not constant; "
                      "TensorRT needs them as an initializer")
    return errors


def check_tensorrt_compat(model: Any, *, raise_on_error: bool = True) -> list[str]:
    """Check statically that TensorRT's ONNX parser can build ``model`` with a batch profile.

    Checks: every node is in the default ONNX domain and in :data:`TRT_ONNX_OPS`;
    every QuantizeLinear / DequantizeLinear has an int8 zero point equal to 0 (TensorRT
    supports symmetric quantisation only); Resize uses a mode, coordinate transformation
    and rounding TensorRT implements, Squeeze / Unsqueeze axes are constant; every graph
    input / output is rank >= 2 with a dynamic (or any) batch axis 0 and static, positive
    other axes, except that image (conv) graphs (see the ``metaae_edge.arch_spec``
    metadata) may also have dynamic height and width (axes 2 and 3 of rank-4 tensors),
    for a [min, max] profile over resolution; those of a fixed-resolution spec (a dense
    bottleneck, ``spec.fixed_hw``) may not, as their profile spans the batch only.

    Args:
        model: an ``onnx.ModelProto`` or a path.
        raise_on_error: raise on the first error (otherwise only return the findings).

    Returns:
        Findings, one line each, prefixed ``error:`` or ``ok:``.

    Raises:
        ExportError: an error was found (with ``raise_on_error``).
    """
    import onnx
    from onnx import numpy_helper

    name = str(model) if isinstance(model, (str, Path)) else (model.graph.name or "graph")
    m = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    g = m.graph
    errors, ok = [], []
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            errors.append(f"node {n.name!r}: op {n.domain}.{n.op_type} is a custom-domain op "
                          "TensorRT's ONNX parser does not know")
        elif n.op_type not in TRT_ONNX_OPS:
            errors.append(f"node {n.name!r}: op {n.op_type} is not in the supported list")
        errors.extend(_node_errors(n, consts))
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if len(n.input) < 3 or not n.input[2]:
                errors.append(f"node {n.name!r}: {n.op_type} has no zero point (uint8 by "
                              "default); TensorRT needs an int8 zero point of 0")
                continue
            zp = consts.get(n.input[2])
            if zp is None:
                errors.append(f"node {n.name!r}: zero point {n.input[2]!r} is not constant")
                continue
            if zp.data_type not in _QDQ_TYPES:
                errors.append(f"node {n.name!r}: zero point type "
                              f"{onnx.TensorProto.DataType.Name(zp.data_type)}, TensorRT "
                              "needs INT8")
            if np.any(numpy_helper.to_array(zp) != 0):
                errors.append(f"node {n.name!r}: zero point is not 0 (asymmetric "
                              "quantisation); TensorRT supports symmetric only")
    n_qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)
    if n_qdq:
        ok.append(f"ok: {n_qdq} Q/DQ nodes, all symmetric int8" if not errors else
                  f"{n_qdq} Q/DQ nodes checked")
    spec = graph_spec(m)
    image = _is_image_graph(g, spec)
    fixed = spec.fixed_hw if spec is not None else None
    spatial = image and fixed is None  # dynamic height / width allowed
    for vi in (*g.input, *g.output):
        if vi.name in consts:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) < 2:
            errors.append(f"{vi.name!r} has rank {len(dims)}; expected (batch, features...)"
                          if vi in g.input or len(dims) == 0 else None)
        for i, d in enumerate(dims[1:], start=1):
            if spatial and len(dims) == 4 and i in (2, 3):
                continue  # height / width: covered by the profile over resolution
            if d.dim_param or d.dim_value <= 0:
                only = ("the batch, height and width axes" if spatial and len(dims) == 4
                        else "the batch axis 0")
                errors.append(f"{vi.name!r} axis {i} is dynamic ({d.dim_param or '?'}); only "
                              f"{only} may be, for a [min, max] profile")
    if fixed is not None:
        ok.append(f"ok: image graph at a fixed {fixed[0]}x{fixed[1]} (dense code), dynamic "
                  "batch (profile over the batch only)")
    elif image:
        ok.append("ok: image graph, dynamic batch / height / width (profile over resolution)")
    errors = [e for e in errors if e]
    ok.append(f"ok: {len(g.node)} nodes, ops {', '.join(sorted({n.op_type for n in g.node}))}")
    findings = [f"error: {e}" for e in errors] + ok
    if errors and raise_on_error:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ExportError(f"{name} is not TensorRT-compatible: {errors[0]}{more}")
    return findings


def _trt() -> Any:
    return require("tensorrt", "metaae-edge[tensorrt]", package="TensorRT",
                   needed_for="building engines", hint="on a machine with an NVIDIA GPU")


def _gpu() -> tuple[str, str]:
    """(GPU name, compute capability "89") through cuda-python or nvidia-smi."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            cudart = None
    if cudart is not None:
        err, prop = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return name.strip("\x00 "), f"{prop.major}{prop.minor}"
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,"
                              "noheader", "-i", "0"], capture_output=True, text=True,
                             timeout=20, check=True).stdout.strip()
        name, cc = (s.strip() for s in out.split(","))
        return name, cc.replace(".", "")
    except (OSError, subprocess.SubprocessError, ValueError):
        raise BackendUnavailableError("no CUDA GPU found (neither cuda-python nor "
                                      "nvidia-smi answered); engines are built on the "
                                      "target GPU") from None


def engine_dir_name(gpu: str, cc: str, trt_version: str) -> str:
    """``engines/`` sub-folder name, e.g. ``nvidia-h100-80gb-hbm3-sm90-trt10.13.0``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"{slug}-sm{cc}-trt{trt_version}"


def build_engine(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    precision: str = "fp32",
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace: int = 1 << 30,
    optimization_level: int = 3,
    timing_cache: str | Path | None = None,
    hardware_compatibility: str = "none",
    min_hw: tuple[int, int] | None = None,
    opt_hw: tuple[int, int] | None = None,
    max_hw: tuple[int, int] | None = None,
) -> Path:
    """Build a strongly typed TensorRT engine from a (fp32 / fp16 / Q/DQ int8) ONNX graph.

    Args:
        onnx_path: the graph; checked with :func:`check_tensorrt_compat` first.
        out_dir: the bundle's ``engines/`` folder; the engine goes into a sub-folder named
            by :func:`engine_dir_name`.
        precision: recorded in engine.json (precision comes from the graph itself).
        min_batch, opt_batch, max_batch: the optimisation profile of the batch axis
            (default opt / max: 64 / 4096 for feature graphs, 16 / 64 for image graphs).
        workspace: workspace memory pool limit in bytes.
        optimization_level: builder optimisation level 0-5 (TensorRT default 3).
        timing_cache: file to read / update the timing cache from (None: none).
        hardware_compatibility: ``none`` | ``ampere_plus`` | ``same_compute_capability``.
        min_hw, opt_hw, max_hw: (H, W) of the resolution profile of image graphs (default:
            see the module docstring); multiples of ``2**stages``; a fixed-resolution
            graph accepts only its own H x W (or None).

    Returns:
        The folder holding ``<stem>.engine`` and ``engine.json``.

    Raises:
        BackendUnavailableError: TensorRT or a GPU is missing.
        ExportError: the graph is not compatible or the build failed.
    """
    import onnx

    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path))
    spec = graph_spec(model)
    image = spec is not None and spec.backbone == "conv"
    if max_batch is None:
        max_batch = IMAGE_MAX_BATCH if image else 4096
    if opt_batch is None:
        opt_batch = min(IMAGE_OPT_BATCH if image else 64, max_batch)
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ExportError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                          f"{min_batch}, {opt_batch}, {max_batch}")
    per_sample = None
    if image:
        try:
            per_sample = image_profile(spec, min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw)
        except Exception as exc:  # InputError from the runtime helper: one line
            raise ExportError(str(exc)) from None
    check_tensorrt_compat(model)
    trt = _trt()
    gpu, cc = _gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    ncf = trt.NetworkDefinitionCreationFlag
    if int(trt.__version__.split(".")[0]) < 10 and hasattr(ncf, "EXPLICIT_BATCH"):
        flags |= 1 << int(ncf.EXPLICIT_BATCH)  # default (and deprecated) since TRT 10
    if hasattr(ncf, "STRONGLY_TYPED"):
        flags |= 1 << int(ncf.STRONGLY_TYPED)
    elif precision != "fp32":
        raise ExportError(f"TensorRT {trt.__version__} has no strongly typed networks; "
                          "use TensorRT >= 10 for fp16 / int8 graphs")
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: "
                          f"{errs[0] if errs else 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(optimization_level)
    if hardware_compatibility != "none":
        level = getattr(trt.HardwareCompatibilityLevel, hardware_compatibility.upper(), None)
        if level is None:
            raise ExportError(f"unknown hardware_compatibility {hardware_compatibility!r}")
        config.hardware_compatibility_level = level
    cache = None
    if timing_cache is not None:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    shapes = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        batches = (min_batch, opt_batch, max_batch)
        if per_sample is not None:  # image graph: a box over batch, height and width
            box = latent_profile(spec, per_sample) if t.name == "latent" else per_sample
            shapes[t.name] = [[b, *box[k]] for b, k in zip(batches, ("min", "opt", "max"))]
        else:
            feat = tuple(t.shape)[1:]
            shapes[t.name] = [[b, *feat] for b in batches]
        profile.set_shape(t.name, *shapes[t.name])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} "
                          "(see the TensorRT log above)")
    if cache is not None:
        Path(timing_cache).write_bytes(memoryview(cache.serialize()))
    folder = Path(out_dir) / engine_dir_name(gpu, cc, trt.__version__)
    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / f"{onnx_path.name.removesuffix('.onnx')}.engine"
    engine.write_bytes(memoryview(plan))
    meta = {"tensorrt_version": trt.__version__, "gpu": gpu, "compute_capability": cc,
            "precision": precision, "profile": shapes, "source_onnx": onnx_path.name,
            "source_sha256": sha256_file(onnx_path), "engine": engine.name,
            "hardware_compatibility": hardware_compatibility,
            "optimization_level": optimization_level, "strongly_typed": True}
    (folder / "engine.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder
