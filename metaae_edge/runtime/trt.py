"""Which TensorRT engine of a bundle may run here (engine discovery and compatibility).

Torch-free. Engines live in ``BUNDLE/engines/<gpu>-sm<cc>-trt<ver>/<graph>.engine`` next to
``engine.json`` (written by :func:`metaae_edge.exporters.tensorrt.build_engine`, which lists
them in the manifest, so their sha256 is checked on load like any other file; the runner
itself is :mod:`metaae_edge.runtime.runners.tensorrt`). Before any plan is deserialised,
:func:`check_engine_compat` compares engine.json with this TensorRT and GPU: a stale engine
is refused with one line telling the user to run ``metaae-edge build-engine BUNDLE``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import BackendUnavailableError
from .bundle import Bundle
from .manifest import ENGINE_INFO_ROLE, ENGINE_ROLE

__all__ = ["check_engine_compat", "find_engines", "select_engine"]

_EXTRA = "metaae-edge[tensorrt]"
_REQUIRED = ("tensorrt_version", "gpu", "compute_capability", "engine")
# Jetson / DRIVE compute capabilities: TensorRT's hardware compatibility is not supported
# on JetPack or DRIVE OS (TensorRT developer guide, "Hardware Compatibility").
_EMBEDDED_CC = {"72", "87", "101", "110"}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def _cc(value: Any) -> int | None:
    s = str(value).replace(".", "").replace("sm", "").strip()
    return int(s) if s.isdigit() else None


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(v))[:4])


def check_engine_compat(engine_json: dict[str, Any], trt_version: str, gpu_name: str,
                        compute_capability: str) -> list[str]:
    """Reasons why an engine described by ``engine_json`` cannot run here (empty: it can).

    The rules follow TensorRT's engine-compatibility documentation:

    * TensorRT version: a plan runs only with the exact TensorRT version that built it,
      unless built ``version_compatible`` (then any same-major runtime at least as new).
    * GPU, by ``hardware_compatibility``: ``none`` (default) -> the same GPU model and
      compute capability; ``same_compute_capability`` -> any GPU of the same compute
      capability; ``ampere_plus`` -> any Ampere or newer GPU (sm >= 80), not Jetson / DRIVE.

    Args:
        engine_json: the parsed engine.json.
        trt_version: ``tensorrt.__version__`` here.
        gpu_name: this GPU's name (e.g. ``"NVIDIA H100 80GB HBM3"``).
        compute_capability: this GPU's compute capability, ``"90"`` or ``"9.0"``.
    """
    missing = [k for k in _REQUIRED if k not in engine_json]
    if missing:
        return [f"engine.json lacks {', '.join(missing)}"]
    reasons = []
    built = str(engine_json["tensorrt_version"])
    if built != str(trt_version):
        b, r = _version(built), _version(trt_version)
        if not (engine_json.get("version_compatible") and b[:1] == r[:1] and r >= b):
            reasons.append(f"built with TensorRT {built}, this is TensorRT {trt_version}")
    level = str(engine_json.get("hardware_compatibility", "none")).lower()
    e_cc, h_cc = _cc(engine_json["compute_capability"]), _cc(compute_capability)
    e_gpu = str(engine_json["gpu"])
    here = f"this is {gpu_name} (sm{h_cc})"
    if level == "ampere_plus":
        if h_cc is None or h_cc < 80:
            reasons.append(f"hardware-compatible (ampere_plus) engine needs an Ampere or newer "
                           f"GPU (sm >= 80); {here}")
        elif str(h_cc) in _EMBEDDED_CC:
            reasons.append(f"hardware-compatible engines are not supported on Jetson / DRIVE "
                           f"GPUs; {here}")
    elif level == "same_compute_capability":
        if e_cc != h_cc:
            reasons.append(f"built for compute capability sm{e_cc} (same_compute_capability); "
                           f"{here}")
    elif level == "none":
        if e_cc != h_cc or _slug(e_gpu) != _slug(gpu_name):
            reasons.append(f"built for {e_gpu} (sm{e_cc}); {here}")
    else:
        reasons.append(f"unknown hardware_compatibility {level!r}")
    return reasons


def _read_engine_json(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _candidates(bundle: Bundle) -> list[tuple[str, dict[str, Any] | None]]:
    """(plan path inside the bundle, its engine.json) of every engine the bundle offers.

    The manifest's listed engines (``role: engine``, size and sha256 checked by
    :func:`~metaae_edge.runtime.bundle.load_bundle`) with the description recorded beside
    them; any other file listed under ``engines/`` is described by the engine.json in its
    folder. Bundles whose manifest lists no engine (built before ``build-engine`` listed
    them) fall back to every ``engines/*/engine.json`` on disk.
    """
    listed = [f for f in bundle.files if f.role == ENGINE_ROLE or f.path.startswith("engines/")]
    listed = [f for f in listed if f.role != ENGINE_INFO_ROLE]
    if listed:
        out = []
        for f in listed:
            meta = f.extra.get("engine_info")
            if not isinstance(meta, dict):
                meta = _read_engine_json((bundle.root / f.path).parent / "engine.json")
                if meta is not None and meta.get("engine") != PurePosixPath(f.path).name:
                    meta = None  # that engine.json describes another plan of the folder
            out.append((f.path, meta))
        return out
    root = bundle.root / "engines"
    if not root.is_dir():
        return []
    out = []
    for meta_path in sorted(root.glob("*/engine.json")):
        meta = _read_engine_json(meta_path)
        if meta is not None:
            out.append((f"engines/{meta_path.parent.name}/{meta.get('engine', '')}", meta))
    return out


def find_engines(bundle: Bundle, graph: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every (folder, engine.json contents) of an engine in ``bundle`` built from ``graph``.

    When the manifest lists engine files, only listed engines count (their size and sha256
    were checked by :func:`~metaae_edge.runtime.bundle.load_bundle`); otherwise every
    folder under ``engines/`` does. The engine's ``source_sha256`` is compared with the
    graph's by :func:`select_engine`.
    """
    return [((bundle.root / rel).parent, meta) for rel, meta in _candidates(bundle)
            if meta is not None and meta.get("source_onnx") == graph.name]


def select_engine(bundle: Bundle, graph: Path, trt_version: str, gpu_name: str,
                  compute_capability: str) -> tuple[Path, dict[str, Any]]:
    """The engine plan for ``graph`` that can run on this GPU and TensorRT.

    Raises:
        BackendUnavailableError: none exists, or each one is stale (one line, with the
            ``metaae-edge build-engine`` command that fixes it).
    """
    precision = next((f.precision for f in bundle.files
                      if (bundle.root / f.path) == graph), "fp32")
    graph_sha = next((f.sha256 for f in bundle.files if (bundle.root / f.path) == graph), None)
    fix = f"metaae-edge build-engine {bundle.root}" + (
        f" --precision {precision}" if precision != "fp32" else "")
    candidates = find_engines(bundle, graph)
    if not candidates:
        raise BackendUnavailableError(
            f"backend tensorrt: bundle {bundle.root} has no TensorRT engine for {graph.name}; "
            f"build one on this GPU with {fix} (or use --backend ort-trt)")
    stale = []
    for folder, meta in candidates:
        reasons = check_engine_compat(meta, trt_version, gpu_name, compute_capability)
        if graph_sha and meta.get("source_sha256") not in (None, graph_sha):
            reasons.append(f"built from a different {graph.name} (sha256 differs)")
        plan = folder / str(meta.get("engine", ""))
        if not reasons and not plan.is_file():
            reasons.append(f"plan file {plan.name} is missing")
        if not reasons:
            return plan, meta
        stale.append(f"engines/{folder.name}: {'; '.join(reasons)}")
    raise BackendUnavailableError(
        f"backend tensorrt: stale TensorRT engine, not loaded ({' | '.join(stale)}); "
        f"rebuild it with {fix}")


def __getattr__(name: str) -> Any:
    # TensorRTRunner moved to runners/tensorrt.py; keep ``runtime.trt.TensorRTRunner``.
    if name == "TensorRTRunner":
        from .runners.tensorrt import TensorRTRunner

        return TensorRTRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
