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
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ExportError
from ..runtime.bundle import sha256_file

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


def check_tensorrt_compat(model: Any, *, raise_on_error: bool = True) -> list[str]:
    """Check statically that TensorRT's ONNX parser can build ``model`` with a batch profile.

    Checks: every node is in the default ONNX domain and in :data:`TRT_ONNX_OPS`;
    every QuantizeLinear / DequantizeLinear has an int8 zero point equal to 0 (TensorRT
    supports symmetric quantisation only); every graph input / output is rank >= 2 with a
    dynamic (or any) batch axis 0 and static, positive other axes.

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
    for vi in (*g.input, *g.output):
        if vi.name in consts:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) < 2:
            errors.append(f"{vi.name!r} has rank {len(dims)}; expected (batch, features...)"
                          if vi in g.input or len(dims) == 0 else None)
        for i, d in enumerate(dims[1:], start=1):
            if d.dim_param or d.dim_value <= 0:
                errors.append(f"{vi.name!r} axis {i} is dynamic ({d.dim_param or '?'}); only "
                              "the batch axis 0 may be, for a [min, max] batch profile")
    errors = [e for e in errors if e]
    ok.append(f"ok: {len(g.node)} nodes, ops {', '.join(sorted({n.op_type for n in g.node}))}")
    findings = [f"error: {e}" for e in errors] + ok
    if errors and raise_on_error:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ExportError(f"{name} is not TensorRT-compatible: {errors[0]}{more}")
    return findings


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailableError(
            "building engines needs TensorRT; install pip install 'metaae-edge[tensorrt]' "
            "on a machine with an NVIDIA GPU") from None
    return trt


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
    opt_batch: int = 64,
    max_batch: int = 4096,
    workspace: int = 1 << 30,
    optimization_level: int = 3,
    timing_cache: str | Path | None = None,
    hardware_compatibility: str = "none",
) -> Path:
    """Build a strongly typed TensorRT engine from a (fp32 / fp16 / Q/DQ int8) ONNX graph.

    Args:
        onnx_path: the graph; checked with :func:`check_tensorrt_compat` first.
        out_dir: the bundle's ``engines/`` folder; the engine goes into a sub-folder named
            by :func:`engine_dir_name`.
        precision: recorded in engine.json (precision comes from the graph itself).
        min_batch, opt_batch, max_batch: the optimisation profile of the batch axis.
        workspace: workspace memory pool limit in bytes.
        optimization_level: builder optimisation level 0-5 (TensorRT default 3).
        timing_cache: file to read / update the timing cache from (None: none).
        hardware_compatibility: ``none`` | ``ampere_plus`` | ``same_compute_capability``.

    Returns:
        The folder holding ``<stem>.engine`` and ``engine.json``.

    Raises:
        BackendUnavailableError: TensorRT or a GPU is missing.
        ExportError: the graph is not compatible or the build failed.
    """
    import onnx

    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ExportError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                          f"{min_batch}, {opt_batch}, {max_batch}")
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path))
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
        feat = tuple(t.shape)[1:]
        shapes[t.name] = [[b, *feat] for b in (min_batch, opt_batch, max_batch)]
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
