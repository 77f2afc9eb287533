"""The native ``tensorrt`` backend: a bundle's prebuilt engine on device buffers.

Torch-free: TensorRT is imported lazily and CUDA memory goes through
:mod:`metaae_edge.runtime.cuda` (ctypes over libcudart). Engines live in
``BUNDLE/engines/<gpu>-sm<cc>-trt<ver>/<graph>.engine`` next to ``engine.json`` (written by
:func:`metaae_edge.exporters.tensorrt.build_engine`). Before any plan is deserialised,
:func:`check_engine_compat` compares engine.json with this TensorRT and GPU: a stale engine
is refused with one line telling the user to run ``metaae-edge build-engine BUNDLE``.

TensorRT API used (identical in TensorRT 10 and 11, name-based I/O tensors):
``Runtime.deserialize_cuda_engine``, ``ICudaEngine.num_io_tensors / get_tensor_name /
get_tensor_mode / get_tensor_dtype / get_tensor_shape / get_tensor_profile_shape /
create_execution_context``, ``IExecutionContext.set_input_shape / get_tensor_shape /
set_tensor_address / execute_async_v3``. Nothing removed in 11 (weak-typing builder flags,
``device_memory_size``...) is touched.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from . import cuda as _cuda
from .bundle import Bundle

__all__ = ["check_engine_compat", "find_engines", "select_engine", "TensorRTRunner"]

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


def _listed_engines(bundle: Bundle) -> dict[str, Any]:
    return {f.path: f for f in bundle.files if f.path.startswith("engines/")}


def find_engines(bundle: Bundle, graph: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every (folder, engine.json) under ``bundle/engines`` built from ``graph``.

    When the manifest lists engine files, only listed engines count (their size and sha256
    were checked by :func:`~metaae_edge.runtime.bundle.load_bundle`); otherwise every
    folder does, and the engine's ``source_sha256`` is compared with the graph's.
    """
    root = bundle.root / "engines"
    if not root.is_dir():
        return []
    listed = _listed_engines(bundle)
    out = []
    for meta_path in sorted(root.glob("*/engine.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(meta, dict) or meta.get("source_onnx") != graph.name:
            continue
        rel = f"engines/{meta_path.parent.name}/{meta.get('engine', '')}"
        if listed and rel not in listed:
            continue
        out.append((meta_path.parent, meta))
    return out


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


class _Slot:
    """One execution context with its own stream and device buffers (one call at a time)."""

    def __init__(self, engine: Any, cuda: _cuda.Cuda, names: list[str], timing: bool):
        self.ctx = engine.create_execution_context()
        if self.ctx is None:
            raise BackendUnavailableError("backend tensorrt: could not create an execution "
                                          "context (out of GPU memory?)")
        self.stream = _cuda.Stream(cuda)
        self.bufs = {n: _cuda.DeviceBuffer(0, cuda) for n in names}
        self.shape: tuple[int, ...] = ()  # input shape currently set on the context
        self.graph: _cuda.CudaGraph | None = None
        self.graph_shape: tuple[int, ...] = ()
        self.events = [_cuda.Event(cuda) for _ in range(4)] if timing else None

    def free(self) -> None:
        if self.graph is not None:
            self.graph.free()
        for b in self.bufs.values():
            b.free()
        for e in self.events or ():
            e.free()
        self.stream.free()


class TensorRTRunner:
    """A TensorRT engine with OrtRunner's interface: ``input_names``, ``output_names``,
    ``run(outputs, feeds) -> list[np.ndarray]``.

    Thread-safe: each concurrent call borrows its own execution context (with its own
    stream and buffers) from a small pool, up to ``max_contexts``; more callers wait.
    Batches larger than the engine profile's maximum are run in chunks. With
    ``cuda_graph=True`` a repeated batch size replays a captured ``execute_async_v3``.
    With ``timing=True`` each call's H2D / compute / D2H milliseconds land in
    ``last_timings``.
    """

    def __init__(self, graph: Path, bundle: Bundle, *, device_id: int = 0,
                 max_contexts: int = 2, cuda_graph: bool = False, timing: bool = False):
        from .backends import require

        trt = require("tensorrt", _EXTRA)
        try:
            cuda = _cuda.load_cudart()
            gpu, cc = _cuda.gpu_info(device_id)
            cuda.set_device(device_id)
        except (BackendUnavailableError, _cuda.CudaError) as exc:
            raise BackendUnavailableError(f"backend tensorrt: {exc}") from None
        plan_path, meta = select_engine(bundle, Path(graph), trt.__version__, gpu, cc)
        self.backend = "tensorrt"
        self.path = plan_path
        self.engine_info = meta
        self._trt, self._cuda, self._device = trt, cuda, device_id
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(
                f"backend tensorrt: TensorRT {trt.__version__} could not deserialise "
                f"{plan_path.name} (see the TensorRT log); rebuild it with metaae-edge "
                f"build-engine {bundle.root}")
        self.input_names, self.output_names = [], []
        self._dtype: dict[str, np.dtype] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self._dtype[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.input_names.append(name)
            else:
                self.output_names.append(name)
        if len(self.input_names) != 1:
            raise BackendUnavailableError(f"backend tensorrt: {plan_path.name} has inputs "
                                          f"{self.input_names}; expected exactly one")
        inp = self.input_names[0]
        lo, _, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(inp, 0))
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self._features = tuple(int(d) for d in hi[1:])
        # Per-sample profile bounds: image engines have dynamic height / width as well.
        self._sample_lo = tuple(int(d) for d in lo[1:])
        self._cuda_graph, self._timing = cuda_graph, timing
        self.last_timings: dict[str, float] = {}
        self._max_contexts = max(1, int(max_contexts))
        self._slots: list[_Slot] = []
        self._idle: list[_Slot] = []
        self._cond = threading.Condition()
        self._idle.append(self._new_slot())  # fail at load, not on the first call

    def _new_slot(self) -> _Slot:
        slot = _Slot(self.engine, self._cuda, [*self.input_names, *self.output_names],
                     self._timing)
        self._slots.append(slot)
        return slot

    def _acquire(self) -> _Slot:
        with self._cond:
            while not self._idle:
                if len(self._slots) < self._max_contexts:
                    return self._new_slot()
                self._cond.wait()
            return self._idle.pop()

    def _release(self, slot: _Slot) -> None:
        with self._cond:
            self._idle.append(slot)
            self._cond.notify()

    def run(self, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the engine; ``outputs=None`` returns every output in engine order."""
        names = list(outputs or self.output_names)
        unknown = [n for n in names if n not in self._dtype or n in self.input_names]
        if unknown:
            raise KeyError(f"engine {self.path.name} has no output(s) {unknown}; it has "
                           f"{self.output_names}")
        x = feeds[self.input_names[0]]
        mb = self.max_batch
        if len(x) <= mb:
            return self._run_one(names, x)
        parts = [self._run_one(names, x[i:i + mb]) for i in range(0, len(x), mb)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]

    def _check_sample_shape(self, shape: tuple[int, ...]) -> None:
        if all(lo <= s <= hi for lo, s, hi in zip(self._sample_lo, shape, self._features)):
            return
        from ..errors import InputError

        def fmt(dims: tuple[int, ...]) -> str:
            return "x".join(str(d) for d in dims)
        if self._sample_lo == self._features:  # static sample shape (a dense-code image graph)
            raise InputError(f"engine {self.path.name} runs on samples of "
                             f"{fmt(self._features)} only, got {fmt(shape)}")
        raise InputError(f"engine {self.path.name} was built for samples from "
                         f"{fmt(self._sample_lo)} to {fmt(self._features)}, got {fmt(shape)}; "
                         "rebuild it with metaae-edge build-engine (see --max-hw) or use an "
                         "onnxruntime backend")

    def _run_one(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        n = len(x)
        if tuple(x.shape[1:]) != self._features:
            self._check_sample_shape(tuple(x.shape[1:]))
        inp = self.input_names[0]
        x = np.ascontiguousarray(x, dtype=self._dtype[inp])
        pad = max(0, self.min_batch - n)  # a profile starting above 1: pad, then slice
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        slot = self._acquire()
        try:
            outs = self._execute(slot, names, x)
        finally:
            self._release(slot)
        return [o[:n] if pad else o for o in outs]

    def _execute(self, slot: _Slot, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        ctx, stream, inp = slot.ctx, slot.stream, self.input_names[0]
        shape = tuple(x.shape)
        moved = slot.bufs[inp].resize(x.nbytes)
        if shape != slot.shape:  # batch (and, for images, height / width) changed
            if not ctx.set_input_shape(inp, shape):
                raise ValueError(f"engine {self.path.name} rejected input shape {shape} "
                                 f"(profile batch {self.min_batch}..{self.max_batch})")
            slot.shape = shape
        shapes = {o: tuple(ctx.get_tensor_shape(o)) for o in self.output_names}
        for o in self.output_names:
            nbytes = int(np.prod(shapes[o])) * self._dtype[o].itemsize
            moved |= slot.bufs[o].resize(nbytes)
        if moved:  # pointers are stable otherwise (buffers only grow)
            for name, buf in slot.bufs.items():
                ctx.set_tensor_address(name, buf.ptr)
        ev = slot.events
        if ev:
            ev[0].record(stream)
        slot.bufs[inp].copy_from(x, stream)
        if ev:
            ev[1].record(stream)
        self._enqueue(slot, shape, moved)
        if ev:
            ev[2].record(stream)
        host = {o: np.empty(shapes[o], self._dtype[o]) for o in names}
        for o in names:
            slot.bufs[o].copy_to(host[o], stream)
        if ev:
            ev[3].record(stream)
        stream.synchronize()
        if ev:
            self.last_timings = {"h2d_ms": ev[1].ms_since(ev[0]),
                                 "compute_ms": ev[2].ms_since(ev[1]),
                                 "d2h_ms": ev[3].ms_since(ev[2])}
        # Reduced-precision engines keep float32 I/O by design; cast if one does not.
        return [h if h.dtype == np.float32 else h.astype(np.float32) for h in host.values()]

    def _enqueue(self, slot: _Slot, shape: tuple[int, ...], moved: bool) -> None:
        ctx, stream = slot.ctx, slot.stream
        if not self._cuda_graph:
            if not ctx.execute_async_v3(stream.handle):
                raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.path.name}")
            return
        if slot.graph is not None and slot.graph_shape == shape and not moved:
            slot.graph.launch()
            return
        if slot.graph is not None:  # shape or addresses changed: the graph is stale
            slot.graph.free()
            slot.graph, slot.graph_shape = None, ()
        # An ordinary enqueue first (TensorRT does shape-dependent setup there, which must
        # not be captured), then capture one for the next call at this batch size.
        if not ctx.execute_async_v3(stream.handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed on {self.path.name}")
        try:
            slot.graph = _cuda.CudaGraph(stream, lambda: ctx.execute_async_v3(stream.handle),
                                         self._cuda)
            slot.graph_shape = shape
        except _cuda.CudaError:
            self._cuda_graph = False  # capture unsupported here: plain enqueues from now on

    def close(self) -> None:
        """Free device memory and streams (also done when the runner is collected)."""
        with self._cond:
            for slot in self._slots:
                slot.ctx = None
                slot.free()
            self._slots, self._idle = [], []

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
