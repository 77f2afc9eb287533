"""TensorRT: a static compatibility check (runs anywhere) and an engine builder (needs TRT).

Precision lives in the ONNX graph (DESIGN.md): TensorRT 10 deprecated and TensorRT 11
removed ``BuilderFlag.FP16`` / ``INT8`` and the implicit INT8 calibrators, so engines are
built from FP16 / Q/DQ INT8 graphs as *strongly typed* networks, where each tensor keeps the
type the graph gives it. Both major versions are handled by feature detection:
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is only passed where it still exists and is
not deprecated (TRT < 10), ``STRONGLY_TYPED`` wherever it exists.

The engine is a plain serialized plan (no header prepended) next to ``engine.json``
recording TensorRT version, GPU, compute capability, profile, precision and the sha256 of
the source ONNX, under ``engines/<gpu>-sm<cc>-trt<ver>/``; in a bundle both are written
through the staged :class:`~metaae_edge.exporters.writer.BundleWriter` and listed in the
manifest (the plan with role ``engine``), so the loader checks their sha256 like any other
file. The static check is :mod:`metaae_edge.exporters.trt_compat`. The builder is untested
on this project's CI (no GPU); see tests/test_tensorrt.py, marked ``tensorrt``.

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

from ..errors import BackendUnavailableError, ExportError
from ..fsutil import atomic_write
from ..optional import require
from ..runtime.backends import IMAGE_MAX_BATCH, IMAGE_OPT_BATCH, image_profile, latent_profile
from ..runtime.bundle import sha256_file
from ..runtime.manifest import ENGINE_INFO_ROLE, ENGINE_ROLE, MANIFEST_NAME
from ..spec import ArchSpec
from .trt_compat import TRT_ONNX_OPS, check_tensorrt_compat, graph_spec
from .writer import BundleWriter

__all__ = ["TRT_ONNX_OPS", "check_tensorrt_compat", "graph_spec", "build_engine",
           "builder_config", "engine_dir_name", "write_engine"]

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
    sign_key: Any = None,
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
        sign_key: re-sign with this Ed25519 key (or PEM path); None drops a signature.

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
    batches, per_sample = _profile_box(spec, min_batch, opt_batch, max_batch,
                                       min_hw, opt_hw, max_hw)
    check_tensorrt_compat(model)
    trt = _trt()
    gpu, cc = _gpu()
    builder, network, _alive = _parse(trt, onnx_path, precision)
    config = builder_config(trt, builder, workspace=workspace,
                            optimization_level=optimization_level,
                            hardware_compatibility=hardware_compatibility)
    cache = None
    if timing_cache is not None:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    shapes = _add_profile(builder, config, network, batches, per_sample, spec)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name} "
                          "(see the TensorRT log above)")
    if cache is not None:
        atomic_write(timing_cache, bytes(memoryview(cache.serialize())))
    meta = {"tensorrt_version": trt.__version__, "gpu": gpu, "compute_capability": cc,
            "precision": precision, "profile": shapes, **_source(onnx_path),
            "hardware_compatibility": hardware_compatibility,
            "optimization_level": optimization_level, "strongly_typed": True}
    return write_engine(Path(out_dir), engine_dir_name(gpu, cc, trt.__version__), plan, meta,
                        sign_key=sign_key)


def _source(onnx_path: Path) -> dict[str, str]:
    """engine.json's ``source_onnx`` / ``source_sha256`` / ``engine`` keys."""
    return {"source_onnx": onnx_path.name, "source_sha256": sha256_file(onnx_path),
            "engine": f"{onnx_path.name.removesuffix('.onnx')}.engine"}


def _profile_box(spec: ArchSpec | None, min_batch: int, opt_batch: int | None,
                 max_batch: int | None, min_hw: tuple[int, int] | None,
                 opt_hw: tuple[int, int] | None, max_hw: tuple[int, int] | None
                 ) -> tuple[tuple[int, int, int], dict[str, tuple[int, int, int]] | None]:
    """(min, opt, max) batch and, for image graphs, the per-sample (C, H, W) box.

    Checked before TensorRT is needed, so a bad profile fails anywhere.
    """
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
    return (min_batch, opt_batch, max_batch), per_sample


def _parse(trt: Any, onnx_path: Path, precision: str) -> tuple[Any, Any, tuple[Any, Any]]:
    """(builder, strongly typed network parsed from ``onnx_path``, (parser, logger)); the
    parser and logger are returned so they outlive the build."""
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
    return builder, network, (parser, logger)


def builder_config(trt: Any, builder: Any, *, workspace: int, optimization_level: int,
                   hardware_compatibility: str) -> Any:
    """An ``IBuilderConfig``: workspace limit, optimisation level, hardware compatibility
    (no precision flags: precision lives in the graph)."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(optimization_level)
    if hardware_compatibility != "none":
        level = getattr(trt.HardwareCompatibilityLevel, hardware_compatibility.upper(), None)
        if level is None:
            raise ExportError(f"unknown hardware_compatibility {hardware_compatibility!r}")
        config.hardware_compatibility_level = level
    return config


def _add_profile(builder: Any, config: Any, network: Any, batches: tuple[int, int, int],
                 per_sample: dict[str, tuple[int, int, int]] | None,
                 spec: ArchSpec | None) -> dict[str, list[list[int]]]:
    """One optimisation profile over every network input; returns its shapes."""
    profile = builder.create_optimization_profile()
    shapes = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        if per_sample is not None:  # image graph: a box over batch, height and width
            box = latent_profile(spec, per_sample) if t.name == "latent" else per_sample
            shapes[t.name] = [[b, *box[k]] for b, k in zip(batches, ("min", "opt", "max"))]
        else:
            feat = tuple(t.shape)[1:]
            shapes[t.name] = [[b, *feat] for b in batches]
        profile.set_shape(t.name, *shapes[t.name])
    config.add_optimization_profile(profile)
    return shapes


def write_engine(engines_dir: Path, folder_name: str, plan: Any, meta: dict[str, Any], *,
                 sign_key: Any = None) -> Path:
    """Put a serialized plan and its engine.json under ``engines_dir/folder_name``.

    In a bundle (``engines_dir`` is ``BUNDLE/engines``) both go through the staged
    :class:`~metaae_edge.exporters.writer.BundleWriter` and the plan is listed in the
    manifest (role ``engine``, its precision, sha256, the source graph and engine.json's
    contents), so the loader verifies it like any other file. Elsewhere they are plain
    (atomically written) files.

    Returns:
        The engine folder.
    """
    rel = f"{folder_name}/{meta['engine']}"
    info = json.dumps(meta, indent=2) + "\n"
    root = engines_dir.parent
    if engines_dir.name != "engines" or not (root / MANIFEST_NAME).is_file():
        atomic_write(engines_dir / rel, bytes(memoryview(plan)), mkdir=True)
        atomic_write(engines_dir / folder_name / "engine.json", info)
        return engines_dir / folder_name
    with BundleWriter.update(root, sign_key=sign_key) as writer:
        writer.path(f"engines/{rel}").write_bytes(memoryview(plan))
        writer.path(f"engines/{folder_name}/engine.json").write_text(info, encoding="utf-8")
        writer.add(f"engines/{rel}", ENGINE_ROLE, str(meta["precision"]),
                   source=meta["source_onnx"], engine_info=meta)
        writer.add(f"engines/{folder_name}/engine.json", ENGINE_INFO_ROLE,
                   str(meta["precision"]))
        writer.commit()
    return engines_dir / folder_name
